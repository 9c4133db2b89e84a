"""Decode and preprocess an image exactly as the artifact's ModelSpec says.

Training, evaluation and serving all call these two functions, so offline accuracy is served accuracy.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import BmpImagePlugin, GifImagePlugin, Image, ImageOps, PngImagePlugin, WebPImagePlugin  # noqa: F401
from PIL.JpegImagePlugin import JpegImageFile

from servetune.config import ModelSpec
from servetune.errors import ServetuneError

DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo is fine; a decompression bomb is not


class ImageError(ServetuneError, ValueError):
    """The bytes are not an image we can classify; str(error) is a reason fit for a client."""


class ImageTooLarge(ImageError):
    """More pixels than allowed (a decompression bomb, or simply too big)."""


class UnsupportedImage(ImageError):
    """Not an image, or a format we do not accept."""


# Formats a phone or browser uploads (their plugins are imported above: `formats=` needs them registered). Pillow reads many more (EPS, PSD, ICO, ...), some through external
# programs or rarely exercised parsers; a server has no reason to expose them.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # JPEG also opens MPO (phone photos)
ALLOWED_NAMES = "JPEG, PNG, WebP, GIF or BMP"


def decode_image(data: bytes, spec: ModelSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Bytes -> RGB PIL image, EXIF orientation applied; a JPEG scaled down while decoding when the spec
    says `decode: reduced`.

    Only the header is parsed before the pixel count is checked, so a decompression bomb costs nothing.
    Animated images give their first frame.
    """
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image too large: {width}x{height} pixels (limit {max_pixels})")
            if spec.decode == "reduced" and isinstance(image, JpegImageFile):
                # libjpeg-turbo scales in the DCT domain (1/2, 1/4, 1/8) while decoding: far cheaper
                # than decoding full size and resizing, and still at least `resize` on the short side.
                image.draft("RGB", draft_size(spec))
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge("image too large: decompression bomb") from None
    except Image.UnidentifiedImageError:
        raise UnsupportedImage(unidentified_reason(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as err:
        raise ImageError(f"corrupt or truncated image: {err}") from None
    return to_rgb(image)


def draft_size(spec: ModelSpec) -> tuple[int, int]:
    side = spec.input_size if spec.crop == "none" else spec.resize
    return (side, side)


def unidentified_reason(data: bytes) -> str:
    """Name the format when Pillow knows it but we do not accept it; else say it is not an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:  # header only; nothing is decoded
                known = image.format
    except Exception:  # noqa: BLE001 any parser failure means the same thing here: not an image we know
        known = None
    if known:
        return f"unsupported image format {known}: send {ALLOWED_NAMES}"
    return f"not an image (or an unsupported format): send {ALLOWED_NAMES}"


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite on white so transparent regions do not become black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float32)
        peak = float(array.max()) or 1.0
        scaled = (array * (255.0 / (65535.0 if peak > 255 else 255.0))).clip(0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    return image.convert("RGB")


RESIZE_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def resize_and_crop(image: Image.Image, spec: ModelSpec) -> Image.Image:
    resample = RESIZE_FILTERS[spec.interpolation]
    if spec.crop == "none":
        return image.resize((spec.input_size, spec.input_size), resample)
    width, height = image.size
    scale = spec.resize / min(width, height)
    new_size = (max(spec.input_size, round(width * scale)), max(spec.input_size, round(height * scale)))
    image = image.resize(new_size, resample, reducing_gap=None)
    left = (new_size[0] - spec.input_size) // 2
    top = (new_size[1] - spec.input_size) // 2
    return image.crop((left, top, left + spec.input_size, top + spec.input_size))


def to_array(image: Image.Image, spec: ModelSpec) -> np.ndarray:
    """RGB image of input_size -> float32 array (3,H,W) or (H,W,3), normalised."""
    # (x * scale - mean) / std folded into one multiply-add per pixel, written straight into the layout.
    std = np.asarray(spec.std, dtype=np.float32)
    gain = np.float32(spec.scale) / std
    offset = -np.asarray(spec.mean, dtype=np.float32) / std
    pixels = np.asarray(image)
    if spec.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
        gain, offset = gain[:, None, None], offset[:, None, None]
    array = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, gain, out=array)
    array += offset
    return array


def preprocess(image: Image.Image, spec: ModelSpec) -> np.ndarray:
    return to_array(resize_and_crop(to_rgb(image), spec), spec)


def load_and_preprocess(data: bytes, spec: ModelSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return preprocess(decode_image(data, spec, max_pixels), spec)


def describe(spec: ModelSpec) -> str:
    """The preprocessing in one line, e.g. `full decode, bicubic resize to 224, x*0.00392157, ..., NHWC`."""
    if spec.crop == "none":
        resize = f"{spec.interpolation} resize to {spec.input_size}"
    else:
        resize = f"{spec.interpolation} resize to {spec.resize}, centre crop {spec.input_size}"
    return (
        f"{spec.decode} decode, {resize}, x*{spec.scale:.6g}, mean {list(spec.mean)}, std {list(spec.std)}, "
        f"{spec.layout}"
    )
