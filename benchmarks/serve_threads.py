"""Throughput of `servetune serve` by process/thread layout, side by side in the same run.

    python benchmarks/serve_threads.py [--model PATH] [--image PATH] [--rounds N] [--siege-time 10S]

Each round starts every variant in turn (interleaved, so a busy machine hurts all of them alike) and measures
the median /test latency at concurrency 1, `siege -b -c 20` transactions/s, and the server's CPU time per
request (user + system, all its processes): the last figure depends least on what else the machine runs.
Prints one table of medians over the rounds.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from pathlib import Path

import psutil

from serve import (
    DEFAULT_IMAGE,
    free_port,
    http_latency_s,
    machine,
    median,
    server_command,
    siege,
    siege_path,
    stop,
    wait_ready,
)

VARIANTS = {
    "1 process, 1 thread": ["--threads", "1"],
    "1 process, 2 threads": ["--threads", "2"],
    "2 workers (gunicorn), 1 thread each": ["--workers", "2", "--threads", "1"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model artifact (.onnx); default: the packaged default model")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="the image /test classifies")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--siege-time", default="10S")
    parser.add_argument("--latency-requests", type=int, default=100)
    args = parser.parse_args()
    if siege_path() is None:
        sys.exit("error: siege is not installed (apt-get install siege)")
    from servetune.model.artifact import default_model_path

    model, image = Path(args.model or default_model_path()), Path(args.image)
    for path in (model, image):
        if not path.is_file():
            sys.exit(f"error: {path} not found")
    started = datetime.datetime.now().astimezone()
    load = os.getloadavg()[0]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in VARIANTS}
    for round_number in range(args.rounds):
        for name, options in VARIANTS.items():
            results[name].append(measure(model, image, options, args))
            latency, rate, cpu = results[name][-1]
            print(f"round {round_number + 1}: {name}: {latency:.1f} ms, {rate:.1f} trans/s, {cpu:.2f} ms CPU/request",
                  file=sys.stderr)
    print(f"servetune serve: process/thread layouts, {started:%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}")
    print(f"load average at start: {load:.2f}, at end: {os.getloadavg()[0]:.2f}")
    print(f"model: {model.name}; image: {image.name}; median of {args.rounds} interleaved rounds; "
          f"siege -b -c 20 -t {args.siege_time}")
    print()
    header = ("layout", "c=1 latency ms", "siege -b trans/s", "server CPU ms/request")
    rows = [
        (name, *(f"{median([r[i] for r in runs]):.{2 if i == 2 else 1}f}" for i in range(3)))
        for name, runs in results.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))


def measure(model: Path, image: Path, options: list[str], args: argparse.Namespace) -> tuple[float, float, float]:
    port = free_port()
    server = subprocess.Popen(
        [*server_command(model, image, port), *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_ready(server, port)
        url = f"http://127.0.0.1:{port}/test"
        latency = http_latency_s(url, args.latency_requests) * 1000
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        cpu_before = sum(cpu_s(p) for p in processes)
        result = siege(url, ["-b", "-c", "20", "-t", args.siege_time])
        cpu = sum(cpu_s(p) for p in processes) - cpu_before
    finally:
        stop(server)
    return latency, result["transaction_rate"], cpu * 1000 / max(1, int(result["transactions"]))


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


if __name__ == "__main__":
    main()
