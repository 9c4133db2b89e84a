"""The resource monitor for the one-machine cluster: the Kubernetes monitor's columns, from local processes.

Each tick reads the cluster's state file (deploy/local.py writes it every second) and counts replicas the
way the reference monitor counts pods: every replica listed, Pending and Terminating ones included, adds
its request and limit to the sums. Usage is measured here, from each replica's process: CPU cores over the
interval since the previous sample (a replica's first sample: its average since it started), memory as
the kubelet's working set (its cgroup's usage minus inactive file pages where the replica has its own
cgroup, else its RSS). A Pending replica has no process and uses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from servetune.config import LocalClusterState, ReplicaStates, ResourceSample
from servetune.host.usage import CpuMeter, working_set_bytes
from servetune.monitor.record import record
from servetune.monitor.resource_csv import wall_clock_text

log = logging.getLogger("servetune.monitor")


def sample_state(state: LocalClusterState, meter: CpuMeter, now: float | None = None) -> ResourceSample:
    """One row for the cluster described by `state`, measuring its replicas' processes now."""
    now = time.time() if now is None else now
    count = len(state.replicas)
    cpu_used = 0.0
    memory_used = 0
    pids = {replica.pid for replica in state.replicas if replica.pid is not None}
    for pid in sorted(pids):
        cpu_used += meter.cores(pid, now, since_start_if_new=True) or 0.0
        memory_used += working_set_bytes(pid) or 0
    meter.forget_others(pids)
    time_text = wall_clock_text(now)
    return ResourceSample(
        time=time_text,
        n_replica=count,
        cpu_req_core=round(count * state.cpu_request_cores, 6),
        mem_req_KB=count * state.mem_request_bytes / 1024,
        cpu_lim_core=round(count * state.cpu_limit_cores, 6),
        mem_lim_KB=count * state.mem_limit_bytes / 1024,
        cpu_use_core=round(cpu_used, 6),
        mem_use_KB=round(memory_used / 1024, 3),
        states=ReplicaStates(
            time=time_text,
            ready=sum(1 for r in state.replicas if r.phase == "Running" and r.ready),
            starting=sum(1 for r in state.replicas if r.phase == "Running" and not r.ready),
            pending=sum(1 for r in state.replicas if r.phase == "Pending"),
            terminating=sum(1 for r in state.replicas if r.phase == "Terminating"),
        ),
    )


def restarts_line(state: LocalClusterState) -> str:
    """The CSV has the reference's columns only; restarts are said here (and kept in the state file)."""
    reasons = ", ".join(f"{reason} x{count}" for reason, count in sorted(state.restart_reasons.items()))
    waiting = sum(1 for replica in state.replicas if replica.reason == "CrashLoopBackOff")
    line = f"replica restarts: {state.restarts} in all" + (f" ({reasons})" if reasons else "")
    return line + (f"; {waiting} in CrashLoopBackOff" if waiting else "")


def read_state_or_none(path: Path) -> LocalClusterState | None:
    try:
        return LocalClusterState.model_validate_json(path.read_text())
    except FileNotFoundError:
        log.warning("%s: no state file yet (is the one-machine cluster running?)", path)
    except (OSError, ValueError, ValidationError) as error:
        log.warning("%s: unreadable cluster state (%s)", path, error)
    return None


def monitor_local(
    state_path: str | Path,
    out_path: str | Path,
    *,
    interval_s: float = 5.0,
    duration_s: float | None = None,
    stop_event: threading.Event | None = None,
    on_sample: Callable[[ResourceSample], None] | None = None,
) -> int:
    """Write resource_usage.csv rows for the cluster whose state is at `state_path`; return rows written.

    Runs until `duration_s` has passed or `stop_event` is set; a tick without a readable state file is
    skipped (logged), so the monitor can start before the cluster.
    """
    state_path = Path(state_path)
    meter = CpuMeter()
    restarts_seen: int | None = None

    def take_sample() -> ResourceSample | None:
        nonlocal restarts_seen
        state = read_state_or_none(state_path)
        if state is None:
            return None
        if restarts_seen is not None and state.restarts > restarts_seen:
            log.warning("%s", restarts_line(state))
        restarts_seen = state.restarts
        return sample_state(state, meter)

    return record(
        take_sample, out_path, interval_s=interval_s, duration_s=duration_s, stop_event=stop_event,
        on_sample=on_sample,
    )
