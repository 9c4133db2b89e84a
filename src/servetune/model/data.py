"""Read Food-11 in each layout users have, and load its images.

Layouts of a split folder (`training/`, `validation/`, `evaluation/`):
- ``flat``: the original archive, ``<class id>_<n>.jpg`` files;
- ``class_id``: subfolders ``class_00`` ... ``class_10``;
- ``class_name``: subfolders named after the classes (``Bread/``, ``Dairy product/``, ``Noodles-Pasta/`` ...).

A missing split, an unknown class id or an empty class raises DataError naming the path. Corrupt images are
skipped while loading, counted and listed (LoadedImages.corrupt), never fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from servetune.config import FOOD11_CLASSES
from servetune.errors import ServetuneError, first_line

SPLITS = ("training", "validation", "evaluation")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
FLAT_NAME = re.compile(r"^(\d+)_(\d+)$")
CLASS_ID_FOLDER = re.compile(r"^class_(\d+)$")

Layout = Literal["flat", "class_id", "class_name"]


class DataError(ServetuneError):
    """The data folder cannot be used; the message names the path and the problem."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Split:
    name: str
    root: Path
    layout: Layout
    class_names: list[str]
    samples: list[Sample]

    def counts(self) -> list[int]:
        counts = [0] * len(self.class_names)
        for sample in self.samples:
            counts[sample.label] += 1
        return counts


@dataclass
class LoadedImages:
    images: list[Image.Image]
    labels: list[int]
    paths: list[Path]
    corrupt: list[tuple[Path, str]] = field(default_factory=list)


def normalise_class_name(name: str) -> str:
    """'Noodles/Pasta', 'noodles-pasta' and 'Noodles_Pasta' all become 'noodlespasta'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def split_dir(root: str | Path, split: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    folder = root / split
    if not folder.is_dir():
        present = [s for s in SPLITS if (root / s).is_dir()]
        raise DataError(
            f"{folder}: missing split folder '{split}' (found: {', '.join(present) or 'none'}; "
            f"expected {', '.join(SPLITS)})"
        )
    return folder


def detect_layout(folder: Path) -> Layout:
    subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not subfolders:
        return "flat"
    if all(CLASS_ID_FOLDER.match(p.name) for p in subfolders):
        return "class_id"
    return "class_name"


def read_split(
    root: str | Path, split: str, class_names: list[str] = FOOD11_CLASSES, require_all_classes: bool = True
) -> Split:
    """List one split's images with their labels; raises DataError on an unusable folder.

    Training needs every class; an evaluation set may cover only some (require_all_classes=False), but a
    class folder that exists and holds no image is always an error.
    """
    return read_folder(split_dir(root, split), split, class_names, require_all_classes)


def read_folder(
    folder: str | Path, name: str, class_names: list[str] = FOOD11_CLASSES, require_all_classes: bool = True
) -> Split:
    """List the images of one folder laid out like a split (flat, class_id or class_name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder")
    layout = detect_layout(folder)
    if layout == "flat":
        samples = flat_samples(folder, len(class_names))
    elif layout == "class_id":
        samples = class_id_samples(folder, len(class_names))
    else:
        samples = class_name_samples(folder, class_names)
    result = Split(name, folder, layout, list(class_names), samples)
    if not samples:
        raise DataError(f"{folder}: no images ({layout} layout)")
    check_all_classes(result, require_all_classes)
    return result


def check_all_classes(split: Split, require_all_classes: bool = True) -> None:
    empty = [split.class_names[i] for i, n in enumerate(split.counts()) if n == 0]
    if require_all_classes and empty:
        raise DataError(
            f"{split.root}: no images for class {', '.join(repr(c) for c in empty)} ({split.layout} layout)"
        )


def read_training(root: str | Path, extra: list[Path] = (), class_names: list[str] = FOOD11_CLASSES) -> Split:
    """The training split of `root` followed by the images of each `extra` folder (any layout; an extra
    folder may lack classes, the union must have them all). Order is stable: `subset` then takes the
    split's own images of a class first."""
    training = read_split(root, "training", class_names, require_all_classes=not extra)
    samples = list(training.samples)
    for folder in extra:
        samples.extend(read_folder(folder, "training", class_names, require_all_classes=False).samples)
    union = Split("training", training.root, training.layout, list(class_names), samples)
    check_all_classes(union)
    return union


def check_class_id(class_id: int, num_classes: int, path: Path) -> int:
    if not 0 <= class_id < num_classes:
        raise DataError(f"{path}: unknown class id {class_id} (expected 0..{num_classes - 1})")
    return class_id


def flat_samples(folder: Path, num_classes: int) -> list[Sample]:
    samples = []
    for path in image_files(folder):
        match = FLAT_NAME.match(path.stem)
        if match is None:
            raise DataError(f"{path}: file name is not '<class id>_<n>' as in the Food-11 archive")
        samples.append(Sample(path, check_class_id(int(match.group(1)), num_classes, path)))
    return samples


def class_id_samples(folder: Path, num_classes: int) -> list[Sample]:
    samples = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = check_class_id(int(CLASS_ID_FOLDER.match(sub.name).group(1)), num_classes, sub)
        samples.extend(class_folder_samples(sub, label))
    return samples


def class_name_samples(folder: Path, class_names: list[str]) -> list[Sample]:
    known = {normalise_class_name(name): index for index, name in enumerate(class_names)}
    samples = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = known.get(normalise_class_name(sub.name))
        if label is None:
            raise DataError(f"{sub}: folder name is not a class name (expected one of: {', '.join(class_names)})")
        samples.extend(class_folder_samples(sub, label))
    return samples


def class_folder_samples(folder: Path, label: int) -> list[Sample]:
    files = image_files(folder)
    if not files:
        raise DataError(f"{folder}: empty class folder (no .jpg/.png images)")
    return [Sample(path, label) for path in files]


def subset(samples: list[Sample], per_class: int | None) -> list[Sample]:
    """The first `per_class` samples of each class (all when None): a quick, reproducible subset."""
    if per_class is None:
        return samples
    taken: dict[int, int] = {}
    chosen = []
    for sample in samples:
        if taken.get(sample.label, 0) < per_class:
            taken[sample.label] = taken.get(sample.label, 0) + 1
            chosen.append(sample)
    return chosen


def open_image(path: Path, max_side: int | None = None) -> Image.Image:
    """Decode to RGB; with max_side, shrink (keeping aspect) so the shorter side is about max_side."""
    with Image.open(path) as image:
        if max_side is not None and image.format == "JPEG":
            image.draft("RGB", (max_side, max_side))
        image.load()
        image = image.convert("RGB")
    if max_side is not None and min(image.size) > max_side:
        scale = max_side / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    return image


def load_images(samples: list[Sample], max_side: int | None = None, progress=None) -> LoadedImages:
    """Decode every sample; corrupt files are skipped and listed with the reason."""
    loaded = LoadedImages([], [], [])
    for sample in samples:
        try:
            image = open_image(sample.path, max_side)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            loaded.corrupt.append((sample.path, first_line(err)))
        else:
            loaded.images.append(image)
            loaded.labels.append(sample.label)
            loaded.paths.append(sample.path)
        if progress is not None:
            progress()
    return loaded
