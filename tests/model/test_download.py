"""`servetune data download` against a real HTTP server on 127.0.0.1 serving a small Food-11-like zip."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest
from PIL import Image
from typer.testing import CliRunner

from servetune.cli import app
from servetune.model.download import (
    ARCHIVE_NAME,
    BadArchive,
    DownloadError,
    download,
    download_food11,
    unpack,
)


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def food11_zip() -> bytes:
    """The original archive's layout: training/ validation/ evaluation/ with <class id>_<n>.jpg files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for split, per_class in (("training", 3), ("validation", 1), ("evaluation", 2)):
            for label in range(11):
                for n in range(per_class):
                    archive.writestr(f"{split}/{label}_{n}.jpg", jpeg((label * 20, n * 40, 90)))
    return buffer.getvalue()


PAYLOAD = food11_zip()
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class ZipServer:
    """Serves PAYLOAD at /Food-11.zip with HTTP Range support; can drop connections or ignore Range."""

    def __init__(self, payload: bytes = PAYLOAD, ignore_range: bool = False, drop_first_after: int | None = None):
        self.payload = payload
        self.ignore_range = ignore_range
        self.drop_first_after = drop_first_after  # the first response stops after this many bytes
        self.requests: list[str | None] = []  # the Range header of each request (None: no Range)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.headers.get("Range"))
                if self.path != "/Food-11.zip":
                    self.send_error(404, "Not Found")
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not outer.ignore_range:
                    start = int(match.group(1))
                    if start >= len(outer.payload):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(outer.payload)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                else:
                    self.send_response(200)
                body = outer.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/zip")
                self.end_headers()
                if outer.drop_first_after is not None and len(outer.requests) == 1:
                    self.wfile.write(body[: outer.drop_first_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/Food-11.zip"

    def __enter__(self) -> Self:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ZipServer]:
    with ZipServer() as running:
        yield running


def test_full_download_verifies_unpacks_and_describes(tmp_path, server):
    progress: list[tuple[int, int | None]] = []

    result = download_food11(tmp_path, server.url, DIGEST, on_progress=lambda d, t: progress.append((d, t)))

    assert result.sha256 == DIGEST
    assert result.data_root == tmp_path
    assert sorted(p.name for p in result.created) == ["evaluation", "training", "validation"]
    assert (tmp_path / "training" / "10_2.jpg").read_bytes() == jpeg((200, 80, 90))
    assert result.splits == [
        "training: 33 images, 11/11 classes, flat layout",
        "validation: 11 images, 11/11 classes, flat layout",
        "evaluation: 22 images, 11/11 classes, flat layout",
    ]
    assert progress[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (tmp_path / ARCHIVE_NAME).exists() and not list(tmp_path.glob("*.part"))
    assert server.requests == [None]


def test_resumes_a_partial_file_with_a_range_request(tmp_path, server):
    target = tmp_path / ARCHIVE_NAME
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(PAYLOAD[:5000])

    assert download(server.url, target, DIGEST) == DIGEST

    assert server.requests == ["bytes=5000-"]
    assert target.read_bytes() == PAYLOAD


def test_a_dropped_connection_resumes_where_it_stopped(tmp_path):
    with ZipServer(drop_first_after=7000) as server:
        assert download(server.url, tmp_path / ARCHIVE_NAME, DIGEST) == DIGEST

    assert server.requests == [None, "bytes=7000-"]
    assert (tmp_path / ARCHIVE_NAME).read_bytes() == PAYLOAD


def test_server_that_ignores_range_restarts_cleanly(tmp_path):
    target = tmp_path / ARCHIVE_NAME
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(b"stale bytes from another file" * 100)

    with ZipServer(ignore_range=True) as server:
        assert download(server.url, target, DIGEST) == DIGEST

    assert server.requests == [f"bytes={29 * 100}-"]
    assert target.read_bytes() == PAYLOAD


def test_complete_partial_file_is_not_fetched_again(tmp_path, server):
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(PAYLOAD)

    assert download(server.url, tmp_path / ARCHIVE_NAME, DIGEST) == DIGEST
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]  # answered 416 with the total size


def test_checksum_mismatch_keeps_nothing(tmp_path, server):
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=f"checksum mismatch: expected SHA-256 {wrong}, got {DIGEST}"):
        download_food11(tmp_path, server.url, wrong)
    assert list(tmp_path.iterdir()) == []


def test_not_found_is_a_clear_error(tmp_path, server):
    url = server.url.replace("Food-11.zip", "missing.zip")
    with pytest.raises(DownloadError, match=re.escape(f"{url}: HTTP 404 Not Found")):
        download_food11(tmp_path, url)
    assert not list(tmp_path.glob("*.zip*"))


def test_unreachable_server_is_a_clear_error(tmp_path):
    with ZipServer() as server:
        url = server.url
    with pytest.raises(DownloadError, match=re.escape(url) + ".*ConnectError.*run the command again to resume"):
        download(url, tmp_path / ARCHIVE_NAME, timeout_s=2)


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "training/../../evil.txt", "C:/evil.txt"])
def test_zip_path_traversal_is_refused_and_the_archive_deleted(tmp_path, name):
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("training/0_0.jpg", jpeg((1, 2, 3)))
        archive.writestr(name, b"owned")
    dest = tmp_path / "dest"
    with ZipServer(payload=payload.getvalue()) as server, pytest.raises(BadArchive, match="unsafe path"):
        download_food11(dest, server.url)
    assert not (tmp_path / "evil.txt").exists()
    assert list(dest.iterdir()) == []  # nothing unpacked, archive deleted


def test_corrupt_zip_is_deleted_and_nothing_unpacked(tmp_path):
    corrupt = bytearray(PAYLOAD)
    corrupt[len(corrupt) // 2] ^= 0xFF  # inside a member's data: its CRC no longer matches
    with ZipServer(payload=bytes(corrupt)) as server, pytest.raises(BadArchive, match="not a valid zip"):
        download_food11(tmp_path, server.url)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_not_overwritten(tmp_path):
    archive = tmp_path / "food.zip"
    archive.write_bytes(PAYLOAD)
    (tmp_path / "dest" / "training").mkdir(parents=True)
    with pytest.raises(DownloadError, match="training: already exists"):
        unpack(archive, tmp_path / "dest")
    assert archive.exists()


def test_cli_download_prints_layout(tmp_path, server):
    dest = tmp_path / "food"
    result = CliRunner().invoke(app, ["data", "download", "--dest", str(dest), "--url", server.url, "--keep-zip"])

    assert result.exit_code == 0, result.output
    assert f"SHA-256 {DIGEST}" in result.output
    assert "training: 33 images, 11/11 classes, flat layout" in result.output
    assert (dest / ARCHIVE_NAME).read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--sha256", "0" * 64], "checksum mismatch"),
        (["--sha256", "xyz"], "not a SHA-256 digest"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, server, args, reason):
    result = CliRunner().invoke(app, ["data", "download", "--dest", str(tmp_path), "--url", server.url, *args])
    assert result.exit_code != 0
    assert reason in result.output and "Traceback" not in result.output


def test_cli_not_found_names_the_url(tmp_path, server):
    url = server.url.replace("Food-11.zip", "nope.zip")
    result = CliRunner().invoke(app, ["data", "download", "--dest", str(tmp_path), "--url", url])
    assert result.exit_code != 0
    assert f"{url}: HTTP 404" in result.output and "Traceback" not in result.output


def test_default_url_is_the_public_food11_zip():
    from servetune.model.download import FOOD11_URL

    assert FOOD11_URL.startswith("https://") and FOOD11_URL.endswith(".zip")
    assert Path(ARCHIVE_NAME).suffix == ".zip"
