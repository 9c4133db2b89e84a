"""The tune report's figures (matplotlib, Agg): the Pareto plots and replicas over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from servetune.analyze.stats import sample_seconds
from servetune.config import ResourceSample, RunSummary
from servetune.tune.search import Evaluation

DPI = 110
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")
SPARSE = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else "")  # 2s and 5s only


def pareto_plot(evaluations: Sequence[Evaluation], front: Sequence[Evaluation], recommended: Evaluation,
                baselines: dict[str, RunSummary], path: Path) -> Path:
    """Memory requested and CPU requested against response time, every simulated candidate coloured by
    accuracy (grey: not measured); the front ringed, the recommended one starred, baselines as crosses."""
    figure = Figure(figsize=(12, 5), layout="constrained")
    left, right = figure.subplots(1, 2, sharey=True)
    simulated = [e for e in evaluations if e.statistics is not None and e.statistics.response_time_s is not None]
    known = [e.accuracy for e in simulated if e.accuracy is not None]
    norm = Normalize(min(known, default=0) - 1e-3, max(known, default=1) + 1e-3)
    cmap = colormaps["viridis"]
    for axis, (x_of, x_label) in zip((left, right), [
        (lambda s: s.memory_requested_KB / 1024, "memory requested (MiB, mean)"),
        (lambda s: s.cpu_requested_core, "CPU requested (cores, mean)"),
    ], strict=True):
        for feasible, marker, alpha in ((False, "x", 0.25), (True, "o", 0.6)):
            group = [e for e in simulated if e.feasible == feasible]
            axis.scatter([x_of(e.statistics) for e in group], [e.statistics.response_time_s * 1000 for e in group],
                         c=[cmap(norm(e.accuracy)) if e.accuracy is not None else "#999999" for e in group],
                         s=12, marker=marker, alpha=alpha, linewidths=0.8,
                         label="feasible candidates" if feasible else "breaks a constraint")
        axis.scatter([x_of(e.statistics) for e in front], [e.statistics.response_time_s * 1000 for e in front],
                     facecolors="none", edgecolors="black", s=60, linewidths=1.2, label="Pareto front")
        stats = recommended.statistics
        axis.scatter([x_of(stats)], [stats.response_time_s * 1000], marker="*", s=300, color="#d62728",
                     edgecolors="black", zorder=5, label="recommended")
        for name, summary in baselines.items():
            if summary.response_time_s is None:
                continue
            axis.scatter([x_of(summary)], [summary.response_time_s * 1000], marker="P", s=120, color="#ff7f0e",
                         edgecolors="black", zorder=5)
            axis.annotate(name, (x_of(summary), summary.response_time_s * 1000), textcoords="offset points",
                          xytext=(6, 6))
        axis.set_xscale("log")
        axis.set_yscale("log")
        for ticks in (axis.xaxis, axis.yaxis):
            ticks.set_major_formatter(PLAIN)
            ticks.set_minor_formatter(SPARSE)
        axis.set_xlabel(x_label)
        axis.grid(True, which="both", alpha=0.3)
    left.set_ylabel("response time (ms, OKAY-weighted; simulated)")
    left.legend(loc="upper right", fontsize=8)
    colorbar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=right)
    colorbar.set_label("accuracy")
    figure.suptitle(f"{len(simulated):,} simulated candidates")
    figure.savefig(path, dpi=DPI)
    return path


def replicas_plot(series: dict[str, list[ResourceSample]], path: Path) -> Path:
    """Replicas over the profile for each named simulation (the recommended spec and the baselines)."""
    figure = Figure(figsize=(12, 3.5), layout="constrained")
    axis = figure.subplots()
    styles = [("-", 3.5), ("--", 2.2), (":", 2.2), ("-.", 1.5)]  # lines that coincide stay visible
    for index, (name, samples) in enumerate(series.items()):
        if not samples:
            continue
        seconds = sample_seconds(samples)
        minutes = [(t - seconds[0]) / 60 for t in seconds]
        style, width = styles[index % len(styles)]
        axis.step(minutes, [s.n_replica for s in samples], where="post", label=name, lw=width, ls=style)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("minutes since the load started (simulated)")
    axis.set_ylabel("replicas")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper left")
    figure.savefig(path, dpi=DPI)
    return path
