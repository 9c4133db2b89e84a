"""Bounded decoding: the same pixels as the evaluated path for ordinary images, bounded memory for large
ones of every mode (tracemalloc for the arrays, peak RSS of a real process for everything)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from onnx_models import tiny_spec
from servetune.model.artifact import read_spec
from servetune.model.preprocess import ImageTooLarge, decode_image, preprocess, resize_and_crop
from servetune.serve.decode import decode_bounded, decoded_bytes, large_decodes

SPEC = tiny_spec(112).model_copy(update={"resize": 128})


def picture(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise in `mode` (compresses reasonably, not uniform)."""
    rng = np.random.default_rng(seed)
    width, height = size
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    channels = [x * 0.7 + y * 0.3, (1 - x) * y, (x + y) / 2, 1 - y * 0.8]
    noise = rng.integers(0, 12, size=(height, width), dtype=np.uint8)
    planes = [Image.fromarray(np.clip(c * 240 + noise, 0, 255).astype(np.uint8)) for c in channels]
    if mode == "I;16":
        wide = (np.clip(channels[0] * 60000, 0, 65535) + noise.astype(np.float32) * 200).astype(np.uint16)
        return Image.fromarray(wide)  # a 2-D uint16 array is mode I;16
    if mode in ("1", "L", "P"):
        return planes[0].convert(mode)
    if mode == "LA":
        return Image.merge("LA", (planes[0], planes[3]))
    if mode == "PA":
        return Image.merge("LA", (planes[0], planes[3])).convert("PA")
    if mode == "CMYK":
        return Image.merge("CMYK", planes)
    return Image.merge(mode, planes[: len(mode)])


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


# (format, mode, save options): every mode the accepted formats hold
KINDS = [
    ("PNG", "1", {}), ("PNG", "L", {}), ("PNG", "P", {}), ("PNG", "P", {"transparency": 0}), ("PNG", "LA", {}),
    ("PNG", "RGB", {}), ("PNG", "RGBA", {}), ("PNG", "I;16", {}), ("GIF", "P", {}), ("BMP", "RGB", {}),
    ("WEBP", "RGB", {"lossless": True}), ("WEBP", "RGBA", {"lossless": True}), ("JPEG", "RGB", {}),
    ("JPEG", "L", {}), ("JPEG", "CMYK", {}),
]
KIND_IDS = [f"{f}-{m}{'-transparent' if o.get('transparency') == 0 else ''}" for f, m, o in KINDS]


@pytest.mark.parametrize(("image_format", "mode", "options"), KINDS, ids=KIND_IDS)
def test_ordinary_images_decode_exactly_as_evaluated(image_format, mode, options):
    data = encoded(picture(mode, (640, 480)), image_format, **options)
    served = decode_bounded(data, SPEC)
    evaluated = decode_image(data, SPEC)
    assert served.mode == "RGB" and served.size == evaluated.size
    assert np.array_equal(np.asarray(served), np.asarray(evaluated))


@pytest.mark.parametrize("mode", ["LA", "RGBA", "I;16", "RGB", "P"])
def test_large_images_give_nearly_the_evaluated_input(mode):
    """Above the large-decode size the image is box-averaged before the final resize: the model's input
    differs from the evaluated one by a rounding, not by content."""
    data = encoded(picture(mode, (2400, 2000)), "PNG", compress_level=1,
                   **({"transparency": 0} if mode == "P" else {}))
    served = np.asarray(resize_and_crop(decode_bounded(data, SPEC), SPEC), dtype=np.int16)
    evaluated = np.asarray(resize_and_crop(decode_image(data, SPEC), SPEC), dtype=np.int16)
    assert served.shape == evaluated.shape == (112, 112, 3)
    assert np.abs(served - evaluated).mean() < 1.5
    assert np.abs(preprocess(decode_bounded(data, SPEC), SPEC) - preprocess(decode_image(data, SPEC), SPEC)).max() < 0.2


def test_exif_orientation_is_applied_to_large_images():
    image = picture("RGBA", (2400, 2000))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown 2000 wide, 3000 high
    served = decode_bounded(encoded(image, "PNG", exif=exif, compress_level=1), SPEC)
    assert served.size[0] < served.size[1]


@pytest.mark.parametrize("mode", ["I;16", "LA", "RGBA"])
def test_mode_conversion_makes_no_full_size_array(mode):
    """tracemalloc sees numpy's arrays: the 16-bit path used to make three full-size float32 copies."""
    size = (2400, 2000)
    data = encoded(picture(mode, size), "PNG", compress_level=1)
    tracemalloc.start()
    try:
        decode_bounded(data, SPEC)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_float = size[0] * size[1] * 4
    assert peak < full_float / 3, f"{peak / 2**20:.1f} MiB traced"


def test_webp_too_large_to_decode_in_bounded_memory_is_refused():
    data = encoded(picture("RGB", (4000, 2600)), "WEBP", quality=10, method=0)
    with pytest.raises(ImageTooLarge, match=r"WebP image too large: 4000x2600 pixels \(limit 10000000 for WebP"):
        decode_bounded(data, SPEC)
    assert decode_bounded(encoded(picture("RGB", (4000, 2400)), "WEBP", quality=10, method=0), SPEC).mode == "RGB"


def test_large_decodes_wait_for_the_memory_budget():
    data = encoded(picture("RGBA", (2400, 2000)), "PNG", compress_level=1)
    done = threading.Event()
    with large_decodes.taking(large_decodes.budget):  # large decodes already hold the whole budget
        worker = threading.Thread(target=lambda: (decode_bounded(data, SPEC), done.set()))
        worker.start()
        time.sleep(1.0)
        assert not done.is_set(), "a large decode ran beyond the budget"
        small = encoded(picture("RGBA", (400, 300)), "PNG")
        assert decode_bounded(small, SPEC).size == (400, 300)  # small images do not wait
    worker.join(60)
    assert done.is_set() and large_decodes.in_use == 0


MEASURE = r"""
import json, sys
from pathlib import Path
from servetune.serve.allocator import keep_large_blocks_returnable
from servetune.serve.predictor import Predictor

def kib(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1])

keep_large_blocks_returnable()
predictor = Predictor(Path(sys.argv[1]), threads=1)
results = {}
for path in sys.argv[2:]:
    data = Path(path).read_bytes()
    predictor.predict(data)  # once, so lazily loaded code and buffers are not counted
    before = kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS
    predictor.predict(data)
    results[Path(path).name] = {"rise": (kib("VmHWM") - before) * 1024, "after": (kib("VmRSS") - before) * 1024}
print(json.dumps(results))
"""
MIB = 2**20
STRIP_MARGIN = 24 * MIB  # strips being converted, the reduced image, allocator slack


@pytest.mark.slow
def test_peak_memory_of_one_request_is_bounded_by_its_decoded_size(tmp_path, tiny_model):
    """Every mode at 8 megapixels in a real process: the peak RSS a request adds stays within
    Pillow's decoded size (README: bytes per pixel x pixels) plus a fixed margin, and is given back. An
    artifact that asks for `decode: full` (its exact preprocessing) also holds the full-size RGB image."""
    size = (3200, 2500)
    exact = read_spec(tiny_model).decode == "full"
    paths = []
    for index, (image_format, mode, options) in enumerate(KINDS):
        if image_format == "WEBP":
            continue  # refused above 10 megapixels; the 10-megapixel case is below
        path = tmp_path / f"{index}-{KIND_IDS[index]}.{image_format.lower()}"
        fast = {"compress_level": 1} if image_format == "PNG" else {}
        path.write_bytes(encoded(picture(mode, size), image_format, **options, **fast))
        rgb_copy = decoded_bytes("RGB", size) if exact else 0
        paths.append((path, decoded_bytes(mode, size) + rgb_copy))
    webp = tmp_path / "webp-10mp.webp"
    webp.write_bytes(encoded(picture("RGBA", (3160, 3160)), "WEBP", quality=30))
    paths.append((webp, 4 * decoded_bytes("RGBA", (3160, 3160))))
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tiny_model), *(str(p) for p, _ in paths)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    for path, decoded in paths:
        rise, after = measured[path.name]["rise"], measured[path.name]["after"]
        assert rise <= decoded + STRIP_MARGIN, f"{path.name}: {rise / MIB:.0f} MiB for {decoded / MIB:.0f} MiB decoded"
        assert after < 8 * MIB, f"{path.name}: {after / MIB:.0f} MiB kept after the request"
