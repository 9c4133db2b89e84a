import io

import numpy as np
import pytest
from PIL import Image

from onnx_models import tiny_spec
from servetune.model.preprocess import (
    ImageError,
    ImageTooLarge,
    UnsupportedImage,
    decode_image,
    load_and_preprocess,
    preprocess,
)

SPEC = tiny_spec(input_size=224, resize=256)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def textured(size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def test_solid_colour_normalises_to_the_expected_values():
    array = load_and_preprocess(encode(Image.new("RGB", (300, 400), (255, 128, 0))), SPEC)
    assert array.shape == (3, 224, 224) and array.dtype == np.float32
    expected = (np.array([255, 128, 0]) / 255 - np.array(SPEC.mean)) / np.array(SPEC.std)
    assert array.reshape(3, -1).mean(axis=1) == pytest.approx(expected, abs=1e-5)


def test_nhwc_layout_and_plain_resize():
    spec = tiny_spec(input_size=64, resize=64, layout="NHWC", crop="none")
    array = load_and_preprocess(encode(textured((200, 100))), spec)
    assert array.shape == (64, 64, 3)


def test_center_crop_keeps_the_middle_of_a_wide_image():
    image = Image.new("RGB", (600, 200), (0, 0, 255))
    image.paste((255, 0, 0), (150, 0, 450, 200))  # a red centre wider than the crop, blue sides
    array = preprocess(image, tiny_spec(input_size=32, resize=32, mean=(0, 0, 0), std=(1, 1, 1)))
    assert array[0].min() > 0.95 and array[2].max() < 0.05  # only the red centre is left


def test_jpeg_draft_decoding_matches_a_full_decode():
    """DCT-domain downscaling (decode: reduced) is cheaper, and after preprocessing the pixels are nearly the
    same; decode: full gives exactly what PIL's plain decode gives."""
    data = encode(textured((1280, 1280)), "JPEG", quality=92)
    reduced = SPEC.model_copy(update={"decode": "reduced"})
    fast = load_and_preprocess(data, reduced)
    full = preprocess(Image.open(io.BytesIO(data)).convert("RGB"), SPEC)
    assert decode_image(data, reduced).size == (320, 320)  # 1/4 scale: the smallest that still covers 256
    assert np.abs(fast - full).mean() < 0.05  # in normalised units (a pixel step is ~0.017)
    assert decode_image(data, SPEC).size == (1280, 1280)
    assert np.array_equal(load_and_preprocess(data, SPEC), full)


def test_resize_filter_is_the_specs():
    image = textured((300, 200))
    bicubic = tiny_spec(input_size=32, resize=32, crop="none", interpolation="bicubic")
    expected = np.asarray(image.resize((32, 32), Image.Resampling.BICUBIC), np.float32) / 255
    actual = preprocess(image, bicubic.model_copy(update={"mean": (0, 0, 0), "std": (1, 1, 1)}))
    assert np.abs(actual.transpose(1, 2, 0) - expected).max() < 1e-6
    bilinear = preprocess(image, bicubic.model_copy(update={"mean": (0, 0, 0), "std": (1, 1, 1),
                                                            "interpolation": "bilinear"}))
    assert np.abs(bilinear - actual).max() > 0.01


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (200, 100), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes()), SPEC)
    assert decoded.size == (100, 200)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "1", "I;16"])
def test_every_mode_becomes_rgb(mode):
    image = textured((64, 48)).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image, np.uint16) * 257).astype(np.uint16))
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt), SPEC)
    assert decoded.mode == "RGB" and decoded.size == (64, 48)


def test_sixteen_bit_grey_keeps_its_brightness():
    grey16 = Image.fromarray(np.full((8, 8), 65535 // 2, np.uint16))
    decoded = decode_image(encode(grey16), SPEC)
    assert abs(int(np.asarray(decoded)[0, 0, 0]) - 127) <= 1


def test_transparency_becomes_white_not_black():
    clear = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    assert np.asarray(decode_image(encode(clear), SPEC)).min() == 255


def test_errors_say_what_is_wrong():
    with pytest.raises(ImageError, match="empty file"):
        decode_image(b"", SPEC)
    with pytest.raises(UnsupportedImage, match="not an image"):
        decode_image(b"<html>hello</html>", SPEC)
    with pytest.raises(UnsupportedImage, match="unsupported image format TIFF"):
        decode_image(encode(textured((32, 32)), "TIFF"), SPEC)
    with pytest.raises(ImageTooLarge, match="100x100 pixels"):
        decode_image(encode(textured((100, 100))), SPEC, max_pixels=5000)
    truncated = encode(textured((400, 400)), "JPEG")
    with pytest.raises(ImageError, match="truncated"):
        decode_image(truncated[: len(truncated) // 3], SPEC)
