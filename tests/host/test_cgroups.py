"""Replica cgroups on fake cgroup trees (what is written where, v1 and v2) and on this machine's."""

from __future__ import annotations

import os
from pathlib import Path

from servetune.host.cgroups import (
    ReplicaCgroups,
    ReplicaLimits,
    allocatable,
    create_replica_cgroups,
)
from servetune.host.usage import working_set_bytes

LIMITS = ReplicaLimits(cpu_cores=0.5, memory_bytes=256 * 2**20)


def proc_cgroup(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-cgroup"
    path.write_text(text)
    return path


def test_v1_writes_cfs_quota_and_memory_limit(tmp_path: Path):
    root = tmp_path / "cg"
    (root / "cpu").mkdir(parents=True)
    (root / "memory" / "job" / "42").mkdir(parents=True)
    own = proc_cgroup(tmp_path, "4:memory:/job/42\n2:cpu,cpuacct:/\n0::/\n")
    cgroups, note = create_replica_cgroups("x", LIMITS, root, own)
    assert cgroups is not None and cgroups.version == 1
    assert note == "cgroup v1: cpu and memory limits enforced per replica"
    assert cgroups.cpu_parent == root / "cpu" / "servetune-x"
    assert cgroups.memory_parent == root / "memory" / "job" / "42" / "servetune-x"
    # `add` writes the pid last; on a plain directory that only records it.
    cgroups.add(1234)
    cpu = cgroups.cpu_parent / "replica-1234"
    memory = cgroups.memory_parent / "replica-1234"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (memory / "memory.limit_in_bytes").read_text() == str(256 * 2**20)
    assert (cpu / "cgroup.procs").read_text() == (memory / "cgroup.procs").read_text() == "1234"
    # Through the environment, as gunicorn's post_fork hook receives it.
    assert ReplicaCgroups.from_env(cgroups.to_env()) == cgroups


def test_v2_delegates_controllers_and_writes_cpu_max(tmp_path: Path):
    root = tmp_path / "cg"
    (root / "user.slice" / "run").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory io\n")
    own = proc_cgroup(tmp_path, "0::/user.slice/run\n")
    cgroups, note = create_replica_cgroups("y", ReplicaLimits(cpu_cores=1.5, memory_bytes=None), root, own)
    assert cgroups is not None and cgroups.version == 2 and note.startswith("cgroup v2: cpu")
    parent = root / "user.slice" / "run" / "servetune-y"
    assert (parent.parent / "cgroup.subtree_control").read_text() == "+cpu"
    assert (parent / "cgroup.subtree_control").read_text() == "+cpu"
    assert cgroups.memory_parent is None
    cgroups.add(77)
    assert (parent / "replica-77" / "cpu.max").read_text() == "150000 100000"
    assert not (parent / "replica-77" / "memory.max").exists()


def test_nothing_writable_means_limits_not_enforced(tmp_path: Path):
    empty = tmp_path / "cg"
    empty.mkdir()
    cgroups, note = create_replica_cgroups("z", LIMITS, empty, proc_cgroup(tmp_path, "1:cpu:/\n"))
    assert cgroups is None
    assert note.startswith("limits not enforced") and "cpu" in note and "memory" in note
    assert create_replica_cgroups("z", ReplicaLimits(), empty)[0] is None


def test_remove_all_leaves_nothing(tmp_path: Path):
    root = tmp_path / "cg"
    (root / "cpu").mkdir(parents=True)
    (root / "memory").mkdir()
    cgroups, _ = create_replica_cgroups("r", LIMITS, root, proc_cgroup(tmp_path, ""))
    assert cgroups is not None
    cgroups.cpu_parent.joinpath("replica-5").mkdir()
    cgroups.remove_all()
    assert not cgroups.cpu_parent.exists() and not cgroups.memory_parent.exists()


def test_allocatable_and_working_set_of_this_process():
    cpu, memory = allocatable()
    assert 0 < cpu <= os.cpu_count() and memory > 64 * 2**20
    # Not in a replica cgroup: the RSS, which for a Python interpreter is more than a few MiB.
    assert working_set_bytes(os.getpid()) > 5 * 2**20
    assert working_set_bytes(2**22 + 12345) is None
