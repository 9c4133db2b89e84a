"""`--driver siege`: the real siege binary run phase by phase, with our siegerc, its log read back."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from environment import require_tool
from servetune.config import LoadPhase, LoadProfile
from servetune.load.profile import parse_profile
from servetune.load.siege import SiegeRunError, run_siege


def test_runs_every_phase_with_siege_and_reads_its_log(tmp_path, recording_server):
    require_tool("siege")
    profile = LoadProfile(
        name="t",
        phases=[
            # 2 s runs: on a busy machine siege's own start can take most of a 1 s run
            LoadPhase(users=3, delay=1, duration_s=2, repeats=2),
            LoadPhase(users=2, delay=0, duration_s=2),
        ],
    )
    rows = run_siege(profile, recording_server.url, tmp_path)
    assert len(rows) == 3
    # siege counts OKAY before Trans for each answer, and a thread cancelled at the end of the run between the
    # two leaves OKAY one ahead: at most one per user
    users = [3, 3, 2]
    assert all(row.trans > 0 and 0 <= row.okay - row.trans <= u and row.failed == 0 for row, u in zip(rows, users))
    siege_requests = [a for a in recording_server.arrivals if "Siege" in a.headers["user-agent"]]
    assert len(siege_requests) == len(recording_server.arrivals)
    # requests still in flight when a run's time is up are dropped by siege (at most one per user and run)
    assert 0 <= len(siege_requests) - sum(row.trans for row in rows) <= 3 + 3 + 2
    assert all(a.path == "/test" and a.headers["connection"] == "close" for a in siege_requests)
    commands = (tmp_path / "siege_output.txt").read_text()
    assert "-c 3 -d 1 -t 2S" in commands and "-c 2 -d 0 -t 2S" in commands
    assert parse_profile(tmp_path / "load_profile.yaml") == profile  # kept like the built-in driver keeps it
    assert "connection = close" in (tmp_path / "siegerc").read_text()
    # verbose on, as siege's own default: one line per answer, what a hung run's row is rebuilt from (siege
    # stops printing when the run's time is up, so an answer in flight then may count without its line)
    assert abs(commands.count("HTTP/1.1 200") - sum(row.trans for row in rows)) <= 3 + 3 + 2


@pytest.mark.parametrize("sigint", [signal.default_int_handler, signal.SIG_IGN], ids=["foreground", "background"])
def test_stop_interrupts_siege_and_keeps_its_row(tmp_path, recording_server, sigint):
    # A background job (`cmd &`, nohup) starts with SIGINT ignored and its children inherit that; siege
    # still takes the driver's SIGINT, because it blocks the signal and waits for it in a thread of its own.
    require_tool("siege")
    stop = threading.Event()
    profile = LoadProfile(name="t", phases=[LoadPhase(users=2, delay=1, duration_s=30, repeats=3)])
    threading.Timer(1.5, stop.set).start()
    began = time.perf_counter()
    previous = signal.signal(signal.SIGINT, sigint)
    try:
        rows = run_siege(profile, recording_server.url, tmp_path, stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - began < 10
    assert len(rows) == 1 and rows[0].trans > 0


def test_predict_target_is_refused(tmp_path):
    profile = LoadProfile(name="t", phases=[LoadPhase(users=1, target="POST /predict")])
    with pytest.raises(SiegeRunError, match="GET /test only"):
        run_siege(profile, "http://127.0.0.1:9", tmp_path, siege="/usr/bin/true")


# What siege 4.0.7 prints with verbose on: two answers, one 503 (Failed, yet its time counts) and one
# refused connection, its notice coloured whatever `color` says.
VERBOSE_OUTPUT = (
    "** SIEGE 4.0.7\n"
    "HTTP/1.1 200     0.02 secs:     524 bytes ==> GET  /test\n"
    "HTTP/1.1 200     0.04 secs:     524 bytes ==> GET  /test\n"
    "HTTP/1.1 503     0.03 secs:      19 bytes ==> GET  /test\n"
    "[\x1b[1;33merror\x1b[0m] socket: unable to connect sock.c:282: Connection refused\n"
)


def fake_siege(tmp_path, writes_row_on_sigint: bool) -> str:
    """A stand-in that prints siege's verbose lines, then hangs past its -t like siege sometimes does. Like
    siege it takes SIGINT itself (a bash trap could not: bash cannot catch a signal ignored when it started,
    as under `nohup … &`); a hung siege ignores it."""
    row = "2026-11-29 10:00:00,      5,       1.00,           0,       0.01,        5.00,        0.00,        0.05,       5,       0"
    script = tmp_path / "hanging-siege"
    script.write_text(
        f"#!{sys.executable} -S\n"
        "import signal, sys, time\n"
        "log = next(arg[6:] for arg in sys.argv if arg.startswith('--log='))\n"
        "def write_row_and_exit(*_):\n"
        f"    open(log, 'a').write({row!r} + '\\n')\n"
        "    sys.exit(0)\n"
        f"signal.signal(signal.SIGINT, {'write_row_and_exit' if writes_row_on_sigint else 'signal.SIG_IGN'})\n"
        f"sys.stdout.write({VERBOSE_OUTPUT!r})\n"
        "sys.stdout.flush()\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def short_deadlines(monkeypatch):
    import servetune.load.siege as siege_module

    monkeypatch.setattr(siege_module, "SOCKET_TIMEOUT_S", 0)
    monkeypatch.setattr(siege_module, "OVERRUN_GRACE_S", 0.5)
    monkeypatch.setattr(siege_module, "SIGINT_GRACE_S", 1)


def test_a_run_that_hangs_past_its_time_is_interrupted_and_keeps_its_row(tmp_path, short_deadlines):
    siege = fake_siege(tmp_path, writes_row_on_sigint=True)
    profile = LoadProfile(name="t", phases=[LoadPhase(users=1, delay=1, duration_s=1, repeats=2)])
    began = time.perf_counter()
    rows = run_siege(profile, "http://127.0.0.1:9", tmp_path / "out", siege=siege)
    assert len(rows) == 2 and all(r.trans == 5 for r in rows)
    assert time.perf_counter() - began < 8


def test_a_run_that_ignores_sigint_is_killed_and_its_row_rebuilt_from_siege_output(
    tmp_path, short_deadlines, caplog
):
    siege = fake_siege(tmp_path, writes_row_on_sigint=False)
    profile = LoadProfile(name="t", phases=[LoadPhase(users=1, delay=1, duration_s=2, repeats=2)])
    began = time.perf_counter()
    rows = run_siege(profile, "http://127.0.0.1:9", tmp_path / "out", siege=siege)
    assert time.perf_counter() - began < 12
    # each run's own output only: 2 answers (Trans, OKAY), the 503 and the refused connection (Failed)
    assert [(r.trans, r.okay, r.failed, r.elap_time) for r in rows] == [(2, 2, 2, 2.0)] * 2
    assert rows[0].resp_time == pytest.approx((0.02 + 0.04 + 0.03) / 2, abs=0.006)  # the log has 2 decimals
    assert rows[0].trans_rate == pytest.approx(1.0)
    log_text = (tmp_path / "out" / "load_output.csv").read_text()
    assert log_text.count("**** siege hung at the end of this 2 s run and was killed") == 2
    assert log_text.startswith("      Date & Time,")  # the header before the first mark, as siege -m writes it
    output = (tmp_path / "out" / "siege_output.txt").read_text()
    assert output.count("servetune: siege hung") == 2 and output.count("$ ") == 2
    assert "rebuilt the next row" in caplog.text


def test_a_real_siege_frozen_at_its_end_is_killed_and_its_row_rebuilt(
    tmp_path, recording_server, monkeypatch, short_deadlines
):
    # A hung siege waits forever to join a thread and no longer takes SIGINT; SIGSTOP puts the real binary
    # in the same state, with everything it printed until then (siege may end a 2 s run after 1.6 s).
    require_tool("siege")
    import servetune.load.siege as siege_module

    real_popen = subprocess.Popen

    def popen_then_freeze(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        threading.Timer(1.0, process.send_signal, [signal.SIGSTOP]).start()
        return process

    monkeypatch.setattr(siege_module.subprocess, "Popen", popen_then_freeze)
    profile = LoadProfile(name="t", phases=[LoadPhase(users=2, delay=1, duration_s=2)])
    (row,) = run_siege(profile, recording_server.url, tmp_path)
    answered = len(recording_server.arrivals)
    assert row.trans > 0 and row.okay == row.trans and row.failed == 0 and row.elap_time == 2
    assert answered - 2 <= row.trans <= answered  # a request in flight at the end has no line
    assert "**** siege hung" in (tmp_path / "load_output.csv").read_text()
