"""resource_usage.csv: the reference monitor's columns, one row per sample, written and read.

Columns: time,n_replica,cpu_req_core,mem_req_KB,cpu_lim_core,mem_lim_KB,cpu_use_core,mem_use_KB.
Sums over the counted replicas: CPU in cores, memory in KiB (bytes / 1024, as the reference divides
Kubernetes quantities by 1024).

`time` is seconds since the monitor's first sample, `round(t, 2)`, as the reference monitor writes it
(0.0, 5.01, ...), so scripts written for its CSV work on ours. The wall-clock time of the first sample is
kept in the run's run.json (`monitor_first_sample_at`) to line samples up with the load log. The reader
also accepts the local wall-clock form "%Y-%m-%d %H:%M:%S" that older servetune versions wrote.
"""

from __future__ import annotations

import csv
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Self, TextIO

from servetune.config import RESOURCE_COLUMNS, ResourceSample
from servetune.errors import ServetuneError

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class ResourceCsvError(ServetuneError, ValueError):
    """A resource_usage.csv that cannot be read; the message names the file and line."""


def wall_clock_text(unix_time: float | None = None) -> str:
    """The `time` column for a sample taken at `unix_time` (now by default), in local time."""
    return time.strftime(TIME_FORMAT, time.localtime(unix_time))


def parse_time(text: str) -> float | datetime:
    """A `time` cell: seconds since the monitor started (reference form) or a local wall-clock datetime."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        return datetime.strptime(text, TIME_FORMAT)
    if not math.isfinite(seconds):
        raise ValueError(f"time {text!r} is not a finite number")
    return seconds


def elapsed_text(seconds: float) -> str:
    """The `time` column as the reference monitor writes it: str(round(t, 2))."""
    return str(round(seconds, 2))


def on_wall_clock(samples: list[ResourceSample], first_sample_at: float) -> list[ResourceSample]:
    """Samples timed in seconds since the first one, re-timed on the local wall clock (unix time given)."""
    timed = []
    for sample in samples:
        when = parse_time(sample.time)
        if isinstance(when, float):
            sample = sample.model_copy(update={"time": wall_clock_text(first_sample_at + when)})
        timed.append(sample)
    return timed


def _number_text(value: float) -> str:
    # Whole numbers without ".0", like the Decimal sums the reference writes (262144, not 262144.0).
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return repr(value)


class FlushedCsvWriter:
    """A CSV file with its header, flushing every row so a crash or Ctrl-C keeps what was measured."""

    def __init__(self, path: str | Path, header: list[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self.write_row(header)

    def write_row(self, cells: list[str]) -> None:
        self._writer.writerow(cells)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ResourceCsvWriter(FlushedCsvWriter):
    """Writes resource_usage.csv."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, RESOURCE_COLUMNS)

    def write(self, sample: ResourceSample) -> None:
        row = [sample.time, str(sample.n_replica)]
        row += [_number_text(getattr(sample, column)) for column in RESOURCE_COLUMNS[2:]]
        self.write_row(row)


def read_resource_csv(path: str | Path) -> list[ResourceSample]:
    """All samples of a resource_usage.csv; ResourceCsvError naming file and line when it is malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResourceCsvError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ResourceCsvError(f"{path}: cannot be read ({error})") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise ResourceCsvError(f"{path}: line 1: empty file, expected the header {','.join(RESOURCE_COLUMNS)}")
    if [cell.strip() for cell in header] != RESOURCE_COLUMNS:
        raise ResourceCsvError(
            f"{path}: line 1: header is {','.join(header)!r}, expected {','.join(RESOURCE_COLUMNS)!r}"
        )
    samples = []
    for line_number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        samples.append(_sample(row, f"{path}: line {line_number}"))
    return samples


def _sample(row: list[str], where: str) -> ResourceSample:
    if len(row) != len(RESOURCE_COLUMNS):
        raise ResourceCsvError(f"{where}: {len(row)} fields, expected {len(RESOURCE_COLUMNS)}")
    time_text = row[0].strip()
    try:
        parse_time(time_text)
    except ValueError:
        raise ResourceCsvError(
            f"{where}: time {time_text!r} is neither seconds nor {TIME_FORMAT!r}"
        ) from None
    values: dict[str, object] = {"time": time_text}
    for column, cell in zip(RESOURCE_COLUMNS[1:], row[1:], strict=True):
        try:
            value = float(cell)
        except ValueError:
            raise ResourceCsvError(f"{where}: {column} {cell.strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ResourceCsvError(f"{where}: {column} {cell.strip()!r} is not a finite number >= 0")
        if column == "n_replica":
            if not value.is_integer():
                raise ResourceCsvError(f"{where}: n_replica {cell.strip()!r} is not a whole number")
            value = int(value)
        values[column] = value
    return ResourceSample.model_validate(values)
