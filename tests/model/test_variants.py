"""A user's model and its variants (input sizes, INT8), measured on the evaluation split and cached."""

from __future__ import annotations

import json

import pytest

from food11_folders import write_food11
from onnx_models import centroid_artifact, tiny_artifact
from servetune.model.artifact import read_spec
from servetune.model.data import DataError
from servetune.model.variants import VariantError, VariantSettings, build_variants, chance_level


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_food11(tmp_path_factory.mktemp("food"), per_class=2, splits=("training", "evaluation"))


def test_the_model_its_smaller_sizes_and_int8_twins_are_measured_and_a_rerun_skips_them(tmp_path, data):
    source = centroid_artifact(tmp_path / "mine.onnx", data, input_size=32, crop="none", resize=32)
    settings = VariantSettings(sizes=(64, 32, 24), int8=True, int8_max_loss=1.0, int8_min_agreement=0.0)
    steps = []
    result = build_variants(source, data, tmp_path / "cache", settings, step=steps.append)
    assert [(v.name, v.input_size, v.precision) for v in result.variants] == [
        ("mine", 32, "fp32"), ("mine-24", 24, "fp32"), ("mine-int8", 32, "int8"), ("mine-24-int8", 24, "int8")]
    assert result.notes == []
    assert steps == ["import mine.onnx", "input size 24", "INT8 of mine", "INT8 of mine-24"]
    original = result.original
    assert original.accuracy > 0.5 and original.images == 22  # far above chance
    for variant in result.variants:
        assert read_spec(variant.path).accuracy == {"evaluation": variant.accuracy}
        assert variant.size_mb >= 0 and variant.path.parent == result.cache
    assert read_spec(result.variants[1].path).input_size == 24
    again = []
    rerun = build_variants(source, data, tmp_path / "cache", settings, step=again.append)
    assert again == [] and [v.path for v in rerun.variants] == [v.path for v in result.variants]
    result.variants[1].path.write_bytes(b"changed")  # a cached file that no longer matches is made again
    third = []
    build_variants(source, data, tmp_path / "cache", settings, step=third.append)
    assert third == ["input size 24"]


def test_the_int8_gate_compares_with_the_fp32_answers_kept_from_its_accuracy_and_reads_nothing_twice(
        tmp_path, data, monkeypatch):
    from rich.progress import Progress

    from servetune.model import variants
    from servetune.model.artifact import file_sha256

    source = centroid_artifact(tmp_path / "mine.onnx", data, input_size=32, crop="none", resize=32)
    settings = VariantSettings(sizes=(24,), int8=True, int8_max_loss=1.0, int8_min_agreement=0.0)
    progress = Progress(disable=True)
    result = build_variants(source, data, tmp_path / "cache", settings, progress=progress)
    passes = [task.description for task in progress.tasks]
    # one pass of each fp32 model (its accuracy) and one of each INT8 twin: the gate runs no fp32 model again
    assert passes.count("fp32 on evaluation") == 0 and passes.count("INT8 on evaluation") == 2
    fp32 = result.variants[0]
    assert len(fp32.predicted) == 22 and fp32.classes == 11
    for variant in result.variants:
        assert variant.sha256 == file_sha256(variant.path)  # carried: nothing after hashes it again
    read = []
    monkeypatch.setattr(variants, "read_spec", lambda path: read.append(path))
    again = build_variants(source, data, tmp_path / "cache", settings)
    assert read == [] and again.variants[0].predicted == fp32.predicted  # all from the cache


def test_an_int8_twin_refused_by_its_gate_is_listed_with_the_reason(tmp_path, data):
    source = centroid_artifact(tmp_path / "mine.onnx", data, input_size=32, crop="none", resize=32)
    settings = VariantSettings(sizes=(), int8=True, int8_max_loss=1.0, int8_min_agreement=1.01)
    result = build_variants(source, data, tmp_path / "cache", settings)
    [fp32, int8] = result.variants
    assert int8.path is None and int8.precision == "int8"
    assert "the top-1 agreement is below 101% (--int8-min-agreement)" in int8.refused
    assert result.written() == [fp32]
    cached = json.loads((result.cache / "variants.json").read_text())
    assert any(entry["refused"] for entry in cached.values())  # the refusal is remembered too


def test_a_model_at_chance_level_gets_a_note_instead_of_variants(tmp_path, data):
    source = tiny_artifact(tmp_path / "random.onnx", input_size=32)  # random weights: at chance here
    result = build_variants(source, data, tmp_path / "cache", VariantSettings(sizes=(24,), int8=True))
    assert len(result.variants) == 1
    [note] = result.notes
    assert "is at chance level" in note and "no variants are built" in note


def test_an_int8_model_gets_its_sizes_and_no_int8_twin(tmp_path, data):
    from servetune.model.artifact import update_spec

    source = centroid_artifact(tmp_path / "given-int8.onnx", data, input_size=32, crop="none", resize=32)
    update_spec(source, lambda spec: {"precision": "int8"})  # as an INT8 artifact says of itself
    result = build_variants(source, data, tmp_path / "cache", VariantSettings(sizes=(24,), int8=True))
    assert [(v.input_size, v.precision) for v in result.variants] == [(32, "int8"), (24, "int8")]
    assert result.notes == ["given-int8 is already INT8: no INT8 twins are made"]


def test_chance_level_is_chance_plus_three_standard_errors():
    assert chance_level(0.10, 11, 1650) is not None and chance_level(0.50, 11, 1650) is None
    assert chance_level(0.25, 11, 22) is not None  # on 22 images a quarter right is still luck


def test_a_missing_model_or_data_is_a_clear_error(tmp_path, data):
    with pytest.raises(VariantError, match="nothing.onnx: no such model file"):
        build_variants(tmp_path / "nothing.onnx", data, tmp_path / "cache")
    source = tiny_artifact(tmp_path / "tiny.onnx")
    with pytest.raises(DataError, match="nodata: no such data folder"):
        build_variants(source, tmp_path / "nodata", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # nothing was started


def test_a_plain_onnx_model_comes_in_with_the_preprocessing_given(tmp_path):
    import onnx

    from onnx_models import tiny_classifier
    from servetune.model.variants import ImportSettings, import_source

    plain = tmp_path / "plain.onnx"
    onnx.save_model(tiny_classifier(32), str(plain))  # no servetune metadata: the flags say how it is fed
    settings = ImportSettings(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation="bicubic")
    path = import_source(plain, tmp_path / "out" / "plain.onnx", settings)
    spec = read_spec(path)
    assert (spec.mean, spec.std, spec.interpolation, spec.layout, spec.input_size) == (
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic", "NCHW", 32)
    artifact = tiny_artifact(tmp_path / "artifact.onnx")
    copied = import_source(artifact, tmp_path / "out" / "artifact.onnx", settings)  # an artifact as it is
    assert copied.read_bytes() == artifact.read_bytes()


def test_a_plain_onnx_model_already_quantized_is_int8_and_a_failed_quantization_is_a_refused_twin(tmp_path, data):
    import onnx

    from servetune.model.artifact import default_model_path, update_spec
    from servetune.model.variants import ImportSettings, import_source

    packaged = onnx.load(str(default_model_path()))  # QDQ INT8
    kept = [prop for prop in packaged.metadata_props if not prop.key.startswith("servetune.")]
    del packaged.metadata_props[:]
    packaged.metadata_props.extend(kept)
    plain = tmp_path / "plain.onnx"
    onnx.save_model(packaged, str(plain))
    imported = import_source(plain, tmp_path / "imported.onnx", ImportSettings(mean=(0.5,) * 3, std=(0.5,) * 3))
    assert read_spec(imported).precision == "int8"  # its graph says so
    from servetune.model.quantize import calibration_images, quantize_int8

    right = centroid_artifact(tmp_path / "right.onnx", data, input_size=32, crop="none", resize=32)
    mislabelled = quantize_int8(right, tmp_path / "mislabelled.onnx", calibration_images(data, read_spec(right)))
    update_spec(mislabelled, lambda spec: {"precision": "fp32"})  # quantizing it again cannot work
    result = build_variants(mislabelled, data, tmp_path / "cache", VariantSettings(sizes=(), int8=True))
    [_, twin] = result.variants
    assert twin.path is None and twin.refused.startswith("INT8 quantization failed: ")
