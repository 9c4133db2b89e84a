"""Export a trained model to an ONNX artifact (opset >= 17) and optimise its graph with ONNX Runtime."""

from __future__ import annotations

import tempfile
from pathlib import Path

from servetune.config import ModelSpec
from servetune.errors import ServetuneError
from servetune.model.artifact import record_accuracy, save_artifact

OPSET = 17


class ExportError(ServetuneError):
    pass


def export_onnx(model, spec: ModelSpec, path: str | Path, opset: int = OPSET) -> Path:
    """torch module (N,3,H,W) -> logits, saved as an fp32 artifact with `spec` in its metadata."""
    import onnx
    import torch

    if opset < 17:
        raise ExportError(f"opset {opset}: the artifact contract needs opset 17 or newer")
    model = model.eval().cpu()
    dummy = torch.zeros(1, 3, spec.input_size, spec.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        # The legacy TorchScript exporter gives a compact graph of plain ONNX ops for this network.
        torch.onnx.export(
            model, (dummy,), str(raw), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
        optimised = Path(tmp) / "optimised.onnx"
        optimise_graph(raw, optimised)
        onnx_model = onnx.load(str(optimised))
    name = spec.name if spec.name.endswith("-fp32") else f"{spec.name}-fp32"
    spec = spec.model_copy(update={"name": name, "precision": "fp32", "layout": "NCHW", "output": "logits"})
    return save_artifact(onnx_model, spec, path)


def optimise_graph(source: Path, target: Path) -> Path:
    """ONNX Runtime's basic optimisations (constant folding, Conv+BatchNorm fusion, redundant nodes).

    Only the basic level is saved: it keeps standard ONNX ops, so the file stays portable and quantizable;
    the extended, hardware-specific fusions are applied again by ONNX Runtime when a session loads it.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return target


def int8_path(fp32_path: Path) -> Path:
    stem = fp32_path.stem.removesuffix("-fp32")
    return fp32_path.with_name(f"{stem}-int8{fp32_path.suffix}")


def at_input_size(spec: ModelSpec, input_size: int) -> ModelSpec:
    """The spec for serving the same weights at another input side. EfficientNet-Lite is convolutional up
    to a global pooling, so any side works; the resize keeps the crop ratio and the name says the side."""
    suffix = f"-{spec.input_size}"
    stem = spec.name.removesuffix(suffix) if spec.name.endswith(suffix) else spec.name
    return spec.model_copy(update={
        "name": f"{stem}-{input_size}", "input_size": input_size,
        "resize": round(spec.resize * input_size / spec.input_size), "accuracy": {},
    })


def export_and_quantize(
    trained: str | Path, out: str | Path, data: str | Path | None = None, int8: bool = True,
    calibration_count: int = 256, per_class: int | None = None, split: str = "evaluation",
    input_size: int | None = None, int8_weights: str | None = None,
) -> dict[Path, float | None]:
    """model.pt -> fp32 artifact (+ INT8 twin calibrated on `data`'s training split), at the trained input
    side or at `input_size`; `int8_weights` picks the INT8 weight scheme (quantize.WEIGHT_SCHEMES, the
    first by default).

    With `data`, each artifact is evaluated on `split` and the accuracy is stored in its metadata
    (ModelSpec.accuracy); returns {artifact path: accuracy or None}.
    """
    from servetune.model.evaluate import evaluate
    from servetune.model.quantize import WEIGHT_SCHEMES, calibration_images, quantize_int8
    from servetune.model.train import load_trained

    model, spec = load_trained(trained)
    if input_size is not None and input_size != spec.input_size:
        spec = at_input_size(spec, input_size)
    paths = [export_onnx(model, spec, out)]
    if int8:
        if data is None:
            raise ExportError("INT8 calibration needs the training images: give the data folder")
        paths.append(quantize_int8(paths[0], int8_path(Path(out)), calibration_images(data, spec, calibration_count),
                                   weights=int8_weights or WEIGHT_SCHEMES[0]))
    results: dict[Path, float | None] = {}
    for path in paths:
        accuracy = None
        if data is not None:
            accuracy = evaluate(path, data, split, per_class).accuracy
            record_accuracy(path, split, round(accuracy, 4))
        results[path] = accuracy
    return results

