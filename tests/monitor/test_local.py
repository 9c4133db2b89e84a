"""The local resource monitor: rows from a cluster state file and real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from servetune.config import LocalClusterState, LocalReplica
from servetune.deploy.local import write_state
from servetune.host.usage import CpuMeter
from servetune.monitor.local import monitor_local, sample_state
from servetune.monitor.resource_csv import read_resource_csv

MIB = 2**20


def state(*pids: int | None) -> LocalClusterState:
    replicas = [
        LocalReplica(pid=pid, phase="Running" if pid else "Pending", ready=bool(pid), started_at=time.time())
        for pid in pids
    ]
    return LocalClusterState(
        master_pid=os.getpid(), port=5000, cpu_request_cores=0.25, mem_request_bytes=256 * MIB,
        cpu_limit_cores=0.5, mem_limit_bytes=512 * MIB, limits_enforced=False, desired_replicas=len(pids),
        replicas=replicas, updated_at=time.time(),
    )


@pytest.fixture
def busy_process():
    """A process that burns one core, holding ~64 MiB."""
    code = "b = bytearray(64 * 2**20)\nwhile True: pass\n"
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.3)
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_counts_like_the_reference_and_measures_processes(busy_process: int):
    meter = CpuMeter()
    sample_state(state(busy_process, None), meter)
    time.sleep(1.0)
    sample = sample_state(state(busy_process, None), meter)
    # The Pending replica counts in n_replica, requests and limits, and uses nothing.
    assert sample.n_replica == 2
    assert sample.cpu_req_core == pytest.approx(0.5) and sample.mem_req_KB == 2 * 256 * 1024
    assert sample.cpu_lim_core == pytest.approx(1.0) and sample.mem_lim_KB == 2 * 512 * 1024
    # A busy loop on a shared 2-core machine: well above idle, at most one core.
    assert 0.2 < sample.cpu_use_core <= 1.1
    assert 60 * 1024 < sample.mem_use_KB < 200 * 1024


def test_first_sample_of_a_process_is_its_average_since_start(busy_process: int):
    sample = sample_state(state(busy_process), CpuMeter())
    assert sample.cpu_use_core > 0.1


def test_gone_process_counts_but_uses_nothing():
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    sample = sample_state(state(finished.pid), CpuMeter())
    assert sample.n_replica == 1 and sample.cpu_use_core == 0 and sample.mem_use_KB == 0


def test_monitor_writes_rows_on_its_cadence(tmp_path: Path, busy_process: int):
    state_path = tmp_path / "state.json"
    write_state(state_path, state(busy_process))
    out = tmp_path / "resource_usage.csv"
    rows = monitor_local(state_path, out, interval_s=0.2, duration_s=1.0)
    samples = read_resource_csv(out)
    assert rows == len(samples) == 5
    assert all(s.n_replica == 1 for s in samples)
    assert max(s.cpu_use_core for s in samples) > 0.2


def test_monitor_waits_for_a_missing_or_bad_state_file(tmp_path: Path):
    state_path = tmp_path / "state.json"
    out = tmp_path / "resource_usage.csv"
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(monitor_local(state_path, out, interval_s=0.1, stop_event=stop))
    )
    thread.start()
    time.sleep(0.35)
    state_path.write_text("{not json")
    time.sleep(0.3)
    write_state(state_path, state(os.getpid()))
    time.sleep(0.35)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    samples = read_resource_csv(out)
    assert result == [len(samples)] and 1 <= len(samples) <= 5
    assert all(s.n_replica == 1 for s in samples)


def test_monitor_says_when_replicas_restart(tmp_path: Path, caplog):
    state_path = tmp_path / "state.json"
    write_state(state_path, state(os.getpid()))
    stop = threading.Event()
    thread = threading.Thread(
        target=lambda: monitor_local(state_path, tmp_path / "resource_usage.csv", interval_s=0.1, stop_event=stop)
    )
    with caplog.at_level("WARNING", logger="servetune.monitor"):
        thread.start()
        time.sleep(0.35)
        crashed = state(os.getpid()).model_copy(update={"restarts": 2, "restart_reasons": {"OOMKilled": 2}})
        crashed.replicas[0].reason = "CrashLoopBackOff"
        write_state(state_path, crashed)
        time.sleep(0.35)
        stop.set()
        thread.join(5)
    lines = [r.getMessage() for r in caplog.records if "restarts" in r.getMessage()]
    assert lines == ["replica restarts: 2 in all (OOMKilled x2); 1 in CrashLoopBackOff"]
