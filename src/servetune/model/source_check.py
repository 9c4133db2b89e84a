"""How closely an imported artifact answers like its source framework, each fed as it expects.

The source side uses the reference app's preprocessing (PIL decodes the whole photo, BICUBIC resize to
the input, x * scale); the artifact side uses the artifact's own preprocessing (model/preprocess.py).
Sample photos are drawn here: several sizes and aspect ratios, JPEG, with sharp detail that a cheaper
decode or another resize filter would change.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from servetune.config import ModelSpec
from servetune.model.preprocess import RESIZE_FILTERS, load_and_preprocess
from servetune.model.ranking import class_probabilities, top1

SAMPLE_SIZES = [(1280, 960), (640, 480), (480, 640), (1024, 1024), (300, 200), (96, 64), (2000, 1500), (224, 224)]


@dataclass(frozen=True)
class Agreement:
    photos: int
    top1_agree: int
    max_abs_diff: float  # largest difference between the two probability vectors

    def describe(self, source: str) -> str:
        return (
            f"agreement with {source} on {self.photos} sample photos: top-1 {self.top1_agree}/{self.photos}, "
            f"max |dp| {self.max_abs_diff:.1e}"
        )


def sample_photos(count: int = len(SAMPLE_SIZES), seed: int = 0) -> list[bytes]:
    """JPEG photos: a smooth colour field with sharp rectangles, one per size in SAMPLE_SIZES (cycled)."""
    photos = []
    for index in range(count):
        width, height = SAMPLE_SIZES[index % len(SAMPLE_SIZES)]
        rng = np.random.default_rng(seed + index)
        coarse = rng.uniform(0, 255, size=(5, 5, 3)).astype(np.uint8)
        pixels = np.array(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
        for _ in range(12):
            x, y = rng.integers(0, width), rng.integers(0, height)
            pixels[y : y + rng.integers(1, height // 6 + 2), x : x + rng.integers(1, width // 6 + 2)] = rng.integers(
                0, 256, 3
            )
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        photos.append(buffer.getvalue())
    return photos


def reference_input(data: bytes, spec: ModelSpec) -> np.ndarray:
    """What the reference app feeds its model: full decode, resize to the input, x * scale, in the layout."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((spec.input_size, spec.input_size), RESIZE_FILTERS[spec.interpolation])
    pixels = np.asarray(image, dtype=np.float32) * np.float32(spec.scale)
    return pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else pixels


def compare(
    source_predict: Callable[[np.ndarray], np.ndarray],
    artifact_predict: Callable[[np.ndarray], np.ndarray],
    spec: ModelSpec,
    photos: list[bytes],
) -> Agreement:
    """Run the source on reference inputs and the artifact on its own preprocessing of the same photos."""
    source = source_predict(np.stack([reference_input(p, spec) for p in photos]))
    artifact = artifact_predict(np.stack([load_and_preprocess(p, spec) for p in photos]))
    expected = class_probabilities(np.asarray(source, dtype=np.float64), spec.output)
    actual = class_probabilities(np.asarray(artifact, dtype=np.float64), spec.output)
    return Agreement(
        photos=len(photos),
        top1_agree=int((top1(expected) == top1(actual)).sum()),
        max_abs_diff=float(np.abs(expected - actual).max()),
    )
