"""Live progress of a load test in the terminal (rich): phase, run, users, req/s, p50/p95, errors."""

from __future__ import annotations

from typing import Self

from rich.console import Console
from rich.live import Live
from rich.table import Table

from servetune.config import LoadPhase
from servetune.load.tally import RunTally


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def progress_table(
    run: int, runs: int, phase_index: int, phase: LoadPhase, mode: str, tally: RunTally, duration_s: float
) -> Table:
    elapsed = tally.elapsed()
    latencies = sorted(tally.latencies)
    table = Table(box=None, show_header=True, header_style="bold")
    for column in ("run", "phase", "load", "time", "req/s", "p50 ms", "p95 ms", "okay", "errors"):
        table.add_column(column, justify="right")
    load = f"{phase.open_loop_rate():.1f}/s" if mode == "open" else f"{phase.users}u d{phase.delay:g}"
    table.add_row(
        f"{run + 1}/{runs}",
        f"{phase_index + 1} {phase.target}",
        load,
        f"{elapsed:5.1f}/{duration_s:.0f}s",
        f"{tally.trans / elapsed if elapsed > 0 else 0:.1f}",
        f"{percentile(latencies, 0.50) * 1000:.1f}",
        f"{percentile(latencies, 0.95) * 1000:.1f}",
        str(tally.okay),
        str(tally.failed + tally.trans - tally.okay),
    )
    return table


class LoadProgress:
    """A rich Live view, or nothing when disabled (tests, background threads)."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.live = Live(console=console or Console(stderr=True), auto_refresh=False) if enabled else None

    def __enter__(self) -> Self:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, table: Table) -> None:
        if self.live is not None:
            self.live.update(table, refresh=True)
