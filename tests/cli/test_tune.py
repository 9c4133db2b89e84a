"""`servetune simulate` and `servetune tune calibrate` as a user runs them: a real process, exit codes, messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from command import servetune
from servetune.analyze.stats import summarize
from servetune.model.artifact import default_model_path, file_sha256
from servetune.tune.calibration import DEFAULT_CALIBRATION


def test_simulate_prints_the_statistics_and_writes_a_run_folder_report_reads(tmp_path):
    result = servetune("simulate", "-c", "demo", "--profile", "quick", "--time-scale", "0.5",
                       "--out", str(tmp_path / "sim"), "--record")
    assert result.returncode == 0, result.stderr
    assert "memory requested" in result.stdout and "simulated" in result.stdout
    assert (tmp_path / "sim" / "requests.csv").is_file()
    summary = summarize(tmp_path / "sim")
    assert summary.okay > 100 and summary.max_replicas >= 1
    report = servetune("report", str(tmp_path / "sim"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "sim" / "report.html").is_file()
    again = servetune("simulate", "-c", "demo", "--out", str(tmp_path / "sim"))
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_simulate_json_matches_the_table_and_is_reproducible():
    first = servetune("simulate", "-c", "default", "--profile", "quick", "--json", "--seed", "3",
                      "--capacity", "cpu=2,memory=8Gi", "--backend", "local", "--node-cpu", "1.5")
    again = servetune("simulate", "-c", "default", "--profile", "quick", "--json", "--seed", "3",
                      "--capacity", "cpu=2,memory=8Gi", "--backend", "local", "--node-cpu", "1.5")
    assert first.returncode == 0, first.stderr
    statistics = json.loads(first.stdout)
    assert statistics == json.loads(again.stdout)
    assert {"memory_requested_KB", "transaction_rate", "response_time_s", "cpu_requested_core",
            "replica_seconds", "latency_p95_s", "failure_rate", "phases"} <= set(statistics)


@pytest.mark.parametrize(("args", "message"), [
    (["-c", "nosuchspec"], "no such spec file"),
    (["-c", "demo", "--profile", "nosuch"], "no such profile file"),
    (["-c", "demo", "--capacity", "cpu=lots"], "capacity 'cpu=lots'"),
    (["-c", "demo", "--backend", "mesos"], "--backend must be kubernetes or local"),
    (["-c", "demo", "--calibration", "/nonexistent/calibration.json"], "no such calibration file"),
])
def test_simulate_bad_input_is_a_clear_error(args, message):
    result = servetune("simulate", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_names_an_unknown_spec_field(tmp_path):
    spec = tmp_path / "typo.yaml"
    spec.write_text("replicas: 2\nrequests: {cpu: 0.5, memory_mb: 256}\nreplicaz: 3\n")
    result = servetune("simulate", "-c", str(spec))
    assert result.returncode == 2
    assert "typo.yaml" in result.stderr and "replicaz" in result.stderr


def test_calibrate_bad_input_is_a_clear_error(tmp_path):
    missing = servetune("tune", "calibrate", "--model", str(tmp_path / "none.onnx"), "--out", str(tmp_path))
    assert missing.returncode == 2 and "none.onnx: no such model file" in missing.stderr
    not_a_run = servetune("tune", "calibrate", "--from-run", str(tmp_path / "norun"), "--out", str(tmp_path))
    assert not_a_run.returncode == 2 and "norun: no such run folder" in not_a_run.stderr
    backend = servetune("tune", "calibrate", "--backend", "k8s", "--out", str(tmp_path))
    assert backend.returncode == 2 and "--backend must be local or kubernetes, not 'k8s'" in backend.stderr
    no_config = servetune("tune", "calibrate", "--backend", "kubernetes", "--kubeconfig", str(tmp_path / "kc"),
                          "--out", str(tmp_path))
    assert no_config.returncode != 0 and f"kubeconfig {tmp_path / 'kc'}: no such file" in no_config.stderr
    assert "Traceback" not in no_config.stderr


def test_simulate_warns_when_no_pod_fits_the_capacity():
    result = servetune("simulate", "-c", "fixed-1", "--profile", "quick", "--time-scale", "0.1",
                       "--capacity", "cpu=0.5,memory=8Gi", "--json")
    assert result.returncode == 0
    assert "every pod stays Pending" in result.stderr
    assert json.loads(result.stdout)["failure_rate"] == 1.0


def test_simulate_takes_other_works_cores_from_the_node():
    quick = ["-c", "fixed-1", "--profile", "quick", "--time-scale", "0.1", "--json"]
    alone = servetune("simulate", *quick, "--node-cpu", "2")
    shared = servetune("simulate", *quick, "--node-cpu", "2", "--others-cores", "1.7")
    assert alone.returncode == 0 and shared.returncode == 0, shared.stderr
    # the pod's 1 CPU limit on 0.3 cores left: slower than with the machine to itself
    assert json.loads(shared.stdout)["response_time_s"] > 2 * json.loads(alone.stdout)["response_time_s"]
    no_node = servetune("simulate", *quick, "--others-cores", "1")
    assert no_node.returncode == 2 and "--others-cores: other work takes cores of a node: give --node-cpu" in \
        no_node.stderr


def test_calibrate_from_a_run_writes_a_calibration_simulate_reads(tmp_path):
    run = Path(__file__).parents[1] / "data" / "recorded-hpa50"
    result = servetune("tune", "calibrate", "--from-run", str(run), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = tmp_path / "food11-lite0-112-int8-recorded-hpa50" / "calibration.json"
    assert written.is_file() and str(written) in result.stdout
    assert "the calibration it updates: GET /test" in result.stdout  # the figure beside what the run measured
    simulated = servetune("simulate", "-c", str(run / "spec.yaml"), "--profile", "quick", "--time-scale", "0.5",
                          "--calibration", str(written.parent), "--json")
    assert simulated.returncode == 0, simulated.stderr
    assert json.loads(simulated.stdout)["okay"] > 100


def test_simulate_warns_of_a_calibration_of_another_model_file_and_refuses_a_model_without_one(tmp_path):
    recorded = Path(__file__).parents[1] / "data" / "recorded-hpa50"  # measured with an earlier model file
    quick = ["--profile", "quick", "--time-scale", "0.1", "--json"]
    other = servetune("simulate", "-c", "default", *quick, "--calibration", str(recorded))
    assert other.returncode == 0, other.stderr
    assert (f"warning: {recorded} is a calibration of food11-lite0-112-int8 (food11-lite0-int8.onnx, sha256 "
            f"d61a6f25f65d), not of the spec's model default (food11-lite0-int8.onnx, sha256 "
            f"{file_sha256(default_model_path())[:12]}): simulating with it as given") in other.stderr
    own = servetune("simulate", "-c", "default", *quick, "--calibration", str(DEFAULT_CALIBRATION))
    assert own.returncode == 0 and "warning" not in own.stderr
    variant = tmp_path / "variant.onnx"
    variant.write_bytes(default_model_path().read_bytes() + b"\0")  # another model file: no calibration
    spec = tmp_path / "variant.yaml"
    spec.write_text(f"model: {variant}\nreplicas: 1\nrequests: {{cpu: 0.5, memory_mb: 256}}\n")
    none = servetune("simulate", "-c", str(spec), *quick)
    assert none.returncode == 2 and "Traceback" not in none.stderr
    assert f"error: {variant}: no calibration for this model (sha256 {file_sha256(variant)[:12]}); measure" in (
        none.stderr)


def test_the_search_bar_ends_before_the_verification_prints_anything(tmp_path, monkeypatch):
    """The bar is finished before the first real run starts, so it never shares the terminal with the run's
    live load table. The real run is replaced by what Ctrl-C at its start leaves (an interrupted run)."""
    import yaml
    from typer.testing import CliRunner

    from servetune.cli import app
    from servetune.tune import pipeline
    from servetune.tune.verify import Repeat, judge

    def interrupted(label, spec, spec_file, out, simulated, real, constraints, console=None):
        return judge(label, spec_file, [Repeat(out, "interrupted", "stopped by Ctrl-C", None)], simulated,
                     constraints)

    monkeypatch.setattr(pipeline, "verify", interrupted)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"cpu_request": [0.5, 1.0], "memory_request_mb": [128, 256], "replicas": [2, 3],
                                     "autoscaling": None}))
    result = CliRunner().invoke(app, ["tune", "--profile", "quick", "--out", str(tmp_path / "t"), "--space",
                                      str(space), "--budget", "4", "--population", "4", "--verify", "1",
                                      "--jobs", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    bar = max(i for i, line in enumerate(lines) if line.startswith("search "))
    first_run = min(i for i, line in enumerate(lines) if line.startswith("verify c"))
    assert bar < first_run, result.stderr
    assert "  FAILED verification (run interrupted (stopped by Ctrl-C)): no verified candidate passed" in (
        result.stdout)
