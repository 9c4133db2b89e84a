"""`servetune model resize`: the same weights at another input size, or the reason a network cannot take one."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from food11_folders import write_food11
from onnx_models import tiny_artifact
from servetune.cli import app
from servetune.model.artifact import read_spec
from servetune.model.resize import ResizeError, resize_artifact


def run_cli(*args: str):
    result = CliRunner().invoke(app, ["model", "resize", *args])
    return result.exit_code, result.output


def scores(path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def test_a_pooling_network_serves_at_another_size_with_its_preprocessing_resized(tmp_path):
    source = tiny_artifact(tmp_path / "tiny.onnx", input_size=32, crop="center")  # resize 36, crop 32
    path, spec = resize_artifact(source, 24, tmp_path / "tiny-24.onnx")
    assert read_spec(path) == spec
    assert (spec.input_size, spec.resize, spec.crop) == (24, 27, "center")  # the crop ratio kept
    assert spec.accuracy == {} and spec.name == "tiny-24"  # the old size's accuracy does not carry over
    flat = np.full((1, 3, 24, 24), 0.3, dtype=np.float32)  # a flat image pools to the same mean at any size
    assert np.allclose(scores(path, flat), scores(source, np.full((1, 3, 32, 32), 0.3, dtype=np.float32)))
    assert ort.InferenceSession(str(path)).get_inputs()[0].shape == ["batch", 3, 24, 24]


def test_the_cli_measures_and_stores_the_accuracy_at_the_new_size(tmp_path):
    data = write_food11(tmp_path / "food", per_class=1, splits=("evaluation",))
    source = tiny_artifact(tmp_path / "tiny.onnx", input_size=32, crop="none", resize=32)
    code, output = run_cli(str(source), "--input-size", "20", "--data", str(data))
    assert code == 0, output
    resized = tmp_path / "tiny-20.onnx"
    spec = read_spec(resized)
    assert (spec.input_size, spec.resize) == (20, 20)
    assert f"accuracy at 20 px on 11 evaluation images: {spec.accuracy['evaluation']:.2%}" in output


def test_bad_resizes_are_clear_errors(tmp_path):
    source = tiny_artifact(tmp_path / "tiny.onnx")
    code, output = run_cli(str(tmp_path / "none.onnx"), "--input-size", "64")
    assert code == 2 and "none.onnx: no such model file" in output
    with pytest.raises(ResizeError, match="is the source model"):
        resize_artifact(source, 24, source)


os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras' first import, as the importer does
try:
    import keras
except ImportError:  # the keras extra is optional: the ONNX tests above run without it
    keras = None


def keras_source(tmp_path, top: str):
    """A small Keras classifier ending in global average pooling ('avg') or Flatten ('flatten') + Dense."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x) if top == "avg" else keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(11, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path / f"{top}.keras"
    model.save(path)
    return model, path


@pytest.mark.skipif(keras is None, reason="needs the keras extra")
def test_an_imported_keras_model_resized_answers_as_keras_does_at_that_size(tmp_path):
    from servetune.model.keras_import import import_keras_model

    model, source = keras_source(tmp_path, "avg")
    artifact, _, _ = import_keras_model(source, tmp_path / "avg.onnx")
    path, spec = resize_artifact(artifact, 40, tmp_path / "avg-40.onnx")
    anywhere = keras.Input((None, None, 3))  # the same layers and weights, any input size
    x = anywhere
    for layer in model.layers[1:]:
        x = layer(x)
    batch = np.random.default_rng(1).uniform(0, 1, (3, 40, 40, 3)).astype(np.float32)
    expected = keras.Model(anywhere, x).predict(batch, verbose=0)
    assert np.abs(scores(path, batch) - expected).max() < 1e-5
    assert (spec.input_size, spec.resize, spec.crop) == (40, 40, "none")


@pytest.mark.skipif(keras is None, reason="needs the keras extra")
def test_a_flatten_dense_network_cannot_be_resized_and_says_why(tmp_path):
    from servetune.model.keras_import import import_keras_model

    _, source = keras_source(tmp_path, "flatten")
    artifact, _, _ = import_keras_model(source, tmp_path / "flatten.onnx")
    code, output = run_cli(str(artifact), "--input-size", "48")
    assert code == 2 and "Traceback" not in output
    assert "cannot be resized to 48x48: its classifier reads a fixed-size feature map (no global pooling" in output
    assert not (tmp_path / "flatten-48.onnx").exists()
