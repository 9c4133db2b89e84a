"""Evaluation metrics on known inputs, and evaluation of a real (tiny) artifact on a synthetic split."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from onnx_models import tiny_artifact
from servetune.cli import app
from servetune.model.artifact import read_spec
from servetune.model.data import read_split
from servetune.model.evaluate import (
    EvaluationError,
    evaluate,
    expected_calibration_error,
    metrics,
    write_outputs,
)

NAMES = ["a", "b", "c", "d"]


def test_accuracy_top3_confusion_and_per_class():
    probabilities = np.array([
        [0.7, 0.1, 0.1, 0.1],  # a -> a
        [0.1, 0.6, 0.2, 0.1],  # b -> b
        [0.5, 0.3, 0.15, 0.05],  # c -> a, c third
        [0.4, 0.3, 0.2, 0.1],  # d -> a, d fourth
    ])
    labels = np.array([0, 1, 2, 3])
    result = metrics(probabilities, labels, NAMES, "m", "evaluation", [])
    assert result.accuracy == 0.5
    assert result.top3_accuracy == 0.75
    assert result.confusion == [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert result.per_class_accuracy == {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}


def test_calibration_error():
    labels = np.array([0, 0, 0, 0])
    confident_right = np.array([[1.0, 0.0]] * 4)
    assert expected_calibration_error(confident_right, labels) == pytest.approx(0.0)
    confident_wrong = np.array([[0.0, 1.0]] * 4)
    assert expected_calibration_error(confident_wrong, labels) == pytest.approx(1.0)
    # 80 % confidence, right 3 times in 4: |0.75 - 0.8| = 0.05
    assert expected_calibration_error(np.array([[0.8, 0.2]] * 4), np.array([0, 0, 0, 1])) == pytest.approx(0.05)


def test_no_readable_images_is_an_error():
    with pytest.raises(EvaluationError, match="no readable images"):
        metrics(np.zeros((0, 4)), np.zeros(0, dtype=int), NAMES, "m", "evaluation", [])


def test_evaluate_artifact_skips_corrupt_images_and_writes_outputs(make_food11, tmp_path):
    data = make_food11("class_name", per_class=2, splits=("evaluation",))
    (data / "evaluation" / "Soup" / "photo 0.jpg").write_bytes(b"\xff\xd8\xff garbage")
    model = tiny_artifact(tmp_path / "tiny.onnx")
    result = evaluate(model, data, "evaluation")
    assert result.count == 21
    assert [p.endswith("photo 0.jpg") for p, _ in result.skipped] == [True]
    assert sum(map(sum, result.confusion)) == 21
    # each photo's top-1 class in the split's order, -1 for the unreadable one; not in metrics.json
    assert len(result.predicted) == 22 and result.predicted.count(-1) == 1
    samples = read_split(data, "evaluation", require_all_classes=False).samples
    right = sum(p == sample.label for p, sample in zip(result.predicted, samples, strict=True))
    assert right == sum(result.confusion[k][k] for k in range(11))
    assert "predicted" not in result.summary()
    paths = write_outputs(result, tmp_path / "out")
    assert all(path.stat().st_size > 0 for path in paths.values())
    assert len(paths["csv"].read_text().splitlines()) == 12


def test_cli_eval_records_the_accuracy_in_the_artifact_under_a_name(make_food11, tmp_path):
    data = make_food11("flat", per_class=2, splits=("evaluation",))
    model = tiny_artifact(tmp_path / "tiny.onnx")
    before = read_spec(model).accuracy
    result = CliRunner().invoke(app, ["model", "eval", str(model), "--data", str(data), "--record", "fullres"])
    assert result.exit_code == 0, result.output
    accuracy = evaluate(model, data, "evaluation").accuracy
    assert read_spec(model).accuracy == {**before, "fullres": round(accuracy, 4)}
    assert "fullres" not in before
    refused = CliRunner().invoke(app, ["model", "eval", "--data", str(data), "--via-http", "http://127.0.0.1:9",
                                       "--record", "fullres"])
    assert refused.exit_code != 0
    assert "--record stores the accuracy in an artifact file" in refused.output and "Traceback" not in refused.output
