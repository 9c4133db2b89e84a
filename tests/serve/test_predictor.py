import io

import numpy as np
import pytest
from PIL import Image

from onnx_models import tiny_artifact
from servetune.model.artifact import ArtifactError
from servetune.model.preprocess import ImageError
from servetune.serve.predictor import Predictor
from servetune.serve.sample_image import SIDE, generated_sample_jpeg


def jpeg(color, size=(300, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def test_predicts_a_distribution_over_the_artifact_classes(tiny_model):
    predictor = Predictor(tiny_model, threads=1, top_k=3)
    prediction = predictor.predict(generated_sample_jpeg())
    assert prediction.label in predictor.spec.class_names
    assert prediction.top_k[0][0] == prediction.label
    probabilities = [p for _, p in prediction.top_k]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < prediction.probability <= 1
    assert prediction.decode_ms > 0 and prediction.preprocess_ms > 0 and prediction.infer_ms > 0
    assert prediction.total_ms == pytest.approx(
        prediction.decode_ms + prediction.preprocess_ms + prediction.infer_ms
    )


def test_softmax_of_logits_sums_to_one_and_depends_on_the_image(tiny_model):
    predictor = Predictor(tiny_model, threads=1, top_k=11)
    red = predictor.predict(jpeg((250, 10, 10)))
    blue = predictor.predict(jpeg((10, 10, 250)))
    assert sum(p for _, p in red.top_k) == pytest.approx(1.0)
    assert red.top_k != blue.top_k


def test_probability_outputs_are_not_softmaxed_again(tmp_path):
    logits_model = Predictor(tiny_artifact(tmp_path / "logits.onnx"), threads=1, top_k=11)
    probs_model = Predictor(tiny_artifact(tmp_path / "probs.onnx", output="probabilities"), threads=1, top_k=11)
    image = jpeg((200, 120, 40))
    # The same graph: read as probabilities, the raw scores come back unchanged (no softmax).
    raw = dict(probs_model.predict(image).top_k)
    soft = dict(logits_model.predict(image).top_k)
    scores = np.array([raw[name] for name in logits_model.spec.class_names])
    expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    assert [soft[name] for name in logits_model.spec.class_names] == pytest.approx(expected.tolist())


def test_session_uses_the_requested_threads(tiny_model):
    predictor = Predictor(tiny_model, threads=3)
    assert predictor.session.get_session_options().intra_op_num_threads == 3
    assert predictor.session.get_session_options().inter_op_num_threads == 1
    # Predictions that overlap share the cores, one intra-op thread each.
    assert predictor.busy_session.get_session_options().intra_op_num_threads == 1


def test_overlapping_predictions_answer_like_a_lone_one(tiny_model):
    from concurrent.futures import ThreadPoolExecutor

    predictor = Predictor(tiny_model, threads=2, top_k=11)
    images = [jpeg((40 * i, 255 - 40 * i, 90), size=(200 + 37 * i, 150)) for i in range(6)]
    alone = [predictor.predict(image).top_k for image in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda image: predictor.predict(image).top_k, images * 5))
    for got, expected in zip(together, alone * 5):
        assert [label for label, _ in got] == [label for label, _ in expected]
        assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-5)
    assert predictor.in_progress == 0


def test_bad_images_raise_image_error(tiny_model):
    predictor = Predictor(tiny_model, threads=1)
    with pytest.raises(ImageError):
        predictor.predict(b"definitely not an image")


def test_missing_or_broken_model_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="no such model file"):
        Predictor(tmp_path / "absent.onnx", threads=1)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        Predictor(broken, threads=1)


def test_generated_sample_image_is_a_deterministic_1280_jpeg():
    data = generated_sample_jpeg()
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (SIDE, SIDE) == (1280, 1280)
    # Photo-like: hundreds of KB, not a flat image that would decode unrealistically fast.
    assert len(data) > 150_000
    generated_sample_jpeg.cache_clear()
    assert generated_sample_jpeg() == data
