"""The report's figures (matplotlib, Agg backend: no display needed). Each function saves one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from servetune.analyze.stats import RunData, is_okay, run_end, sample_seconds
from servetune.config import PhaseSummary, RunSummary
from servetune.monitor.resource_csv import parse_time

REQUESTED, LIMIT, USED = "#1f77b4", "#9aa5b1", "#d62728"
RATE, RESPONSE = "#2ca02c", "#ff7f0e"
REPLICA_STATES = [("ready", "#2ca02c"), ("starting", "#1f77b4"), ("pending", "#d62728"), ("terminating", "#9aa5b1")]
DPI = 110


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _timeline(data: RunData) -> tuple[list[float], list[tuple[float, float]]]:
    """Minutes since the evaluation started for each resource sample, and each load run's (start, end).

    Wall-clock samples line up with siege's clock; the reference monitor's seconds-since-start are taken
    to start with the first load run (the reference starts both together).
    """
    runs = [(run_end(r) - timedelta(seconds=r.elap_time), run_end(r)) for r in data.load_rows]
    origin = runs[0][0]
    if all(isinstance(parse_time(s.time), datetime) for s in data.resources):
        origin = min(origin, parse_time(data.resources[0].time))
        samples = [(parse_time(s.time) - origin).total_seconds() / 60 for s in data.resources]
    else:
        first = sample_seconds(data.resources)[0]
        samples = [(t - first) / 60 for t in sample_seconds(data.resources)]
    spans = [((a - origin).total_seconds() / 60, (b - origin).total_seconds() / 60) for a, b in runs]
    return samples, spans


def resources_over_time(data: RunData, path: Path) -> Path:
    """Load offered, replicas, CPU and memory (requested, limit, used) on one time axis."""
    minutes, spans = _timeline(data)
    samples = data.resources
    figure = Figure(figsize=(10, 10), layout="constrained")
    axes = figure.subplots(4, 1, sharex=True, height_ratios=[1, 0.8, 1, 1])
    load, replicas, cpu, memory = axes
    response = load.twinx()
    for (a, b), row in zip(spans, data.load_rows, strict=True):
        load.plot([a, b], [row.okay / row.elap_time if row.elap_time else 0] * 2, color=RATE, lw=2)
        response.plot([a, b], [row.resp_time if row.okay else np.nan] * 2, color=RESPONSE, lw=2)
    load.set_ylabel("OKAY/s", color=RATE)
    load.set_ylim(bottom=0)
    response.set_ylabel("mean response time (s)", color=RESPONSE)
    response.set_ylim(bottom=0)
    load.set_title("Each load run: transaction rate (left) and mean response time (right)")
    replicas.step(minutes, [s.n_replica for s in samples], where="post", color="black", label="counted")
    if all(state is not None for state in data.states):
        # The reference counts every pod; what each was doing, stacked: served, starting, waiting, leaving.
        layers = [[getattr(state, name) for state in data.states] for name, _ in REPLICA_STATES]
        replicas.stackplot(minutes, layers, step="post", colors=[color for _, color in REPLICA_STATES],
                           labels=[name for name, _ in REPLICA_STATES], alpha=0.6)
        replicas.legend(loc="upper left", fontsize=8, ncols=5)
    replicas.set_ylabel("replicas")
    replicas.set_ylim(0, max(s.n_replica for s in samples) + 1)
    replicas.yaxis.get_major_locator().set_params(integer=True)
    for axis, unit, scale, columns in (
        (cpu, "CPU cores", 1.0, ("cpu_req_core", "cpu_lim_core", "cpu_use_core")),
        (memory, "memory MiB", 1 / 1024, ("mem_req_KB", "mem_lim_KB", "mem_use_KB")),
    ):
        for column, color, label, style in zip(columns, (REQUESTED, LIMIT, USED), ("requested", "limit", "used"),
                                               ("-", "--", "-"), strict=True):
            values = [getattr(s, column) * scale for s in samples]
            if label == "used":  # a sample that measured no usage for some replica draws no "used" line
                values = [np.nan if state is not None and state.usage_unmeasured else value
                          for value, state in zip(values, data.states, strict=True)]
            axis.step(minutes, values, where="post", color=color, ls=style, label=label)
        axis.set_ylabel(unit)
        axis.set_ylim(bottom=0)
        axis.legend(loc="upper left", fontsize=8, ncols=3)
    for axis in axes:
        axis.grid(alpha=0.3)
        for index, (a, b) in enumerate(spans):
            if index % 2:
                axis.axvspan(a, b, color="#f0f0f0", zorder=0)
    memory.set_xlabel("minutes since the evaluation started (shaded bands: alternate load runs)")
    return _save(figure, path)


def phases_against_load(phases: Sequence[PhaseSummary], path: Path) -> Path:
    """Response time and transaction rate of each phase against the load it offered."""
    known = all(p.offered_rate for p in phases)
    x = [p.offered_rate if known else p.phase + 1 for p in phases]
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    response, rate = figure.subplots(1, 2)
    for axis, values, label in (
        (response, [p.response_time_s for p in phases], "mean response time (s)"),
        (rate, [p.transaction_rate for p in phases], "transaction rate (OKAY/s)"),
    ):
        axis.scatter(x, [np.nan if v is None else v for v in values], s=40, color=REQUESTED, zorder=3)
        for xi, value, phase in zip(x, values, phases, strict=True):
            if value is not None:
                axis.annotate(str(phase.phase + 1), (xi, value), fontsize=8, xytext=(5, -3),
                              textcoords="offset points")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if known:
            axis.set_xscale("log")
            axis.set_xlabel("offered load: users / (d / 2), requests/s if answers were instant")
        else:
            axis.set_xlabel("phase")
    for phase, xi in zip(phases, x, strict=True):
        if phase.latency_p95_s is not None:
            response.plot([xi, xi], [phase.latency_p50_s, phase.latency_p95_s], color=USED, alpha=0.6, lw=2)
    if any(p.latency_p95_s is not None for p in phases):
        response.plot([], [], color=USED, lw=2, label="p50..p95 (per request)")
        response.legend(fontsize=8)
    if known:
        lo, hi = min(x), max(x)
        rate.plot([lo, hi], [lo, hi], ls=":", color=LIMIT, label="served = offered")
        rate.set_yscale("log")
        rate.legend(fontsize=8)
    response.set_yscale("log")
    response.set_title("Response time per phase (numbers: phases)")
    rate.set_title("Transaction rate per phase")
    return _save(figure, path)


def latency_distribution(data: RunData, summary: RunSummary, path: Path) -> Path | None:
    """Histogram and CDF of per-request latency (OKAY requests); None without requests.csv."""
    latencies = np.sort([r.latency_s for r in data.requests or [] if is_okay(r)])
    if latencies.size == 0:
        return None
    figure = Figure(figsize=(11, 4), layout="constrained")
    histogram, cdf = figure.subplots(1, 2)
    low, high = max(latencies[0], 1e-4), max(latencies[-1], 2e-4)
    bins = np.logspace(np.log10(low), np.log10(high), 60)
    histogram.hist(latencies, bins=bins, color=REQUESTED)
    histogram.set_xscale("log")
    histogram.set_xlabel("latency (s)")
    histogram.set_ylabel("requests")
    cdf.plot(latencies, np.arange(1, latencies.size + 1) / latencies.size, color=REQUESTED)
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (s)")
    cdf.set_ylabel("fraction of requests")
    for name, value, style in (("p50", summary.latency_p50_s, "-"), ("p95", summary.latency_p95_s, "--"),
                               ("p99", summary.latency_p99_s, ":")):
        for axis in (histogram, cdf):
            axis.axvline(value, color=USED, ls=style, lw=1, label=f"{name} {value * 1000:.0f} ms")
    for axis in (histogram, cdf):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    histogram.set_title(f"Latency of {latencies.size} OKAY requests")
    cdf.set_title("Latency CDF")
    return _save(figure, path)
