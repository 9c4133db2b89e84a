"""Latency of several artifacts measured in turn, so that a change in the machine's load hits them all alike.

    python benchmarks/interleaved_latency.py --artifact A.onnx --artifact B.onnx [--rounds 5] [--runs 40]

Each round measures every artifact once, in a fresh process serving it the way the server does
(`servetune.serve.variant_profile`: the 1280x1280 sample JPEG, `--runs` predictions at 1 thread); the table
gives, per artifact, the median over rounds of each round's median inference and request time, and the
largest peak RSS. Used to compare INT8 weight schemes (src/servetune/model/quantize.py).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from servetune.serve.variant_profile import measure_in_subprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, action="append", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    missing = [str(path) for path in args.artifact if not path.is_file()]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)}: no such model file")
    load = os.getloadavg()[0]
    results: dict[Path, list[dict]] = {path: [] for path in args.artifact}
    for _ in range(args.rounds):
        for path in args.artifact:
            results[path].append(measure_in_subprocess(path, args.threads, args.runs))
    table = Table(title=f"interleaved latency: {platform.node()}, {os.cpu_count()} CPUs, {args.threads} thread(s), "
                        f"{args.rounds} rounds x {args.runs} runs, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
                        f"load {load:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    for column in ("artifact", "size MB", "infer ms (median)", "request ms (median)", "peak RSS MB"):
        table.add_column(column, justify="left" if column == "artifact" else "right")
    for path, rounds in results.items():
        table.add_row(
            path.name, f"{path.stat().st_size / 1e6:.2f}",
            f"{statistics.median(r['infer_ms_median'] for r in rounds):.2f}",
            f"{statistics.median(r['request_ms_median'] for r in rounds):.2f}",
            f"{max(r['peak_rss_mb'] for r in rounds):.0f}",
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
