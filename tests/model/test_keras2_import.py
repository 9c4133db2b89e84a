"""Keras 2 files written by TensorFlow 2.14 (tests/data/keras2, made by its make_fixtures.py) import without
TensorFlow and answer what TensorFlow answered, offline and through a running server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras' first import, as the importer does
pytest.importorskip("keras")

from servers import running_server
from servetune.cli import app
from servetune.config import FOOD11_CLASSES
from servetune.model.keras_import import import_keras_model
from servetune.model.preprocess import load_and_preprocess
from servetune.model.source_check import reference_input

FIXTURES = Path(__file__).parents[1] / "data" / "keras2"
EXPECTED = json.loads((FIXTURES / "predictions.json").read_text())
MODEL_FILES = sorted(EXPECTED["models"])
PHOTOS = [(FIXTURES / "photos" / name).read_bytes() for name in EXPECTED["photos"]]


def tf_predictions(file_name: str) -> np.ndarray:
    return np.asarray(EXPECTED["models"][file_name], dtype=np.float64)


def test_fixtures_cover_the_course_models():
    bases = {name.split("-")[0] for name in MODEL_FILES}
    assert bases == {"vgg16", "mobilenetv2", "efficientnet", "resnet"}
    assert {Path(name).suffix for name in MODEL_FILES} == {".keras", ".h5"}
    assert {name.split("-")[1].split(".")[0] for name in MODEL_FILES} == {"sequential", "functional"}
    assert EXPECTED["tensorflow"] == "2.14.0"
    # The comparisons mean something only if TF's answers depend on the photo.
    for name in MODEL_FILES:
        assert len(set(tf_predictions(name).argmax(axis=1))) >= 5, name


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Each fixture file imported once (about 5 s each on two cores), shared by the tests below."""
    done = {}

    def get(file_name: str):
        if file_name not in done:
            out = tmp_path_factory.mktemp("keras2") / "model.onnx"
            done[file_name] = import_keras_model(FIXTURES / file_name, out)
        return done[file_name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("file_name", MODEL_FILES)
def test_keras2_file_predicts_what_tensorflow_predicted(imported, file_name):
    path, spec, agreement = imported(file_name)

    assert (spec.decode, spec.interpolation, spec.crop, spec.layout) == ("full", "bicubic", "none", "NHWC")
    assert spec.input_size == EXPECTED["input_size"] and spec.output == "probabilities"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    # The same arrays TF was fed, and the artifact's own preprocessing of the photos: both match TF.
    fed_as_tf = session.run(None, {name: np.stack([reference_input(p, spec) for p in PHOTOS])})[0]
    served = session.run(None, {name: np.stack([load_and_preprocess(p, spec) for p in PHOTOS])})[0]
    expected = tf_predictions(file_name)
    assert np.abs(fed_as_tf - expected).max() < 1e-4
    assert np.abs(served - expected).max() < 1e-4
    assert agreement.top1_agree == agreement.photos and agreement.max_abs_diff < 1e-4


def test_cli_says_a_keras2_file_and_prints_the_agreement(tmp_path):
    result = CliRunner().invoke(
        app, ["model", "import", str(FIXTURES / "vgg16-sequential.h5"), "--out", str(tmp_path / "vgg.onnx")]
    )
    assert result.exit_code == 0, result.output
    assert "full decode, bicubic resize to 32, x*0.00392157" in result.output
    assert "agreement with Keras on 8 sample photos: top-1 8/8" in result.output


def test_broken_keras2_file_names_its_version(tmp_path):
    import zipfile

    source = tmp_path / "broken.keras"
    with zipfile.ZipFile(FIXTURES / "resnet-sequential.keras") as original, zipfile.ZipFile(source, "w") as copy:
        for item in original.namelist():
            data = original.read(item)
            if item == "config.json":
                data = data.replace(b'"class_name": "Dense"', b'"class_name": "NoSuchLayer"')
            copy.writestr(item, data)
    result = CliRunner().invoke(app, ["model", "import", str(source), "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code != 0
    assert "a Keras 2.14.0 file, written by TensorFlow's tf.keras" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize("file_name", ["mobilenetv2-sequential.keras", "vgg16-functional.h5"])
def test_served_answers_agree_with_tensorflow(imported, file_name):
    path, _, _ = imported(file_name)
    expected = tf_predictions(file_name).argmax(axis=1)
    with running_server("--model", str(path), "--threads", "1") as (_, url):
        answers = [
            httpx.post(f"{url}/predict", files={"file": ("photo.jpg", photo)}, timeout=30).json() for photo in PHOTOS
        ]
    labels = [answer["prediction"] for answer in answers]
    assert labels == [answer["top_k"][0]["label"] for answer in answers]
    served = np.array([FOOD11_CLASSES.index(label) for label in labels])
    assert (served == expected).mean() >= 0.99

