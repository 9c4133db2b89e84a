from __future__ import annotations

import csv
from datetime import datetime

import pytest

from servetune.config import RESOURCE_COLUMNS, ResourceSample
from servetune.monitor.resource_csv import (
    ResourceCsvError,
    ResourceCsvWriter,
    parse_time,
    read_resource_csv,
    wall_clock_text,
)

HEADER = "time,n_replica,cpu_req_core,mem_req_KB,cpu_lim_core,mem_lim_KB,cpu_use_core,mem_use_KB"


def sample(time: str, n: int = 2, use: float = 0.25) -> ResourceSample:
    return ResourceSample(
        time=time, n_replica=n, cpu_req_core=0.5 * n, mem_req_KB=262144.0 * n, cpu_lim_core=1.0 * n,
        mem_lim_KB=524288.0 * n, cpu_use_core=use, mem_use_KB=183500.5,
    )


def test_header_is_the_reference_columns_and_rows_round_trip(tmp_path):
    path = tmp_path / "resource_usage.csv"
    rows = [sample("2026-11-29 05:00:00"), sample("2026-11-29 05:00:05", n=3, use=1.123456789)]
    with ResourceCsvWriter(path) as writer:
        for row in rows:
            writer.write(row)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    assert RESOURCE_COLUMNS == HEADER.split(",")
    # Whole numbers are written like the reference's Decimal sums (no trailing .0).
    assert lines[1] == "2026-11-29 05:00:00,2,1,524288,2,1048576,0.25,183500.5"
    assert read_resource_csv(path) == rows


def test_every_row_is_on_disk_before_the_writer_closes(tmp_path):
    path = tmp_path / "resource_usage.csv"
    writer = ResourceCsvWriter(path)
    assert path.read_text() == HEADER + "\n"
    writer.write(sample("2026-11-29 05:00:00"))
    assert len(path.read_text().splitlines()) == 2
    writer.close()


def test_reads_the_reference_monitors_own_output(tmp_path):
    # Written by the reference script: seconds since start, Decimal sums, 0 when nothing was counted.
    path = tmp_path / "resource_usage.csv"
    path.write_text(HEADER + "\r\n0.0,0,0,0,0,0,0.012345678,10240\r\n5.01,1,0.5,262144,1,524288,0.41,201728\r\n")
    samples = read_resource_csv(path)
    assert [s.n_replica for s in samples] == [0, 1]
    assert samples[1].time == "5.01" and samples[1].mem_req_KB == 262144
    assert parse_time(samples[1].time) == 5.01


def test_wall_clock_text_parses_back():
    text = wall_clock_text(1_700_000_000)
    assert isinstance(parse_time(text), datetime)
    assert datetime.fromtimestamp(1_700_000_000).replace(microsecond=0) == parse_time(text)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"resource_usage.csv: line 1: empty file"),
        ("time,n,cpu\n", r"resource_usage.csv: line 1: header is"),
        (HEADER + "\n5,1,0.5,262144,1,524288,0.4\n", r"resource_usage.csv: line 2: 7 fields, expected 8"),
        (HEADER + "\n5,1,0.5,262144,1,524288,0.4,1\n10,1,half,1,1,1,1,1\n",
         r"resource_usage.csv: line 3: cpu_req_core 'half' is not a number"),
        (HEADER + "\n5,1.5,0.5,262144,1,524288,0.4,1\n", r"csv: line 2: n_replica '1.5' is not a whole number"),
        (HEADER + "\nyesterday,1,0.5,262144,1,524288,0.4,1\n", r"csv: line 2: time 'yesterday' is neither"),
        (HEADER + "\n5,1,0.5,-3,1,524288,0.4,1\n", r"csv: line 2: mem_req_KB '-3' is not a finite number >= 0"),
        (HEADER + "\n5,1,0.5,nan,1,524288,0.4,1\n", r"csv: line 2: mem_req_KB 'nan'"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "resource_usage.csv"
    path.write_text(content)
    with pytest.raises(ResourceCsvError, match=message):
        read_resource_csv(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ResourceCsvError, match="no such file"):
        read_resource_csv(tmp_path / "absent.csv")


def test_output_is_plain_csv_a_spreadsheet_reads(tmp_path):
    path = tmp_path / "r.csv"
    with ResourceCsvWriter(path) as writer:
        writer.write(sample("2026-11-29 05:00:00"))
    with path.open(newline="") as file:
        records = list(csv.DictReader(file))
    assert float(records[0]["mem_use_KB"]) == 183500.5
