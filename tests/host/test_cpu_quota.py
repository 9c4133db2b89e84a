from pathlib import Path

import pytest

from servetune.host.cpu_quota import affinity_cores, cpu_quota_cores, inference_threads


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_root(tmp_path: Path, cpu_max: str | None, own: str = "/") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    if cpu_max is not None:
        write(root / own.lstrip("/") / "cpu.max", cpu_max)
    proc = tmp_path / "proc_cgroup"
    write(proc, f"0::{own}\n")
    return root, proc


def v1_root(tmp_path: Path, quota: int, period: int, mount: str = "cpu,cpuacct") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    write(root / mount / "cpu.cfs_quota_us", f"{quota}\n")
    write(root / mount / "cpu.cfs_period_us", f"{period}\n")
    proc = tmp_path / "proc_cgroup"
    write(proc, "12:memory:/\n4:cpu,cpuacct:/\n0::/\n")
    return root, proc


@pytest.mark.parametrize(
    ("cpu_max", "cores"), [("50000 100000\n", 0.5), ("200000 100000\n", 2.0), ("max 100000\n", None)]
)
def test_cgroup_v2_cpu_max(tmp_path, cpu_max, cores):
    root, proc = v2_root(tmp_path, cpu_max)
    assert cpu_quota_cores(root, proc) == cores


def test_cgroup_v2_nested_group_uses_the_tightest_limit(tmp_path):
    root, proc = v2_root(tmp_path, "150000 100000", own="/kubepods/pod1/ctr")
    write(root / "kubepods" / "cpu.max", "300000 100000")
    assert cpu_quota_cores(root, proc) == 1.5
    assert inference_threads(None, root, proc) == min(2, affinity_cores())


def test_cgroup_v2_without_cpu_max_file_is_unlimited(tmp_path):
    root, proc = v2_root(tmp_path, None)
    assert cpu_quota_cores(root, proc) is None
    assert inference_threads(None, root, proc) == affinity_cores()


@pytest.mark.parametrize("mount", ["cpu,cpuacct", "cpu"])
def test_cgroup_v1_cfs_quota(tmp_path, mount):
    root, proc = v1_root(tmp_path, 100000, 100000, mount)
    assert cpu_quota_cores(root, proc) == 1.0
    assert inference_threads(None, root, proc) == 1


def test_cgroup_v1_unlimited_quota_is_minus_one(tmp_path):
    root, proc = v1_root(tmp_path, -1, 100000)
    assert cpu_quota_cores(root, proc) is None


def test_fractional_quota_rounds_up_to_at_least_one_thread(tmp_path):
    root, proc = v1_root(tmp_path, 25000, 100000)
    assert cpu_quota_cores(root, proc) == 0.25
    assert inference_threads(None, root, proc) == 1


def test_garbage_files_are_ignored(tmp_path):
    root, proc = v2_root(tmp_path, "lots of cpu")
    assert cpu_quota_cores(root, proc) is None


def test_missing_cgroup_filesystem_falls_back_to_affinity(tmp_path):
    assert cpu_quota_cores(tmp_path / "nothing", tmp_path / "no_proc") is None
    assert inference_threads(None, tmp_path / "nothing", tmp_path / "no_proc") == affinity_cores()


def test_override_wins_and_must_be_positive(tmp_path):
    root, proc = v1_root(tmp_path, 50000, 100000)
    assert inference_threads(7, root, proc) == 7
    with pytest.raises(ValueError, match="at least 1"):
        inference_threads(0, root, proc)


def test_quota_above_affinity_is_capped_by_affinity(tmp_path):
    root, proc = v2_root(tmp_path, f"{(affinity_cores() + 8) * 100000} 100000")
    assert inference_threads(None, root, proc) == affinity_cores()
