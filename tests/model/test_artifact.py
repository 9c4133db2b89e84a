from __future__ import annotations

import onnx
import pytest

from onnx_models import tiny_artifact, tiny_classifier, tiny_spec
from servetune.model.artifact import ArtifactError, read_spec


def test_spec_round_trips_through_the_onnx_file(tmp_path):
    path = tiny_artifact(tmp_path / "tiny.onnx")
    assert read_spec(path) == tiny_spec()


def test_onnx_without_metadata_is_a_clear_error(tmp_path):
    path = tmp_path / "bare.onnx"
    onnx.save_model(tiny_classifier(), str(path))
    with pytest.raises(ArtifactError, match="no servetune metadata"):
        read_spec(path)


def test_non_onnx_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("this is not a model")
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        read_spec(path)
    with pytest.raises(ArtifactError, match="no such model file"):
        read_spec(tmp_path / "missing.onnx")


def test_artifacts_without_a_decode_key_keep_the_reduced_decode_they_were_measured_with():
    from servetune.config import FOOD11_CLASSES, ModelSpec
    from servetune.model.artifact import spec_from_metadata, spec_to_metadata

    spec = ModelSpec(name="m", class_names=FOOD11_CLASSES, input_size=32, resize=36)
    metadata = spec_to_metadata(spec)
    assert spec_from_metadata(metadata).decode == "full"
    del metadata["servetune.decode"]
    assert spec_from_metadata(metadata).decode == "reduced"
