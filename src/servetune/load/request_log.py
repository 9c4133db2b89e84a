"""The per-request log (requests.csv): one row per request, the columns of config.RequestRecord.

siege keeps no such log; percentiles and per-replica counts come from it. `start` is the unix time the
request was sent (open loop: the time it was scheduled to be sent), `latency_s` runs from then to the end
of the response, `status` is 0 when no HTTP answer came back (connection refused, reset, timeout).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Self, TextIO

from pydantic import ValidationError

from servetune.config import RequestRecord
from servetune.errors import ServetuneError

REQUEST_COLUMNS: list[str] = list(RequestRecord.model_fields)


class RequestLogError(ServetuneError, ValueError):
    """A malformed per-request log; the message names the file and the line."""


class RequestLogWriter:
    """Appends records to requests.csv and flushes every batch, so a stopped test keeps what it measured."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.file: TextIO = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.writer = csv.writer(self.file)
        self.writer.writerow(REQUEST_COLUMNS)
        self.file.flush()

    def write(self, records: list[RequestRecord]) -> None:
        self.write_rows([(r.start, r.latency_s, r.status, r.bytes, r.phase, r.replica) for r in records])

    def write_rows(self, rows: list[tuple[float, float, int, int, int, str]]) -> None:
        """Rows as plain tuples in column order (the driver's cheap path: no model per request)."""
        self.writer.writerows(
            (f"{start:.6f}", f"{latency:.6f}", status, size, phase, replica)
            for start, latency, status, size, phase, replica in rows
        )
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_request_log(path: Path, records: list[RequestRecord]) -> None:
    with RequestLogWriter(path) as writer:
        writer.write(records)


def read_request_log(path: Path) -> list[RequestRecord]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RequestLogError(f"{path}: cannot read request log: {error}") from None
    if not rows or rows[0] != REQUEST_COLUMNS:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise RequestLogError(f"{path}: line 1: expected header {','.join(REQUEST_COLUMNS)}, found {found}")
    records = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(REQUEST_COLUMNS):
            raise RequestLogError(
                f"{path}: line {number}: expected {len(REQUEST_COLUMNS)} fields, found {len(row)}"
            )
        try:
            records.append(RequestRecord.model_validate(dict(zip(REQUEST_COLUMNS, row))))
        except ValidationError as error:
            problem = error.errors()[0]
            raise RequestLogError(f"{path}: line {number}: {problem['loc'][0]}: {problem['msg']}") from None
    return records
