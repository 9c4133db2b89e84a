"""Per-replica CPU and memory limits through cgroups (v1 or v2), and the node's allocatable resources.

Each replica of the one-machine cluster gets its own cgroup, `replica-<pid>`, under one parent per cluster
(`servetune-<name>`) created below this process's own cgroup:
- v1: `<root>/cpu/.../servetune-<name>/replica-<pid>` with `cpu.cfs_period_us` = 100000 and
  `cpu.cfs_quota_us` = limit x period, and `<root>/memory/.../replica-<pid>` with `memory.limit_in_bytes`;
- v2: `<root>/.../servetune-<name>/replica-<pid>` with `cpu.max` = "quota period" and `memory.max`.
The worker joins its cgroup itself right after gunicorn forks it (deploy/gunicorn_settings.py), before it
loads the model, so every page it touches is charged to its own cgroup.

Where no cgroup can be created the cluster still runs, without limits, and says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from servetune.host.cpu_quota import cgroup_paths, cpu_quota_cores

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000
REPLICA_PREFIX = "replica-"
ENV_VAR = "SERVETUNE_REPLICA_CGROUPS"


@dataclass(frozen=True)
class ReplicaLimits:
    cpu_cores: float | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class ReplicaCgroups:
    """The parent cgroups of one cluster's replicas, and the limits each replica gets."""

    version: int  # 1 or 2
    cpu_parent: Path | None  # v2: the one parent (both controllers)
    memory_parent: Path | None
    limits: ReplicaLimits

    def _dirs(self, pid: int) -> list[Path]:
        parents = {parent for parent in (self.cpu_parent, self.memory_parent) if parent is not None}
        return [parent / f"{REPLICA_PREFIX}{pid}" for parent in sorted(parents)]

    def add(self, pid: int) -> None:
        """Create the replica's cgroup(s), write its limits, move `pid` in (OSError when not allowed)."""
        limits = self.limits
        cpu_dir = self.cpu_parent / f"{REPLICA_PREFIX}{pid}" if self.cpu_parent else None
        memory_dir = self.memory_parent / f"{REPLICA_PREFIX}{pid}" if self.memory_parent else None
        for directory in self._dirs(pid):
            directory.mkdir(exist_ok=True)
        if cpu_dir is not None and limits.cpu_cores is not None:
            quota = max(1000, round(limits.cpu_cores * CFS_PERIOD_US))  # the kernel's minimum is 1 ms
            if self.version == 2:
                _write(cpu_dir / "cpu.max", f"{quota} {CFS_PERIOD_US}")
            else:
                _write(cpu_dir / "cpu.cfs_period_us", str(CFS_PERIOD_US))
                _write(cpu_dir / "cpu.cfs_quota_us", str(quota))
        if memory_dir is not None and limits.memory_bytes is not None:
            name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
            _write(memory_dir / name, str(limits.memory_bytes))
        for directory in self._dirs(pid):
            _write(directory / "cgroup.procs", str(pid))

    def remove(self, pid: int) -> None:
        """Remove an exited replica's cgroup(s); a cgroup that still holds a process stays."""
        for directory in self._dirs(pid):
            try:
                directory.rmdir()
            except OSError:
                pass

    def remove_all(self) -> None:
        for parent in {p for p in (self.cpu_parent, self.memory_parent) if p is not None}:
            for child in parent.glob(f"{REPLICA_PREFIX}*"):
                try:
                    child.rmdir()
                except OSError:
                    pass
            try:
                parent.rmdir()
            except OSError:
                pass

    def to_env(self) -> str:
        return json.dumps({
            "version": self.version,
            "cpu_parent": str(self.cpu_parent) if self.cpu_parent else None,
            "memory_parent": str(self.memory_parent) if self.memory_parent else None,
            "cpu_cores": self.limits.cpu_cores,
            "memory_bytes": self.limits.memory_bytes,
        })

    @classmethod
    def from_env(cls, text: str) -> ReplicaCgroups:
        data = json.loads(text)
        return cls(
            version=data["version"],
            cpu_parent=Path(data["cpu_parent"]) if data["cpu_parent"] else None,
            memory_parent=Path(data["memory_parent"]) if data["memory_parent"] else None,
            limits=ReplicaLimits(data["cpu_cores"], data["memory_bytes"]),
        )


def _write(path: Path, text: str) -> None:
    with path.open("w") as file:
        file.write(text)


def _own_dir(mount: Path, own_path: str | None) -> Path:
    """This process's cgroup inside `mount`; the mount itself when that path is not visible here."""
    if own_path:
        candidate = mount / own_path.lstrip("/")
        if candidate.is_dir():
            return candidate
    return mount


def create_replica_cgroups(
    name: str,
    limits: ReplicaLimits,
    root: Path = CGROUP_ROOT,
    proc_cgroup: Path = Path("/proc/self/cgroup"),
) -> tuple[ReplicaCgroups | None, str]:
    """Make the cluster's parent cgroup(s) for the limits asked for.

    Returns (cgroups, note): cgroups is None when no limit can be enforced; the note says what is and is
    not enforced and why, for the run's output.
    """
    if limits.cpu_cores is None and limits.memory_bytes is None:
        return None, "no limits in the deployment spec"
    own = cgroup_paths(proc_cgroup)
    parent_name = f"servetune-{name}"
    if (root / "cgroup.controllers").exists():
        return _create_v2(root, own.get(""), parent_name, limits)
    return _create_v1(root, own, parent_name, limits)


def _create_v1(
    root: Path, own: dict[str, str], parent_name: str, limits: ReplicaLimits
) -> tuple[ReplicaCgroups | None, str]:
    parents: dict[str, Path | None] = {"cpu": None, "memory": None}
    problems = []
    wanted = {"cpu": limits.cpu_cores is not None, "memory": limits.memory_bytes is not None}
    for controller, needed in wanted.items():
        if not needed:
            continue
        mount = root / controller
        if not mount.is_dir():
            problems.append(f"cgroup v1 {controller} controller not mounted at {mount}")
            continue
        parent = _own_dir(mount, own.get(controller)) / parent_name
        try:
            parent.mkdir(exist_ok=True)
        except OSError as error:
            problems.append(f"cannot create {parent} ({error.strerror})")
            continue
        parents[controller] = parent
    if parents["cpu"] is None and parents["memory"] is None:
        return None, "limits not enforced: " + "; ".join(problems)
    cgroups = ReplicaCgroups(1, parents["cpu"], parents["memory"], limits)
    enforced = [c for c, p in parents.items() if p is not None]
    note = f"cgroup v1: {' and '.join(enforced)} limits enforced per replica"
    if problems:
        note += "; not enforced: " + "; ".join(problems)
    return cgroups, note


def _create_v2(
    root: Path, own_path: str | None, parent_name: str, limits: ReplicaLimits
) -> tuple[ReplicaCgroups | None, str]:
    own_dir = _own_dir(root, own_path)
    controllers = [c for c, needed in (("cpu", limits.cpu_cores), ("memory", limits.memory_bytes)) if needed]
    enable = " ".join(f"+{c}" for c in controllers)
    parent = own_dir / parent_name
    try:
        # A v2 cgroup that holds processes cannot hand controllers to children (except the root), so
        # this works when the cluster runs in a delegated, otherwise empty, cgroup or as root at the top.
        _write(own_dir / "cgroup.subtree_control", enable)
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", enable)
    except OSError as error:
        try:
            parent.rmdir()
        except OSError:
            pass
        return None, (
            f"limits not enforced: cgroup v2 controllers {enable!r} cannot be delegated below {own_dir} "
            f"({error.strerror}); run inside a delegated cgroup, e.g. `systemd-run --user --scope -p "
            "Delegate=yes servetune deploy local ...`"
        )
    cgroups = ReplicaCgroups(
        2, parent if limits.cpu_cores is not None else None,
        parent if limits.memory_bytes is not None else None, limits,
    )
    return cgroups, f"cgroup v2: {' and '.join(controllers)} limits enforced per replica"


def replica_memory_dir(pid: int, root: Path = CGROUP_ROOT) -> Path | None:
    """The process's own replica memory cgroup (`replica-<pid>` made here), or None when it has none."""
    paths = cgroup_paths(Path(f"/proc/{pid}/cgroup"))
    if (root / "cgroup.controllers").exists():
        path, mount = paths.get(""), root
    else:
        path, mount = paths.get("memory"), root / "memory"
    if not path or not Path(path).name.startswith(REPLICA_PREFIX):
        return None
    directory = _own_dir(mount, path)
    return directory if directory != mount else None


def in_replica_cgroup(pid: int, cgroups: ReplicaCgroups) -> bool:
    """Whether `pid` sits in its replica cgroup for every controller the cluster limits."""
    paths = cgroup_paths(Path(f"/proc/{pid}/cgroup"))
    expected = f"{REPLICA_PREFIX}{pid}"
    if cgroups.version == 2:
        return Path(paths.get("", "/")).name == expected
    checks = [c for c, parent in (("cpu", cgroups.cpu_parent), ("memory", cgroups.memory_parent)) if parent]
    return all(Path(paths.get(controller, "/")).name == expected for controller in checks)


def allocatable() -> tuple[float, int]:
    """This machine's allocatable (CPU cores, memory bytes): the CPU quota of this process's cgroup or
    its CPU affinity count, and the memory limit of its cgroup or the physical memory."""
    cpu = cpu_quota_cores() or float(len(os.sched_getaffinity(0)))
    memory = psutil.virtual_memory().total
    own = cgroup_paths()
    candidates = []
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        candidates.append(_own_dir(CGROUP_ROOT, own.get("")) / "memory.max")
    else:
        candidates.append(_own_dir(CGROUP_ROOT / "memory", own.get("memory")) / "memory.limit_in_bytes")
    for path in candidates:
        try:
            limit = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        memory = min(memory, limit)
    return cpu, memory
