"""`servetune analyze`, `report` and `compare`: the statistics of run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def analyze(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (resource_usage.csv, load_output.csv, ...)")],
    json_output: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """The four reference statistics of a run, with CPU, replica-seconds, percentiles and phases."""
    from rich.console import Console
    from rich.table import Table

    from servetune.analyze.report import PHASE_COLUMNS, phase_rows, statistics_rows
    from servetune.analyze.stats import summarize

    summary = summarize(run_dir)
    if json_output:
        typer.echo(summary.model_dump_json(indent=2))
        return
    statistics = Table("statistic", "value", title=f"run {summary.name}")
    for name, value in statistics_rows(summary):
        statistics.add_row(name, value)
    phases = Table(*PHASE_COLUMNS, title="phases")
    for row in phase_rows(summary.phases):
        phases.add_row(*row)
    Console(width=160).print(statistics, phases)


def report(run_dir: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """Write report.html (self-contained), report.md, the plots and summary.json into the run folder."""
    from servetune.analyze.report import write_report

    page = write_report(run_dir).page
    typer.echo(f"report: {page} (and {page.with_suffix('.md').name}, plots, summary.json)")


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders to put side by side")],
    out: Annotated[Path, typer.Option(help="folder for comparison.md/.html/.png")] = Path("comparison"),
) -> None:
    """Runs side by side; marks the Pareto-optimal ones (accuracy, memory and CPU requested, response time)."""
    from rich.console import Console
    from rich.table import Table

    from servetune.analyze.compare import (
        LIVE_COLUMN,
        LIVE_NOTE,
        comparison_table,
        live_notes,
        write_comparison,
    )

    summaries, optimal, page = write_comparison(run_dirs, out)
    columns, rows = comparison_table(summaries, optimal)
    table = Table(*columns, title="runs compared (Pareto: not dominated on accuracy, resources, response time)",
                  caption=LIVE_NOTE if LIVE_COLUMN in columns else None)
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold green" if i in optimal else None)
    Console(width=200).print(table)
    for line in live_notes(summaries):
        typer.echo(line)
    typer.echo(f"comparison: {page}")
