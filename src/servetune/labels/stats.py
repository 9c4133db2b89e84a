"""Live accuracy from the store: held-out labels per model and per class, with 95 % Wilson intervals and
the confusion matrix; feedback and review counted apart (each is biased, and the text says how)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from servetune.config import FOOD11_CLASSES
from servetune.labels.records import Upload

Z_95 = 1.959964


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion correct/n (0..1 for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Accuracy:
    correct: int = 0
    n: int = 0

    def add(self, correct: bool) -> None:
        self.correct += int(correct)
        self.n += 1

    @property
    def value(self) -> float | None:
        return self.correct / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)

    def as_dict(self) -> dict:
        low, high = self.interval
        return {"correct": self.correct, "n": self.n, "accuracy": self.value, "wilson_95": [low, high]}


@dataclass
class ModelStats:
    name: str
    sha256: str
    held_out: int = 0
    accuracy: Accuracy = field(default_factory=Accuracy)
    per_class: dict[str, Accuracy] = field(default_factory=lambda: defaultdict(Accuracy))
    confusion: Counter = field(default_factory=Counter)  # (user's label, prediction): count
    shown: int = 0  # shown predictions stored (open to feedback, or queued for review)
    feedback: int = 0
    feedback_with_class: Accuracy = field(default_factory=Accuracy)
    review_queued: int = 0
    reviewed: Accuracy = field(default_factory=Accuracy)

    def classes(self) -> list[str]:
        seen = {name for pair in self.confusion for name in pair}
        known = [c for c in FOOD11_CLASSES if c in seen]
        return known + sorted(seen - set(known))

    def as_dict(self) -> dict:
        classes = self.classes()
        return {
            "model": self.name, "sha256": self.sha256, "held_out": self.held_out,
            "live_accuracy": self.accuracy.as_dict(),
            "per_class": {name: self.per_class[name].as_dict() for name in classes if name in self.per_class},
            "confusion": {"classes": classes,
                          "counts": [[self.confusion[(t, p)] for p in classes] for t in classes]},
            "feedback": {"shown": self.shown, "wrong": self.feedback,
                         "agreed_among_corrections": self.feedback_with_class.as_dict()},
            "review": {"queued": self.review_queued, "reviewed": self.reviewed.as_dict()},
        }


def label_stats(uploads: Iterable[Upload]) -> list[ModelStats]:
    """Per model (by sha256), in the order the models first appear."""
    models: dict[str, ModelStats] = {}
    for upload in uploads:
        stats = models.setdefault(upload.model_sha256, ModelStats(upload.model_name, upload.model_sha256))
        if upload.kind == "holdout":
            stats.held_out += 1
            if upload.label is not None:
                correct = upload.label == upload.predicted
                stats.accuracy.add(correct)
                stats.per_class[upload.label].add(correct)
                stats.confusion[(upload.label, upload.predicted)] += 1
        else:
            stats.shown += 1
            if upload.feedback_at is not None:
                stats.feedback += 1
                if upload.feedback_label is not None:
                    stats.feedback_with_class.add(upload.feedback_label == upload.predicted)
            stats.review_queued += int(upload.review)
        if upload.review_label is not None:
            stats.reviewed.add(upload.review_label == upload.predicted)
    return list(models.values())


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def interval_text(accuracy: Accuracy) -> str:
    low, high = accuracy.interval
    return f"{100 * low:.1f} .. {100 * high:.1f} %"


def format_stats(models: list[ModelStats]) -> str:
    if not models:
        return "no uploads in the store for this period\n"
    lines = [
        "Live accuracy from held-out labels: for a random share of uploads the user chose the class while the",
        "model's answer was hidden; top-1 accuracy is how often the model agreed (95 % Wilson interval).",
        "",
        f"{'model':<24} {'sha256':<12} {'held out':>8} {'labelled':>8} {'accuracy':>9}  95 % interval",
    ]
    for stats in models:
        lines.append(
            f"{stats.name[:24]:<24} {stats.sha256[:12]:<12} {stats.held_out:>8} {stats.accuracy.n:>8} "
            f"{percent(stats.accuracy.value):>9}  {interval_text(stats.accuracy)}"
        )
    for stats in models:
        classes = stats.classes()
        if not classes:
            continue
        lines += ["", f"{stats.name} ({stats.sha256[:12]}), per class (the user's label):",
                  f"  {'class':<18} {'n':>5} {'accuracy':>9}  95 % interval"]
        for name in classes:
            if name in stats.per_class:
                accuracy = stats.per_class[name]
                lines.append(f"  {name[:18]:<18} {accuracy.n:>5} {percent(accuracy.value):>9}  {interval_text(accuracy)}")
        width = max(5, *(len(c[:12]) for c in classes))
        lines += ["", "  confusion matrix (rows: the user's label, columns: the model's prediction):",
                  "  " + " " * 18 + " ".join(f"{c[:12]:>{width}}" for c in classes)]
        for true in classes:
            lines.append(f"  {true[:18]:<18}" + " ".join(f"{stats.confusion[(true, p)]:>{width}}" for p in classes))
    for stats in models:
        if stats.shown or stats.reviewed.n:
            lines += ["", f"{stats.name} ({stats.sha256[:12]}), not accuracy (biased samples):"]
        if stats.shown:
            lines.append(
                f"  'wrong?' feedback: {stats.feedback} of {stats.shown} stored shown predictions (only users who "
                "disagree press it)"
            )
        if stats.review_queued or stats.reviewed.n:
            lines.append(
                f"  review: {stats.review_queued} queued (low confidence), {stats.reviewed.n} reviewed, the model "
                f"agreed on {stats.reviewed.correct} ({percent(stats.reviewed.value)})"
            )
    return "\n".join(lines) + "\n"
