"""Every kind of bad upload gets a 4xx JSON error with a reason; the server keeps answering."""

import io
import struct
import sys
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from servetune.config import FOOD11_CLASSES


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(size=(200, 150)) -> Image.Image:
    gradient = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (gradient, gradient.rotate(90), gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 60_000) -> bytes:
    """A few hundred bytes whose header claims side x side pixels (3.6 gigapixels)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * side) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def corrupt_png() -> bytes:
    data = bytearray(encode(photo(), "PNG"))
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = b"\xff" * 40  # pixel data no longer matches its CRC
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("P", (64, 64), index) for index in (10, 120, 200)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def post(client, data: bytes, filename="upload.bin", content_type="application/octet-stream"):
    return client.post("/predict", files={"file": (filename, data, content_type)})


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    reason = response.json()["error"]
    for word in words:
        assert word in reason.lower(), reason


BAD_FILES = {
    "text": (b"hello, this is plain text\n", 415, "not an image"),
    "html": (b"<!doctype html><html><body>hi</body></html>", 415, "not an image"),
    "pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF", 415, "not an image"),
    "truncated jpeg": (None, 400, "truncated"),
    "corrupt png": (None, 400, "corrupt"),
    "tiff": (None, 415, "tiff"),
    "ico": (None, 415, "ico"),
    "png bomb": (None, 413, "too large"),
}


def bad_file(name: str) -> bytes:
    if name == "truncated jpeg":
        data = encode(photo((640, 480)), "JPEG", quality=90)
        return data[: len(data) // 2]
    if name == "corrupt png":
        return corrupt_png()
    if name == "tiff":
        return encode(photo(), "TIFF")
    if name == "ico":
        return encode(photo((64, 64)), "ICO")
    if name == "png bomb":
        return png_bomb()
    return BAD_FILES[name][0]


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_get_a_reason(client, name):
    _, status, word = BAD_FILES[name]
    data = bad_file(name)
    assert_error(post(client, data, "photo.jpg", "image/jpeg"), status, word)
    assert client.get("/test").status_code == 200  # still serving


def test_gif_bomb_is_rejected_from_its_header(client):
    gif = encode(Image.new("P", (8, 8)), "GIF")
    bomb = gif[:6] + struct.pack("<HH", 65535, 65535) + gif[10:]
    response = post(client, bomb)
    assert response.status_code in (400, 413), response.text


def test_no_file_field(client):
    assert_error(client.post("/predict", files={"image": ("a.jpg", b"x", "image/jpeg")}), 400, "no 'file' field")
    assert_error(client.post("/predict", data={"file": ""}, files={"other": ("a", b"x")}), 400, "empty")


def test_empty_body_and_empty_file(client):
    assert_error(post(client, b""), 400, "empty file")
    empty_form = client.post("/predict", content=b"", headers={"content-type": "multipart/form-data; boundary=x"})
    assert empty_form.status_code == 400 and "error" in empty_form.json()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b'{"file": "x"}'), ("image/jpeg", b"\xff\xd8\xff"), (None, b""),
     ("application/x-www-form-urlencoded", b"file=abc")],
)
def test_wrong_content_type(client, content_type, body):
    headers = {"content-type": content_type} if content_type else {}
    assert_error(client.post("/predict", content=body, headers=headers), 415, "multipart/form-data")


def test_multipart_without_boundary_or_malformed(client):
    assert_error(client.post("/predict", content=b"abc", headers={"content-type": "multipart/form-data"}), 400,
                 "boundary")
    garbage = b"--xyz\r\nno headers at all" + b"\x00" * 100
    response = client.post("/predict", content=garbage, headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert response.status_code == 400 and "error" in response.json()


def test_oversize_upload(client):
    # The fixture's server accepts 2 MB; random bytes do not compress, so this JPEG-sized blob is 3 MB.
    too_big = b"\xff\xd8\xff\xe0" + bytes(range(256)) * (3 * 4096)
    assert_error(post(client, too_big, "big.jpg", "image/jpeg"), 413, "too large")


def test_too_many_pixels_in_a_real_image(tiny_model, tmp_path):
    from fastapi.testclient import TestClient

    from servetune.serve.app import create_app
    from servetune.serve.settings import ServerSettings

    sample = tmp_path / "sample.jpg"
    sample.write_bytes(encode(photo((90, 90)), "JPEG"))
    settings = ServerSettings(model_path=str(tiny_model), threads=1, max_pixels=10_000, sample_image=str(sample))
    with TestClient(create_app(settings)) as small:
        assert_error(post(small, encode(photo((200, 150)), "PNG")), 413, "200x150")


MODES = {
    "gray": "L", "cmyk": "CMYK", "palette": "P", "rgba": "RGBA", "gray-alpha": "LA", "bilevel": "1", "rgb": "RGB",
}


def encodable(fmt: str, mode: str) -> bytes | None:
    try:
        return encode(photo().convert(mode), fmt)
    except (OSError, ValueError):  # e.g. JPEG has no alpha, GIF no CMYK
        return None


MODE_CASES = [
    pytest.param(fmt, mode, id=f"{fmt}-{name}")
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "GIF")
    for name, mode in MODES.items()
    if encodable(fmt, mode) is not None
]


@pytest.mark.parametrize(("fmt", "mode"), MODE_CASES)
def test_every_mode_in_every_accepted_format(client, fmt, mode):
    response = post(client, encodable(fmt, mode), f"x.{fmt.lower()}")
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] in FOOD11_CLASSES


def test_sixteen_bit_png(client):
    import numpy as np

    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    assert post(client, encode(Image.fromarray(ramp), "PNG")).status_code == 200


def test_animated_gif_uses_its_first_frame(client):
    response = post(client, animated_gif(), "anim.gif", "image/gif")
    assert response.status_code == 200
    still = post(client, encode(Image.new("P", (64, 64), 10), "GIF"), "still.gif", "image/gif")
    assert response.json()["top_k"] == still.json()["top_k"]


def test_nothing_is_written_to_disk(client):
    """A 1.5 MB upload (Starlette's own parser would spool it to a temporary file) opens no file for writing."""
    written: list[str] = []
    active = [True]

    def audit(event: str, args: tuple) -> None:
        if active[0] and event == "open" and len(args) > 1 and isinstance(args[1], str) and set(args[1]) & set("wax+"):
            written.append(str(args[0]))
        if active[0] and event == "tempfile.mkstemp":
            written.append(str(args[0]))

    sys.addaudithook(audit)  # cannot be removed: it goes quiet when the test ends
    try:
        big_png = encode(Image.effect_noise((800, 800), 64).convert("RGB"), "PNG")
        assert len(big_png) > 1024 * 1024
        response = post(client, big_png, "noise.png", "image/png")
    finally:
        active[0] = False
    assert response.status_code == 200, response.text
    assert written == []


def valid_images() -> list[bytes]:
    small = photo((96, 72))
    return [encode(small, "JPEG"), encode(small, "PNG"), encode(small, "GIF"), encode(small, "WEBP"),
            encode(small, "BMP"), encode(small, "JPEG", progressive=True)]


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(valid_images())))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "truncate":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=32))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 64))]
    return bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=2048), mutated_images()))
def test_fuzzed_uploads_get_200_or_a_4xx_json_error(client, data):
    response = post(client, data, "fuzz.jpg", "image/jpeg")
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    body = response.json()
    assert ("prediction" in body) if response.status_code == 200 else isinstance(body["error"], str)
