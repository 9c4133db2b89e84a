"""INT8 static quantization of an fp32 artifact (QDQ, per-channel weights), calibrated on training images,
and the check of what it costs: accuracy of both models on the data's evaluation split.

Calibration memory is set by the batch, not by the number of images: images are read and preprocessed one
at a time as the calibrator asks for them, batches are small (ONNX Runtime holds a whole batch's activations
while it runs the instrumented model), and each batch is folded into the ranges before the next is read
(`CalibStridedMinMax`). benchmarks/int8_calibration.py measures the peak.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servetune.config import ModelSpec
from servetune.errors import FailedError
from servetune.model.artifact import read_spec, record_accuracy, save_artifact
from servetune.model.data import read_split
from servetune.model.preprocess import ImageError, load_and_preprocess
from servetune.model.ranking import top1

CALIBRATION_BATCH = 1  # images whose activations are held at once while calibrating (memory ~ batch x activations)
MAX_INT8_LOSS = 0.01  # largest top-1 accuracy loss (fraction) accepted for an INT8 twin by default


class Int8LossError(FailedError):
    """The INT8 model loses more accuracy than allowed; the message gives the figures."""


@dataclass(frozen=True)
class Int8Check:
    split: str
    images: int
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float  # share of images where both models name the same class

    @property
    def loss(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy

    def describe(self) -> str:
        return (
            f"INT8 on {self.images} {self.split} images: accuracy {self.int8_accuracy:.2%} vs fp32 "
            f"{self.fp32_accuracy:.2%} (change {-self.loss * 100:+.2f} pp), top-1 agreement {self.agreement:.2%}"
        )


class CalibrationImages:
    """onnxruntime.quantization.CalibrationDataReader over preprocessed images, in batches read as needed.

    With ONNX Runtime's `CalibStridedMinMax` option the calibrator asks for one batch at a time
    (`set_range`) and folds it into the ranges before the next: only one batch is ever in memory.
    """

    def __init__(self, input_name: str, arrays: Iterable[np.ndarray], count: int, batch_size: int = CALIBRATION_BATCH):
        self.input_name = input_name
        self.batches = self.batched(iter(arrays), batch_size)
        self.length = max(1, -(-count // batch_size))
        self.remaining = self.length

    @staticmethod
    def batched(arrays: Iterator[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
        """Batches drawn from the iterator as they are needed (never the whole set in memory)."""
        while batch := [array for _, array in zip(range(batch_size), arrays, strict=False)]:
            yield np.stack(batch)

    def __len__(self) -> int:
        return self.length

    def set_range(self, start_index: int, end_index: int) -> None:
        self.remaining = end_index - start_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:  # part of the reader protocol; a single pass is all calibration needs
        pass


@dataclass
class Calibration:
    """Preprocessed calibration images, produced one at a time, and how many there are at most."""

    arrays: Iterator[np.ndarray]
    count: int

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.arrays

    def __len__(self) -> int:
        return self.count


def calibration_images(data: str | Path, spec: ModelSpec, count: int = 256, seed: int = 0) -> Calibration:
    """`count` training images drawn evenly at random, preprocessed exactly as serving does, one at a time.

    The split is listed (and a missing or empty one reported) before the first image is read."""
    samples = read_split(data, "training").samples
    chosen = np.random.default_rng(seed).choice(len(samples), size=min(count, len(samples)), replace=False)
    return Calibration(preprocessed([samples[i].path for i in sorted(chosen)], spec), len(chosen))


def preprocessed(paths: list[Path], spec: ModelSpec) -> Iterator[np.ndarray]:
    for path in paths:
        try:
            yield load_and_preprocess(path.read_bytes(), spec)
        except ImageError:
            continue  # an unreadable training image only means one calibration image fewer


def quantize_int8(
    fp32_path: str | Path, out_path: str | Path, calibration: Calibration | list[np.ndarray], method: str = "minmax",
    batch_size: int = CALIBRATION_BATCH,
) -> Path:
    """Write the INT8 twin of an fp32 artifact; `calibration` yields preprocessed training images."""
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
            str(prepared), str(quantized), CalibrationImages(input_name, calibration, len(calibration), batch_size),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={"CalibTensorRangeSymmetric": False, "CalibMovingAverage": False,
                           "CalibStridedMinMax": 1},
        )
        model = onnx.load(str(quantized))
    name = spec.name.replace("-fp32", "")
    spec = spec.model_copy(update={"precision": "int8", "name": f"{name}-int8", "accuracy": {}})
    return save_artifact(model, spec, out_path)


def check_int8(fp32_path: str | Path, int8_path: str | Path, data: str | Path, split: str = "evaluation") -> Int8Check:
    """Both models on the split, through the serving preprocessing; ties ranked as the server ranks them."""
    from servetune.model.evaluate import predict_offline

    samples = read_split(data, split, require_all_classes=False).samples
    fp32, kept, _, _ = predict_offline(fp32_path, samples)
    int8, _, _, _ = predict_offline(int8_path, samples)
    labels = np.array([samples[i].label for i in kept])
    fp32_top, int8_top = top1(fp32), top1(int8)
    return Int8Check(
        split=split, images=len(kept),
        fp32_accuracy=float((fp32_top == labels).mean()), int8_accuracy=float((int8_top == labels).mean()),
        agreement=float((fp32_top == int8_top).mean()),
    )


def quantize_checked(
    fp32_path: str | Path, out_path: str | Path, data: str | Path, max_loss: float = MAX_INT8_LOSS
) -> tuple[Path, Int8Check]:
    """The INT8 twin, written only when it loses at most `max_loss` top-1 accuracy on DATA's evaluation
    split; its metadata records the accuracy measured there. Raises Int8LossError otherwise."""
    out_path = Path(out_path)
    spec = read_spec(fp32_path)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = quantize_int8(fp32_path, Path(tmp) / out_path.name, calibration_images(data, spec))
        check = check_int8(fp32_path, candidate, data)
        if check.loss > max_loss:
            raise Int8LossError(
                f"{out_path}: not written: {check.describe()}; the loss exceeds {max_loss * 100:g} pp "
                "(allow more with --int8-max-loss, or calibrate on more representative images)"
            )
        record_accuracy(candidate, check.split, check.int8_accuracy)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(candidate, out_path)
    return out_path, check
