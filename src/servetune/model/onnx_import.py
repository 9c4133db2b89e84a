"""Bring a plain ONNX image classifier (e.g. exported from PyTorch) in as a servetune artifact.

The file has no servetune metadata; the user says how it was trained to see images (input size, mean/std
on the 0..1 pixel scale as torchvision writes them, resize filter, output kind). Layout and size come from
the graph's input shape when it is fixed. The graph itself is copied unchanged; the artifact is checked to
run on one preprocessed photo before it is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from servetune.config import FOOD11_CLASSES, ModelSpec
from servetune.errors import ServetuneError, first_line


class OnnxImportError(ServetuneError):
    """The ONNX file cannot be imported; the message names the file and the problem."""


def parse_channel_values(option: str, text: str, positive: bool = False) -> tuple[float, float, float]:
    """Three per-channel numbers given as `a,b,c` (a mean or a std on the 0..1 pixel scale)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or (positive and min(values) <= 0):
        raise OnnxImportError(f"{option} {text!r}: give three numbers separated by commas"
                              + (", each > 0" if positive else ""))
    return values  # type: ignore[return-value]


def import_onnx_model(
    source: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    class_names: list[str] | None = None,
    input_size: int | None = None,
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    std: tuple[float, float, float] = (1.0, 1.0, 1.0),
    layout: Literal["NCHW", "NHWC"] | None = None,
    interpolation: Literal["bilinear", "bicubic"] = "bilinear",
    output: Literal["logits", "probabilities"] = "logits",
) -> tuple[Path, ModelSpec]:
    import onnx

    source, out = Path(source), Path(out)
    if not source.is_file():
        raise OnnxImportError(f"{source}: no such file")
    try:
        model = onnx.load(str(source))
    except Exception as err:  # noqa: BLE001 - protobuf decode errors have no public common base
        raise OnnxImportError(f"{source}: not an ONNX model: {first_line(err)}") from None
    graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != 1 or len(model.graph.output) != 1:
        raise OnnxImportError(
            f"{source}: the graph has {len(graph_inputs)} inputs and {len(model.graph.output)} outputs; "
            "expected one image input and one score output"
        )
    dims = [d.dim_value or None for d in graph_inputs[0].type.tensor_type.shape.dim]
    layout, size = input_geometry(source, dims, layout, input_size)
    classes = list(class_names) if class_names else list(FOOD11_CLASSES)
    spec = ModelSpec(
        name=name or source.stem, class_names=classes, input_size=size, resize=size, crop="none",
        interpolation=interpolation, decode="full", mean=mean, std=std, scale=1.0 / 255.0, layout=layout,
        output=output, backbone="unknown", precision=precision_of(model),
        data=f"imported from the ONNX model {source.name}; training data not recorded in the file",
    )
    check_runs(model, spec, source)
    from servetune.model.artifact import save_artifact

    return save_artifact(model, spec, out), spec


QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                 "MatMulInteger", "DynamicQuantizeLinear"}


def precision_of(model) -> str:
    """int8 for a graph already quantized (QDQ or integer operators), else fp32."""
    return "int8" if any(node.op_type in QUANTIZED_OPS for node in model.graph.node) else "fp32"


def input_geometry(source: Path, dims: list, layout: str | None, input_size: int | None) -> tuple:
    if len(dims) != 4:
        raise OnnxImportError(f"{source}: input has {len(dims)} dimensions; expected an image batch (N,C,H,W)")
    if layout is None:
        if dims[1] == 3:
            layout = "NCHW"
        elif dims[3] == 3:
            layout = "NHWC"
        else:
            raise OnnxImportError(f"{source}: input shape {dims} has no 3-channel axis; pass --layout")
    height, width = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
    if height is not None and width is not None and height != width:
        raise OnnxImportError(f"{source}: input {height}x{width} is not square; servetune needs a square input")
    fixed = height or width
    if fixed is not None and input_size is not None and input_size != fixed:
        raise OnnxImportError(f"{source}: the model's input is fixed at {fixed}x{fixed}, not {input_size}; import it "
                              f"as it is, then `servetune model resize ARTIFACT --input-size {input_size}`")
    size = fixed or input_size
    if size is None:
        raise OnnxImportError(f"{source}: the input size is not fixed in the graph; pass --input-size")
    return layout, int(size)


def check_runs(model, spec: ModelSpec, source: Path) -> None:
    """One grey photo through ONNX Runtime: the graph runs and gives one score per class."""
    import onnxruntime as ort
    from PIL import Image

    from servetune.model.preprocess import preprocess

    batch = preprocess(Image.new("RGB", (spec.input_size, spec.input_size), (128, 128, 128)), spec)[np.newaxis]
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        scores = session.run(None, {session.get_inputs()[0].name: batch})[0]
    except Exception as err:  # noqa: BLE001 - ORT raises several private exception types
        raise OnnxImportError(f"{source}: ONNX Runtime cannot run the model on a {spec.layout} "
                              f"{spec.input_size}x{spec.input_size} image: {first_line(err)}") from None
    if np.asarray(scores).reshape(1, -1).shape[1] != len(spec.class_names):
        raise OnnxImportError(
            f"{source}: the model gives {np.asarray(scores).size} scores, not {len(spec.class_names)} "
            "(pass --classes with the model's class names in output order)"
        )
