"""Fetch the Food-11 zip: resumable HTTP download, SHA-256 check, safe unpacking, layout report.

A partial download is kept as ``<name>.part`` and continued with an HTTP Range request; a server that
ignores Range (answers 200 with the whole file) restarts it cleanly from byte 0. A file whose checksum
does not match is deleted, never unpacked. Unpacking refuses archive members that would land outside
the destination (absolute paths, ``..``, links).
"""

from __future__ import annotations

import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from servetune.errors import ServetuneError
from servetune.model.artifact import file_sha256

# The Food-11 archive (EPFL MMSPG) as the GourmetGram course material fetches it, e.g. in
# teaching-on-testbeds/data-persist-chi (object/docker/docker-compose-etl.yaml): it unpacks to
# training/ validation/ evaluation/ with <class id>_<n>.jpg files. Its SHA-256 is not published; the
# command prints the digest it computed so a user can pin it with --sha256.
FOOD11_URL = "https://nyu.box.com/shared/static/m5kvcl25hfpljul3elhu6xz8y2w61op4.zip"
ARCHIVE_NAME = "Food-11.zip"
CHUNK_BYTES = 1 << 20
ATTEMPTS = 5  # a dropped connection resumes where it stopped, up to this many times in all
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

# Called with (bytes done, total bytes or None) as data arrives, and once at the start of each request.
ProgressCallback = Callable[[int, int | None], None]


class DownloadError(ServetuneError):
    """The download or unpacking failed; the message names the URL or file and the problem."""


class BadArchive(DownloadError):
    """The zip is corrupt or unsafe to unpack: it is deleted, never kept for the next run."""


@dataclass
class Food11Download:
    archive: Path
    sha256: str
    created: list[Path]
    data_root: Path | None  # the folder holding the split folders, None when there is none
    splits: list[str]  # one line per split: what was found


def download_food11(
    dest: str | Path,
    url: str = FOOD11_URL,
    sha256: str | None = None,
    keep_archive: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Food11Download:
    """Download (or resume) the Food-11 zip into `dest`, verify it, unpack it there and describe it."""
    dest = Path(dest)
    sha256 = check_sha256(sha256)
    archive = dest / ARCHIVE_NAME
    if archive.is_file():  # complete from an earlier run (--keep-zip): verify instead of fetching again
        digest = file_sha256(archive)
        if sha256 is not None and digest != sha256:
            archive.unlink()
            digest = download(url, archive, sha256, on_progress)
    else:
        digest = download(url, archive, sha256, on_progress)
    try:
        created = unpack(archive, dest)
    except BadArchive as err:
        archive.unlink()  # never keep a corrupt or unsafe archive for the next run
        raise BadArchive(f"{err}; the archive was deleted") from None
    if not keep_archive:
        archive.unlink()
    root = find_data_root(dest)
    return Food11Download(archive, digest, created, root, describe_data(root) if root else [])


def download(
    url: str,
    target: Path,
    sha256: str | None = None,
    on_progress: ProgressCallback | None = None,
    timeout_s: float = 60.0,
) -> str:
    """Download `url` to `target` (resuming `target`.part), verify it, and return its SHA-256."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    report = on_progress or (lambda done, total: None)
    with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(timeout_s, connect=30.0)) as client:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if fetch_into(client, url, part, report):
                    break
            except httpx.TransportError as err:
                if attempt == ATTEMPTS:
                    raise DownloadError(
                        f"{url}: {describe(err)} after {ATTEMPTS} attempts; run the command again to resume "
                        f"from {part.stat().st_size if part.exists() else 0} bytes"
                    ) from None
    digest = file_sha256(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise DownloadError(
            f"{url}: checksum mismatch: expected SHA-256 {sha256.lower()}, got {digest}; the file was deleted"
        )
    part.replace(target)
    return digest


def fetch_into(client: httpx.Client, url: str, part: Path, report: ProgressCallback) -> bool:
    """One request: continue `part` from its size; True when the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-", "Accept-Encoding": "identity"} if have else {"Accept-Encoding": "identity"}
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416 and have:
                return range_not_satisfiable(response, part, have)
            if response.status_code not in (200, 206):
                raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
            if response.status_code == 206:
                start, total = parse_content_range(url, response.headers.get("content-range", ""))
                if start != have:
                    raise DownloadError(f"{url}: server resumed at byte {start}, asked for {have}")
                mode = "ab"
            else:  # 200: a fresh download, or a server that ignores Range: start again from byte 0
                have, mode = 0, "wb"
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
            report(have, total)
            with open(part, mode) as handle:
                for chunk in response.iter_bytes():  # as received: a dropped connection loses nothing
                    handle.write(chunk)
                    have += len(chunk)
                    report(have, total)
    except httpx.InvalidURL as err:
        raise DownloadError(f"{url}: invalid URL: {err}") from None
    except httpx.UnsupportedProtocol:
        raise DownloadError(f"{url}: not an http(s) URL") from None
    if total is not None and have < total:
        raise httpx.ReadError(f"connection closed at {have} of {total} bytes")
    if total is not None and have > total:
        part.unlink()
        raise DownloadError(f"{url}: server sent {have} bytes, more than the {total} it announced")
    return True


def range_not_satisfiable(response: httpx.Response, part: Path, have: int) -> bool:
    """416: the partial file is already complete (size == total) or is not a prefix of this file."""
    match = re.match(r"^bytes \*/(\d+)$", response.headers.get("content-range", ""))
    if match and int(match.group(1)) == have:
        return True
    part.unlink()  # larger than the file on the server: not ours; start again
    return False


def parse_content_range(url: str, value: str) -> tuple[int, int | None]:
    match = CONTENT_RANGE.match(value.strip())
    if not match:
        raise DownloadError(f"{url}: partial response with an unreadable Content-Range {value!r}")
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def describe(err: httpx.TransportError) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()):
        raise DownloadError(f"--sha256 {value!r}: not a SHA-256 digest (64 hex digits)")
    return value.strip().lower()


def safe_member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's relative path, or DownloadError if it would escape the destination or is a link."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise BadArchive(f"unsafe path in the archive: {info.filename!r} (outside the destination)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BadArchive(f"unsafe member in the archive: {info.filename!r} is a symbolic link")
    return path


def unpack(archive: Path, dest: Path) -> list[Path]:
    """Unpack `archive` into `dest`; return the top-level entries created. Nothing is left on failure."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [(info, safe_member_path(info)) for info in zipped.infolist()]
            for top in sorted({relative.parts[0] for _, relative in members if relative.parts}):
                if (dest / top).exists() and top != "__MACOSX":
                    raise DownloadError(f"{dest / top}: already exists; remove it or choose another --dest")
            with tempfile.TemporaryDirectory(prefix=".unpacking-", dir=dest) as staging:
                for info, relative in members:
                    if info.is_dir() or info.filename.startswith("__MACOSX/"):
                        continue
                    out = Path(staging, *relative.parts)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zipped.open(info) as source, open(out, "wb") as sink:  # checks each member's CRC
                        shutil.copyfileobj(source, sink, CHUNK_BYTES)
                created = []
                for entry in sorted(Path(staging).iterdir()):
                    entry.rename(dest / entry.name)
                    created.append(dest / entry.name)
    except zipfile.BadZipFile as err:
        raise BadArchive(f"{archive}: not a valid zip archive: {err}") from None
    return created


def find_data_root(dest: Path) -> Path | None:
    """The folder holding training/ validation/ evaluation/: `dest` itself or one level below."""
    from servetune.model.data import SPLITS

    for candidate in [dest, *sorted(p for p in dest.iterdir() if p.is_dir())]:
        if any((candidate / split).is_dir() for split in SPLITS):
            return candidate
    return None


def describe_data(root: Path) -> list[str]:
    """One line per split: layout, image count, classes present; or the problem with it."""
    from servetune.model.data import SPLITS, DataError, read_split

    lines = []
    for split in SPLITS:
        try:
            found = read_split(root, split, require_all_classes=False)
        except DataError as err:
            lines.append(f"{split}: {err}")
            continue
        counts = found.counts()
        present = sum(1 for n in counts if n)
        lines.append(
            f"{split}: {len(found.samples)} images, {present}/{len(counts)} classes, {found.layout} layout"
        )
    return lines
