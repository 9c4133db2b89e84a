"""Labelled uploads with their kept photos as a Food-11-shaped folder (`<split>/<class>/<sha256>.jpg`),
which `servetune model eval --data` and `model train` read: the loop from live labels to the next model.

Each upload's class is the best one known: a review label, else the user's held-out label, else the class a
"wrong?" feedback gave. Uploads whose photo was not kept (serve without --keep-photos) cannot be exported
and are counted.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from servetune.errors import ServetuneError
from servetune.labels.records import Upload


class ExportError(ServetuneError):
    """The export cannot be written; the message names the folder or file."""


@dataclass
class ExportResult:
    written: Counter = field(default_factory=Counter)  # class: photos
    without_photo: int = 0
    missing_photo: list[str] = field(default_factory=list)  # photo files named in the store but not found


def known_class(upload: Upload) -> str | None:
    return upload.review_label or upload.label or upload.feedback_label


def class_folder(name: str) -> str:
    """A class name as a folder name (data.py's class_name layout matches it back: 'Noodles-Pasta')."""
    return name.replace("/", "-").replace("\\", "-").strip(". ") or "unnamed"


def copy_photo(photos: Path, upload: Upload, target: Path, result: ExportResult) -> bool:
    assert upload.photo_file is not None
    source = (photos / upload.photo_file).resolve()
    if not source.is_relative_to(photos.resolve()) or not source.is_file():
        result.missing_photo.append(upload.photo_file)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return True


def export_food11(uploads: list[Upload], photos: Path, out: Path, split: str = "evaluation") -> ExportResult:
    if not photos.is_dir():
        raise ExportError(f"{photos}: no such photos folder (the server's --keep-photos)")
    split_dir = out / split
    if split_dir.exists() and any(split_dir.iterdir()):
        raise ExportError(f"{split_dir}: already holds files; export into a new folder")
    result = ExportResult()
    for upload in uploads:
        name = known_class(upload)
        if name is None:
            continue
        if upload.photo_file is None:
            result.without_photo += 1
            continue
        target = split_dir / class_folder(name) / Path(upload.photo_file).name
        if copy_photo(photos, upload, target, result):
            result.written[name] += 1
    return result
