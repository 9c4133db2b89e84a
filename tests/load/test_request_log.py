"""The per-request log: round trip of config.RequestRecord rows, and errors naming file and line."""

from __future__ import annotations

import pytest

from servetune.config import RequestRecord
from servetune.load.request_log import RequestLogError, read_request_log, write_request_log


def test_round_trip(tmp_path):
    records = [
        RequestRecord(start=1700000000.123456, latency_s=0.25, status=200, bytes=120, phase=0, replica="h:1"),
        RequestRecord(start=1700000000.5, latency_s=30.0, status=0, bytes=0, phase=3, replica=""),
    ]
    path = tmp_path / "requests.csv"
    write_request_log(path, records)
    assert path.read_text().splitlines()[0] == "start,latency_s,status,bytes,phase,replica"
    assert read_request_log(path) == records


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("when,latency_s,status,bytes,phase,replica\n", "line 1: expected header"),
        ("", "line 1: expected header"),
        (
            "start,latency_s,status,bytes,phase,replica\n1.0,0.1,200,5,0,a\n1.0,0.1,200\n",
            "line 3: expected 6 fields",
        ),
        (
            "start,latency_s,status,bytes,phase,replica\n1.0,fast,200,5,0,a\n",
            "line 2: latency_s: Input should be",
        ),
    ],
)
def test_malformed_log_names_file_and_line(tmp_path, text, problem):
    path = tmp_path / "requests.csv"
    path.write_text(text)
    with pytest.raises(RequestLogError) as error:
        read_request_log(path)
    assert str(error.value).startswith(f"{path}: ")
    assert problem in str(error.value)
