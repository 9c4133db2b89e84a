"""`servetune run --backend simulated`: the protocol on the simulator, the same run folder as a real run."""

from __future__ import annotations

import json

from command import servetune
from servetune.analyze.stats import summarize


def test_a_simulated_run_writes_the_run_folder_of_a_real_one_marked_simulated(tmp_path):
    out = tmp_path / "run"
    result = servetune("run", "--backend", "simulated", "-c", "demo", "--profile", "quick", "--time-scale", "0.5",
                       "--out", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["backend"] == "simulated" and record["simulated"] is True
    assert [step["status"] for step in record["steps"]] == ["completed"] * 5  # the load step's too
    assert record["servetune_version"] and "servetune" not in record  # the one version key
    for name in ("spec.yaml", "deployment.yaml", "load_output.csv", "resource_usage.csv", "requests.csv",
                 "load_profile.yaml", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    summary = summarize(out)
    assert summary.okay > 100 and summary.max_replicas >= 1
    # the short form gives the same statistics for the same seed
    short = servetune("simulate", "-c", "demo", "--profile", "quick", "--time-scale", "0.5", "--json")
    assert json.loads(short.stdout)["okay"] == summary.okay


def test_simulate_refuses_open_loop_for_a_profile_without_an_arrival_rate(tmp_path):
    profile = tmp_path / "burst.yaml"
    profile.write_text("name: burst\nphases:\n  - {users: 5, delay: 0, duration_s: 10}\n")
    result = servetune("simulate", "-c", "demo", "--profile", str(profile), "--mode", "open")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {profile}: phase 1: open-loop mode needs `rate` when delay is 0"
