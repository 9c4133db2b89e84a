"""The image GET /test classifies by default: a 1280x1280 JPEG drawn here, deterministic, no file shipped.

It looks vaguely like a dish (a plate with a textured, colourful heap on a wooden table) so that its JPEG
size and decode cost are close to a real photo's (a flat image would decode unrealistically fast).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 1280


def smooth_noise(rng: np.random.Generator, side: int, cells: int) -> np.ndarray:
    """Value noise in 0..1: a coarse random grid resized up with bicubic interpolation."""
    coarse = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255


def draw_sample(side: int = SIDE, seed: int = 11) -> Image.Image:
    # float32, broadcast coordinates and in-place layers: a serving process draws this at start, and
    # full-size float64 temporaries would briefly double its memory (a replica with a small memory limit
    # must not be killed while it starts).
    rng = np.random.default_rng(seed)
    y = (np.arange(side, dtype=np.float32) / side)[:, None]
    x = (np.arange(side, dtype=np.float32) / side)[None, :]
    # Wooden table: stretched grain plus fine noise.
    grain = 0.5 + 0.5 * np.sin(40 * y + 6 * smooth_noise(rng, side, 8))
    image = np.stack([120 + 60 * grain, 80 + 40 * grain, 45 + 20 * grain], axis=-1)
    del grain
    radius = np.hypot(x - 0.5, y - 0.52)
    image[radius < 0.42] = 240.0  # plate
    image[(radius > 0.36) & (radius < 0.42)] = 225.0  # its rim
    # The food: green and red leafy texture at several scales.
    leaves = 0.6 * smooth_noise(rng, side, 40) + 0.4 * smooth_noise(rng, side, 160)
    spots = smooth_noise(rng, side, 24) > 0.6
    heap = radius < 0.3 + 0.04 * smooth_noise(rng, side, 12)
    image[heap, 0] = (40 + 70 * leaves + 120 * spots)[heap]
    image[heap, 1] = (110 + 120 * leaves - 60 * spots)[heap]
    image[heap, 2] = (30 + 40 * leaves)[heap]
    del leaves, spots, heap, radius
    image += 6 * rng.standard_normal(image.shape, dtype=np.float32)  # sensor noise: photos are never clean
    return Image.fromarray(image.clip(0, 255, out=image).astype(np.uint8), "RGB")


@lru_cache(maxsize=1)
def generated_sample_jpeg() -> bytes:
    buffer = io.BytesIO()
    draw_sample().save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def sample_image_bytes(path: str | Path | None = None) -> bytes:
    """The bytes of the sample image: the file at `path`, else the generated JPEG."""
    if path is None:
        return generated_sample_jpeg()
    return Path(path).read_bytes()
