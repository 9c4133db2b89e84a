"""The packaged default model: an INT8 artifact with its model card, accurate on the proxy data."""

from __future__ import annotations

from environment import shared_data
from servetune.config import FOOD11_CLASSES
from servetune.model.artifact import default_model_path, read_spec
from servetune.model.evaluate import evaluate


def test_default_model_is_a_small_int8_food11_artifact():
    path = default_model_path()
    assert path.is_file(), f"{path} is missing"
    assert path.stat().st_size <= 6 * 1024 * 1024
    spec = read_spec(path)
    assert spec.precision == "int8" and spec.class_names == FOOD11_CLASSES
    assert "not Food-11" in spec.data
    card = (path.parent / "MODEL_CARD.md").read_text()
    assert "proxy" in card and "food101-fullres" in card


def test_default_model_accuracy_on_the_proxy_evaluation_split():
    data = shared_data("food11-proxy")
    result = evaluate(default_model_path(), data, "evaluation", per_class=15)
    assert result.count == 165
    # chance is 9 %; the full split's figures are in MODEL_CARD.md
    assert result.accuracy >= 0.45, result.per_class_accuracy


def test_default_model_on_full_resolution_photos():
    data = shared_data("food101-fullres")
    result = evaluate(default_model_path(), data, "evaluation", per_class=20)
    assert result.count == 80
    assert result.accuracy >= 0.35, result.per_class_accuracy
