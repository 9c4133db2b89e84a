"""siege's --log format: byte-for-byte round trip of logs written by the real siege 4.x, and clear errors."""

from __future__ import annotations

import math
import subprocess

import pytest

from environment import require_tool
from servetune.config import LoadRunRow
from servetune.load.siege import (
    SIEGE_LOG_HEADER,
    SiegeLogError,
    append_siege_row,
    read_siege_log,
    write_siege_log,
)


def real_siege_log(tmp_path, recording_server, statuses: list[int]):
    siege = require_tool("siege")
    log = tmp_path / "siege.log"
    for status in statuses:
        recording_server.responses = [status]
        subprocess.run(
            [siege, "-q", "-c", "2", "-r", "3", f"--log={log}", f"{recording_server.url}/test"],
            check=True, capture_output=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    # connection refused: no transaction at all, siege prints -nan
    subprocess.run(
        [siege, "-q", "-c", "1", "-r", "2", f"--log={log}", "http://127.0.0.1:9/test"],
        check=False, capture_output=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return log


def test_real_siege_log_round_trips_byte_for_byte(tmp_path, recording_server):
    log = real_siege_log(tmp_path, recording_server, [200, 404, 500])
    original = log.read_text()
    assert original.startswith(SIEGE_LOG_HEADER)
    rows = read_siege_log(log)
    assert len(rows) == 4
    ok, not_found, server_error, refused = rows
    # siege's own accounting: 2 users x 3 reps
    assert (ok.trans, ok.okay, ok.failed) == (6, 6, 0)
    assert (not_found.trans, not_found.okay, not_found.failed) == (6, 0, 0)
    assert (server_error.trans, server_error.okay, server_error.failed) == (0, 0, 6)
    # no transaction: siege divides by zero and logs inf, or -nan when the summed time rounds to 0
    assert not math.isfinite(server_error.resp_time)
    assert refused.failed == 2 and math.isnan(refused.resp_time)
    copy = tmp_path / "copy.log"
    write_siege_log(copy, rows)
    assert copy.read_bytes() == log.read_bytes()


def test_append_writes_header_once_like_siege(tmp_path):
    row = LoadRunRow(
        date_time="2024-03-01 10:00:00", trans=1234, elap_time=59.71, data_trans=2.9, resp_time=0.5,
        trans_rate=20.67, throughput=0.03, concurrent=10.33, okay=1234, failed=3,
    )  # fmt: skip
    log = tmp_path / "load_output.csv"
    append_siege_row(log, row)
    append_siege_row(log, row)
    lines = log.read_text().splitlines(keepends=True)
    assert lines[0] == SIEGE_LOG_HEADER
    expected = (
        "2024-03-01 10:00:00,   1234,      59.71,           2,       0.50,       20.67,        0.03,"
        "       10.33,    1234,       3\n"
    )
    assert lines[1:] == [expected, expected]


def test_reader_skips_marks_blank_lines_and_repeated_headers(tmp_path):
    log = tmp_path / "log.csv"
    line = "2024-03-01 10:00:00,     10,      60.00,           0,       0.10,        0.17,        0.00,        0.02,      10,       0\n"
    log.write_text(SIEGE_LOG_HEADER + line + "**** phase two ****\n\n" + SIEGE_LOG_HEADER + line)
    assert [row.trans for row in read_siege_log(log)] == [10, 10]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("2024-03-01 10:00:00,     10,      60.00\n", "expected 10 comma-separated fields"),
        (
            "2024-03-01 10:00:00,     ten,      60.00,  0, 0.1, 0.1, 0, 0, 10, 0\n",
            "Trans 'ten' is not a number",
        ),
        ("yesterday,     10,      60.00,  0, 0.1, 0.1, 0, 0, 10, 0\n", "is not YYYY-MM-DD HH:MM:SS"),
        (
            "2024-03-01 10:00:00,     10,      60.00,  0, 0.1, 0.1, 0, 0, 1.5, 0\n",
            "OKAY 1.5 is not a whole number",
        ),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, problem):
    log = tmp_path / "bad.csv"
    good = "2024-03-01 10:00:00,     10,      60.00,           0,       0.10,        0.17,        0.00,        0.02,      10,       0\n"
    log.write_text(SIEGE_LOG_HEADER + good + line)
    with pytest.raises(SiegeLogError) as error:
        read_siege_log(log)
    assert f"{log}: line 3:" in str(error.value)
    assert problem in str(error.value)


def test_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(SiegeLogError, match="nothing.csv: cannot read"):
        read_siege_log(tmp_path / "nothing.csv")
