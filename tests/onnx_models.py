"""Small real ONNX models built in the test with the onnx helper API, saved as servetune artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from servetune.config import FOOD11_CLASSES, ModelSpec
from servetune.model.artifact import save_artifact


def tiny_classifier(input_size: int = 32, classes: int = 11, seed: int = 0) -> onnx.ModelProto:
    """Global average pool over the image, then a fixed linear layer: cheap, deterministic, input-dependent."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(3, classes)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, input_size, input_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [helper.make_tensor("weight", TensorProto.FLOAT, weight.shape, weight.flatten())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def tiny_spec(input_size: int = 32, **changes) -> ModelSpec:
    fields = {
        "name": "tiny", "class_names": FOOD11_CLASSES, "input_size": input_size, "resize": input_size + 4,
        "backbone": "pool", "data": "synthetic (test)", "accuracy": {"evaluation": 0.5},
    }
    fields.update(changes)
    return ModelSpec(**fields)


def tiny_artifact(path: Path, input_size: int = 32, **changes) -> Path:
    return save_artifact(tiny_classifier(input_size), tiny_spec(input_size, **changes), path)


def centroid_artifact(path: Path, data: Path, input_size: int = 32, **changes) -> Path:
    """A classifier that is right on `data` (Food-11-shaped folders): global average pooling, then the
    nearest class mean colour of DATA/training (logits x.m - |m|^2 / 2), through the artifact's own
    preprocessing. Resizable (it pools globally) and far above chance."""
    from servetune.model.data import read_split
    from servetune.model.preprocess import load_and_preprocess

    spec = tiny_spec(input_size, **changes)
    samples = read_split(data, "training").samples
    colours = np.zeros((len(spec.class_names), 3))
    counts = np.zeros(len(spec.class_names))
    for sample in samples:
        colours[sample.label] += load_and_preprocess(sample.path.read_bytes(), spec).mean(axis=(1, 2))
        counts[sample.label] += 1
    means = colours / counts[:, None]
    weight, bias = means.T.astype(np.float32), (-(means**2).sum(axis=1) / 2).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["scores"]),
        helper.make_node("Add", ["scores", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "centroid",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, input_size, input_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(spec.class_names)])],
        [helper.make_tensor("weight", TensorProto.FLOAT, weight.shape, weight.flatten()),
         helper.make_tensor("bias", TensorProto.FLOAT, bias.shape, bias)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return save_artifact(model, spec.model_copy(update={"accuracy": {}, "name": path.stem}), path)
