"""Keeping uploaded photos (`--keep-photos DIR`, off by default) under a size quota.

A photo is stored once under its sha256 (`ab/abcdef....jpg`), so the same photo uploaded twice takes its
room once. The quota counts what the folder held when the server started plus what this process added;
several processes sharing a folder may together overshoot it by what each adds between two rescans.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from servetune.labels.records import Upload

RESCAN_EVERY = 500  # photos kept between two scans of the folder's size
SIGNATURES = (
    (b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
)


def photo_suffix(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for signature, suffix in SIGNATURES:
        if data.startswith(signature):
            return suffix
    return ".img"


def folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in folder.rglob("*") if entry.is_file())


class PhotoKeeper:
    def __init__(self, folder: str | Path, quota_bytes: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes
        self.used = folder_bytes(self.folder)
        self.kept_since_scan = 0
        self.refused = 0  # photos not kept because the quota was reached

    def keep(self, upload: Upload, data: bytes) -> Upload:
        """The upload with `photo_file` set once the photo is on disk; as it was when over the quota."""
        name = f"{upload.photo_sha256[:2]}/{upload.photo_sha256}{photo_suffix(data)}"
        path = self.folder / name
        if path.exists():
            return replace(upload, photo_file=name)
        if self.kept_since_scan >= RESCAN_EVERY:
            self.used, self.kept_since_scan = folder_bytes(self.folder), 0
        if self.used + len(data) > self.quota_bytes:
            self.refused += 1
            return upload
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)  # a reader never sees half a photo
        self.used += len(data)
        self.kept_since_scan += 1
        return replace(upload, photo_file=name)
