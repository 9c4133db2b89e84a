"""What else this machine's CPU did while a run measured: its busy time (/proc/stat) less the run's own.

On the one-machine cluster the replicas, the autoscaler and the load driver all run on this machine, so
other work on it (a build, a browser, another run) takes cores the replicas would otherwise get and slows
their answers. A run records the cores other processes took during its load, so a reader (and a
simulation of the run) knows what the replicas really had.

The run's own CPU is this process and every process under it: the live ones' user + system time plus
their reaped children's, and this process's reaped children's (replicas that ended during the load).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

PROC_STAT = Path("/proc/stat")
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice; busy leaves out
# idle and iowait, and guest time is already inside user
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
# Other processes' cores beyond which a measurement on this machine is taken as disturbed (a run's response
# time not comparable, a calibration repeat not quiet): the replicas and the server share the same cores.
QUIET_OTHERS_CORES = 0.25


@dataclass(frozen=True)
class CpuSnapshot:
    at: float  # wall clock, seconds
    machine_busy_s: float | None  # CPU seconds the whole machine was busy since boot; None without /proc/stat
    run_s: float  # CPU seconds of this process tree so far


def machine_busy_seconds(stat: Path = PROC_STAT) -> float | None:
    """CPU seconds all cores have spent busy since boot, or None where /proc/stat is not readable."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not first or first[0] != "cpu":
        return None
    try:
        ticks = [int(first[1 + i]) for i in BUSY_FIELDS]
    except (IndexError, ValueError):
        return None
    return sum(ticks) / os.sysconf("SC_CLK_TCK")


def process_tree_seconds(process: psutil.Process | None = None) -> float:
    """CPU seconds used by `process` (default: this one) and everything under it, ended children included."""
    process = process or psutil.Process()
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue  # it ended between the listing and the reading: its parent's children_* count it
        total += times.user + times.system + times.children_user + times.children_system
    return total


def snapshot() -> CpuSnapshot:
    return CpuSnapshot(time.time(), machine_busy_seconds(), process_tree_seconds())


def host_cpu(start: CpuSnapshot, end: CpuSnapshot, counts: str = "") -> dict | None:
    """run.json's `host_cpu` between two snapshots: the cores /proc/stat counts (the host's, also in a
    container), how many were busy, the run's and the others' (never below 0), and `counts`, what "the run's"
    took in (the caller knows what runs under it); None when the machine's busy time is unknown or no time
    passed."""
    elapsed = end.at - start.at
    if start.machine_busy_s is None or end.machine_busy_s is None or elapsed <= 0:
        return None
    busy = (end.machine_busy_s - start.machine_busy_s) / elapsed
    run = (end.run_s - start.run_s) / elapsed
    return {
        "cores": os.cpu_count(),
        "busy_cores": round(busy, 3),
        "run_cores": round(run, 3),
        "others_cores": round(max(0.0, busy - run), 3),
        "seconds": round(elapsed, 1),
        **({"counts": counts} if counts else {}),
    }
