"""`servetune model import food11.onnx`: a plain ONNX classifier with its preprocessing given on the command
line becomes an artifact that serves like any other."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image
from typer.testing import CliRunner

from onnx_models import tiny_classifier
from servetune.cli import app
from servetune.config import FOOD11_CLASSES
from servetune.model.artifact import read_spec
from servetune.model.source_check import sample_photos
from servetune.serve.predictor import Predictor

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def run_cli(*args: str):
    result = CliRunner().invoke(app, ["model", "import", *args])
    return result.exit_code, result.output


def torchvision_input(data: bytes, size: int) -> np.ndarray:
    """What a torchvision pipeline feeds: resize (bilinear), ToTensor (x/255, CHW), Normalize(mean, std)."""
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return ((pixels - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)


def test_plain_onnx_becomes_an_artifact_that_predicts_like_its_training_pipeline(tmp_path):
    source = tmp_path / "food11.onnx"
    onnx.save(tiny_classifier(32), str(source))  # [batch,3,32,32]: a fixed size, as torch.onnx writes

    code, output = run_cli(str(source), "--out", str(tmp_path / "my.onnx"), "--mean", "0.485,0.456,0.406",
                           "--std", "0.229,0.224,0.225")

    assert code == 0, output
    assert f"classes: {', '.join(FOOD11_CLASSES)}" in output
    assert "NCHW 32x32" in output and "output logits" in output
    spec = read_spec(tmp_path / "my.onnx")
    assert spec.mean == MEAN and spec.std == STD and spec.layout == "NCHW" and spec.decode == "full"
    photos = sample_photos(4)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": np.stack([torchvision_input(p, 32) for p in photos])})[0]
    predictor = Predictor(tmp_path / "my.onnx", threads=1, top_k=11)
    for photo, logits in zip(photos, expected, strict=True):
        prediction = predictor.predict(photo)
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert prediction.label == FOOD11_CLASSES[int(np.argmax(probabilities))]
        assert abs(prediction.probability - probabilities.max()) < 1e-4


def dynamic_size(model: onnx.ModelProto) -> onnx.ModelProto:
    for axis, name in ((2, "height"), (3, "width")):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    return model


def test_size_layout_and_classes_from_the_command_line(tmp_path):
    source = tmp_path / "dynamic.onnx"
    onnx.save(dynamic_size(tiny_classifier(32, classes=3)), str(source))  # height and width not fixed
    code, output = run_cli(str(source), "--out", str(tmp_path / "a.onnx"), "--input-size", "48",
                           "--classes", "a,b,c", "--resize-filter", "bicubic", "--softmax")
    assert code == 0, output
    spec = read_spec(tmp_path / "a.onnx")
    assert (spec.input_size, spec.class_names, spec.interpolation, spec.output) == (48, ["a", "b", "c"], "bicubic",
                                                                                    "probabilities")


def test_bad_onnx_imports_are_clear_errors(tmp_path):
    source = tmp_path / "dynamic.onnx"
    onnx.save(dynamic_size(tiny_classifier(32)), str(source))
    cases = [
        ((str(source),), "input size is not fixed in the graph; pass --input-size"),
        ((str(source), "--input-size", "32", "--classes", "a,b"), "gives 11 scores, not 2"),
        ((str(source), "--input-size", "32", "--std", "1,0,1"), "--std '1,0,1': give three numbers"),
        ((str(tmp_path / "none.onnx"),), "no such file"),
    ]
    (tmp_path / "text.onnx").write_text("not onnx")
    cases.append(((str(tmp_path / "text.onnx"),), "not an ONNX model"))
    for args, reason in cases:
        code, output = run_cli(*args)
        assert code != 0 and reason in output and "Traceback" not in output, (args, output)
