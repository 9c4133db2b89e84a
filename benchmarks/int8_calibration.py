"""Peak memory of INT8 calibration: one image at a time, read as needed, against the earlier way (every
calibration image preprocessed into memory first, batches of 16).

ONNX Runtime runs the instrumented model one batch at a time and holds that batch's activations, so the
peak grows with batch size x activations per image (a VGG16 at 224 px has about 120 MB of activations and
ReLU outputs per image), plus the calibration images when they are all loaded first. The model here is a stack of 3x3 convolutions at 224 px (its activations per image are printed), built with
the onnx helper API so the benchmark needs no training extra beyond onnx. Each measurement runs in a fresh
process; the figure is that process's peak resident memory (ru_maxrss). Median of `--runs` runs.

    .venv/bin/python benchmarks/int8_calibration.py [--images 64] [--layers 6] [--channels 64] [--runs 1]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

SIZE = 224
WAYS = ("one image at a time, read as needed", "all images loaded, batches of 16")


def conv_stack(path: Path, layers: int, channels: int) -> float:
    """Write the fp32 artifact; return its activations per image in MB (the tensors calibration records)."""
    import onnx
    from onnx import TensorProto, helper

    from servetune.config import FOOD11_CLASSES, ModelSpec
    from servetune.model.artifact import save_artifact

    rng = np.random.default_rng(0)
    nodes, weights, previous, width = [], [], "input", 3
    for index in range(layers):
        weight = rng.normal(0, np.sqrt(2 / (9 * width)), (channels, width, 3, 3)).astype(np.float32)
        weights.append(helper.make_tensor(f"w{index}", TensorProto.FLOAT, weight.shape, weight.ravel()))
        nodes.append(helper.make_node("Conv", [previous, f"w{index}"], [f"c{index}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"]))
        previous, width = f"r{index}", channels
    head = rng.normal(0, 1, (channels, len(FOOD11_CLASSES))).astype(np.float32)
    weights.append(helper.make_tensor("head", TensorProto.FLOAT, head.shape, head.ravel()))
    nodes += [helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("MatMul", ["flat", "head"], ["logits"])]
    graph = helper.make_graph(
        nodes, "conv_stack",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(FOOD11_CLASSES)])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(name="conv-stack", class_names=FOOD11_CLASSES, input_size=SIZE, resize=SIZE, crop="none")
    save_artifact(model, spec, path)
    onnx.checker.check_model(str(path))
    return 2 * layers * channels * SIZE * SIZE * 4 / 1e6


def images(count: int):
    rng = np.random.default_rng(1)
    for _ in range(count):
        yield rng.normal(0, 1, (3, SIZE, SIZE)).astype(np.float32)


def calibrate(way: str, model: str, count: int, queue) -> None:
    """Runs in a fresh process: quantize, then report this process's peak RSS in MB."""
    from servetune.model.quantize import Calibration, quantize_int8

    out = Path(model).with_name(f"int8-{way.split()[0]}.onnx")
    if way == WAYS[0]:
        quantize_int8(model, out, Calibration(images(count), count))
    else:
        quantize_int8(model, out, list(images(count)), batch_size=16)
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_mb(way: str, model: Path, count: int) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=calibrate, args=(way, str(model), count, queue))
    process.start()
    peak = queue.get()
    process.join()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "conv-stack.onnx"
        per_image = conv_stack(model, args.layers, args.channels)
        table = Table(title=f"INT8 calibration peak memory, {args.images} images of {SIZE} px, "
                            f"{per_image:.0f} MB of activations per image")
        for column in ("calibration", "peak RSS (MB)", "runs"):
            table.add_column(column)
        for way in WAYS:
            peaks = [peak_mb(way, model, args.images) for _ in range(args.runs)]
            table.add_row(way, f"{statistics.median(peaks):.0f}", str(args.runs))
    console = Console()
    console.print(table)
    console.print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs; "
                  f"load average {os.getloadavg()[0]:.1f}; {datetime.date.today()}")


if __name__ == "__main__":
    main()
