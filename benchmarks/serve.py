"""Speed and memory of `servetune serve`, next to the reference Flask+TensorFlow app on this machine.

    python benchmarks/serve.py [--model PATH | --export-lite0] [--image PATH] [--runs N] [--quick]

Starts the real server on a free 127.0.0.1 port, loads it with siege (skipped with a message when siege is
absent) and with a Python client, and prints one table: each figure is the median of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "parsley_1280.jpeg"

# The reference Flask+TensorFlow app (MobileNetV2 Keras model) measured on this 2-core machine.
REFERENCE = {"think_rate": 14.1, "think_resp_ms": 910.0, "rss_mb": 0.99 * 1024}


def main() -> None:
    args = parse_args()
    image = Path(args.image)
    if not image.is_file():
        sys.exit(f"error: sample image {image} not found (pass --image PATH)")
    with tempfile.TemporaryDirectory(prefix="servetune-bench-") as workdir:
        model = resolve_model(args, Path(workdir), image)
        run(args, model, image)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model artifact (.onnx); default: the packaged default model")
    parser.add_argument(
        "--export-lite0", action="store_true",
        help="benchmark an EfficientNet-Lite0 with a random 11-class head, exported to ONNX INT8 (needs torch)",
    )
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="the image /test classifies")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the median is printed)")
    parser.add_argument("--quick", action="store_true", help="short smoke run: 5 s siege runs, fewer requests")
    args = parser.parse_args()
    args.siege_time = "5S" if args.quick else "30S"
    args.rss_requests = 1_000 if args.quick else 10_000
    args.latency_requests = 30 if args.quick else 200
    if args.quick:
        args.runs = min(args.runs, 2)
    return args


def resolve_model(args: argparse.Namespace, workdir: Path, image: Path) -> Path:
    if args.model and args.export_lite0:
        sys.exit("error: pass either --model or --export-lite0, not both")
    if args.export_lite0:
        # In a child process: torch loaded in this one slows ONNX Runtime here (measured: 20 ms vs 13 ms),
        # which would distort the in-process figure.
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as child:
            return child.submit(export_lite0, workdir, image).result()
    if args.model:
        model = Path(args.model)
        if not model.is_file():
            sys.exit(f"error: model {model} not found")
        return model
    from servetune.model.artifact import default_model_path

    model = default_model_path()
    if not model.is_file():
        sys.exit(
            f"error: the packaged default model {model} does not exist yet; "
            "pass --model PATH or --export-lite0"
        )
    return model


def export_lite0(workdir: Path, image: Path) -> Path:
    """EfficientNet-Lite0 (ImageNet weights) with a random 11-class head -> ONNX -> INT8, in `workdir`.

    Its answers mean nothing; its cost is that of a real Food-11 Lite0 model. INT8 calibration uses the
    Food-11 proxy's training images when ../shared/data is present, else the benchmark image itself.
    """
    try:
        import torch

        from servetune.model.backbones import build_backbone
        from servetune.model.export import export_onnx
        from servetune.model.quantize import calibration_images, quantize_int8
    except ImportError as err:
        sys.exit(f"error: --export-lite0 needs the training extra (pip install '.[train]'): {err}")
    from servetune.config import FOOD11_CLASSES, ModelSpec
    from servetune.model.preprocess import load_and_preprocess

    print("exporting EfficientNet-Lite0 with a random 11-class head to ONNX INT8...", file=sys.stderr)
    torch.manual_seed(0)
    spec = ModelSpec(
        name="lite0-random-head", class_names=FOOD11_CLASSES, input_size=224, resize=256,
        backbone="lite0", data="none: random 11-class head (benchmark only)",
    )
    fp32 = export_onnx(build_backbone("lite0", len(FOOD11_CLASSES)), spec, workdir / "lite0-fp32.onnx")
    proxy = ROOT.parent / "shared" / "data" / "food11-proxy"
    if proxy.is_dir():
        calibration = calibration_images(proxy, spec, count=64)
    else:
        calibration = [load_and_preprocess(image.read_bytes(), spec)]
    return quantize_int8(fp32, workdir / "lite0-int8.onnx", calibration)


def run(args: argparse.Namespace, model: Path, image: Path) -> None:
    rows: list[tuple[str, str, str, str]] = []
    started = datetime.datetime.now().astimezone()
    started_load = os.getloadavg()[0]
    print(f"model {model}, image {image}", file=sys.stderr)

    startup = [start_to_ready_s(model, image) for _ in range(max(args.runs, 3))]
    rows.append(("process start to /readyz green", f"{median(startup):.2f} s", "", "<= 3 s"))

    server, port = start_server(model, image)
    url = f"http://127.0.0.1:{port}/test"
    served = 0
    try:
        in_process, split = in_process_s(model, image, args.latency_requests)
        over_http = [http_latency_s(url, args.latency_requests) for _ in range(args.runs)]
        served += args.runs * args.latency_requests
        ratio = median(over_http) / in_process
        rows.append(("in-process decode+preprocess+infer", f"{in_process * 1000:.1f} ms", "", ""))
        rows.append(("  decode / preprocess / infer, ms", split, "", ""))
        rows.append(("median /test latency, concurrency 1", f"{median(over_http) * 1000:.1f} ms", "", ""))
        rows.append(("  ratio to in-process", f"{ratio:.2f}", "", "<= 1.3"))

        if siege_path() is None:
            print("siege is not installed: skipping the siege figures (apt-get install siege)", file=sys.stderr)
        else:
            think = [siege(url, ["-c", "20", "-d", "1", "-t", args.siege_time]) for _ in range(args.runs)]
            burst = [siege(url, ["-b", "-c", "20", "-t", args.siege_time]) for _ in range(args.runs)]
            served += sum(int(r["transactions"]) for r in think + burst)
            think_rate = median([r["transaction_rate"] for r in think])
            think_resp = median([mean_response_s(r) for r in think]) * 1000
            rows.append((
                f"siege -c 20 -d 1 -t {args.siege_time}: trans/s", f"{think_rate:.1f}",
                f"{REFERENCE['think_rate']:.1f}", ">= 36",
            ))
            rows.append((
                "  mean response time", f"{think_resp:.1f} ms",
                f"{REFERENCE['think_resp_ms']:.0f} ms", "<= 30 ms",
            ))
            rows.append((
                f"siege -b -c 20 -t {args.siege_time}: trans/s",
                f"{median([r['transaction_rate'] for r in burst]):.1f}", "", ">= 150",
            ))
            failed = sum(int(r["failed_transactions"]) for r in think + burst)
            rows.append(("  failed transactions (all siege runs)", str(failed), "", "0"))

        if served < args.rss_requests:
            asyncio.run(hammer(url, args.rss_requests - served, concurrency=20))
            served = args.rss_requests
        processes = serving_processes(server.pid)
        rss_mb = max(p.memory_info().rss for p in processes) / 2**20
        rows.append((
            f"RSS per serving process after {served:,} requests", f"{rss_mb:.0f} MB",
            f"{REFERENCE['rss_mb']:.0f} MB", "<= 200 MB",
        ))
    finally:
        stop(server)

    print_table(rows, model, image, started, started_load, args)


def median(values: list[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(model: Path, image: Path, port: int) -> list[str]:
    return [
        str(Path(sys.executable).with_name("servetune")), "serve", "--model", str(model),
        "--sample-image", str(image), "--host", "127.0.0.1", "--port", str(port),
    ]


def start_server(model: Path, image: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(server_command(model, image, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_ready(server, port)
    return server, port


def wait_ready(server: subprocess.Popen, port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                sys.exit(f"error: the server exited with {server.returncode}:\n{server.stderr.read().decode()}")
            try:
                if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    stop(server)
    sys.exit(f"error: the server was not ready after {timeout_s:.0f} s")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def start_to_ready_s(model: Path, image: Path) -> float:
    began = time.perf_counter()
    server, _ = start_server(model, image)
    elapsed = time.perf_counter() - began
    stop(server)
    return elapsed


def http_latency_s(url: str, requests: int) -> float:
    """Median latency of sequential GET requests on one kept-alive connection."""
    with httpx.Client(timeout=30.0) as client:
        client.get(url).raise_for_status()
        return median([timed(lambda: client.get(url).raise_for_status()) for _ in range(requests)])


def in_process_s(model: Path, image: Path, repeats: int) -> tuple[float, str]:
    """Median wall time of the server's own Predictor (decode + preprocess + inference) on the image in this
    process, with the server's thread count; and the median split of that time, for the table."""
    from servetune.host.cpu_quota import inference_threads
    from servetune.serve.predictor import Predictor

    predictor = Predictor(model, inference_threads(None))
    data = image.read_bytes()
    predictor.warm_up(data, runs=5)
    walls, steps = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        prediction = predictor.predict(data)
        walls.append(time.perf_counter() - began)
        steps.append((prediction.decode_ms, prediction.preprocess_ms, prediction.infer_ms))
    split = " / ".join(f"{median([step[i] for step in steps]):.1f}" for i in range(3))
    return median(walls), split


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def siege_path() -> str | None:
    from shutil import which

    return which("siege")


def siege(url: str, options: list[str]) -> dict[str, float]:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"siege runs only against 127.0.0.1, not {url}")
    command = [siege_path(), "--json-output", "--no-parser", *options, url]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    text = done.stdout
    if "{" not in text:
        sys.exit(f"error: siege printed no JSON summary (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(text[text.index("{") : text.rindex("}") + 1])


def mean_response_s(result: dict[str, float]) -> float:
    """Siege rounds response_time to 10 ms; concurrency (total response time / elapsed) keeps more digits."""
    if result["transactions"] == 0:
        return float("nan")
    return result["concurrency"] * result["elapsed_time"] / result["transactions"]


async def hammer(url: str, requests: int, concurrency: int) -> None:
    import aiohttp

    remaining = iter(range(requests))

    async def user(session: aiohttp.ClientSession) -> None:
        for _ in remaining:
            async with session.get(url) as response:
                await response.read()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(user(session) for _ in range(concurrency)))


def serving_processes(pid: int) -> list[psutil.Process]:
    """The processes that answer requests: the workers if the server forked any, else the server itself."""
    server = psutil.Process(pid)
    return server.children(recursive=True) or [server]


def machine() -> str:
    import onnxruntime

    from servetune.host.cpu import cpu_model

    cpu = cpu_model()

    return (
        f"{cpu}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; Python {platform.python_version()}, "
        f"ONNX Runtime {onnxruntime.__version__}"
    )


def print_table(
    rows: list[tuple[str, str, str, str]], model: Path, image: Path, started, started_load: float, args
) -> None:
    header = ("figure", "servetune", "reference", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print(f"servetune serve benchmark, {started:%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}")
    print(f"load average at start (other processes compete for the CPUs): {started_load:.2f}")
    print(f"model:   {model.name}; image: {image.name}; median of {args.runs} runs{' (--quick)' if args.quick else ''}")
    print("reference: the Flask+TensorFlow app (MobileNetV2, Keras) on this machine")
    print()
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    if siege_path() is not None:
        rate = next(r for r in rows if r[0].startswith("siege -c 20 -d 1"))
        print(f"\nthink-time trans/s vs reference: {float(rate[1]) / REFERENCE['think_rate']:.1f}x")


if __name__ == "__main__":
    main()
