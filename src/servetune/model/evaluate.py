"""Evaluate an artifact on a Food-11 split through the serving path: artifact preprocessing + ONNX Runtime,
or a running server's POST /predict (`url`), so offline accuracy can be shown equal to served accuracy.

Metrics: accuracy, top-3 accuracy, per-class accuracy, confusion matrix (CSV + PNG) and expected
calibration error (15 equal-width confidence bins).
"""

from __future__ import annotations

import csv
import itertools
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from servetune.config import FOOD11_CLASSES
from servetune.errors import ServetuneError
from servetune.model.artifact import read_spec
from servetune.model.balance import per_class_accuracy
from servetune.model.data import Sample, read_split, subset
from servetune.model.preprocess import ImageError, load_and_preprocess
from servetune.model.ranking import class_probabilities, ranked, top1

ECE_BINS = 15


class EvaluationError(ServetuneError):
    pass


@dataclass
class Evaluation:
    model: str
    split: str
    count: int
    accuracy: float
    top3_accuracy: float
    calibration_error: float
    per_class_accuracy: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    # The top-1 class of each sample in the split's order (-1: unreadable), for comparing another model's
    # answers with these without running this one again (the INT8 gate); not in the summary.
    predicted: list[int] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        data = asdict(self)
        del data["predicted"]
        data["skipped_count"] = len(self.skipped)
        return data


def onnx_session(model_path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def predict_offline(model_path, samples: list[Sample], threads=None, batch_size=32, advance=None):
    """-> (probabilities (N,C) for the readable samples, their indices, skipped [(path, reason)])."""
    spec = read_spec(model_path)
    session = onnx_session(model_path, threads)
    input_name = session.get_inputs()[0].name
    probabilities, kept, skipped, batch, batch_index = [], [], [], [], []

    def flush():
        if batch:
            out = session.run(None, {input_name: np.stack(batch)})[0]
            probabilities.append(class_probabilities(out, spec.output))
            kept.extend(batch_index)
            batch.clear()
            batch_index.clear()

    for index, sample in enumerate(samples):
        try:
            with warnings.catch_warnings():  # PIL warns about odd EXIF tags in real photos: not our concern here
                warnings.simplefilter("ignore", UserWarning)
                batch.append(load_and_preprocess(sample.path.read_bytes(), spec))
            batch_index.append(index)
        except ImageError as err:
            skipped.append((str(sample.path), str(err)))
        if len(batch) == batch_size:
            flush()
        if advance:
            advance()
    flush()
    probs = np.concatenate(probabilities) if probabilities else np.zeros((0, len(spec.class_names)))
    return probs, kept, skipped, spec.class_names


def predict_http(url: str, samples: list[Sample], class_names: list[str], advance=None, timeout=60.0):
    """Probabilities as the server reports them: its top_k entries, zero elsewhere."""
    import httpx

    endpoint = url.rstrip("/") + "/predict"
    index_of = {name: i for i, name in enumerate(class_names)}
    rows, kept, skipped = [], [], []
    with httpx.Client(timeout=timeout) as client:
        for index, sample in enumerate(samples):
            try:
                response = client.post(endpoint, files={"file": (sample.path.name, sample.path.read_bytes())})
            except httpx.HTTPError as err:
                raise EvaluationError(f"{endpoint}: request failed: {err}") from None
            if response.status_code >= 400:
                reason = response.json().get("error", response.text) if response.content else ""
                skipped.append((str(sample.path), f"HTTP {response.status_code}: {reason}"))
            else:
                row = np.zeros(len(class_names))
                for entry in response.json().get("top_k", []):
                    if entry["label"] in index_of:
                        row[index_of[entry["label"]]] = entry["probability"]
                rows.append(row)
                kept.append(index)
            if advance:
                advance()
    return (np.stack(rows) if rows else np.zeros((0, len(class_names)))), kept, skipped


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    confidence = probabilities.max(axis=1)
    correct = top1(probabilities) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str], model: str, split: str,
            skipped: list[tuple[str, str]]) -> Evaluation:
    if len(labels) == 0:
        raise EvaluationError(f"{split}: no readable images to evaluate")
    predicted = top1(probabilities)
    classes = len(class_names)
    confusion = np.zeros((classes, classes), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    top3 = ranked(probabilities)[:, :3]
    per_class = per_class_accuracy(labels, predicted, class_names)
    return Evaluation(
        model=model, split=split, count=len(labels),
        accuracy=float((predicted == labels).mean()),
        top3_accuracy=float((top3 == labels[:, None]).any(axis=1).mean()),
        calibration_error=expected_calibration_error(probabilities, labels),
        per_class_accuracy=per_class, confusion=confusion.tolist(), class_names=list(class_names), skipped=skipped,
    )


def evaluate(model: str | Path | None, data: str | Path, split: str = "evaluation", per_class: int | None = None,
             url: str | None = None, threads: int | None = None, progress=None,
             description: str | None = None) -> Evaluation:
    """Evaluate an artifact offline, or the server at `url` (then `model` may be None); `progress` (a rich
    Progress) shows a task named `description` [default: evaluate SPLIT]."""
    samples = subset(read_split(data, split, require_all_classes=False).samples, per_class)
    task = progress.add_task(description or f"evaluate {split}", total=len(samples)) if progress else None
    advance = (lambda: progress.advance(task)) if progress else None
    if url:
        probs, kept, skipped = predict_http(url, samples, FOOD11_CLASSES, advance)
        class_names, name = FOOD11_CLASSES, url
    else:
        probs, kept, skipped, class_names = predict_offline(model, samples, threads, advance=advance)
        name = str(model)
    labels = np.array([samples[i].label for i in kept], dtype=int)
    evaluation = metrics(probs, labels, class_names, name, split, skipped)
    evaluation.predicted = [-1] * len(samples)
    for index, predicted in zip(kept, top1(probs).tolist(), strict=True):
        evaluation.predicted[index] = predicted
    return evaluation


def write_outputs(evaluation: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """metrics.json, confusion.csv and confusion.png in out_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "metrics.json", "csv": out_dir / "confusion.csv", "png": out_dir / "confusion.png"}
    paths["json"].write_text(json.dumps(evaluation.summary(), indent=2))
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *evaluation.class_names])
        for name, row in zip(evaluation.class_names, evaluation.confusion, strict=True):
            writer.writerow([name, *row])
    confusion = np.array(evaluation.confusion)
    figure, axes = plt.subplots(figsize=(8, 7))
    axes.imshow(confusion, cmap="Blues")
    ticks = range(len(evaluation.class_names))
    axes.set_xticks(ticks, evaluation.class_names, rotation=60, ha="right")
    axes.set_yticks(ticks, evaluation.class_names)
    for i in ticks:
        for j in ticks:
            if confusion[i, j]:
                axes.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                          color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{Path(evaluation.model).name} on {evaluation.split}: accuracy {evaluation.accuracy:.1%}")
    figure.tight_layout()
    figure.savefig(paths["png"], dpi=110)
    plt.close(figure)
    return paths
