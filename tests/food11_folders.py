"""Synthetic Food-11 folders in each layout: small JPEGs whose colour depends on the class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from servetune.config import FOOD11_CLASSES

# Folder names as users have them for the class-name layout (slashes replaced, spacing and case vary).
CLASS_FOLDERS = [name.replace("/", "-") for name in FOOD11_CLASSES]
SPLIT_OFFSET = {"training": 0, "validation": 100, "evaluation": 200}


def class_image(label: int, index: int, side: int = 48) -> Image.Image:
    """A learnable image: hue set by the class, a bright square whose place is set by the class, noise."""
    rng = np.random.default_rng(label * 1000 + index)
    hue = np.array([(label * 23) % 256, (label * 71 + 40) % 256, (label * 131 + 90) % 256], dtype=np.float32)
    pixels = hue + rng.normal(0, 18, size=(side, side, 3))
    corner = (label % 4) * side // 4
    pixels[corner : corner + side // 4, : side // 3] = 255
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def write_split(root: Path, split: str, layout: str, per_class: int, side: int = 48) -> None:
    for label in range(len(FOOD11_CLASSES)):
        for index in range(per_class):
            if layout == "flat":
                path = root / split / f"{label}_{index}.jpg"
            elif layout == "class_id":
                path = root / split / f"class_{label:02d}" / f"{index}.jpg"
            else:
                path = root / split / CLASS_FOLDERS[label] / f"photo {index}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            class_image(label, index + SPLIT_OFFSET[split], side).save(path, quality=92)


def write_food11(root: Path, layout: str = "flat", per_class: int = 2,
                 splits=("training", "validation", "evaluation"), side: int = 48) -> Path:
    for split in splits:
        write_split(root, split, layout, per_class, side)
    return root
