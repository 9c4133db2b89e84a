"""The variant table: backbone x input size x precision -> accuracy, file size, latency, memory.

Latency and memory are measured in a fresh process per (model, threads) that serves the model the way the
server does (serve.predictor.Predictor: decode + preprocess + ONNX Runtime on the sample image), so the peak
RSS is that of a process holding only this model. Variants without a trained model get a quick one (head
on cached features, `train_per_class` images per class): enough to rank the variants, not to ship.

Run as `python -m servetune.serve.variant_profile MODEL --threads N --runs R` it is that measuring process and prints
one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from servetune.errors import ServetuneError
from servetune.host.cpu import cpu_model
from servetune.model.artifact import read_spec

THREADS = (1, 2)


class ProfileError(ServetuneError):
    pass


@dataclass
class VariantRow:
    name: str
    backbone: str
    input_size: int
    precision: str
    accuracy: float
    eval_images: int
    size_mb: float
    infer_ms_median_1t: float
    infer_ms_p95_1t: float
    infer_ms_median_2t: float
    infer_ms_p95_2t: float
    request_ms_median_1t: float  # decode + preprocess + inference of the 1280x1280 sample JPEG
    peak_rss_mb: float
    path: str


def measure(model: str | Path, threads: int, runs: int) -> dict:
    """In this process: serve `model` with `threads` and time `runs` predictions of the sample image."""
    from servetune.serve.predictor import Predictor
    from servetune.serve.sample_image import generated_sample_jpeg

    image = generated_sample_jpeg()
    reset_peak_rss()  # the column is what serving the model costs, not drawing the sample image
    predictor = Predictor(Path(model), threads)
    predictor.warm_up(image)
    infer, total = [], []
    for _ in range(runs):
        prediction = predictor.predict(image)
        infer.append(prediction.infer_ms)
        total.append(prediction.total_ms)
    return {
        "infer_ms_median": float(np.median(infer)), "infer_ms_p95": float(np.percentile(infer, 95)),
        "request_ms_median": float(np.median(total)),
        "peak_rss_mb": peak_rss_mb(),
    }


def reset_peak_rss() -> None:
    """Start the high-water mark afresh from the current RSS (Linux: /proc/self/clear_refs, value 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak then includes what came before


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ru_maxrss survives fork and exec (a child started by a
    2 GB parent reports 2 GB), so read the high-water mark of this process's own address space instead."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_in_subprocess(model: Path, threads: int, runs: int) -> dict:
    command = [sys.executable, "-m", "servetune.serve.variant_profile", str(model), "--threads", str(threads), "--runs", str(runs)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise ProfileError(f"{model}: measuring process failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def profile_artifact(path: Path, data: Path, eval_per_class: int, runs: int) -> VariantRow:
    from servetune.model.evaluate import evaluate

    spec = read_spec(path)
    evaluation = evaluate(path, data, "evaluation", eval_per_class)
    timings = {threads: measure_in_subprocess(path, threads, runs) for threads in THREADS}
    return VariantRow(
        name=spec.name, backbone=spec.backbone, input_size=spec.input_size, precision=spec.precision,
        accuracy=round(evaluation.accuracy, 4), eval_images=evaluation.count,
        size_mb=round(path.stat().st_size / 1e6, 2),
        infer_ms_median_1t=round(timings[1]["infer_ms_median"], 2), infer_ms_p95_1t=round(timings[1]["infer_ms_p95"], 2),
        infer_ms_median_2t=round(timings[2]["infer_ms_median"], 2), infer_ms_p95_2t=round(timings[2]["infer_ms_p95"], 2),
        request_ms_median_1t=round(timings[1]["request_ms_median"], 2),
        peak_rss_mb=round(max(t["peak_rss_mb"] for t in timings.values()), 1),
        path=str(path),
    )


def variant_artifacts(data: Path, out: Path, backbone: str, size: int, precisions: list[str],
                      train_per_class: int) -> list[Path]:
    """Train (quickly) and export one backbone x size unless `out` already holds it."""
    from servetune.model.export import export_and_quantize, int8_path
    from servetune.model.train import TrainConfig, train

    folder = out / f"{backbone}-{size}"
    fp32 = folder / f"food11-{backbone}-{size}-fp32.onnx"
    wanted = {"fp32": fp32, "int8": int8_path(fp32)}
    unknown = set(precisions) - set(wanted)
    if unknown:
        raise ProfileError(f"unknown precision {', '.join(sorted(unknown))}; choose fp32, int8")
    if not all(wanted[p].is_file() for p in precisions):
        trained = folder / "model.pt"
        if not trained.is_file():
            train(TrainConfig(data=data, out=folder, backbone=backbone, input_size=size, views=1,
                              per_class=train_per_class, finetune_epochs=0, head_epochs=30))
        export_and_quantize(trained, fp32, data, "int8" in precisions, calibration_count=128)
    return [wanted[p] for p in precisions]


def profile_variants(data: Path, out: Path, backbones: list[str], sizes: list[int], precisions: list[str],
                     artifacts: list[Path], train_per_class: int, eval_per_class: int, runs: int,
                     record: bool = False) -> list[VariantRow]:
    """Profile the given artifacts and the quick variants; `record`: store each given artifact's figures in
    its metadata (the quick variants are throw-away)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = list(artifacts)
    for backbone in backbones:
        for size in sizes:
            paths.extend(variant_artifacts(data, out, backbone, size, precisions, train_per_class))
    if not paths:
        raise ProfileError("nothing to profile: give --sizes for quick variants or --artifact for a trained model")
    rows = [profile_artifact(Path(path), data, eval_per_class, runs) for path in paths]
    write_table(rows, out)
    if record:
        from servetune.model.artifact import record_profile

        for row in rows[: len(artifacts)]:
            record_profile(row.path, profile_figures(row))
    return rows


def profile_figures(row: VariantRow) -> dict[str, float | str]:
    """What an artifact's metadata keeps of its row: the figures, and where and when they were measured."""
    keep = ("size_mb", "infer_ms_median_1t", "infer_ms_p95_1t", "infer_ms_median_2t", "infer_ms_p95_2t",
            "request_ms_median_1t", "peak_rss_mb")
    machine = f"{cpu_model()}, {os.cpu_count()} CPUs"
    return {**{name: getattr(row, name) for name in keep}, "machine": machine,
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def write_table(rows: list[VariantRow], out: Path) -> None:
    with open(out / "variants.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(VariantRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    (out / "variants.json").write_text(json.dumps([asdict(row) for row in rows], indent=2))


def read_table(path: str | Path) -> list[VariantRow]:
    """variants.json -> rows (the deployment search reads this)."""
    return [VariantRow(**row) for row in json.loads(Path(path).read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description="measure one model's latency and memory in this process")
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    print(json.dumps(measure(args.model, args.threads, args.runs)))


if __name__ == "__main__":
    main()
