"""replica_states.csv: what resource_usage.csv's reference columns cannot say, one row per sample.

Columns: time,ready,starting,pending,terminating,usage_unmeasured. `time` is the resource_usage.csv row's
own; the counts split that row's `n_replica` (the reference counts every pod, whatever its state):
`pending` replicas wait for capacity (no node can take them), `starting` ones are placed but not ready,
and `usage_unmeasured` of them had no usage measured yet, so that row's usage columns count them as 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

from servetune.config import ReplicaStates
from servetune.errors import ServetuneError
from servetune.monitor.resource_csv import FlushedCsvWriter

STATE_COLUMNS: list[str] = list(ReplicaStates.model_fields)


class ReplicaStatesError(ServetuneError, ValueError):
    """A replica_states.csv that cannot be read; the message names the file and line."""


class ReplicaStatesWriter(FlushedCsvWriter):
    """Writes replica_states.csv."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, STATE_COLUMNS)

    def write(self, states: ReplicaStates) -> None:
        self.write_row([str(getattr(states, column)) for column in STATE_COLUMNS])


def read_replica_states(path: str | Path) -> list[ReplicaStates]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ReplicaStatesError(f"{path}: cannot be read ({error})") from None
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None or [cell.strip() for cell in header] != STATE_COLUMNS:
        raise ReplicaStatesError(f"{path}: line 1: expected the header {','.join(STATE_COLUMNS)}")
    states = []
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(STATE_COLUMNS):
            raise ReplicaStatesError(f"{path}: line {number}: {len(row)} fields, expected {len(STATE_COLUMNS)}")
        try:
            counts = {column: int(cell) for column, cell in zip(STATE_COLUMNS[1:], row[1:], strict=True)}
        except ValueError:
            raise ReplicaStatesError(f"{path}: line {number}: a count that is not a whole number") from None
        if any(count < 0 for count in counts.values()):
            raise ReplicaStatesError(f"{path}: line {number}: a negative count")
        states.append(ReplicaStates(time=row[0].strip(), **counts))
    return states
