import os
import subprocess
import sys
import time

import psutil
import pytest

from servetune.host.machine_cpu import CpuSnapshot, host_cpu, machine_busy_seconds, process_tree_seconds

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def test_busy_seconds_leave_out_idle_and_iowait(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 9000 500 4 6 10 50 0\ncpu0 50 10 15 4500 250 2 3 5 25 0\n")
    assert machine_busy_seconds(stat) == pytest.approx((100 + 20 + 30 + 4 + 6 + 10) / os.sysconf("SC_CLK_TCK"))


@pytest.mark.parametrize("text", ["", "intr 1 2 3\n", "cpu  1 2 x\n"])
def test_an_unreadable_stat_is_no_figure(tmp_path, text):
    stat = tmp_path / "stat"
    stat.write_text(text)
    assert machine_busy_seconds(stat) is None
    assert machine_busy_seconds(tmp_path / "missing") is None


def test_this_machine_counts_busy_time():
    first = machine_busy_seconds()
    if first is None:
        pytest.skip("no /proc/stat on this machine")
    subprocess.run([sys.executable, "-c", BURN.format(seconds=0.3)], check=True)
    assert machine_busy_seconds() - first >= 0.2


def test_the_tree_counts_live_children_and_ended_ones():
    before = process_tree_seconds()
    child = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=0.4) + "time.sleep(30)\n"])
    try:
        deadline = time.monotonic() + 20
        while psutil.Process(child.pid).cpu_times().user < 0.35 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_tree_seconds() - before >= 0.35  # alive: its own times
    finally:
        child.kill()
        child.wait()
    assert process_tree_seconds() - before >= 0.35  # reaped: this process's children times


def test_others_are_the_busy_cores_less_the_runs():
    start = CpuSnapshot(at=100.0, machine_busy_s=1000.0, run_s=50.0)
    end = CpuSnapshot(at=110.0, machine_busy_s=1015.0, run_s=60.0)
    host = host_cpu(start, end)
    assert host == {"cores": os.cpu_count(), "busy_cores": 1.5, "run_cores": 1.0, "others_cores": 0.5,
                    "seconds": 10.0}


def test_others_never_go_below_zero_and_unknown_is_none():
    start = CpuSnapshot(at=0.0, machine_busy_s=10.0, run_s=0.0)
    assert host_cpu(start, CpuSnapshot(at=1.0, machine_busy_s=10.9, run_s=1.0))["others_cores"] == 0.0
    assert host_cpu(start, CpuSnapshot(at=1.0, machine_busy_s=None, run_s=1.0)) is None
    assert host_cpu(start, CpuSnapshot(at=0.0, machine_busy_s=11.0, run_s=1.0)) is None
