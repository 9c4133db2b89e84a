"""Runs side by side, with the Pareto-optimal ones marked.

Objectives: accuracy (higher is better), memory requested, CPU requested and response time (lower is
better). A run is Pareto-optimal when no other run is at least as good on all four and better on one.
A run without a known accuracy or response time counts as worst on that objective.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from servetune.analyze.live_accuracy import live_accuracy, overlap_notes
from servetune.analyze.report import (
    embedded_png,
    html_page,
    html_table,
    live_accuracy_text,
    markdown_table,
    pending_text,
    usage_coverage,
)
from servetune.analyze.stats import summarize
from servetune.config import RunSummary

COLUMNS = ["run", "Pareto", "accuracy", "mem req KB", "mem used KB", "CPU req", "CPU used", "OKAY/s",
           "resp. time ms", "p95 ms", "failures", "replica-s"]
LIVE_COLUMN = "live accuracy"  # beside "accuracy", when a run measured it
PENDING_COLUMN = "waited for capacity"  # last, when a run recorded its replicas' states
LIVE_NOTE = ("live accuracy: held-out user labels measured during the run, beside the offline accuracy (the "
             "model's, on a fixed data set), which is the one Pareto compares.")


def objectives(summary: RunSummary) -> tuple[float, float, float, float]:
    """All four as 'lower is better'."""
    accuracy = -summary.accuracy if summary.accuracy is not None else math.inf
    response = summary.response_time_s if summary.response_time_s is not None else math.inf
    return accuracy, summary.memory_requested_KB, summary.cpu_requested_core, response


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def pareto_optimal(summaries: Sequence[RunSummary]) -> set[int]:
    """Indexes of the runs no other run dominates."""
    points = [objectives(s) for s in summaries]
    return {i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)}


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def comparison_rows(summaries: Sequence[RunSummary], optimal: set[int]) -> list[list[str]]:
    """The COLUMNS of each run."""
    return [
        [s.name, "yes" if i in optimal else "", _cell(s.accuracy, ".2%"), _cell(s.memory_requested_KB, ",.0f"),
         _cell(s.memory_used_KB, ",.0f") + usage_coverage(s, brief=True), _cell(s.cpu_requested_core, ".3f"),
         _cell(s.cpu_used_core, ".3f") + usage_coverage(s, brief=True), _cell(s.transaction_rate, ".3f"),
         _cell(None if s.response_time_s is None else s.response_time_s * 1000, ".1f"),
         _cell(None if s.latency_p95_s is None else s.latency_p95_s * 1000, ".1f"),
         f"{s.failure_rate:.2%}", _cell(s.replica_seconds, ",.0f")]
        for i, s in enumerate(summaries)
    ]


def _pending_cell(summary: RunSummary) -> str:
    if summary.max_pending is None:
        return "n/a"  # no replica_states.csv (a reference run folder, a simulation)
    return pending_text(summary) or "none"


def comparison_table(summaries: Sequence[RunSummary], optimal: set[int]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows): COLUMNS, with live accuracy beside accuracy when a run measured it and the time
    replicas waited for capacity when a run recorded it."""
    columns, rows = list(COLUMNS), comparison_rows(summaries, optimal)
    if any(live_accuracy_text(s) is not None for s in summaries):
        at = columns.index("accuracy") + 1
        columns.insert(at, LIVE_COLUMN)
        for row, s in zip(rows, summaries, strict=True):
            live = live_accuracy_text(s)
            row.insert(at, "n/a" if live is None else f"live {live}")
    if any(s.max_pending is not None for s in summaries):
        columns.append(PENDING_COLUMN)
        for row, s in zip(rows, summaries, strict=True):
            row.append(_pending_cell(s))
    return columns, rows


def live_notes(summaries: Sequence[RunSummary]) -> list[str]:
    """For each two runs that measured live accuracy, whether their 95 % Wilson intervals overlap."""
    return overlap_notes([(s.name, live_accuracy([s])) for s in summaries])


def comparison_plot(summaries: Sequence[RunSummary], optimal: set[int], path: Path) -> Path:
    """Response time against CPU requested, memory requested and accuracy; Pareto runs filled."""
    panels = [("CPU requested (cores, mean)", lambda s: s.cpu_requested_core),
              ("memory requested (MiB, mean)", lambda s: s.memory_requested_KB / 1024),
              ("accuracy", lambda s: s.accuracy)]
    figure = Figure(figsize=(13, 4.2), layout="constrained")
    axes = figure.subplots(1, 3, sharey=True)
    for axis, (label, value) in zip(axes, panels, strict=True):
        for i, s in enumerate(summaries):
            x, y = value(s), s.response_time_s
            if x is None or y is None:
                continue
            pareto = i in optimal
            axis.scatter(x, y * 1000, s=60, zorder=3, color="#2ca02c" if pareto else "white",
                         edgecolors="#2ca02c" if pareto else "#555555", linewidths=1.5)
            axis.annotate(s.name, (x, y * 1000), fontsize=8, xytext=(5, 4), textcoords="offset points")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
        axis.margins(0.15)
    axes[0].set_ylabel("response time (ms, OKAY-weighted)")
    axes[0].scatter([], [], color="#2ca02c", label="Pareto-optimal")
    axes[0].scatter([], [], color="white", edgecolors="#555555", label="dominated")
    axes[0].legend(fontsize=8)
    figure.suptitle("Runs compared: lower response time and resources, higher accuracy are better")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def write_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> tuple[list[RunSummary], set[int], Path]:
    """Summarize every run, write comparison.md/.html/.png into `out_dir`; (summaries, optimal, html path)."""
    summaries = [summarize(run_dir) for run_dir in run_dirs]
    names = [s.name for s in summaries]
    for i, s in enumerate(summaries):  # two folders with the same name get their path as name
        if names.count(s.name) > 1:
            summaries[i] = s.model_copy(update={"name": s.run_dir})
    optimal = pareto_optimal(summaries)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot = comparison_plot(summaries, optimal, out / "comparison.png")
    columns, rows = comparison_table(summaries, optimal)
    note = ("Pareto-optimal: no other run has higher-or-equal accuracy and lower-or-equal memory requested, "
            "CPU requested and response time, better on at least one.")
    if LIVE_COLUMN in columns:
        note += " " + LIVE_NOTE
    overlaps = live_notes(summaries)
    (out / "comparison.md").write_text(
        f"# Runs compared\n\n{note}\n\n{markdown_table(columns, rows)}\n"
        + "".join(f"- {line}\n" for line in overlaps) + ("\n" if overlaps else "")
        + f"![comparison]({plot.name})\n",
        encoding="utf-8",
    )
    page = out / "comparison.html"
    page.write_text(html_page("Runs compared", "\n".join([
        "<h1>Runs compared</h1>", f"<p class=note>{html.escape(note)}</p>",
        html_table(columns, rows, marked=optimal), *(f"<p>{html.escape(line)}</p>" for line in overlaps),
        embedded_png(plot, "comparison"),
    ])), encoding="utf-8")
    return summaries, optimal, page
