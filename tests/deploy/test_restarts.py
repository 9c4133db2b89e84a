"""Why a replica exited (OOMKilled, a signal, an exit code) and the start permits that carry its back-off."""

from __future__ import annotations

import threading
import time

from servetune.deploy.restarts import (
    exit_reason,
    memory_counters,
    read_exit_record,
    wait_for_start_permit,
    write_exit_record,
    write_start_permit,
)
from servetune.host.cgroups import ReplicaCgroups, ReplicaLimits

LOG = (
    "[2026-11-30 10:00:00 +0000] [100] [ERROR] Worker (pid:201) was sent SIGKILL! Perhaps out of memory?\n"
    "[2026-11-30 10:00:01 +0000] [100] [ERROR] Worker (pid:202) exited with code 3.\n"
    "[2026-11-30 10:00:02 +0000] [100] [WARNING] Worker (pid:203) was sent SIGSEGV!\n"
)


def test_reasons_like_kubernetes_shows_them():
    assert exit_reason(201, {"oom_kill": 1, "failcnt": 40}, LOG) == "OOMKilled"
    assert exit_reason(201, {"failcnt": 40}, LOG) == "OOMKilled"  # a kernel without the oom_kill counter
    assert exit_reason(201, {"oom_kill": 0, "failcnt": 40}, LOG) == "Error (SIGKILL)"  # killed by someone
    assert exit_reason(202, {}, LOG) == "Error (exit code 3)"
    assert exit_reason(203, {"oom_kill": 0}, LOG) == "Error (SIGSEGV)"
    assert exit_reason(2010, {}, LOG) == "Error"  # no line for it: pid 201's line must not match


def test_memory_counters_of_v1_and_v2_cgroups(tmp_path):
    v1 = tmp_path / "v1" / "replica-7"
    v1.mkdir(parents=True)
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (v1 / "memory.failcnt").write_text("57\n")
    cgroups = ReplicaCgroups(1, None, tmp_path / "v1", ReplicaLimits(None, 2**27))
    assert memory_counters(cgroups, 7) == {"oom_kill": 2, "failcnt": 57}
    v2 = tmp_path / "v2" / "replica-8"
    v2.mkdir(parents=True)
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert memory_counters(ReplicaCgroups(2, None, tmp_path / "v2", ReplicaLimits(None, 2**27)), 8) == {"oom_kill": 1}
    assert memory_counters(ReplicaCgroups(1, tmp_path, None, ReplicaLimits(1.0, None)), 7) == {}


def test_exit_records_are_read_once(tmp_path):
    write_exit_record(tmp_path, 5, {"oom_kill": 1})
    assert read_exit_record(tmp_path, 5) == {"oom_kill": 1}
    assert read_exit_record(tmp_path, 5) == {}


def test_a_worker_waits_for_its_permit_and_its_time(tmp_path):
    beats = []
    waited: list[float] = []
    worker = threading.Thread(target=lambda: waited.append(wait_for_start_permit(tmp_path, 9, lambda: beats.append(1))))
    worker.start()
    time.sleep(0.3)
    assert worker.is_alive()  # no permit yet
    write_start_permit(tmp_path, 9, time.time() + 1.5)
    worker.join(10)
    assert 1.5 <= waited[0] < 4
    assert len(beats) >= 2  # told the master it is alive meanwhile
    assert not (tmp_path / "9.start").exists()
