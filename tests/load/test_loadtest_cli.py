"""`servetune loadtest`: a real process against a loopback server, Ctrl-C, and clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servetune.load.request_log import read_request_log
from servetune.load.siege import read_siege_log

SERVETUNE = [str(Path(sys.executable).parent / "servetune"), "loadtest"]


def servetune(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SERVETUNE, *args], check=False, capture_output=True, text=True, timeout=120, **kwargs
    )


def test_quick_profile_compressed(tmp_path, recording_server):
    result = servetune(
        recording_server.url, "--profile", "quick", "--time-scale", "0.02", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    rows = read_siege_log(tmp_path / "load_output.csv")
    assert len(rows) == 15
    assert sum(r.okay for r in rows) == len(read_request_log(tmp_path / "requests.csv"))
    assert "15 runs" in result.stdout


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_cleanly_and_keeps_rows(tmp_path, recording_server, stop_signal):
    process = subprocess.Popen(
        [*SERVETUNE, recording_server.url, "--profile", "reference", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    os.kill(process.pid, stop_signal)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    rows = read_siege_log(tmp_path / "load_output.csv")
    assert len(rows) == 1 and rows[0].okay > 0
    assert len(read_request_log(tmp_path / "requests.csv")) == rows[0].okay


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "missing.yaml"], "missing.yaml: no such profile file"),
        (["--driver", "jmeter"], "--driver must be builtin or siege"),
        (["--mode", "open", "--driver", "siege"], "--mode open needs --driver builtin"),
        (["--target", "predict"], "needs an image folder"),
        (["--target", "predict", "--images", "/no/such/dir"], "/no/such/dir: no such image folder"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, args, message):
    result = servetune("http://127.0.0.1:9", "--time-scale", "0.001", "--out", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_profile_file_names_the_file(tmp_path):
    profile = tmp_path / "mine.yaml"
    profile.write_text("name: mine\nphases:\n  - {users: -3}\n")
    result = servetune("http://127.0.0.1:9", "--profile", str(profile), "--out", str(tmp_path))
    assert result.returncode == 2
    assert f"{profile}: phases[0].users" in result.stderr
