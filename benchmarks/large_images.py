"""Memory of one request with a large image, for every image mode, and of a burst of them.

    python benchmarks/large_images.py [--model PATH] [--burst 20] [--only NAME ...]

1. Per request: a fresh process loads the model (servetune.serve.predictor), warms up, resets its peak RSS
   (/proc/self/clear_refs), classifies one image and reports how far its peak RSS rose above the RSS it
   had before the request. Each generated image is at most 40 megapixels (the server's limit).
2. Burst: a real `servetune serve` (one process) gets `--burst` of the issue's three images at once
   (cycled); its RSS is sampled every 20 ms: baseline, peak, and 5 s after the last answer.

Prints one table per part with the machine, the date and the load average.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import io
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image

from serve import start_server, stop
from servetune.model.artifact import default_model_path
from servetune.serve.sample_image import generated_sample_jpeg

MEASURE = r"""
import sys, time
from pathlib import Path
from servetune.model.artifact import default_model_path
from servetune.serve.predictor import Predictor
from servetune.serve.sample_image import generated_sample_jpeg

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

model = sys.argv[2] or str(default_model_path())
predictor = Predictor(Path(model), threads=1)
predictor.warm_up(generated_sample_jpeg(), runs=2)
try:
    from servetune.serve.allocator import keep_large_blocks_returnable
    keep_large_blocks_returnable()
except ImportError:
    pass
data = Path(sys.argv[1]).read_bytes()
before = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
started = time.perf_counter()
try:
    outcome = predictor.predict(data).label
except Exception as error:
    outcome = type(error).__name__ + ": " + str(error)[:60]
seconds = time.perf_counter() - started
print(before, status("VmHWM"), status("VmRSS"), seconds, outcome, sep="\t")
"""


def gradient(mode: str, size: tuple[int, int]) -> Image.Image:
    """A smooth picture with some structure: compresses well (small upload) but is not uniform."""
    base = Image.linear_gradient("L").resize(size)
    other = base.transpose(Image.Transpose.ROTATE_90).resize(size)
    if mode in ("L", "1", "P"):
        return base.convert(mode)
    if mode == "LA":
        return Image.merge("LA", (base, other))
    if mode == "RGB":
        return Image.merge("RGB", (base, other, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    if mode == "RGBA":
        return Image.merge("RGBA", (base, other, base, other.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    if mode == "CMYK":
        return Image.merge("CMYK", (base, other, base, other))
    if mode == "I;16":
        return base.convert("I").point(lambda v: v * 257).convert("I;16")
    raise ValueError(mode)


FULL = (6320, 6320)  # 39.9 megapixels
# name: (format, mode, size, save options)
IMAGES = {
    "png-la-6320": ("PNG", "LA", FULL, {}),
    "png-rgba-25mp": ("PNG", "RGBA", (5000, 5000), {}),
    "png-16bit-40mp": ("PNG", "I;16", (8000, 5000), {}),
    "png-1": ("PNG", "1", FULL, {}),
    "png-l": ("PNG", "L", FULL, {}),
    "png-p": ("PNG", "P", FULL, {}),
    "png-p-transparent": ("PNG", "P", FULL, {"transparency": 0}),
    "png-rgb": ("PNG", "RGB", FULL, {}),
    "png-rgba": ("PNG", "RGBA", FULL, {}),
    "gif-p": ("GIF", "P", FULL, {}),
    "bmp-rgb": ("BMP", "RGB", FULL, {}),
    "webp-rgb": ("WEBP", "RGB", FULL, {"quality": 30}),
    "webp-rgba": ("WEBP", "RGBA", FULL, {"quality": 30}),
    "webp-rgba-10mp": ("WEBP", "RGBA", (3160, 3160), {"quality": 30}),
    "jpeg-rgb": ("JPEG", "RGB", FULL, {"quality": 80}),
    "jpeg-l": ("JPEG", "L", FULL, {"quality": 80}),
    "jpeg-cmyk": ("JPEG", "CMYK", FULL, {"quality": 80}),
}
BURST = ["png-la-6320", "png-rgba-25mp", "png-16bit-40mp"]


def write_image(name: str, folder: Path) -> Path:
    image_format, mode, size, options = IMAGES[name]
    path = folder / f"{name}.{image_format.lower()}"
    if not path.exists():
        buffer = io.BytesIO()
        gradient(mode, size).save(buffer, image_format, **options)
        path.write_bytes(buffer.getvalue())
    return path


def per_request(path: Path, model: str) -> tuple[float, float, float, float, str]:
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), model], capture_output=True, text=True, check=True, timeout=600
    )
    before, peak, after, seconds, outcome = result.stdout.strip().splitlines()[-1].split("\t")
    mib = 1024 * 1024
    return int(before) / mib, (int(peak) - int(before)) / mib, int(after) / mib, float(seconds), outcome


def burst(paths: list[Path], model: str, count: int, folder: Path) -> tuple[float, float, float, list[int]]:
    sample_image = folder / "sample.jpg"
    sample_image.write_bytes(generated_sample_jpeg())
    server, port = start_server(Path(model) if model else default_model_path(), sample_image)
    url = f"http://127.0.0.1:{port}"
    try:
        process = psutil.Process(server.pid)
        time.sleep(1)
        baseline = process.memory_info().rss
        peak = baseline
        finished = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not finished.is_set():
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=watch)
        sampler.start()
        uploads = [paths[i % len(paths)].read_bytes() for i in range(count)]

        def post(data: bytes) -> int:
            return httpx.post(f"{url}/predict", files={"file": ("x.png", data)}, timeout=600).status_code

        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            statuses = list(pool.map(post, uploads))
        time.sleep(5)
        finished.set()
        sampler.join()
        after = process.memory_info().rss
    finally:
        stop(server)
    mib = 1024 * 1024
    return baseline / mib, peak / mib, after / mib, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model artifact [default: the packaged model]")
    parser.add_argument("--burst", type=int, default=20, help="uploads at once in part 2 (0: skip)")
    parser.add_argument("--only", nargs="*", help="image names for part 1 (default: all; none given: skip part 1)")
    parser.add_argument("--images", default="", help="folder to keep the generated images [default: temporary]")
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{datetime.datetime.now():%Y-%m-%d %H:%M}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="servetune-large-") as temporary:
        folder = Path(args.images or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        print("| image | upload KB | RSS before MiB | request's peak above it MiB | RSS after MiB | seconds | answer |")
        print("|---|---|---|---|---|---|---|")
        for name in IMAGES if args.only is None else args.only:
            path = write_image(name, folder)
            before, rise, after, seconds, outcome = per_request(path, args.model)
            print(f"| {name} | {path.stat().st_size / 1024:.0f} | {before:.0f} | {rise:.0f} | {after:.0f} | "
                  f"{seconds:.2f} | {outcome} |", flush=True)
        if args.burst:
            paths = [write_image(name, folder) for name in BURST]
            baseline, peak, after, statuses = burst(paths, args.model, args.burst, folder)
            print(f"\n{args.burst} uploads at once ({', '.join(BURST)}, cycled) to one `servetune serve`, "
                  f"load average {os.getloadavg()[0]:.1f}:")
            print("| RSS baseline MiB | peak MiB | 5 s after MiB | statuses |")
            print("|---|---|---|---|")
            counts = {status: statuses.count(status) for status in sorted(set(statuses))}
            print(f"| {baseline:.0f} | {peak:.0f} | {after:.0f} | {counts} |")


if __name__ == "__main__":
    main()
