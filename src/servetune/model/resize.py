"""An artifact at another input size: the same weights fed a smaller (or larger) image.

A convolutional network with global pooling before its classifier computes a class score from a feature map
of any size, so serving it at 160 px instead of 224 px is the same ONNX graph with another input shape and
the preprocessing resized to match: about (160/224)^2 = half the work per photo, at some accuracy cost that
only a measurement tells (`servetune model eval`, or `--data` here). A network whose classifier reads a
fixed feature map (Flatten + Dense, as VGG16's original top) cannot: its Dense weights expect exactly the
trained number of inputs. The graph is re-shaped, not re-traced, so the same works for Keras imports,
plain ONNX models and servetune's own artifacts; whether the graph really runs at the new size is checked
by running it, and the reason it does not is said.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servetune.config import ModelSpec
from servetune.errors import ServetuneError, first_line
from servetune.model.artifact import read_spec, save_artifact

GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
REDUCTIONS = {"ReduceMean", "ReduceMax", "ReduceSum", "ReduceL2"}
MIN_SIZE = 16


class ResizeError(ServetuneError, ValueError):
    """The network cannot take another input size; the message names the file and says why."""


def resized_spec(spec: ModelSpec, size: int) -> ModelSpec:
    """The preprocessing at the new input side: a centre crop keeps its resize/crop ratio (e.g. 128 -> 112
    becomes 183 -> 160); measured accuracies belong to the old size and are dropped."""
    resize = size if spec.crop == "none" else max(size, round(size * spec.resize / spec.input_size))
    name = spec.name.replace(f"-{spec.input_size}", "")
    return spec.model_copy(update={"input_size": size, "resize": resize, "accuracy": {}, "profile": {},
                                   "name": f"{name}-{size}"})


def has_global_pooling(graph) -> bool:
    """A global pooling op, or a reduction over two axes (Keras' GlobalAveragePooling2D traced as a mean)."""
    from onnx import numpy_helper

    constants = {t.name: t for t in graph.initializer}
    constants.update({node.output[0]: attribute.t for node in graph.node if node.op_type == "Constant"
                      for attribute in node.attribute if attribute.name == "value"})
    for node in graph.node:
        if node.op_type in GLOBAL_POOLS:
            return True
        if node.op_type not in REDUCTIONS:
            continue
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        if axes is None and len(node.input) > 1 and node.input[1] in constants:
            axes = numpy_helper.to_array(constants[node.input[1]]).ravel().tolist()
        if axes is not None and len(axes) == 2:
            return True
    return False


def resize_artifact(source: str | Path, size: int, out: str | Path) -> tuple[Path, ModelSpec]:
    """Write `source` at input side `size` into `out`; ResizeError says why a network cannot be resized."""
    import onnx

    source, out = Path(source), Path(out)
    spec = read_spec(source)
    if size < MIN_SIZE:
        raise ResizeError(f"{source}: input size {size} is below {MIN_SIZE} px")
    model = onnx.load(str(source))
    initializers = {t.name for t in model.graph.initializer}
    [image] = [i for i in model.graph.input if i.name not in initializers]
    dims = image.type.tensor_type.shape.dim
    spatial = (1, 2) if spec.layout == "NHWC" else (2, 3)
    for axis in spatial:
        dims[axis].Clear()
        dims[axis].dim_value = size
    del model.graph.value_info[:]  # shapes inferred at the old size; ONNX Runtime infers them again
    new_spec = resized_spec(spec, size)
    check_runs(model, new_spec, source)
    if out.resolve() == source.resolve():
        raise ResizeError(f"{out}: is the source model; choose another output path")
    return save_artifact(model, new_spec, out), new_spec


def check_runs(model, spec: ModelSpec, source: Path) -> None:
    """The re-shaped graph runs on a batch of two at the new size and gives one score per class."""
    import onnxruntime as ort

    side = spec.input_size
    shape = (2, side, side, 3) if spec.layout == "NHWC" else (2, 3, side, side)
    batch = np.random.default_rng(0).uniform(0, 1, size=shape).astype(np.float32)
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        scores = np.asarray(session.run(None, {session.get_inputs()[0].name: batch})[0])
    except Exception as err:  # noqa: BLE001 - ORT raises several private exception types
        raise ResizeError(f"{source}: cannot be resized to {side}x{side}: {why_not(model.graph, err)}") from None
    if scores.shape != (2, len(spec.class_names)):
        raise ResizeError(f"{source}: at {side}x{side} the network gives scores of shape {scores.shape}, not "
                          f"(batch, {len(spec.class_names)}): its output depends on the input size")


def why_not(graph, error: Exception) -> str:
    if not has_global_pooling(graph):
        return ("its classifier reads a fixed-size feature map (no global pooling, e.g. Flatten + Dense), so its "
                "weights expect the trained input size; only a network that pools globally before its classifier "
                f"(GlobalAveragePooling2D, pooling='avg') can take another size (ONNX Runtime: {first_line(error)})")
    return (f"ONNX Runtime cannot run the graph at this size (a shape fixed by the exporter?): "
            f"{first_line(error)}")
