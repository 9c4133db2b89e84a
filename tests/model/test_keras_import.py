"""`servetune model import`: a Keras model built here becomes an artifact that predicts what Keras predicts."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras' first import, as the importer does
keras = pytest.importorskip("keras")

from servetune.cli import app
from servetune.config import FOOD11_CLASSES
from servetune.model.artifact import read_spec
from servetune.model.evaluate import evaluate
from servetune.model.keras_import import import_keras_model
from servetune.model.preprocess import load_and_preprocess
from servetune.model.quantize import Int8LossError, check_int8, quantize_checked

SIZE = 64


def small_classifier(size: int = SIZE, classes: int = 11) -> keras.Model:
    """Conv/BN/depthwise/pool layers like a MobileNet head, softmax over the classes; seeded weights."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(classes, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(0, 40))(x)
    return keras.Model(inputs, outputs, name="tiny_food")


def photo(width: int, height: int, seed: int) -> bytes:
    """A smooth random colour field (PNG, lossless) with real structure for the convolutions to see."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def keras_notebook_input(data: bytes, size: int) -> np.ndarray:
    """What the reference app feeds its Keras model: full decode, BICUBIC resize to size x size, x/255, NHWC."""
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def test_imported_artifact_predicts_what_keras_predicts(tmp_path):
    model = small_classifier()
    source = tmp_path / "model.keras"
    model.save(source)

    path, spec, _ = import_keras_model(source, tmp_path / "food.onnx")

    assert read_spec(path) == spec
    assert (spec.layout, spec.input_size, spec.crop, spec.output) == ("NHWC", SIZE, "none", "probabilities")
    assert spec.scale == pytest.approx(1 / 255) and spec.mean == (0, 0, 0) and spec.std == (1, 1, 1)
    assert (spec.interpolation, spec.decode) == ("bicubic", "full")
    assert spec.class_names == FOOD11_CLASSES and spec.precision == "fp32" and spec.name == "model"
    assert spec.backbone == "tiny_food"

    photos = [photo(w, h, seed) for seed, (w, h) in enumerate([(64, 64), (200, 120), (90, 300), (33, 47), (640, 480)])]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (input_meta,) = session.get_inputs()
    assert input_meta.shape[0] == "batch"  # dynamic: one batch of five below
    served = session.run(None, {input_meta.name: np.stack([load_and_preprocess(p, spec) for p in photos])})[0]
    expected = model.predict(np.stack([keras_notebook_input(p, SIZE) for p in photos]), verbose=0)

    assert served.shape == (5, 11)
    assert np.abs(served - expected).max() < 1e-4
    # The comparison means something only if the model's answers depend on the photo.
    assert np.abs(expected - expected[0]).max() > 0.05


def test_model_with_its_own_rescaling_gets_raw_pixels(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    outputs = keras.layers.Dense(11)(keras.layers.GlobalAveragePooling2D()(x))
    source = tmp_path / "rescaling.keras"
    keras.Model(inputs, outputs).save(source)

    _, spec, _ = import_keras_model(source, tmp_path / "rescaling.onnx", name="raw")

    assert spec.scale == 1.0 and spec.input_size == 32 and spec.output == "logits" and spec.name == "raw"


def run_cli(*args: str):
    result = CliRunner().invoke(app, ["model", "import", *args])
    return result.exit_code, result.output


def test_cli_import_with_own_class_names(tmp_path):
    source = tmp_path / "ten.keras"
    small_classifier(size=32, classes=3).save(source)

    code, output = run_cli(str(source), "--classes", "cat, dog,bird", "--out", str(tmp_path / "pets.onnx"))

    assert code == 0, output
    assert "3 classes" in output
    assert read_spec(tmp_path / "pets.onnx").class_names == ["cat", "dog", "bird"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("missing", "no such file"),
        ("text", "not a Keras file"),
        ("zip", "not a Keras file"),
        ("ten_classes", "does not give 11 class scores"),
        ("custom_layer", "unsupported layer 'Doubler'"),
        ("not_square", "not square"),
    ],
)
def test_cli_bad_models_are_clear_errors(tmp_path, make, reason):
    source = tmp_path / f"{make}.keras"
    if make == "text":
        source.write_text("not a model")
    elif make == "zip":
        import zipfile

        with zipfile.ZipFile(source, "w") as archive:
            archive.writestr("weights.bin", b"\0" * 16)
    elif make == "ten_classes":
        small_classifier(size=32, classes=10).save(source)
    elif make == "custom_layer":

        class Doubler(keras.layers.Layer):
            def call(self, x):
                return x * 2

        inputs = keras.Input((32, 32, 3))
        outputs = keras.layers.Dense(11)(keras.layers.Flatten()(Doubler()(inputs)))
        keras.Model(inputs, outputs).save(source)
    elif make == "not_square":
        inputs = keras.Input((32, 48, 3))
        outputs = keras.layers.Dense(11)(keras.layers.Flatten()(inputs))
        keras.Model(inputs, outputs).save(source)

    code, output = run_cli(str(source), "--out", str(tmp_path / "out.onnx"))

    assert code != 0
    assert str(source) in output and reason in output
    assert "Traceback" not in output
    assert not (tmp_path / "out.onnx").exists()


def write_photo_data(root, per_class: int = 2):
    for split, offset in (("training", 100), ("evaluation", 500)):
        folder = root / split
        folder.mkdir(parents=True)
        for label in range(11):
            for n in range(per_class):
                (folder / f"{label}_{n}.png").write_bytes(photo(48, 40, seed=offset + per_class * label + n))
    return root


def test_cli_import_writes_an_int8_twin_calibrated_on_training_images(tmp_path):
    data = write_photo_data(tmp_path / "data")
    source = tmp_path / "food.keras"
    small_classifier(size=32).save(source)

    code, output = run_cli(str(source), "--out", str(tmp_path / "food.onnx"), "--int8-data", str(data),
                           "--int8-max-loss", "100", "--int8-min-agreement", "0")

    assert code == 0, output
    found = re.search(r"INT8 on 22 evaluation images: accuracy [\d.]+% vs fp32 ([\d.]+)% \(change [-+][\d.]+ "
                      r"pp\), top-1 agreement [\d.]+%", output)
    assert found, output
    fp32_accuracy = read_spec(tmp_path / "food.onnx").accuracy["evaluation"]  # measured beside INT8, kept
    assert f"{fp32_accuracy:.2%}" == f"{found.group(1)}%"
    assert f"food.onnx: fp32 accuracy {fp32_accuracy:.2%} (evaluation) stored in the artifact" in output
    int8 = tmp_path / "food-int8.onnx"
    spec = read_spec(int8)
    assert spec.precision == "int8" and spec.layout == "NHWC" and spec.scale == pytest.approx(1 / 255)
    assert set(spec.accuracy) == {"evaluation"}
    images = np.stack([load_and_preprocess(photo(50, 50, seed), spec) for seed in range(8)])
    fp32 = ort.InferenceSession(str(tmp_path / "food.onnx"), providers=["CPUExecutionProvider"])
    quantized = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    assert any(node.op_type == "QuantizeLinear" for node in __import__("onnx").load(str(int8)).graph.node)
    expected = fp32.run(None, {"input": images})[0]
    actual = quantized.run(None, {"input": images})[0]
    assert np.abs(actual - expected).max() < 0.1  # INT8 approximates the fp32 scores


def test_int8_twin_losing_more_than_allowed_is_not_written(tmp_path):
    data = write_photo_data(tmp_path / "data", per_class=1)
    source = tmp_path / "food.keras"
    small_classifier(size=32).save(source)
    fp32, _, _ = import_keras_model(source, tmp_path / "food.onnx")

    check = check_int8(fp32, fp32, data)  # a model against itself: no loss, full agreement
    assert (check.loss, check.agreement, check.images) == (0.0, 1.0, 11)
    # with the fp32 model's answers from its own evaluation, only the INT8 model runs (no fp32 file needed)
    answers = evaluate(fp32, data).predicted
    assert check_int8(tmp_path / "absent.onnx", fp32, data, fp32_predicted=answers) == check
    progress = Progress(console=Console(file=io.StringIO()))
    with pytest.raises(Int8LossError, match=r"not written: INT8 on 11 evaluation images: .* exceeds -1 pp"):
        quantize_checked(fp32, tmp_path / "food-int8.onnx", data, max_loss=-0.01, progress=progress)
    assert not (tmp_path / "food-int8.onnx").exists()
    assert set(read_spec(fp32).accuracy) == {"evaluation"}  # the fp32 figure is kept though the twin is not
    # each long step showed its progress, to the end
    assert [(t.description, t.completed, t.total) for t in progress.tasks] == [
        ("INT8 calibration images", 11, 11), ("fp32 on evaluation", 11, 11), ("INT8 on evaluation", 11, 11)]


def test_int8_twin_agreeing_with_fp32_too_rarely_is_not_written_whatever_its_accuracy(tmp_path):
    data = write_photo_data(tmp_path / "data", per_class=1)
    source = tmp_path / "food.keras"
    small_classifier(size=32).save(source)
    fp32, _, _ = import_keras_model(source, tmp_path / "food.onnx")
    # no agreement can reach 101 %: the accuracy gate alone (any loss allowed) would have written it
    with pytest.raises(Int8LossError, match=r"top-1 agreement [\d.]+%; the top-1 agreement is below 101% "
                                            r"\(--int8-min-agreement\)"):
        quantize_checked(fp32, tmp_path / "food-int8.onnx", data, max_loss=1.0, min_agreement=1.01)
    assert not (tmp_path / "food-int8.onnx").exists()
    code, output = run_cli(str(source), "--int8-data", str(data), "--int8-min-agreement", "101")
    assert code == 2 and "--int8-min-agreement" in output and "Traceback" not in output  # a percentage


def test_cli_int8_without_usable_training_images_is_a_clear_error(tmp_path):
    source = tmp_path / "food.keras"
    small_classifier(size=32).save(source)
    code, output = run_cli(str(source), "--int8-data", str(tmp_path / "nowhere"))
    assert code != 0 and "nowhere" in output and "Traceback" not in output
