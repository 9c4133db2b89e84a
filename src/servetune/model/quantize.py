"""INT8 static quantization of an fp32 artifact (QDQ, per-channel weights), calibrated on training images."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from servetune.config import ModelSpec
from servetune.model.artifact import read_spec, save_artifact
from servetune.model.data import load_images, read_split
from servetune.model.preprocess import preprocess


class CalibrationImages:
    """onnxruntime.quantization.CalibrationDataReader over preprocessed images, in batches."""

    def __init__(self, input_name: str, arrays: Iterable[np.ndarray], batch_size: int = 16):
        self.input_name = input_name
        self.batches = iter(self.batched(list(arrays), batch_size))

    @staticmethod
    def batched(arrays: list[np.ndarray], batch_size: int):
        for start in range(0, len(arrays), batch_size):
            yield np.stack(arrays[start : start + batch_size])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:  # part of the reader protocol; a single pass is all calibration needs
        pass


def calibration_images(data: str | Path, spec: ModelSpec, count: int = 256, seed: int = 0) -> list[np.ndarray]:
    """`count` training images drawn evenly at random, preprocessed exactly as serving does."""
    samples = read_split(data, "training").samples
    chosen = np.random.default_rng(seed).choice(len(samples), size=min(count, len(samples)), replace=False)
    loaded = load_images([samples[i] for i in sorted(chosen)], max_side=2 * spec.resize)
    return [preprocess(image, spec) for image in loaded.images]


def quantize_int8(
    fp32_path: str | Path, out_path: str | Path, calibration: Iterable[np.ndarray], method: str = "minmax"
) -> Path:
    """Write the INT8 twin of an fp32 artifact; `calibration` yields preprocessed (3,H,W) training images."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path = Path(fp32_path)
    spec = read_spec(fp32_path)
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        input_name = onnx.load(str(prepared)).graph.input[0].name
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared), str(quantized), CalibrationImages(input_name, calibration),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={"CalibTensorRangeSymmetric": False, "CalibMovingAverage": False},
        )
        model = onnx.load(str(quantized))
    name = spec.name.replace("-fp32", "")
    spec = spec.model_copy(update={"precision": "int8", "name": f"{name}-int8", "accuracy": {}})
    return save_artifact(model, spec, out_path)
