"""What the load driver sends: the raw bytes of `GET /test`, or `POST /predict` cycling through images.

Requests are built once, before the test, so sending one costs a socket write and nothing else. Headers match
siege 4.x's defaults (HTTP/1.1, `Connection: close` unless keep-alive, `Accept-Encoding: gzip, deflate`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from servetune.errors import ServetuneError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
USER_AGENT = "servetune-load/0.1"


class TargetError(ServetuneError, ValueError):
    """A URL or image folder the driver cannot use; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: scheme, host, port and the path prefix of the base URL."""

    scheme: str
    host: str
    port: int
    prefix: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_base_url(base_url: str) -> Endpoint:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"{base_url!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetError(f"{base_url!r} has an invalid port") from None
    return Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def request_head(endpoint: Endpoint, method: str, path: str, keep_alive: bool, extra: str = "") -> bytes:
    connection = "keep-alive" if keep_alive else "close"
    return (
        f"{method} {endpoint.prefix}{path} HTTP/1.1\r\n"
        f"Host: {endpoint.host_header}\r\n"
        "Accept: */*\r\n"
        "Accept-Encoding: gzip, deflate\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        f"Connection: {connection}\r\n"
        f"{extra}\r\n"
    ).encode("latin-1")


def image_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise TargetError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise TargetError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def predict_request(endpoint: Endpoint, image: Path, keep_alive: bool) -> bytes:
    boundary = uuid.uuid4().hex
    content_type = "image/png" if image.suffix.lower() == ".png" else "application/octet-stream"
    if image.suffix.lower() in (".jpg", ".jpeg"):
        content_type = "image/jpeg"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{image.name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    extra = f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
    return request_head(endpoint, "POST", "/predict", keep_alive, extra) + body


def request_stream(
    endpoint: Endpoint, target: str, keep_alive: bool, images: Path | None = None, max_images: int = 500
) -> Iterator[bytes]:
    """Endless request bytes for a profile target: the same GET, or POSTs cycling through the images."""
    if target == "GET /test":
        return itertools.repeat(request_head(endpoint, "GET", "/test", keep_alive))
    if target == "POST /predict":
        if images is None:
            raise TargetError(
                "target POST /predict needs an image folder (--images DIR or `images:` in the profile)"
            )
        files = image_files(images)[:max_images]
        return itertools.cycle([predict_request(endpoint, image, keep_alive) for image in files])
    raise TargetError(f"unknown target {target!r}: use 'GET /test' or 'POST /predict'")
