"""`servetune monitor`: both backends from the command line, and its bad-input messages."""

from __future__ import annotations

import os
import time

import pytest
from typer.testing import CliRunner

from kubernetes_api import FakeApiServer, pod, pod_metrics, serve
from servetune.cli import app
from servetune.config import LocalClusterState, LocalReplica
from servetune.monitor.resource_csv import read_resource_csv


@pytest.fixture
def kubeconfig(tmp_path):
    api = FakeApiServer(
        pods=[pod("ml-app-1", "default", [{"name": "ml-app", "resources": {"requests": {"cpu": "250m"}}}])],
        metrics=[pod_metrics("ml-app-1", "default", {"ml-app": {"cpu": "100m", "memory": "100Mi"}})],
        namespaces={"default"},
    )
    server = serve(api)
    yield api.kubeconfig(tmp_path / "kubeconfig", namespace="default")
    server.shutdown()
    server.server_close()


def test_kubernetes_backend_writes_rows_for_the_duration(kubeconfig, tmp_path):
    out = tmp_path / "resource_usage.csv"
    result = CliRunner().invoke(app, ["monitor", "--kubeconfig", str(kubeconfig), "--interval", "0.1",
                                      "--duration", "0.35", "--out", str(out)])
    assert result.exit_code == 0, result.output
    samples = read_resource_csv(out)
    assert len(samples) == 4
    assert all(s.cpu_req_core == 0.25 and s.mem_use_KB == 102400 for s in samples)
    assert "replicas 1" in result.stderr and "4 samples" in result.stdout


def test_kubernetes_backend_configuration_error_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["monitor", "--kubeconfig", str(tmp_path / "none"), "--duration", "1"])
    assert result.exit_code == 2
    assert f"kubeconfig {tmp_path / 'none'}: no such file" in result.stderr


def test_unknown_backend_and_local_without_state_are_clear_errors(tmp_path):
    unknown = CliRunner().invoke(app, ["monitor", "--backend", "docker", "--out", str(tmp_path / "r.csv")])
    assert unknown.exit_code == 2 and "--backend must be kubernetes or local" in unknown.stderr
    no_state = CliRunner().invoke(app, ["monitor", "--backend", "local", "--out", str(tmp_path / "r.csv")])
    assert no_state.exit_code == 2
    assert "--state" in no_state.stderr or "local backend is unavailable" in no_state.stderr


def test_local_backend_measures_the_replica_processes(tmp_path):
    pytest.importorskip("servetune.monitor.local")
    state = tmp_path / "cluster.json"
    state.write_text(LocalClusterState(
        master_pid=os.getpid(), port=5000, cpu_request_cores=0.5, mem_request_bytes=256 * 1024**2,
        cpu_limit_cores=1.0, mem_limit_bytes=512 * 1024**2, limits_enforced=False, desired_replicas=1,
        replicas=[LocalReplica(pid=os.getpid(), phase="Running", ready=True, started_at=time.time())],
        updated_at=time.time(),
    ).model_dump_json())
    out = tmp_path / "resource_usage.csv"
    result = CliRunner().invoke(app, ["monitor", "--backend", "local", "--state", str(state), "--interval", "0.1",
                                      "--duration", "0.25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    samples = read_resource_csv(out)
    assert len(samples) == 3
    assert samples[0].n_replica == 1 and samples[0].mem_req_KB == 262144
    assert samples[-1].mem_use_KB > 10_000  # this test process's working set


def test_kubernetes_backend_missing_namespace_is_one_line(kubeconfig, tmp_path):
    out = tmp_path / "resource_usage.csv"
    result = CliRunner().invoke(app, ["monitor", "--kubeconfig", str(kubeconfig), "--namespace", "nosuch",
                                      "--duration", "0.2", "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "namespace 'nosuch' does not exist" in result.stderr
    assert not out.exists()
