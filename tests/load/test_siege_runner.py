"""`--driver siege`: the real siege binary run phase by phase, with our siegerc, its log read back."""

from __future__ import annotations

import threading
import time

import pytest

from environment import require_tool
from servetune.config import LoadPhase, LoadProfile
from servetune.load.siege import SiegeRunError, run_siege


def test_runs_every_phase_with_siege_and_reads_its_log(tmp_path, recording_server):
    require_tool("siege")
    profile = LoadProfile(
        name="t",
        phases=[
            LoadPhase(users=3, delay=1, duration_s=1, repeats=2),
            LoadPhase(users=2, delay=0, duration_s=1),
        ],
    )
    rows = run_siege(profile, recording_server.url, tmp_path)
    assert len(rows) == 3
    assert all(row.trans > 0 and row.okay == row.trans for row in rows)
    siege_requests = [a for a in recording_server.arrivals if "Siege" in a.headers["user-agent"]]
    assert len(siege_requests) == len(recording_server.arrivals)
    # requests still in flight when a run's time is up are dropped by siege (at most one per user and run)
    assert 0 <= len(siege_requests) - sum(row.trans for row in rows) <= 3 + 3 + 2
    assert all(a.path == "/test" and a.headers["connection"] == "close" for a in siege_requests)
    commands = (tmp_path / "siege_output.txt").read_text()
    assert "-c 3 -d 1 -t 1S" in commands and "-c 2 -d 0 -t 1S" in commands
    assert "connection = close" in (tmp_path / "siegerc").read_text()


def test_stop_interrupts_siege_and_keeps_its_row(tmp_path, recording_server):
    require_tool("siege")
    stop = threading.Event()
    profile = LoadProfile(name="t", phases=[LoadPhase(users=2, delay=1, duration_s=30, repeats=3)])
    threading.Timer(1.5, stop.set).start()
    began = time.perf_counter()
    rows = run_siege(profile, recording_server.url, tmp_path, stop=stop)
    assert time.perf_counter() - began < 10
    assert len(rows) == 1 and rows[0].trans > 0


def test_predict_target_is_refused(tmp_path):
    profile = LoadProfile(name="t", phases=[LoadPhase(users=1, target="POST /predict")])
    with pytest.raises(SiegeRunError, match="GET /test only"):
        run_siege(profile, "http://127.0.0.1:9", tmp_path, siege="/usr/bin/true")
