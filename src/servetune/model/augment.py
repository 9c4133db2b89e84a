"""Training-time augmentation with PIL and numpy (no torchvision).

Random down-scaling makes a model robust to the resolution of the photos it is shown: a model trained on
full-size photos keeps working on small ones and the other way round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from servetune.config import ModelSpec
from servetune.model.preprocess import to_array


@dataclass(frozen=True)
class Augmentation:
    crop_scale: tuple[float, float] = (0.35, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.3  # brightness, contrast and saturation factors in [1 - jitter, 1 + jitter]
    downscale_probability: float = 0.3
    downscale_min_side: int = 40


def random_downscale(image: Image.Image, rng: np.random.Generator, aug: Augmentation) -> Image.Image:
    short = min(image.size)
    if short <= aug.downscale_min_side or rng.random() >= aug.downscale_probability:
        return image
    target = rng.uniform(aug.downscale_min_side, short)
    scale = target / short
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def random_resized_crop(image: Image.Image, size: int, rng: np.random.Generator, aug: Augmentation) -> Image.Image:
    width, height = image.size
    area = width * height
    for _ in range(10):
        target_area = area * rng.uniform(*aug.crop_scale)
        ratio = math.exp(rng.uniform(math.log(aug.crop_ratio[0]), math.log(aug.crop_ratio[1])))
        w = round(math.sqrt(target_area * ratio))
        h = round(math.sqrt(target_area / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    side = min(width, height)  # fall back to the centre square
    left, top = (width - side) // 2, (height - side) // 2
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def colour_jitter(image: Image.Image, rng: np.random.Generator, aug: Augmentation) -> Image.Image:
    enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    for index in rng.permutation(len(enhancers)):
        image = enhancers[index](image).enhance(rng.uniform(1 - aug.jitter, 1 + aug.jitter))
    return image


def augment(image: Image.Image, spec: ModelSpec, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    """One random training view of `image`, normalised like serving normalises (see preprocess.to_array)."""
    image = random_downscale(image, rng, aug)
    image = random_resized_crop(image, spec.input_size, rng, aug)
    if rng.random() < aug.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = colour_jitter(image, rng, aug)
    return to_array(image, spec)
