"""A run's row rebuilt from siege's verbose output agrees with the row siege itself wrote."""

from __future__ import annotations

import subprocess

import pytest

from environment import require_tool
from servetune.load.siege import read_siege_log, siege_env, write_siegerc
from servetune.load.siege_verbose import row_from_verbose_output, tally_verbose_output


def test_real_siege_output_adds_up_to_its_own_row(tmp_path, recording_server):
    siege = require_tool("siege")
    recording_server.responses = [200, 200, 404, 503]  # OKAY, a non-OKAY transaction, a Failed answer
    recording_server.delay_s = 0.02
    siegerc = tmp_path / "siegerc"
    write_siegerc(siegerc, keep_alive=False, users=3)
    log = tmp_path / "log.csv"
    done = subprocess.run(
        [siege, f"--rc={siegerc}", "-c", "3", "-r", "8", f"--log={log}", f"{recording_server.url}/test"],
        check=False, capture_output=True, text=True, timeout=60, env=siege_env(tmp_path, siegerc),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (theirs,) = read_siege_log(log)
    ours = row_from_verbose_output(done.stdout + done.stderr, elapsed_s=theirs.elap_time)
    assert (ours.trans, ours.okay, ours.failed) == (theirs.trans, theirs.okay, theirs.failed) == (18, 12, 6)
    # the printed times have two decimals, like the log's own
    assert ours.resp_time == pytest.approx(theirs.resp_time, abs=0.006)
    assert ours.concurrent == pytest.approx(theirs.concurrent, abs=0.05)
    assert ours.data_trans == theirs.data_trans


def test_socket_failures_and_cached_answers_are_counted():
    output = (
        "HTTP/1.1 200(C)  0.10 secs:     100 bytes ==> GET  /test\n"
        "HTTP/1.0 302     0.30 secs:       0 bytes ==> GET  /test\n"
        "[\x1b[1;33merror\x1b[0m] socket: unable to connect sock.c:282: Connection refused\n"
        "[alert] socket: read check timed out(30) sock.c:383\n"
        "ERROR: Unable to open cookies file: /home/u/.siege/cookies.txt\n"  # not a request
        "Lifting the server siege...\n"
    )
    tally = tally_verbose_output(output)
    assert (tally.trans, tally.okay, tally.failed, tally.bytes) == (2, 2, 2, 100)
    assert tally.total_time == pytest.approx(0.4)


def test_nothing_printed_is_a_run_with_no_transaction():
    row = row_from_verbose_output("** SIEGE 4.0.7\nThe server is now under siege...\n", elapsed_s=60)
    assert (row.trans, row.okay, row.failed, row.elap_time, row.trans_rate) == (0, 0, 0, 60, 0)
