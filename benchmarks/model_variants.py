"""The variant table (backbone x input size x precision): accuracy, size, latency, memory.

    python benchmarks/model_variants.py [--data ../shared/data/food11-proxy] [--out runs/variants]
        [--backbones lite0] [--sizes 128,160] [--artifact PATH ...]

A thin wrapper around `servetune model profile` that prints the table with the machine, the date and the
load average at the start. Latencies are medians (and p95) of `--runs` predictions of the 1280x1280 sample
JPEG in a fresh process per model and thread count; accuracy is on the first `--eval-per-class` evaluation
images of each class. Variants without a trained model are trained quickly (head only), which ranks them
but understates what full training reaches (see src/servetune/model/default/MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

from rich.console import Console
from rich.table import Table

from servetune.serve.variant_profile import profile_variants

ROOT = Path(__file__).resolve().parents[1]


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "food11-proxy")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "variants")
    parser.add_argument("--backbones", default="lite0")
    parser.add_argument("--sizes", default="128,160")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--artifact", type=Path, action="append", default=[])
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--eval-per-class", type=int, default=40)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"error: {args.data}: no such data folder (pass --data)")
    load = os.getloadavg()[0]
    rows = profile_variants(
        args.data, args.out, split_list(args.backbones), [int(s) for s in split_list(args.sizes)],
        split_list(args.precisions), args.artifact, args.train_per_class, args.eval_per_class, args.runs,
    )
    table = Table(title=f"model variants: {platform.node()}, {os.cpu_count()} CPUs, "
                        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, load {load:.1f} at start")
    columns = ["name", "precision", "input_size", "accuracy", "eval_images", "size_mb",
               "infer_ms_median_1t", "infer_ms_p95_1t", "infer_ms_median_2t", "infer_ms_p95_2t",
               "request_ms_median_1t", "peak_rss_mb"]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="left" if column == "name" else "right")
    for row in rows:
        table.add_row(*(f"{getattr(row, c):.1%}" if c == "accuracy" else str(getattr(row, c)) for c in columns))
    Console(width=220).print(table)
    print(f"saved {args.out / 'variants.csv'} and {args.out / 'variants.json'}")


if __name__ == "__main__":
    main()
