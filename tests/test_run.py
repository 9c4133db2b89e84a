"""`servetune run` end to end on the one-machine cluster: a tiny model, a tiny profile, real processes.

Time is compressed (--time-scale 0.1: 3 s load runs, a monitor sample every 0.5 s, a 1.5 s HPA sync).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from deploy import test_kubernetes as kubernetes_contract
from environment import require_tool
from kubernetes_api import DeployedService
from onnx_models import tiny_artifact
from servetune.analyze.stats import summarize
from servetune.backend.protocol import BackendName
from servetune.cli import app
from servetune.config import RESOURCE_COLUMNS
from servetune.deploy import kubernetes as cluster_module
from servetune.deploy.local import read_state
from servetune.load.request_log import read_request_log
from servetune.load.siege import SIEGE_LOG_HEADER, read_siege_log
from servetune.model.artifact import file_sha256
from servetune.monitor.resource_csv import read_resource_csv
from servetune.run import RunOptions, evaluate, read_inputs

api_server = kubernetes_contract.api_server  # the loopback API server fixture
PROTOCOL = ["prepare", "warm-up", "apply", "load", "tear-down"]


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    tiny_artifact(tmp_path / "tiny.onnx")
    spec = {
        "name": "tiny-app",
        "model": "tiny.onnx",  # relative to the spec file
        "requests": {"cpu": 0.1, "memory_mb": 128},
        "limits": {"cpu": 0.5, "memory_mb": 512},
        "autoscaling": {"min_replicas": 1, "max_replicas": 2, "target_cpu_utilization": 50},
        "termination_grace_period_seconds": 5,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    profile = {
        "name": "tiny",
        "phases": [
            {"users": 3, "delay": 0.2, "duration_s": 30, "repeats": 2},
            {"users": 1, "delay": 1, "duration_s": 20, "repeats": 1},
        ],
    }
    path = tmp_path / "tiny-profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def run_cli(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def master_gone(run_dir: Path) -> None:
    state = read_state(run_dir / "cluster" / "state.json")
    assert state.replicas == [] and state.desired_replicas == 0
    try:
        assert psutil.Process(state.master_pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass


def test_the_whole_protocol_keeps_every_artifact(tmp_path, spec_file, profile_file):
    run_dir = tmp_path / "runs" / "tiny"
    began = time.monotonic()
    result = run_cli("-c", str(spec_file), "--profile", str(profile_file), "--out", str(run_dir),
                     "--time-scale", "0.1")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - began < 60
    assert f"report: {run_dir / 'report.html'}" in result.output
    for name in ("memory requested", "memory used", "transaction rate", "response time", "accuracy"):
        assert name in result.output

    for name in ("run.json", "spec.yaml", "deployment.yaml", "tiny.onnx", "load_output.csv", "requests.csv",
                 "resource_usage.csv", "load_profile.yaml", "summary.json", "report.html", "report.md",
                 "report_resources.png", "report_phases.png", "events.log"):
        assert (run_dir / name).is_file(), f"{name} missing from the run folder"

    events = (run_dir / "events.log").read_text().splitlines()
    assert any(" replicas " in line for line in events)  # the autoscaler's syncs
    # each line starts with one HH:MM:SS stamp, never two
    assert all(re.match(r"\d\d:\d\d:\d\d (?!\d\d:\d\d:\d\d)", line) for line in events), events[:3]

    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["failed_step"] is None and record["error"] is None
    assert [step["name"] for step in record["steps"]] == PROTOCOL
    assert all(step["status"] == "completed" and step["seconds"] >= 0 for step in record["steps"])
    assert record["backend"] == "local" and isinstance(record["limits_enforced"], bool)
    assert record["model"] == "tiny" and record["accuracy"] == 0.5
    assert record["model_file"]["sha256"] == file_sha256(tmp_path / "tiny.onnx")
    assert file_sha256(run_dir / "tiny.onnx") == record["model_file"]["sha256"]

    # What was kept is what ran: the spec reloads, the rendered objects are the spec's.
    kept_spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
    assert kept_spec["name"] == "tiny-app" and Path(kept_spec["model"]) == (tmp_path / "tiny.onnx").resolve()
    kinds = [doc["kind"] for doc in yaml.safe_load_all((run_dir / "deployment.yaml").read_text())]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler"]

    # CSV schemas: the reference monitor's columns, siege's --log header, our per-request log.
    assert (run_dir / "resource_usage.csv").read_text().splitlines()[0] == ",".join(RESOURCE_COLUMNS)
    assert (run_dir / "load_output.csv").read_text().startswith(SIEGE_LOG_HEADER)
    samples = read_resource_csv(run_dir / "resource_usage.csv")
    rows = read_siege_log(run_dir / "load_output.csv")
    requests = read_request_log(run_dir / "requests.csv")
    assert len(rows) == 3
    assert [round(row.elap_time) for row in rows] == [3, 3, 2]
    assert len(samples) >= 10  # 8 s at one sample per 0.5 s
    assert all(s.n_replica >= 1 and s.mem_req_KB == s.n_replica * 128 * 1024 for s in samples)
    assert any(s.mem_use_KB > 0 for s in samples)

    # One clock: the monitor's first sample, then the load at once; the monitor stops with the load.
    assert record["monitor_first_sample_at"] <= record["load_started_at"] < record["monitor_first_sample_at"] + 1
    assert record["load_ended_at"] - record["load_started_at"] == pytest.approx(8, abs=2)
    assert record["monitor_samples"] == len(samples)
    assert all(record["load_started_at"] - 1 <= r.start <= record["load_ended_at"] for r in requests)
    # What else the machine did during the load: the replicas and the load driver are the run's own CPU.
    host = record["host_cpu"]
    assert host["cores"] == os.cpu_count() and host["seconds"] == pytest.approx(8, abs=2)
    assert 0 < host["run_cores"] <= host["cores"] and host["others_cores"] >= 0
    assert host["others_cores"] == pytest.approx(max(0.0, host["busy_cores"] - host["run_cores"]), abs=0.002)
    assert "less this run's processes (the load driver, the cluster and its replicas)" in host["counts"]
    states = (run_dir / "replica_states.csv").read_text().splitlines()  # row for row with the reference CSV
    assert [line.split(",")[0] for line in states[1:]] == [s.time for s in read_resource_csv(
        run_dir / "resource_usage.csv")] and all(line.endswith(",0") for line in states[1:])

    # The summary agrees with the logs.
    summary = json.loads((run_dir / "summary.json").read_text())
    okay = sum(row.okay for row in rows)
    assert okay > 0 and summary["okay"] == okay
    assert summary["okay"] == sum(1 for r in requests if 0 < r.status < 400)
    assert summary["transaction_rate"] == pytest.approx(okay / sum(row.elap_time for row in rows))
    assert summary["memory_requested_KB"] == pytest.approx(sum(s.mem_req_KB for s in samples) / len(samples))
    assert summary["accuracy"] == 0.5 and summary["model"] == "tiny"
    assert summary == json.loads(summarize(run_dir).model_dump_json())

    assert summary["others_cores"] == host["others_cores"] and summary["machine_cores"] == host["cores"]

    page = (run_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 2 and "transaction rate" in page
    assert f"<td>CPU other processes took during the load</td><td>{host['others_cores']:.2f} of {host['cores']} cores" in page
    master_gone(run_dir)


def test_a_model_that_is_not_onnx_fails_at_the_warm_up_and_says_so(tmp_path, spec_file, profile_file):
    (tmp_path / "tiny.onnx").write_bytes(b"this is not an ONNX model")
    run_dir = tmp_path / "broken"
    result = run_cli("-c", str(spec_file), "--profile", str(profile_file), "--out", str(run_dir),
                     "--time-scale", "0.1")
    assert result.exit_code == 1
    assert "warm-up step failed" in result.output and "tiny.onnx" in result.output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["failed_step"] == "warm-up"
    assert "not a loadable ONNX model" in record["error"]
    assert [step["name"] for step in record["steps"]] == ["prepare", "warm-up", "tear-down"]
    assert record["steps"][1]["status"] == "failed"
    assert (run_dir / "spec.yaml").is_file() and record["model_file"]["sha256"]
    assert not (run_dir / "load_output.csv").exists()
    assert record["analysis"].startswith("skipped")


def test_a_port_in_use_fails_at_apply_and_tears_down(tmp_path, spec_file, profile_file):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run_dir = tmp_path / "port"
        result = run_cli("-c", str(spec_file), "--profile", str(profile_file), "--out", str(run_dir),
                         "--time-scale", "0.1", "--port", str(port), "--ready-timeout", "40")
    assert result.exit_code == 1, result.output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["failed_step"] == "apply"
    assert "gunicorn exited" in record["error"] and "in use" in record["error"].lower()
    assert record["steps"][-1] == {**record["steps"][-1], "name": "tear-down", "status": "completed"}
    master_gone(run_dir)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_the_load_tears_down_and_keeps_what_was_measured(tmp_path, spec_file, stop_signal):
    profile = tmp_path / "long.yaml"
    profile.write_text(yaml.safe_dump({"name": "long", "phases": [
        {"users": 2, "delay": 0.2, "duration_s": 30, "repeats": 20}]}))
    run_dir = tmp_path / "stopped"
    command = [sys.executable, "-m", "servetune.cli", "run", "-c", str(spec_file), "--profile", str(profile),
               "--out", str(run_dir), "--time-scale", "0.1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "COLUMNS": "120"})
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:  # until the first load run is in the log
            log = run_dir / "load_output.csv"
            if log.is_file() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=40)
    finally:
        process.kill()
    assert process.returncode == 130, output
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["failed_step"] == "load"
    assert [step["name"] for step in record["steps"]] == PROTOCOL
    assert record["steps"][-1]["status"] == "completed"
    assert record["analysis"] == "completed" and (run_dir / "report.html").is_file()
    rows = read_siege_log(run_dir / "load_output.csv")
    assert 1 <= len(rows) < 20
    master_gone(run_dir)


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["-c", "no-such-spec.yaml", "--profile", "quick"], ["no-such-spec.yaml", "no such spec file"]),
        (["-c", "default", "--profile", "no-such-profile"], ["no-such-profile", "no such profile file"]),
        (["-c", "default", "--backend", "docker"], ["--backend must be local or kubernetes"]),
        (["-c", "default", "--driver", "ab"], ["--driver must be builtin or siege"]),
    ],
)
def test_bad_input_is_a_clear_error_and_starts_nothing(tmp_path, args, phrases):
    run_dir = tmp_path / "never"
    result = run_cli(*args, "--out", str(run_dir))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output
    assert not run_dir.exists()


def test_a_spec_whose_model_is_missing_is_refused(tmp_path, spec_file):
    (tmp_path / "tiny.onnx").unlink()
    result = run_cli("-c", str(spec_file), "--profile", "quick", "--out", str(tmp_path / "never"))
    assert result.exit_code == 2 and "tiny.onnx: no such model file" in result.output.replace("\n", "")


def test_a_kubernetes_manifest_as_spec_is_read_once_with_its_notes(tmp_path):
    manifest = Path(__file__).parent / "data" / "course_manifests" / "deployment_hpa.yaml"
    inputs = read_inputs(RunOptions(spec=str(manifest), out=tmp_path / "never", backend=BackendName.KUBERNETES,
                                    profile="quick"))
    assert inputs.spec.autoscaling is not None and inputs.spec.autoscaling.max_replicas == 5
    assert any("image node-0:5000/ml-app:0.0.1: not carried over" in note for note in inputs.notes)
    assert not (tmp_path / "never").exists()


def test_a_folder_that_holds_a_run_is_not_overwritten(tmp_path, spec_file):
    run_dir = tmp_path / "done"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    result = run_cli("-c", str(spec_file), "--profile", "quick", "--out", str(run_dir))
    assert result.exit_code == 2 and "already holds a run" in result.output
    assert (run_dir / "run.json").read_text() == "{}"


def test_evaluate_without_a_model_copy_keeps_hash_and_accuracy(tmp_path, spec_file):
    profile = tmp_path / "short.yaml"
    profile.write_text(yaml.safe_dump({"name": "short", "phases": [{"users": 1, "delay": 0.1, "duration_s": 2}]}))
    result = evaluate(RunOptions(spec=str(spec_file), out=tmp_path / "nocopy", profile=str(profile),
                                 copy_model=False, monitor_interval_s=0.5, progress=False))
    assert result.status == "completed", result.record
    assert not list(result.run_dir.glob("*.onnx"))
    assert result.record.model_file.copied is False
    assert summarize(result.run_dir).accuracy == 0.5  # from run.json, since there is no artifact to read


# --- Kubernetes: the protocol's order against a loopback API server (see tests/deploy/test_kubernetes.py) ---


@pytest.fixture
def service(api_server):
    """A stand-in for the deployed service that notes how far the API requests had got at each request."""
    hits: list[int] = []
    stand_in = DeployedService(lambda number: hits.append(len(api_server.requests)))
    yield stand_in.url, hits
    stand_in.close()


def test_kubernetes_protocol_order_warm_up_apply_load_delete(tmp_path, api_server, service, monkeypatch):
    monkeypatch.setattr(cluster_module, "POLL_SECONDS", 0.01)
    url, hits = service
    spec = tmp_path / "k8s.yaml"
    spec.write_text("name: ml-app\nautoscaling: {min_replicas: 1, max_replicas: 3}\n")
    profile = tmp_path / "short.yaml"
    profile.write_text(yaml.safe_dump({"name": "short", "phases": [{"users": 2, "delay": 0.1, "duration_s": 20}]}))
    kubeconfig = api_server.kubeconfig(tmp_path / "kubeconfig")
    run_dir = tmp_path / "k8s-run"
    result = run_cli("-c", str(spec), "--backend", "kubernetes", "--kubeconfig", str(kubeconfig), "--url", url,
                     "--profile", str(profile), "--time-scale", "0.1", "--out", str(run_dir))
    assert result.exit_code == 0, result.output

    def index(method: str, ending: str) -> int:
        return next(i for i, r in enumerate(api_server.requests)
                    if r.method == method and r.path.endswith(ending) and not r.query.get("dryRun"))

    warmup_created = index("PATCH", "/deployments/ml-app-warmup")
    warmup_deleted = index("DELETE", "/deployments/ml-app-warmup")
    candidate_created = index("PATCH", "/deployments/ml-app")
    candidate_deleted = index("DELETE", "/deployments/ml-app")
    assert api_server.requests[warmup_created].body["spec"]["replicas"] == 5
    assert warmup_created < warmup_deleted < candidate_created < candidate_deleted
    # The warm-up's pods were listed until gone before the candidate was applied.
    assert any(r.method == "GET" and "pods" in r.path and "ml-app-warmup" in str(r.query)
               for r in api_server.requests[warmup_deleted:candidate_created])
    assert hits and all(candidate_created < hit <= candidate_deleted for hit in hits)
    assert ("horizontalpodautoscalers", "default", "ml-app") not in api_server.objects

    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["backend"] == "kubernetes"
    assert [step["name"] for step in record["steps"]] == PROTOCOL
    assert record["url"] == url and record["limits_enforced"] is True
    samples = read_resource_csv(run_dir / "resource_usage.csv")
    assert samples and all(s.n_replica == 1 for s in samples)  # the fake cluster's one ready pod
    assert (run_dir / "report.html").is_file()


def test_the_siege_driver_fills_the_same_run_folder(tmp_path, spec_file):
    require_tool("siege")
    profile = tmp_path / "siege.yaml"
    profile.write_text(yaml.safe_dump({"name": "siege", "phases": [{"users": 2, "delay": 0.5, "duration_s": 2}]}))
    result = evaluate(RunOptions(spec=str(spec_file), out=tmp_path / "siege-run", profile=str(profile),
                                 driver="siege", monitor_interval_s=0.5, progress=False))
    assert result.status == "completed", result.record
    rows = read_siege_log(result.run_dir / "load_output.csv")
    assert len(rows) == 1 and rows[0].okay > 0
    assert (result.run_dir / "load_profile.yaml").is_file() and (result.run_dir / "report.html").is_file()
    assert summarize(result.run_dir).okay == rows[0].okay


def test_a_run_folder_that_cannot_be_created_is_a_clear_error(tmp_path, spec_file):
    (tmp_path / "a-file").write_text("")
    result = run_cli("-c", str(spec_file), "--profile", "quick", "--out", str(tmp_path / "a-file" / "run"))
    assert result.exit_code == 2 and "cannot write the run folder" in result.output
    assert "Traceback" not in result.output


def test_a_deployment_that_dies_during_the_load_fails_the_run_and_keeps_the_rows(tmp_path, spec_file):
    profile = tmp_path / "long.yaml"
    profile.write_text(yaml.safe_dump({"name": "long", "phases": [
        {"users": 2, "delay": 0.2, "duration_s": 2, "repeats": 20}]}))
    run_dir = tmp_path / "died"

    def kill_the_master_after_one_run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log = run_dir / "load_output.csv"
            if log.is_file() and len(log.read_text().splitlines()) >= 2:
                os.kill(read_state(run_dir / "cluster" / "state.json").master_pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_master_after_one_run, daemon=True)
    killer.start()
    result = evaluate(RunOptions(spec=str(spec_file), out=run_dir, profile=str(profile), monitor_interval_s=0.5,
                                 progress=False))
    killer.join()
    assert result.status == "failed" and result.record.failed_step == "load"
    assert "gunicorn exited" in result.record.error
    assert [step.name for step in result.record.steps] == PROTOCOL
    rows = read_siege_log(run_dir / "load_output.csv")
    assert 1 <= len(rows) < 20 and rows[0].okay > 0
    assert result.record.analysis == "completed" and summarize(run_dir).okay >= rows[0].okay
