"""The one-machine cluster with real gunicorn workers: scaling by the HPA rule, limits, restarts, cleanup.

Time constants are compressed (time_scale 0.1: 1.5 s sync period, 30 s scale-down stabilisation).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image

from onnx_models import tiny_artifact
from servetune.config import AutoscalingSpec, DeploymentSpec, ResourceAmounts
from servetune.deploy.footprint import measure_footprint
from servetune.deploy.local import LocalCluster, LocalClusterError, read_state
from servetune.host.cgroups import CGROUP_ROOT, ReplicaLimits, create_replica_cgroups
from servetune.monitor.local import monitor_local
from servetune.monitor.resource_csv import read_resource_csv

TIME_SCALE = 0.1


def cgroups_writable() -> bool:
    cgroups, _ = create_replica_cgroups("probe-test", ReplicaLimits(0.5, 64 * 2**20))
    if cgroups is None:
        return False
    cgroups.remove_all()
    return cgroups.cpu_parent is not None and cgroups.memory_parent is not None


def spec(**changes) -> DeploymentSpec:
    fields = {
        "requests": ResourceAmounts(cpu=0.1, memory_mb=128),
        "limits": ResourceAmounts(cpu=0.5, memory_mb=512),
        "replicas": 1,
        "autoscaling": AutoscalingSpec(min_replicas=1, max_replicas=3, target_cpu_utilization=50),
        "termination_grace_period_seconds": 5,
    }
    fields.update(changes)
    return DeploymentSpec(**fields)


def assert_gone(pids: set[int]) -> None:
    for pid in pids:
        try:
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"process {pid} outlived the cluster"
        except psutil.NoSuchProcess:
            pass


def hammer(url: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            try:
                client.get(url)
            except httpx.HTTPError:
                time.sleep(0.05)


@pytest.mark.slow
def test_load_scales_up_then_down_after_stabilisation(tmp_path: Path):
    model = tiny_artifact(tmp_path / "tiny.onnx")
    events: list[str] = []
    cluster = LocalCluster(spec(), model, workdir=tmp_path / "cluster", time_scale=TIME_SCALE,
                           on_event=events.append)
    csv_path = tmp_path / "resource_usage.csv"
    monitor_stop = threading.Event()
    seen: list[tuple[float, int]] = []  # (time, desired replicas)
    pids: set[int] = set()
    with cluster:
        cluster.wait_ready(90)
        monitor = threading.Thread(
            target=monitor_local, args=(cluster.state_path, csv_path),
            kwargs={"interval_s": 5 * TIME_SCALE, "stop_event": monitor_stop},
        )
        monitor.start()
        master = cluster.state().master_pid
        pids.add(master)
        load_stop = threading.Event()
        users = [threading.Thread(target=hammer, args=(f"http://127.0.0.1:{cluster.port}/test", load_stop))
                 for _ in range(4)]
        for user in users:
            user.start()
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                state = cluster.state()
                pids.update(r.pid for r in state.replicas if r.pid)
                seen.append((time.monotonic(), state.desired_replicas))
                if state.desired_replicas == 3 and sum(r.ready for r in state.replicas) == 3:
                    break
                time.sleep(0.2)
            time.sleep(1.0)
        finally:
            load_stop.set()
            for user in users:
                user.join()
        load_stopped = time.monotonic()
        assert max(replicas for _, replicas in seen) == 3, events
        down_at = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = cluster.state()
            pids.update(r.pid for r in state.replicas if r.pid)
            seen.append((time.monotonic(), state.desired_replicas))
            if down_at is None and state.desired_replicas < 3:
                down_at = time.monotonic()
            if state.desired_replicas == 1:
                break
            time.sleep(0.2)
        assert cluster.state().desired_replicas == 1, events
        # Nothing comes down before the 30 s window has passed since the last busy recommendation
        # (at most one sync period before the load stopped).
        assert down_at is not None and down_at - load_stopped >= 30 - 1.5 - 2, events
        time.sleep(1.0)
        monitor_stop.set()
        monitor.join()
        state = read_state(cluster.state_path)
        assert state.restarts == 0
    assert_gone(pids)
    samples = read_resource_csv(csv_path)
    replicas = [s.n_replica for s in samples]
    assert max(replicas) == 3 and replicas[-1] == 1, replicas
    assert max(s.cpu_use_core for s in samples) > 0.1
    busiest = max(samples, key=lambda s: s.n_replica)
    assert busiest.cpu_req_core == pytest.approx(0.3) and busiest.mem_req_KB == 3 * 128 * 1024
    assert busiest.mem_use_KB > 0
    # The final state written at stop lists no replicas.
    assert read_state(cluster.state_path).replicas == []


@pytest.mark.skipif(not cgroups_writable(), reason="needs writable cgroup cpu and memory controllers")
def test_limits_are_enforced_per_replica_and_oom_kills_are_restarts(tmp_path: Path):
    model = tiny_artifact(tmp_path / "tiny.onnx")
    fixed = spec(autoscaling=None)
    with LocalCluster(fixed, model, workdir=tmp_path / "ok", time_scale=TIME_SCALE) as cluster:
        cluster.wait_ready(60)
        time.sleep(1.2)
        state = read_state(cluster.state_path)
        assert state.limits_enforced and "enforced" in state.limits_note
        pid = state.replicas[0].pid
        paths = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        cpu_dir = CGROUP_ROOT / "cpu" / paths["cpu"].lstrip("/")
        memory_dir = CGROUP_ROOT / "memory" / paths["memory"].lstrip("/")
        assert cpu_dir.name == f"replica-{pid}"
        assert int((cpu_dir / "cpu.cfs_quota_us").read_text()) == 50_000
        assert int((cpu_dir / "cpu.cfs_period_us").read_text()) == 100_000
        assert int((memory_dir / "memory.limit_in_bytes").read_text()) == 512 * 2**20
    assert not cpu_dir.exists() and not cpu_dir.parent.exists(), "replica cgroups left behind"



def test_a_memory_limit_below_the_models_footprint_fails_at_once(tmp_path: Path):
    model = tiny_artifact(tmp_path / "tiny.onnx")
    tight = spec(autoscaling=None, requests=ResourceAmounts(cpu=0.1, memory_mb=16),
                 limits=ResourceAmounts(cpu=0.5, memory_mb=24))
    began = time.monotonic()
    with pytest.raises(LocalClusterError, match=r"limits.memory_mb 24 is below the model's measured footprint: "
                       r"loading and warming up tiny.onnx took \d+ MiB"):
        LocalCluster(tight, model, workdir=tmp_path / "oom", time_scale=TIME_SCALE).start()
    assert time.monotonic() - began < 30
    assert not (tmp_path / "oom" / "state.json").exists()  # nothing was started


@pytest.mark.slow
def test_a_replica_killed_for_memory_is_restarted_with_its_reason(tmp_path: Path):
    """A limit above the model's footprint but below what one huge image takes to decode: the kernel kills
    the replica, and the restart says OOMKilled (from the replica's memory cgroup)."""
    if not cgroups_writable():
        pytest.skip("cgroups are not writable here: memory limits cannot be enforced")
    model = tiny_artifact(tmp_path / "tiny.onnx")
    limit_mb = measure_footprint(model) // 2**20 + 16
    tight = spec(autoscaling=None, requests=ResourceAmounts(cpu=0.1, memory_mb=64),
                 limits=ResourceAmounts(cpu=0.5, memory_mb=limit_mb))
    buffer = io.BytesIO()
    Image.new("LA", (6320, 6320), (90, 255)).save(buffer, "PNG")  # 152 MiB once decoded
    events: list[str] = []
    with LocalCluster(tight, model, workdir=tmp_path / "oom", time_scale=TIME_SCALE, on_event=events.append) as cluster:
        cluster.wait_ready(60)
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"http://127.0.0.1:{cluster.port}/predict", files={"file": ("big.png", buffer.getvalue())},
                       timeout=60).raise_for_status()
        deadline = time.monotonic() + 30
        while cluster.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cluster.restart_reasons == {"OOMKilled": 1}, cluster.log_tail()
        time.sleep(1.2)
        assert read_state(cluster.state_path).restart_reasons == {"OOMKilled": 1}
        cluster.wait_ready(60)  # it comes back after its back-off
    assert any("exited unasked (OOMKilled): restart #1, back-off 1 s (CrashLoopBackOff)" in e for e in events)


@pytest.mark.slow
def test_crashing_replicas_back_off_like_the_kubelet(tmp_path: Path):
    """Each unasked exit doubles the wait before the replacement starts: 10 s, 20 s, 40 s x time_scale."""
    model = tiny_artifact(tmp_path / "tiny.onnx")
    events: list[str] = []
    with LocalCluster(spec(autoscaling=None), model, workdir=tmp_path / "c", time_scale=TIME_SCALE,
                      on_event=events.append) as cluster:
        cluster.wait_ready(60)
        for restart, delay in enumerate((1.0, 2.0, 4.0), start=1):
            victim = cluster.state().replicas[0].pid
            os.kill(victim, signal.SIGKILL)
            killed_at = time.time()
            saw_backoff = False
            deadline = time.monotonic() + 60
            while True:
                state = cluster.state()
                replicas = [r for r in state.replicas if r.pid not in (None, victim)]
                saw_backoff |= any(r.reason == "CrashLoopBackOff" and not r.ready for r in replicas)
                if replicas and replicas[0].ready:
                    break
                assert time.monotonic() < deadline, cluster.log_tail()
                time.sleep(0.05)
            ready_at = (tmp_path / "c" / "ready" / str(replicas[0].pid)).stat().st_mtime
            assert saw_backoff
            assert ready_at - killed_at >= delay - 0.1, f"restart {restart} came back after {ready_at - killed_at:.1f} s"
            assert state.restarts == restart and state.restart_reasons == {"Error (SIGKILL)": restart}
    backoffs = [e.split("back-off ")[1] for e in events if "exited unasked" in e]
    assert backoffs == ["1 s (CrashLoopBackOff)", "2 s (CrashLoopBackOff)", "4 s (CrashLoopBackOff)"]


def test_runs_without_limits_and_says_so(tmp_path: Path):
    model = tiny_artifact(tmp_path / "tiny.onnx")
    no_cgroups = tmp_path / "no-cgroups"
    no_cgroups.mkdir()
    with LocalCluster(spec(autoscaling=None), model, workdir=tmp_path / "c", cgroup_root=no_cgroups) as cluster:
        cluster.wait_ready(60)
        response = httpx.get(f"http://127.0.0.1:{cluster.port}/test", timeout=10)
        assert response.status_code == 200
        state = cluster.state()
        assert not state.limits_enforced and state.limits_note.startswith("limits not enforced")
        assert [r.phase for r in state.replicas] == ["Running"] and state.replicas[0].ready
        pids = {state.master_pid, state.replicas[0].pid}
    assert_gone(pids)


def test_replicas_beyond_the_node_stay_pending(tmp_path: Path):
    model = tiny_artifact(tmp_path / "tiny.onnx")
    # A node with 1 CPU allocatable and replicas requesting 0.6 CPU each: one fits, the second is Pending.
    wide = spec(autoscaling=None, replicas=2, requests=ResourceAmounts(cpu=0.6, memory_mb=128),
                limits=ResourceAmounts(cpu=0.6, memory_mb=512))
    cluster = LocalCluster(wide, model, workdir=tmp_path / "c", node=(1.0, 8 * 2**30))
    assert cluster.capacity == 1
    with cluster:
        cluster.wait_ready(60)
        time.sleep(1.2)
        state = read_state(cluster.state_path)
        assert sorted(r.phase for r in state.replicas) == ["Pending", "Running"]
        pending = next(r for r in state.replicas if r.phase == "Pending")
        assert pending.pid is None and not pending.ready
        assert len(psutil.Process(state.master_pid).children()) == 1


def test_bad_inputs_are_clear_errors(tmp_path: Path):
    with pytest.raises(LocalClusterError, match="no such model file"):
        LocalCluster(spec(), tmp_path / "missing.onnx", workdir=tmp_path).start()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(LocalClusterError, match="cannot be loaded"):
        LocalCluster(spec(), broken, workdir=tmp_path).start()
    huge = spec(requests=ResourceAmounts(cpu=256, memory_mb=128), limits=None)
    with pytest.raises(LocalClusterError, match="would stay Pending"):
        LocalCluster(huge, tiny_artifact(tmp_path / "tiny.onnx"), workdir=tmp_path).start()
    with pytest.raises(LocalClusterError, match="replicas is 0"):
        LocalCluster(spec(replicas=0, autoscaling=None), broken, workdir=tmp_path)


def test_cli_names_the_missing_model(tmp_path: Path):
    from typer.testing import CliRunner

    from servetune.cli import app

    result = CliRunner().invoke(app, ["deploy", "local", "default", "--model", str(tmp_path / "none.onnx"),
                                      "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 1
    assert "none.onnx: no such model file" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_deploy_local_stops_on_sigterm_or_ctrl_c_while_waiting_for_readiness(tmp_path: Path, stop_signal):
    """Replicas that never get ready (their sample image is a FIFO nobody writes): the command still stops
    at once on SIGTERM, like on Ctrl-C, and leaves no process behind."""
    model = tiny_artifact(tmp_path / "tiny.onnx")
    fifo = tmp_path / "never.jpg"
    os.mkfifo(fifo)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("name: ml-app\nreplicas: 1\ntermination_grace_period_seconds: 2\npre_stop_seconds: 1\n")
    workdir = tmp_path / "w"
    env = {**os.environ, "SERVETUNE_SAMPLE_IMAGE": str(fifo), "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from servetune.cli import app; app()", "deploy", "local", str(spec_file),
         "--model", str(model), "--port", "0", "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        # A user's Ctrl-C reaches a foreground command; under a background job (nohup ... &) the suite itself
        # starts with SIGINT ignored, and a Python started so never turns SIGINT into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (workdir / "state.json").is_file():
        assert time.monotonic() < deadline and process.poll() is None, "the cluster did not start"
        time.sleep(0.1)
    master = read_state(workdir / "state.json").master_pid
    time.sleep(1)
    process.send_signal(stop_signal)
    asked = time.monotonic()
    output, _ = process.communicate(timeout=30)
    assert time.monotonic() - asked < 20
    assert process.returncode == 130, output
    assert "serving on" not in output and "Traceback" not in output
    assert_gone({master})
