"""The variants step of `servetune tune --model` (model/variants.py): seconds, evaluation passes and file reads.

    python benchmarks/own_variants.py [--data ../shared/data/food11-proxy] [--per-class 40] [--sizes 48,32]

A small fp32 model that is above chance (random 3x3 convolution features, ReLU, global average pooling and
a linear classifier fitted by least squares on the training photos), at 64 px, on a copy of the first
photos of each class of the training and evaluation splits (`--train-per-class`, `--per-class`); its variants built with a fresh
cache (cold) and again (warm: everything cached). For each: the seconds, the model passes over the
evaluation split (`predict_offline` calls), and the metadata reads (`read_spec`) and sha256 hashes of
artifact files. Decoding the photos dominates a small model's passes, so the passes are the cost to watch.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import os
import platform
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from servetune.model.variants import VariantSettings, build_variants

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 96

COUNTED = {"predict_offline": "evaluate.py", "read_spec": "artifact.py", "file_sha256": "artifact.py"}


def subset(data: Path, out: Path, per_class: int, train_per_class: int) -> Path:
    """The first photos of each class of training/ and evaluation/, copied."""
    for split, count in (("training", train_per_class), ("evaluation", per_class)):
        (out / split).mkdir(parents=True)
        for klass in range(11):
            photos = sorted((data / split).glob(f"{klass}_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))
            for photo in photos[:count]:
                shutil.copyfile(photo, out / split / photo.name)
    return out


def features_graph(size: int, weight: np.ndarray, classifier: tuple[np.ndarray, np.ndarray] | None):
    """conv 3x3 (random) -> ReLU -> global average pooling [-> MatMul + bias]: the features, or the class
    scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["input", "conv"], ["maps"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["maps"], ["active"]),
             helper.make_node("GlobalAveragePool", ["active"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["features"])]
    tensors = [numpy_helper.from_array(weight, "conv")]
    output = "features"
    if classifier is not None:
        nodes += [helper.make_node("MatMul", ["features", "classifier"], ["scores"]),
                  helper.make_node("Add", ["scores", "bias"], ["logits"])]
        tensors += [numpy_helper.from_array(classifier[0], "classifier"), numpy_helper.from_array(classifier[1], "bias")]
        output = "logits"
    width = FEATURES if classifier is None else classifier[0].shape[1]
    graph = helper.make_graph(
        nodes, "random-features",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", width])], tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def small_model(path: Path, data: Path, size: int = 64) -> Path:
    """The benchmark's model (see the module docstring), as a servetune artifact."""
    import onnxruntime as ort

    from servetune.config import FOOD11_CLASSES, ModelSpec
    from servetune.model.artifact import save_artifact
    from servetune.model.data import read_split
    from servetune.model.preprocess import load_and_preprocess

    spec = ModelSpec(name=path.stem, class_names=FOOD11_CLASSES, input_size=size, resize=size, crop="none",
                     backbone="random-features", data=str(data))
    weight = np.random.default_rng(0).normal(size=(FEATURES, 3, 3, 3)).astype(np.float32)
    session = ort.InferenceSession(features_graph(size, weight, None).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    samples = read_split(data, "training").samples
    inputs = np.stack([load_and_preprocess(s.path.read_bytes(), spec) for s in samples])
    features = session.run(None, {"input": inputs})[0]
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    standard = np.hstack([(features - mean) / scale, np.ones((len(features), 1), np.float32)])
    targets = np.eye(len(FOOD11_CLASSES))[[s.label for s in samples]]
    solved = np.linalg.solve(standard.T @ standard + np.eye(standard.shape[1]), standard.T @ targets)
    classifier = solved[:-1] / scale[:, None]  # the standardisation folded into the weights and the bias
    bias = solved[-1] - mean @ classifier
    return save_artifact(features_graph(size, weight, (classifier.astype(np.float32), bias.astype(np.float32))),
                         spec, path)


def counted(profile: cProfile.Profile) -> dict[str, int]:
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    calls = dict.fromkeys(COUNTED, 0)
    for (file, _, function), (_, ncalls, *_rest) in stats.items():
        if COUNTED.get(function) and file.endswith(COUNTED[function]):
            calls[function] += ncalls
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "food11-proxy")
    parser.add_argument("--per-class", type=int, default=40, help="evaluation photos per class")
    parser.add_argument("--train-per-class", type=int, default=200, help="training photos per class")
    parser.add_argument("--sizes", default="48,32")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"error: {args.data}: no such data folder (pass --data)")
    load = os.getloadavg()[0]
    settings = VariantSettings(sizes=tuple(int(s) for s in args.sizes.split(",")), int8=True, int8_max_loss=1.0,
                               int8_min_agreement=0.0)
    table = Table("run", "seconds", "evaluation passes", "read_spec", "sha256", "variants",
                  title=f"tune --model's variants step: {platform.node()}, {os.cpu_count()} CPUs, "
                        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, load {load:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="own-variants-") as folder:
        work = Path(folder)
        data = subset(args.data, work / "food", args.per_class, args.train_per_class)
        model = small_model(work / "mine.onnx", data)
        for run, cache in (("cold", "cache"), ("warm", "cache"), ("cold, profiled", "cache2")):
            profile = cProfile.Profile() if "profiled" in run else None
            began = time.perf_counter()
            if profile is not None:
                profile.enable()
            result = build_variants(model, data, work / cache, settings)
            if profile is not None:
                profile.disable()
            seconds = time.perf_counter() - began
            calls = counted(profile) if profile is not None else {}
            table.add_row(run, f"{seconds:.2f}", *(str(calls.get(name, "")) for name in COUNTED),
                          str(len(result.variants)))
    Console(width=160).print(table)
    for note in result.notes:
        print(f"note: {note}")
    print(f"{args.data}: {args.train_per_class} training and {args.per_class} evaluation photos per class; "
          f"sizes {args.sizes}, INT8 twins on")


if __name__ == "__main__":
    main()
