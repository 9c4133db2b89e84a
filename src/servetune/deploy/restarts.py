"""What the one-machine cluster, the gunicorn master and its workers tell each other about restarts, as
files in one folder (`<workdir>/replicas`, named by RESTARTS_DIR_VAR in the master's environment):

- `<pid>.start`, written by the cluster once it has seen a new worker: the unix time the worker may load
  its app. A worker that replaces one that exited unasked gets the kubelet's back-off (deploy/backoff.py);
  it waits in `post_fork` (deploy/gunicorn_settings.py), telling the master it is alive, before loading
  the model. gunicorn itself would restart a crashing worker at once, for ever.
- `<pid>.exit`, written by the master when it reaps a worker (gunicorn's `child_exit`), before the worker's
  cgroup goes: the memory cgroup's OOM-kill and limit-hit counters (v1 `memory.oom_control` and
  `memory.failcnt`, v2 `memory.events`).

`exit_reason` turns that record and gunicorn's log line for the worker ("was sent SIGKILL", "exited with
code 3") into the reason Kubernetes would show: `OOMKilled`, `Error (SIGKILL)`, `Error (exit code 3)`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from servetune.host.cgroups import REPLICA_PREFIX, ReplicaCgroups

RESTARTS_DIR_VAR = "SERVETUNE_RESTARTS_DIR"
POLL_S = 0.05


def write_start_permit(folder: Path, pid: int, not_before: float) -> None:
    temporary = folder / f".{pid}.start.tmp"
    temporary.write_text(repr(not_before))
    os.replace(temporary, folder / f"{pid}.start")


def wait_for_start_permit(folder: Path, pid: int, alive: Callable[[], None]) -> float:
    """Block until the cluster allows `pid` to start and its time has come; `alive` is called about once a
    second meanwhile (the worker's heartbeat). Returns the seconds waited."""
    began = time.monotonic()
    master = os.getppid()
    path = folder / f"{pid}.start"
    last_beat = 0.0
    while True:
        now = time.monotonic()
        if now - last_beat >= 1.0:
            alive()
            last_beat = now
        try:
            not_before = float(path.read_text())
        except (OSError, ValueError):
            not_before = None
        if not_before is not None and time.time() >= not_before:
            path.unlink(missing_ok=True)
            return time.monotonic() - began
        if not folder.is_dir() or os.getppid() != master:  # the cluster or the master is gone
            return time.monotonic() - began
        time.sleep(POLL_S)


def memory_counters(cgroups: ReplicaCgroups, pid: int) -> dict[str, int]:
    """The replica memory cgroup's OOM kills and limit hits so far (empty where there is none)."""
    if cgroups.memory_parent is None:
        return {}
    directory = cgroups.memory_parent / f"{REPLICA_PREFIX}{pid}"
    counters: dict[str, int] = {}
    for name in ("memory.oom_control", "memory.events"):
        try:
            for line in (directory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    counters["oom_kill"] = int(value)
        except OSError:
            continue
    try:
        counters["failcnt"] = int((directory / "memory.failcnt").read_text())
    except (OSError, ValueError):
        pass
    return counters


def write_exit_record(folder: Path, pid: int, counters: dict[str, int]) -> None:
    (folder / f"{pid}.exit").write_text(json.dumps(counters))


def read_exit_record(folder: Path, pid: int) -> dict[str, int]:
    path = folder / f"{pid}.exit"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    path.unlink(missing_ok=True)
    return record if isinstance(record, dict) else {}


def exit_reason(pid: int, record: dict[str, int], gunicorn_log: str) -> str:
    """Kubernetes' words for why a replica exited, from its exit record and gunicorn's log."""
    signal_line = re.search(rf"Worker \(pid:{pid}\) was sent (SIG[A-Z0-9]+)", gunicorn_log)
    killed = signal_line.group(1) if signal_line else None
    if record.get("oom_kill", 0) > 0:
        return "OOMKilled"
    if "oom_kill" not in record and record.get("failcnt", 0) > 0 and killed == "SIGKILL":
        return "OOMKilled"  # a kernel without the oom_kill counter: killed at its limit
    if killed:
        return f"Error ({killed})"
    code_line = re.search(rf"Worker \(pid:{pid}\) exited with code (\d+)", gunicorn_log)
    if code_line:
        return f"Error (exit code {code_line.group(1)})"
    return "Error"
