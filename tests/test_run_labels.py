"""`servetune run` with labelling users: live accuracy measured through the one-machine cluster's held-out
flow, kept in run.json and labelling.json, in the report next to the offline figure, and equal to what the
replicas stored."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from food11_folders import write_split
from onnx_models import tiny_artifact
from servetune.cli import app
from servetune.deploy.local_postgres import postgres_bin
from servetune.labels.stats import label_stats
from servetune.labels.store import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def inputs(request, tmp_path: Path) -> tuple[Path, Path, Path]:
    if request.param == "postgresql" and postgres_bin("initdb") is None:
        pytest.skip("needs PostgreSQL's initdb (Debian package postgresql); .ci/run installs it")
    tiny_artifact(tmp_path / "tiny.onnx")
    spec = {
        "name": "tiny-app", "model": "tiny.onnx", "replicas": 2,
        "requests": {"cpu": 0.1, "memory_mb": 128}, "limits": {"cpu": 0.5, "memory_mb": 512},
        "termination_grace_period_seconds": 5,
        "labels": {"holdout_fraction": 0.5, "label_rate_per_min": 0, "database": request.param},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    profile = {"name": "short", "phases": [{"users": 2, "delay": 0.5, "duration_s": 30, "repeats": 2}]}
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    write_split(tmp_path / "photos", "evaluation", "flat", per_class=2)
    return tmp_path / "spec.yaml", tmp_path / "profile.yaml", tmp_path / "photos" / "evaluation"


def test_labelling_users_measure_live_accuracy_through_the_deployment(tmp_path: Path, inputs) -> None:
    spec, profile, photos = inputs
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "-c", str(spec), "--profile", str(profile), "--out", str(run_dir), "--time-scale", "0.1",
        "--labelling-users", "3", "--labelling-photos", str(photos), "--labelling-think", "0.1",
    ])
    assert result.exit_code == 0, result.output
    assert "live accuracy" in result.output
    record = json.loads((run_dir / "run.json").read_text())
    live = record["live_accuracy"]
    assert live["n"] >= 5 and live["refused"] == {}
    low, high = live["wilson_95"]
    assert low <= live["accuracy"] <= high
    tally = json.loads((run_dir / "labelling.json").read_text())
    assert tally["accepted"] == live["n"] and tally["uploads"] > tally["held_out"] > 0
    if "postgresql" in spec.read_text():
        # The cluster's own server: started and stopped with the replicas; its password nowhere in the folder.
        assert "label store: PostgreSQL on 127.0.0.1" in (run_dir / "events.log").read_text()
        assert not (run_dir / "cluster" / "labels.db").exists()
        for name in ("run.json", "deployment.yaml", "report.md", "events.log", "cluster/gunicorn.log"):
            passwords = re.findall(r"postgresql://servetune:([^@]*)@", (run_dir / name).read_text())
            assert set(passwords) <= {"***", "made-at-apply"}, name
        assert "made-at-apply" in (run_dir / "deployment.yaml").read_text()
        return
    # The replicas stored every accepted label, and the store's figure is the run's.
    store = open_store(str(run_dir / "cluster" / "labels.db"), create=False)
    [stored] = label_stats(store.uploads())
    store.close()
    assert (stored.accuracy.correct, stored.accuracy.n) == (live["correct"], live["n"])
    assert len({u for u in stored.confusion}) >= 1
    report = (run_dir / "report.md").read_text()
    assert "live accuracy" in report and "the accuracy above is offline" in report


def test_labelling_users_without_held_out_uploads_are_refused(tmp_path: Path, inputs) -> None:
    spec, profile, photos = inputs
    data = yaml.safe_load(spec.read_text())
    del data["labels"]
    spec.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, [
        "run", "-c", str(spec), "--profile", str(profile), "--out", str(tmp_path / "never"),
        "--labelling-users", "2", "--labelling-photos", str(photos),
    ])
    assert result.exit_code == 2 and "labels.holdout_fraction" in result.output
    assert not (tmp_path / "never").exists()
    missing = CliRunner().invoke(app, ["run", "-c", str(spec), "--out", str(tmp_path / "never"),
                                       "--labelling-users", "2"])
    assert missing.exit_code == 2 and "--labelling-photos" in missing.output
