"""report.html of a tune folder: constraints, search, Pareto plots, front, baselines, verification."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servetune.analyze.live_accuracy import overlap_notes
from servetune.analyze.report import embedded_png, html_page, html_table
from servetune.config import RunSummary
from servetune.tune.constraints import BOUNDED, Constraints
from servetune.tune.frontier import Rule
from servetune.tune.repeats import spread
from servetune.tune.search import Evaluation
from servetune.tune.verify import Verification

SIDE_BY_SIDE = ["statistic", "simulated", "measured", "difference"]


@dataclass
class SearchFacts:
    strategy: str
    space_size: int
    evaluated: int
    simulated: int
    simulations: int
    seconds: float
    jobs: int
    profile: str
    backend: str
    seeding: list[str] = field(default_factory=list)  # how the first generation was seeded, one line each
    calibrations: list[str] = field(default_factory=list)  # which calibration each model is simulated with
    calibration_warnings: list[str] = field(default_factory=list)  # models the --calibration files miss


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def statistic_cells(s: RunSummary | None) -> list[str]:
    if s is None:
        return ["n/a"] * 7
    return [f"{s.memory_requested_KB / 1024:,.0f}", f"{s.cpu_requested_core:.3f}", ms(s.response_time_s),
            ms(s.latency_p95_s), f"{s.failure_rate:.2%}", f"{s.transaction_rate:.2f}",
            f"{s.mean_replicas:.2f} / {s.max_replicas}"]


STAT_HEADER = ["mem req MiB", "CPU req", "resp. ms", "p95 ms", "failures", "OKAY/s", "replicas mean / max"]


def side_by_side(simulated: RunSummary, measured: Sequence[RunSummary]) -> list[list[str]]:
    """Each headline statistic simulated and measured (over several runs: the mean and its min-max range),
    with the relative difference of the mean."""
    rows = []
    for name, get, fmt in [
        ("memory requested (MiB)", lambda s: s.memory_requested_KB / 1024, ",.0f"),
        ("CPU requested (cores)", lambda s: s.cpu_requested_core, ".3f"),
        ("response time (ms)", lambda s: None if s.response_time_s is None else s.response_time_s * 1000, ".1f"),
        ("transaction rate (/s)", lambda s: s.transaction_rate, ".2f"),
        ("failure rate", lambda s: s.failure_rate, ".2%"),
        ("replicas max", lambda s: s.max_replicas, "g"),
        ("replicas mean", lambda s: s.mean_replicas, ".2f"),
    ]:
        a = get(simulated)
        values = [get(s) for s in measured]
        b = spread(values) if values and None not in values else None
        difference = ""
        if a is not None and b is not None and a != 0 and fmt != ".2%":
            difference = f"{(b.mean - a) / a:+.0%}"
        rows.append([name, "n/a" if a is None else format(a, fmt), "n/a" if b is None else b.text(fmt),
                     difference])
    return rows


def measured_header(runs: int) -> list[str]:
    """The side-by-side table's header: the measured column says how it sums up several runs."""
    if runs <= 1:
        return SIDE_BY_SIDE
    return ["statistic", "simulated", f"measured: mean (min-max) of {runs} runs", "difference of the mean"]


def verification_bounds(constraints: Constraints, bar: Constraints) -> list[str]:
    """The bounds the verification judged by, where the baselines' measured statistics changed them."""
    rows = [[statistic.flag, bar.bound_text(statistic)] for statistic in BOUNDED
            if bar.bound_text(statistic) != constraints.bound_text(statistic)]
    if not rows:
        return []
    return ["<p>In the verification, the bounds from the baselines are their measured statistics:</p>",
            html_table(["flag", "value"], rows)]


def live_accuracy_section(verifications: Sequence[Verification]) -> list[str]:
    """The specs run for real with labelling users: offline against live accuracy, and which of them the
    labels tell apart (95 % Wilson intervals that do not overlap)."""
    measured = [v for v in verifications if v.live is not None]
    if not measured:
        return []
    rows = [[v.label, "not measured" if v.offline_accuracy is None else f"{v.offline_accuracy:.2%}",
             v.live.text()] for v in measured]
    return [
        "<h2>Accuracy: offline and live (measured in the verification runs)</h2>",
        ("<p class=note>Offline: the model's own accuracy on a fixed data set (its card; the search ranks on "
         "it). Live: the held-out uploads of labelling users during the real runs, compared with the class "
         "they gave (pooled over a spec's runs), with its 95 % Wilson interval and n.</p>"),
        html_table(["spec", "offline accuracy", "live accuracy"], rows),
        *(f"<p>{html.escape(note)}</p>" for note in overlap_notes([(v.label, v.live) for v in measured])),
    ]


def write_tune_report(out: Path, *, facts: SearchFacts, constraints: Constraints, bar: Constraints,
                      front: Sequence[Evaluation],
                      ids: dict[int, str], recommended: Evaluation, recommended_note: str, rule: Rule,
                      baselines: dict[str, RunSummary], verifications: Sequence[Verification],
                      figures: Sequence[tuple[Path, str]], sections: Sequence[str] = ()) -> Path:
    rate = facts.simulated / facts.seconds if facts.seconds > 0 else 0.0
    body = [
        "<h1>Tune report</h1>",
        (f"<p class=note>Profile {html.escape(facts.profile)}, verification backend {html.escape(facts.backend)}; "
        f"search: {html.escape(facts.strategy)} over a space of {facts.space_size:,} candidates: "
        f"{facts.evaluated:,} evaluated, {facts.simulated:,} simulated ({facts.simulations:,} simulator runs: "
        f"candidates differing only in memory settings share one) in {facts.seconds:.1f} s on {facts.jobs} "
        f"process(es) ({rate:.1f} candidates/s).</p>"),
        *[f"<p class=note>{html.escape(line)}</p>" for line in facts.seeding],
        *sections,
        *(["<h2>Calibrations</h2>"] if facts.calibrations else []),
        *[f"<p class=note>{html.escape(line)}</p>" for line in facts.calibrations],
        *[f"<p class=note><b>warning:</b> {html.escape(line)}</p>" for line in facts.calibration_warnings],
        "<h2>Constraints</h2>",
        html_table(["flag", "value"], [list(item) for item in constraints.describe()]),
        *verification_bounds(constraints, bar),
        f"<p>Recommendation rule: {html.escape(rule.value)}.</p>",
        "<h2>Recommended</h2>",
        (f"<p><b>{html.escape(recommended.candidate.label())}</b> ({html.escape(recommended_note)}); "
        "<code>recommended.yaml</code> is ready for <code>servetune deploy apply</code> and "
        "<code>servetune deploy render</code>; <code>recommended-manifests.yaml</code> holds the rendered "
        "objects.</p>"),
        "<h2>Recommended against the baselines (simulated, full profile)</h2>",
        html_table(["spec", *STAT_HEADER],
                   [["recommended", *statistic_cells(recommended.statistics)]]
                   + [[name, *statistic_cells(summary)] for name, summary in baselines.items()], {0}),
    ]
    for path, caption in figures:
        body += [f"<h2>{html.escape(caption)}</h2>", embedded_png(path, caption)]
    body += [
        f"<h2>Pareto front ({len(front)} candidates, in the rule's order)</h2>",
        html_table(["rank", "id", "candidate", "accuracy", *STAT_HEADER],
                   [[str(rank + 1), ids[id(e)], e.candidate.label(),
                     "not measured" if e.accuracy is None else f"{e.accuracy:.2%}", *statistic_cells(e.statistics)]
                    for rank, e in enumerate(front)], {0}),
    ]
    body += live_accuracy_section(verifications)
    if verifications:
        body.append("<h2>Verification: simulated (at the run's time scale) against measured</h2>")
        for item in verifications:
            links = ", ".join(f"<a href='{html.escape(os.path.relpath(run.run_dir / 'report.html', out))}'>"
                              f"{html.escape(str(run.run_dir))}</a>" for run in item.repeats)
            folders = "run folders" if len(item.repeats) > 1 else "run folder"
            body += [f"<h3>{html.escape(item.label)}: {html.escape(item.verdict())}</h3>",
                     f"<p class=note>{folders} {links}, spec {html.escape(str(item.spec_file))}</p>",
                     *(f"<p class=note>{html.escape(note)}</p>" for note in item.shared_machine_notes()),
                     *([f"<p>{html.escape(text)}</p>"] if (text := item.accuracy_text()) else []),
                     html_table(measured_header(len(item.measured)), side_by_side(item.simulated, item.measured))]
    else:
        body.append("<p class=note>No candidate was verified for real (--verify 0).</p>")
    report = out / "report.html"
    report.write_text(html_page("Tune report", "\n".join(body)), encoding="utf-8")
    return report
