"""How many CPU cores this process may use: the container's CFS quota, else the CPUs it is pinned to.

ONNX Runtime sizes its thread pool from the host's cores; in a pod limited to one CPU that oversubscribes
the quota and the kernel throttles the whole container. The quota is read from cgroup v2 (`cpu.max`) or
cgroup v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_paths(proc_cgroup: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """Controller name ('' for the v2 unified hierarchy) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def candidate_dirs(base: Path, own_path: str | None) -> list[Path]:
    """The process's own cgroup directory (when visible) from the deepest up, then the mount root."""
    dirs: list[Path] = []
    if own_path:
        current = base / own_path.lstrip("/")
        while current != base and base in current.parents:
            dirs.append(current)
            current = current.parent
    dirs.append(base)
    return dirs


def read_v2_quota(directory: Path) -> float | None:
    try:
        fields = (directory / "cpu.max").read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def read_v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text().strip())
        period = int((directory / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def cpu_quota_cores(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CFS CPU quota in cores (e.g. 0.5), or None when unlimited or unknown.

    Each level of the hierarchy may set a limit; the tightest one found applies.
    """
    own = cgroup_paths(proc_cgroup)
    quotas: list[float] = []
    if (root / "cgroup.controllers").exists():  # cgroup v2 mounted at root
        for directory in candidate_dirs(root, own.get("")):
            quota = read_v2_quota(directory)
            if quota is not None:
                quotas.append(quota)
    else:
        for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
            base = root / mount
            if not base.is_dir():
                continue
            for directory in candidate_dirs(base, own.get("cpu")):
                quota = read_v1_quota(directory)
                if quota is not None:
                    quotas.append(quota)
            break
    return min(quotas) if quotas else None


def affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def inference_threads(
    override: int | None = None, root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int:
    """Threads for inference: the override, else the quota rounded up (at least 1), else the affinity count."""
    if override is not None:
        if override < 1:
            raise ValueError(f"inference threads must be at least 1, got {override}")
        return override
    quota = cpu_quota_cores(root, proc_cgroup)
    cores = affinity_cores()
    if quota is None:
        return cores
    return max(1, min(cores, math.ceil(quota)))
