"""Decode an upload in bounded memory: the serving side of model/preprocess.decode_image.

What one request may cost is set by its decoded size. Pillow holds a decoded image at 1 byte per pixel
(modes 1, L, P), 2 (I;16) or 4 (everything else: RGB, RGBA, LA, I, F, CMYK), and decode_image's mode
conversions make more full-size copies: RGBA and LA go through an RGBA copy, a white background and the
composite (4 x 4 bytes per pixel); 16-bit greyscale through three float32 arrays. A 92 KB PNG of 6320x6320
in mode LA costs 160 MB decoded and about 800 MB converted. Here:

- JPEG is decoded reduced in the DCT domain (draft, as decode_image does) when the artifact says
  `decode: reduced`: a few MB at most; with `decode: full`, at full size (its decoded size).
- Other formats cannot be decoded reduced, so the full image is decoded once (1, 2 or 4 bytes per pixel
  by mode: at most 160 MB at the default 40 megapixels) and then converted to RGB strip by strip: each
  strip of at most STRIP_BYTES is cropped, converted (composited on white, 16-bit scaled by the image's
  peak) and, when the RGB image would exceed LARGE_DECODE_BYTES (4 megapixels) and the artifact says
  `decode: reduced`, box-averaged down by a whole factor (to at least twice the model's resize side, like
  JPEG's draft) before the next strip: no full-size copy is made. With `decode: full` the full-size RGB
  image is kept (exactly the model's preprocessing), so such a request holds twice its decoded size.
- WebP is decoded by libwebp into about four full-size RGBA copies, and Pillow cannot reduce it: WebP is
  refused (413) above a quarter of max_pixels (10 megapixels by default), which keeps it within the same
  bound.
- Large decodes share a budget of LARGE_DECODES_BUDGET bytes per process (one 40-megapixel image, or
  several smaller ones): a burst of large uploads is decoded a few at a time, the rest wait in the backlog.
- Afterwards the freed memory is handed back to the system (serve/allocator.py).

So one request holds at most its decoded size plus about 24 MB (strips, the reduced image, the RGB copy
of an image under 4 megapixels).

Small images take exactly decode_image's path, so what is served is what was evaluated; large ones differ
only by the extra box-average before the final resize.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

from servetune.config import ModelSpec
from servetune.model.preprocess import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageTooLarge,
    decode_image,
    draft_size,
    to_rgb,
)
from servetune.serve.allocator import release_free_memory

BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}  # others: 4
LARGE_DECODE_BYTES = 16 * 1024 * 1024
STRIP_BYTES = 2 * 1024 * 1024  # a strip at 4 bytes per pixel; its conversion takes about 5x that
LARGE_DECODES_BUDGET = 4 * DEFAULT_MAX_PIXELS  # one 40-megapixel decode, or several smaller ones
# Pillow decodes WebP through libwebp's animation decoder: its canvas, the frame it returns and the image
# make about four full RGBA copies (601 MB measured for 40 megapixels); WebP gets a quarter of the pixels.
WEBP_COPIES = 4


class DecodeBudget:
    """Bytes of large decodes in progress in this process: a decode waits until its bytes fit (one that
    alone exceeds the budget runs when nothing else does)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.in_use = 0
        self.changed = threading.Condition()

    @contextmanager
    def taking(self, amount: int) -> Iterator[None]:
        with self.changed:
            self.changed.wait_for(lambda: self.in_use == 0 or self.in_use + amount <= self.budget)
            self.in_use += amount
        try:
            yield
        finally:
            with self.changed:
                self.in_use -= amount
                self.changed.notify_all()


large_decodes = DecodeBudget(LARGE_DECODES_BUDGET)

# EXIF orientation -> the transpose that undoes it (ImageOps.exif_transpose's table), applied to the
# reduced image instead of the full one.
ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def decoded_bytes(mode: str, size: tuple[int, int]) -> int:
    return BYTES_PER_PIXEL.get(mode, 4) * size[0] * size[1]


def header(data: bytes) -> tuple[str, str, tuple[int, int]] | None:
    """(format, mode, size) from the header alone, or None when Pillow cannot read it (decode_image then
    gives the reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return image.format or "", image.mode, image.size
    except Exception:  # noqa: BLE001 whatever is wrong, decode_image reports it
        return None


def decode_bounded(data: bytes, spec: ModelSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Bytes -> RGB PIL image like decode_image (same errors), in bounded memory (see the module)."""
    found = header(data)
    if found is None or found[2][0] * found[2][1] > max_pixels:
        return decode_image(data, spec, max_pixels)  # its errors
    image_format, mode, size = found
    if image_format == "WEBP" and size[0] * size[1] > max_pixels // WEBP_COPIES:
        raise ImageTooLarge(
            f"WebP image too large: {size[0]}x{size[1]} pixels (limit {max_pixels // WEBP_COPIES} for WebP, "
            f"which cannot be decoded in bounded memory; {max_pixels} for JPEG or PNG)"
        )
    jpeg = image_format in ("JPEG", "MPO")
    rgb_bytes = decoded_bytes("RGB", size)
    if rgb_bytes <= LARGE_DECODE_BYTES or (jpeg and spec.decode == "reduced"):
        if jpeg or mode in ("RGB", "L"):
            return decode_image(data, spec, max_pixels)  # small, reduced in the DCT domain, or nothing to bound
        return decode_in_strips(data, spec, max_pixels, reduce=False)
    # Large at full size. A JPEG holds its decoded image and its RGB copy. Other formats are box-averaged
    # strip by strip, except with `decode: full` (the model's own preprocessing, e.g. an imported Keras
    # model): no averaging before the model's resize, so the full-size RGB copy is held too.
    exact = spec.decode == "full"
    cost = 2 * rgb_bytes if jpeg else decoded_bytes(mode, size) + (rgb_bytes if exact else 0)
    with large_decodes.taking(cost):
        try:
            if jpeg:
                return decode_image(data, spec, max_pixels)
            return decode_in_strips(data, spec, max_pixels, reduce=not exact)
        finally:
            release_free_memory()


def decode_in_strips(data: bytes, spec: ModelSpec, max_pixels: int, reduce: bool) -> Image.Image:
    image = decode_native(data, spec, max_pixels)
    orientation = image.getexif().get(0x0112)
    side = 2 * draft_size(spec)[0]
    factor = max(1, min(image.size) // side) if reduce else 1
    rgb = strips_to_rgb(image, factor)
    del image
    if orientation in ORIENTATION:
        rgb = rgb.transpose(ORIENTATION[orientation])
    return rgb


def decode_native(data: bytes, spec: ModelSpec, max_pixels: int) -> Image.Image:
    """The image in its own mode, full size, first frame (what decode_image decodes before converting)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            image.load()
    except Exception as err:  # noqa: BLE001 the same bytes fail the same way there, with decode_image's message
        decode_image(data, spec, max_pixels)
        raise ImageError(f"corrupt or truncated image: {err}") from None
    return image


def strips_to_rgb(image: Image.Image, factor: int) -> Image.Image:
    """RGB version of `image`, box-averaged by `factor`, converted a strip of rows at a time."""
    width, height = image.size
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = max(1, STRIP_BYTES // decoded_bytes("RGBA", (width, 1)))  # conversions go through RGBA
    rows = max(factor, rows // factor * factor)  # whole boxes per strip
    peak = sixteen_bit_peak(image)
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        rgb = sixteen_bit_to_rgb(strip, peak) if peak is not None else to_rgb(strip)
        del strip
        if factor > 1:
            rgb = rgb.reduce(factor)
        out.paste(rgb, (0, top // factor))
    return out


def sixteen_bit_peak(image: Image.Image) -> float | None:
    """The full image's peak for greyscale modes wider than 8 bits (decode_image scales by it), else None."""
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return None
    return float(image.getextrema()[1]) or 1.0


def sixteen_bit_to_rgb(strip: Image.Image, peak: float) -> Image.Image:
    # decode_image's arithmetic on one strip: values / 65535 (or / 255 when the peak fits 8 bits) x 255.
    array = np.asarray(strip, dtype=np.float32)
    array *= np.float32(255.0 / (65535.0 if peak > 255 else 255.0))
    np.clip(array, 0, 255, out=array)
    return Image.fromarray(array.astype(np.uint8)).convert("RGB")
