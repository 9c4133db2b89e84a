"""The variant table's measurements, on a tiny real artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from food11_folders import write_food11
from onnx_models import tiny_artifact
from servetune.serve.variant_profile import measure_in_subprocess, profile_artifact, read_table, write_table


def test_measuring_process_reports_latency_and_memory(tmp_path):
    model = tiny_artifact(tmp_path / "tiny.onnx")
    result = measure_in_subprocess(model, threads=1, runs=5)
    assert 0 < result["infer_ms_median"] <= result["infer_ms_p95"]
    assert result["request_ms_median"] >= result["infer_ms_median"]
    assert 20 < result["peak_rss_mb"] < 4000


def test_memory_is_the_serving_process_own_not_its_parent(tmp_path):
    model = tiny_artifact(tmp_path / "tiny.onnx")
    ballast = bytearray(600 * 1024 * 1024)  # the profiling parent holds 600 MB (as after training variants)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it is resident
    result = measure_in_subprocess(model, threads=1, runs=5)
    del ballast
    assert result["peak_rss_mb"] < 400


@pytest.fixture(scope="module")
def tiny_food11(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flat (original archive) layout, 4 images per class and split."""
    return write_food11(tmp_path_factory.mktemp("data") / "food11", "flat", per_class=4)


def test_profile_row_and_table_round_trip(tmp_path):
    data = write_food11(tmp_path / "food11", "flat", per_class=2, splits=("evaluation",))
    model = tiny_artifact(tmp_path / "tiny.onnx")
    row = profile_artifact(model, data, eval_per_class=2, runs=5)
    assert row.eval_images == 22 and 0 <= row.accuracy <= 1
    assert row.precision == "fp32" and row.input_size == 32 and row.size_mb >= 0
    write_table([row], tmp_path)
    assert read_table(tmp_path / "variants.json") == [row]
    assert (tmp_path / "variants.csv").read_text().splitlines()[0].startswith("name,backbone,input_size,precision")


def test_cli_builds_quick_variants_and_writes_the_table(tiny_food11, tmp_path):
    from typer.testing import CliRunner

    from servetune.cli import app

    out = tmp_path / "variants"
    result = CliRunner().invoke(app, [
        "model", "profile", "--data", str(tiny_food11), "--out", str(out), "--backbones", "lite0", "--sizes", "64",
        "--train-per-class", "4", "--eval-per-class", "2", "--runs", "5",
    ])
    assert result.exit_code == 0, result.output
    rows = read_table(out / "variants.json")
    assert [(r.backbone, r.input_size, r.precision) for r in rows] == [
        ("efficientnet-lite0", 64, "fp32"), ("efficientnet-lite0", 64, "int8")]
    assert rows[1].size_mb < rows[0].size_mb
    assert all(r.eval_images == 22 and r.infer_ms_median_1t > 0 for r in rows)
    bad = CliRunner().invoke(app, ["model", "profile", "--data", str(tiny_food11), "--out", str(out),
                                   "--precisions", "fp16"])
    assert bad.exit_code != 0 and "unknown precision fp16" in bad.output


def test_cli_profiles_only_the_given_artifacts_when_sizes_is_empty(tiny_food11, tmp_path):
    from typer.testing import CliRunner

    from servetune.cli import app

    model = tiny_artifact(tmp_path / "tiny.onnx")
    out = tmp_path / "variants"
    result = CliRunner().invoke(app, [
        "model", "profile", "--data", str(tiny_food11), "--out", str(out), "--sizes", "",
        "--artifact", str(model), "--eval-per-class", "2", "--runs", "5",
    ])
    assert result.exit_code == 0, result.output
    assert [Path(row.path) for row in read_table(out / "variants.json")] == [model]
    nothing = CliRunner().invoke(app, ["model", "profile", "--data", str(tiny_food11), "--out", str(out),
                                       "--sizes", ""])
    assert nothing.exit_code != 0 and "nothing to profile" in nothing.output


def test_record_stores_each_given_artifacts_figures_in_its_metadata(tiny_food11, tmp_path):
    from typer.testing import CliRunner

    from servetune.cli import app
    from servetune.model.artifact import read_spec

    model = tiny_artifact(tmp_path / "tiny.onnx")
    accuracy_before = read_spec(model).accuracy
    out = tmp_path / "variants"
    result = CliRunner().invoke(app, [
        "model", "profile", "--data", str(tiny_food11), "--out", str(out), "--sizes", "",
        "--artifact", str(model), "--eval-per-class", "2", "--runs", "5", "--record",
    ])
    assert result.exit_code == 0, result.output
    row = read_table(out / "variants.json")[0]
    profile = read_spec(model).profile
    assert profile["infer_ms_median_1t"] == row.infer_ms_median_1t > 0
    assert profile["peak_rss_mb"] == row.peak_rss_mb and profile["size_mb"] == row.size_mb
    assert "CPUs" in profile["machine"] and profile["date"].endswith("Z")
    assert read_spec(model).accuracy == accuracy_before  # the rest of the metadata is kept
