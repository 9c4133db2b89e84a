"""Sample resources on a fixed cadence into resource_usage.csv (any backend: Kubernetes or local)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from servetune.config import ResourceSample
from servetune.host.schedule import every
from servetune.monitor.resource_csv import ResourceCsvWriter, elapsed_text


def record(
    take_sample: Callable[[], ResourceSample | None],
    out_path: str | Path,
    *,
    interval_s: float = 5.0,
    duration_s: float | None = None,
    stop_event: threading.Event | None = None,
    on_sample: Callable[[ResourceSample], None] | None = None,
) -> int:
    """Write one row per tick until `duration_s` has passed or `stop_event` is set; return rows written.

    `take_sample` returns None when this tick has nothing trustworthy to write (it logs why); the row is
    skipped and the cadence goes on. Like the reference, ticks run while elapsed < duration (60 s at 5 s:
    12 rows, at 0, 5, ..., 55 s). Every row is flushed, so Ctrl-C keeps all rows written so far. Each row's
    `time` is seconds since the first row was taken, whatever the backend wrote there.
    """
    rows = 0
    start: float | None = None
    first_taken: float | None = None
    with ResourceCsvWriter(out_path) as writer:
        for due in every(interval_s, stop_event):
            start = due if start is None else start
            if duration_s is not None and due - start >= duration_s:
                break
            sample = take_sample()
            if sample is None:
                continue
            taken = time.monotonic()
            first_taken = taken if first_taken is None else first_taken
            sample = sample.model_copy(update={"time": elapsed_text(taken - first_taken)})
            writer.write(sample)
            rows += 1
            if on_sample is not None:
                on_sample(sample)
    return rows
