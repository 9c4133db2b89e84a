"""INT8 static quantization of an fp32 artifact (QDQ, per-channel weights), calibrated on training images,
and the check of what it costs: accuracy of both models on the data's evaluation split.

Calibration memory is set by the batch, not by the number of images: images are read and preprocessed one
at a time as the calibrator asks for them, batches are small (ONNX Runtime holds a whole batch's activations
while it runs the instrumented model), and each batch is folded into the ranges before the next is read
(`CalibStridedMinMax`). benchmarks/int8_calibration.py measures the peak.

Weights are unsigned 8-bit by default ("u8": quantized signed and symmetric, then shifted by 128 with zero
point 128, so every dequantized value is the signed one). Signed full-range weights ("s8", the default
until 2026-11-30) are wrong on x86-64 CPUs without VNNI (AVX2, e.g. the AMD EPYC build machine): with every
optimization on (what evaluation and serving use), ONNX Runtime fuses Q/DQ into u8 x s8 integer kernels
whose 16-bit intermediate sums of two products saturate (255 x 127 x 2 > 32767), and a model silently
loses accuracy that the fake-quant graph (ORT_ENABLE_BASIC) does not; ONNX Runtime's documentation
recommends reduce_range or U8U8 on such CPUs (microsoft/onnxruntime#12072, #6545). Measured 2026-11-30 on
the 800-photo Lite0 model (112 px, calibrated on 256 training images; proxy evaluation split, 1,650 images;
inference of the 1280x1280 sample at 1 thread, median of 7 interleaved rounds of 50 by
benchmarks/interleaved_latency.py, load 2.3-2.6 on 2 shared cores):

    weights                 proxy accuracy   vs fp32     inference ms
    fp32 model              51.82 %
    u8 (default)            52.42 %          +0.60 pp    5.68
    s8-reduced (7-bit)      51.27 %          -0.55 pp    3.87
    s8 (full range)         47.09 %          -4.73 pp    4.48
    ORT's own QUInt8        51.58 %          -0.24 pp    18.92  (mixed zero points: Conv runs unfused)

Accuracy comes first: u8 is exact where 7-bit weights lose precision (the packaged default lost 1.6 pp on
the proxy with 7-bit weights against 8-bit unsigned), at about 1.3-1.8 ms more inference than s8-reduced.
tests/model/test_quantize.py checks that the integer kernels agree with the fake-quant graph.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servetune.config import ModelSpec
from servetune.errors import FailedError, ServetuneError
from servetune.model.artifact import read_spec, record_accuracy, save_artifact
from servetune.model.data import read_split
from servetune.model.preprocess import ImageError, load_and_preprocess
from servetune.model.ranking import top1

WEIGHT_SCHEMES = ("u8", "s8-reduced", "s8")  # the first is the default: see the module docstring for why
CALIBRATION_BATCH = 1  # images whose activations are held at once while calibrating (memory ~ batch x activations)
MAX_INT8_LOSS = 0.01  # largest top-1 accuracy loss (fraction) accepted for an INT8 twin by default
# Least share of photos on which an INT8 twin must name the class its fp32 model names: the accuracy change
# alone lets through a twin that is right as often but on other photos (one agreed with its fp32 model on
# 57.5 % of photos at the same accuracy), which is another model, not a faster copy.
MIN_INT8_AGREEMENT = 0.97


class Int8LossError(FailedError):
    """The INT8 model loses more accuracy than allowed; the message gives the figures."""


class WeightsError(ServetuneError):
    """An artifact whose weights cannot be rewritten (not INT8, or no signed weights); the message says why."""


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


def task(progress, description: str, total: int) -> Callable[[], None] | None:
    """A task of `total` steps on a rich Progress (None: no progress shown), as the function that advances it."""
    if progress is None:
        return None
    handle = progress.add_task(description, total=total)
    return lambda: progress.advance(handle)


def calibration_images(data: str | Path, spec: ModelSpec, count: int = 256, seed: int = 0,
                       progress=None) -> Calibration:
    """`count` training images drawn evenly at random, preprocessed exactly as serving does, one at a time;
    each image read advances a task on `progress` (a rich Progress) when given.

    The split is listed (and a missing or empty one reported) before the first image is read."""
    samples = read_split(data, "training").samples
    chosen = np.random.default_rng(seed).choice(len(samples), size=min(count, len(samples)), replace=False)
    advance = task(progress, "INT8 calibration images", len(chosen))
    return Calibration(preprocessed([samples[i].path for i in sorted(chosen)], spec, advance), len(chosen))


def preprocessed(paths: list[Path], spec: ModelSpec, advance: Callable[[], None] | None = None) -> Iterator[np.ndarray]:
    for path in paths:
        try:
            array = load_and_preprocess(path.read_bytes(), spec)
        except ImageError:
            continue  # an unreadable training image only means one calibration image fewer
        finally:
            if advance is not None:
                advance()
        yield array


def quantize_int8(
    fp32_path: str | Path, out_path: str | Path, calibration: Calibration | list[np.ndarray], method: str = "minmax",
    batch_size: int = CALIBRATION_BATCH, weights: str = WEIGHT_SCHEMES[0],
) -> Path:
    """Write the INT8 twin of an fp32 artifact; `calibration` yields preprocessed training images.

    `weights`: "u8" (signed symmetric weights rewritten exactly as unsigned, zero point 128), "s8-reduced"
    (signed, 7-bit range) or "s8" (signed, full range: overflows on x86-64 CPUs without VNNI); see the
    module docstring. ONNX Runtime's own QUInt8 weights are not used: channels of zeros get zero point 0
    instead of 128, and mixed zero points keep Conv off the integer kernel (4-7x slower here)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if weights not in WEIGHT_SCHEMES:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_SCHEMES)}, not {weights!r}")
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
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, reduce_range=weights == "s8-reduced", calibrate_method=methods[method],
            extra_options={"CalibTensorRangeSymmetric": False, "CalibMovingAverage": False,
                           "CalibStridedMinMax": 1},
        )
        model = onnx.load(str(quantized))
    if weights == "u8":
        unsign_weights(model)
    name = spec.name.replace("-fp32", "")
    spec = spec.model_copy(update={"precision": "int8", "name": f"{name}-int8", "accuracy": {}})
    return save_artifact(model, spec, out_path)


def check_int8(fp32_path: str | Path, int8_path: str | Path, data: str | Path, split: str = "evaluation",
               progress=None, fp32_predicted: Sequence[int] = ()) -> Int8Check:
    """Both models on the split, through the serving preprocessing; ties ranked as the server ranks them.
    `fp32_predicted`: the fp32 model's top-1 class of each sample of the split (-1: unreadable), as its own
    evaluation kept them (`Evaluation.predicted`): then only the INT8 model runs. `progress`: a rich Progress
    to show each model's pass on."""
    from servetune.model.evaluate import predict_offline

    samples = read_split(data, split, require_all_classes=False).samples
    known = np.asarray(fp32_predicted, dtype=int)
    if len(known) != len(samples):  # not given, or for another set of photos: the fp32 model runs
        fp32, kept, _, _ = predict_offline(fp32_path, samples, advance=task(progress, f"fp32 on {split}", len(samples)))
        known = np.full(len(samples), -1)
        known[kept] = top1(fp32)
    int8, kept, _, _ = predict_offline(int8_path, samples, advance=task(progress, f"INT8 on {split}", len(samples)))
    labels = np.array([samples[i].label for i in kept])
    fp32_top, int8_top = known[kept], top1(int8)  # one preprocessing: the same photos are readable to both
    return Int8Check(
        split=split, images=len(kept),
        fp32_accuracy=float((fp32_top == labels).mean()), int8_accuracy=float((int8_top == labels).mean()),
        agreement=float((fp32_top == int8_top).mean()),
    )


def quantize_checked(
    fp32_path: str | Path, out_path: str | Path, data: str | Path, max_loss: float = MAX_INT8_LOSS,
    min_agreement: float = MIN_INT8_AGREEMENT, progress=None, fp32_predicted: Sequence[int] = (),
) -> tuple[Path, Int8Check]:
    """The INT8 twin, written only when it loses at most `max_loss` top-1 accuracy on DATA's evaluation
    split and names the fp32 model's class on at least `min_agreement` of its photos; its metadata records
    the accuracy measured there, and the fp32 artifact's the fp32 accuracy measured beside it (also when the
    twin is refused). Raises Int8LossError otherwise. `fp32_predicted`: see `check_int8`. `progress`: a rich
    Progress for the long steps."""
    out_path = Path(out_path)
    spec = read_spec(fp32_path)
    with tempfile.TemporaryDirectory() as tmp:
        images = calibration_images(data, spec, progress=progress)
        candidate = quantize_int8(fp32_path, Path(tmp) / out_path.name, images)
        check = check_int8(fp32_path, candidate, data, progress=progress, fp32_predicted=fp32_predicted)
        record_accuracy(fp32_path, check.split, round(check.fp32_accuracy, 4))  # as `model eval --record` does
        problems = []
        if check.loss > max_loss:
            problems.append(f"the loss exceeds {max_loss * 100:g} pp (allow more with --int8-max-loss)")
        if check.agreement < min_agreement:
            problems.append(f"the top-1 agreement is below {min_agreement:.0%} (--int8-min-agreement): it "
                            "answers differently from the fp32 model on too many photos")
        if problems:
            raise Int8LossError(f"{out_path}: not written: {check.describe()}; {'; '.join(problems)}; "
                                "calibrating on more representative images may help")
        record_accuracy(candidate, check.split, check.int8_accuracy)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(candidate, out_path)
    return out_path, check


def unsign_weights(model) -> int:
    """Rewrite a QDQ model's signed 8-bit weights (in place) as unsigned: value + 128, zero point + 128, so
    every dequantized weight stays exactly what it was and the integer kernels become u8 x u8, which do not
    overflow on CPUs without VNNI. Returns the number of weight tensors rewritten."""
    import onnx
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in initializers:
            continue
        if initializers[node.input[0]].data_type != onnx.TensorProto.INT8:
            continue
        for tensor in (initializers[name] for name in [node.input[0], *node.input[2:3]] if name in initializers):
            values = numpy_helper.to_array(tensor)
            if values.dtype == np.int8:
                tensor.CopyFrom(numpy_helper.from_array((values.astype(np.int16) + 128).astype(np.uint8), tensor.name))
        rewritten += 1
    return rewritten


def unsigned_weights(int8_path: str | Path, out_path: str | Path) -> tuple[Path, int]:
    """`unsign_weights` on an INT8 artifact, written to `out_path` with its metadata (name, accuracy, ...)
    unchanged: measure the result again before recording. Returns the path and the tensors rewritten."""
    import onnx

    int8_path, out_path = Path(int8_path), Path(out_path)
    spec = read_spec(int8_path)
    if spec.precision != "int8":
        raise WeightsError(f"{int8_path}: not an INT8 artifact (precision {spec.precision})")
    model = onnx.load(str(int8_path))
    rewritten = unsign_weights(model)
    if rewritten == 0:
        raise WeightsError(f"{int8_path}: no signed 8-bit weights to rewrite (already unsigned?)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out_path))
    return out_path, rewritten
