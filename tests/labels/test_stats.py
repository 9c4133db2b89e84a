"""Live accuracy figures: Wilson intervals, per model and class, confusion, feedback and review apart."""

from __future__ import annotations

import time

import pytest

from label_uploads import make_upload
from servetune.labels.stats import format_stats, label_stats, wilson_interval


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [(8, 10, 0.4902, 0.9433), (50, 100, 0.4038, 0.5962), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0)],
)
def test_wilson_interval_matches_the_textbook_values(correct: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(correct, n) == pytest.approx((low, high), abs=5e-4)


def test_no_labels_give_the_whole_range() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def labelled(predicted: str, label: str | None, sha: str = "a" * 64, **kwargs):
    upload = make_upload(predicted=predicted, model_sha256=sha, **kwargs)[1]
    from dataclasses import replace

    if upload.kind == "holdout":
        return replace(upload, label=label, labelled_at=None if label is None else time.time())
    return replace(upload, feedback_label=label, feedback_at=time.time())


def test_held_out_labels_make_the_accuracy_and_nothing_else_does() -> None:
    uploads = [
        labelled("Egg", "Egg"), labelled("Egg", "Egg"), labelled("Egg", "Soup"), labelled("Soup", "Soup"),
        labelled("Soup", None),  # held out, never labelled
        labelled("Rice", "Egg", kind="shown"),  # 'wrong?' with a class: never part of the accuracy
        labelled("Rice", "Rice", sha="b" * 64),
    ]
    first, second = label_stats(uploads)
    assert (first.held_out, first.accuracy.correct, first.accuracy.n) == (5, 3, 4)
    assert first.per_class["Egg"].n == 2 and first.per_class["Soup"].correct == 1
    assert first.confusion[("Soup", "Egg")] == 1 and first.classes() == ["Egg", "Soup"]
    assert (first.shown, first.feedback) == (1, 1)
    assert (second.accuracy.correct, second.accuracy.n) == (1, 1)
    figures = first.as_dict()
    assert figures["confusion"]["counts"] == [[2, 0], [1, 1]]
    assert figures["live_accuracy"]["accuracy"] == 0.75


def test_the_text_names_each_figure_and_its_bias() -> None:
    text = format_stats(label_stats([labelled("Egg", "Egg"), labelled("Egg", "Soup"), labelled("Rice", None, kind="shown")]))
    assert "50.0 %" in text and "9.5 .. 90.5 %" in text
    assert "confusion matrix" in text and "not accuracy (biased samples)" in text
    assert format_stats([]) == "no uploads in the store for this period\n"
