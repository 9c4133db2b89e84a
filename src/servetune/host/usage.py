"""What a replica uses, measured the way Kubernetes' metrics pipeline reports a pod.

CPU: cores used over an interval (the change of the process's user + system CPU time, all threads,
divided by the wall time between two samples), like metrics-server's rate between two kubelet scrapes.
Memory: the working set (host/cgroups.py keeps each replica in its own memory cgroup when it can).
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from servetune.host.cgroups import CGROUP_ROOT, replica_memory_dir


class CpuMeter:
    """Remembers each process's CPU time at its last sample, so every call gives the rate since then."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (wall time, cpu seconds)

    def cores(self, pid: int, now: float | None = None, since_start_if_new: bool = False) -> float | None:
        """Cores used by `pid` since its previous sample.

        None when the process is gone, or on its first sample unless `since_start_if_new` (then the
        average since the process started).
        """
        now = time.time() if now is None else now
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                started = process.create_time()
        except psutil.Error:
            self._last.pop(pid, None)
            return None
        cpu = times.user + times.system
        previous = self._last.get(pid)
        self._last[pid] = (now, cpu)
        if previous is None:
            if not since_start_if_new or now <= started:
                return None
            return cpu / (now - started)
        elapsed = now - previous[0]
        return max(0.0, (cpu - previous[1]) / elapsed) if elapsed > 0 else None

    def forget_others(self, pids: set[int]) -> None:
        """Drop processes no longer watched (pids are reused)."""
        for pid in set(self._last) - pids:
            del self._last[pid]


def working_set_bytes(pid: int, root: Path = CGROUP_ROOT) -> int | None:
    """Memory the way the kubelet reports a container's working set, or None when `pid` is gone.

    With a replica cgroup: usage minus inactive file pages (v1 `memory.usage_in_bytes` -
    `total_inactive_file`, v2 `memory.current` - `inactive_file`). Without one: the process's RSS, which
    leaves out the page cache a cgroup would also charge.
    """
    directory = replica_memory_dir(pid, root)
    if directory is not None:
        v2 = (root / "cgroup.controllers").exists()
        try:
            usage = int((directory / ("memory.current" if v2 else "memory.usage_in_bytes")).read_text())
            stat = dict(
                line.split() for line in (directory / "memory.stat").read_text().splitlines() if " " in line
            )
            inactive = int(stat.get("inactive_file" if v2 else "total_inactive_file", 0))
            return max(0, usage - inactive)
        except (OSError, ValueError):
            pass
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


