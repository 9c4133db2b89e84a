"""record(): the `time` column is seconds since the first sample, round(t, 2), like the reference monitor."""

from __future__ import annotations

import csv
import time

from servetune.config import ResourceSample
from servetune.monitor.record import record
from servetune.monitor.resource_csv import on_wall_clock, wall_clock_text


def sample() -> ResourceSample:
    return ResourceSample(time=wall_clock_text(), n_replica=1, cpu_req_core=0.5, mem_req_KB=262144,
                          cpu_lim_core=1, mem_lim_KB=524288, cpu_use_core=0.1, mem_use_KB=100000)


def test_time_column_is_seconds_since_the_first_sample(tmp_path):
    out = tmp_path / "resource_usage.csv"
    rows = record(sample, out, interval_s=0.2, duration_s=0.9)

    lines = out.read_text().splitlines()
    assert rows == len(lines) - 1 >= 3
    assert lines[1].startswith("0.0,1,0.5,262144,")
    times = [float(row["time"]) for row in csv.DictReader(lines)]
    assert times == sorted(times) and all(t == round(t, 2) for t in times)
    assert 0.1 < times[1] < 0.4 and times[-1] < 1.2


def test_seconds_are_put_back_on_the_wall_clock_with_the_first_sample_time():
    start = time.mktime((2026, 11, 30, 10, 0, 0, 0, 0, -1))
    rows = [sample().model_copy(update={"time": text}) for text in ("0.0", "5.01", "10.0")]
    timed = on_wall_clock(rows, start)
    assert [t.time for t in timed] == ["2026-11-30 10:00:00", "2026-11-30 10:00:05", "2026-11-30 10:00:10"]
    # Wall-clock rows (older CSVs) are kept as they are.
    assert on_wall_clock(timed, start) == timed
