"""A run folder's report: report.md and a self-contained report.html (PNGs embedded), plus summary.json."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from servetune.analyze import plots
from servetune.analyze.live_accuracy import live_accuracy
from servetune.analyze.stats import RunData, summarize_data
from servetune.config import PhaseSummary, RunSummary
from servetune.runfolder import RUN_FILE


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _number(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def headline_rows(summary: RunSummary, style: Literal["report", "terminal"] = "terminal") -> list[tuple[str, str]]:
    """The four reference statistics, then accuracy: the one place they are formatted.

    report: KB and three decimals, how each is computed in the statistic's name (report.md/.html, `analyze`);
    terminal: MiB and two decimals, how each is computed after the value (`run` and `demo`), then what the
    autoscaler did and the failure rate.
    """
    terminal = style == "terminal"

    def memory(kb: float | None) -> str:
        if kb is None:
            return "n/a"
        return f"{kb / 1024:,.0f} MiB" if terminal else _number(kb, 0, " KB")

    source = summary.accuracy_source
    if terminal and source == RUN_FILE and summary.model:
        source = summary.model  # run.json took it from this model's card
    rows = [  # (statistic, how it is computed, value)
        ("memory requested", "mean mem_req_KB", memory(summary.memory_requested_KB)),
        ("memory used", "mean mem_use_KB", memory(summary.memory_used_KB) + usage_coverage(summary)),
        ("transaction rate", "sum OKAY / s", _number(summary.transaction_rate, 2 if terminal else 3, " /s")),
        ("response time", "OKAY-weighted Resp Time", _ms(summary.response_time_s)),
        ("accuracy", "", "n/a" if summary.accuracy is None else f"{summary.accuracy:.2%} ({source})"),
    ]
    if (live := live_accuracy_text(summary)) is not None:
        # Next to the offline figure (the model card's, on a fixed data set): this run's own measurement.
        rows.append(("live accuracy", "held-out user labels during this run; the accuracy above is offline", live))
    if not terminal:
        return [(f"{name} ({how})" if how else name, value) for name, how, value in rows]
    return [(name, f"{value} ({how})" if how else value) for name, how, value in rows] + [
        ("replicas", f"mean {summary.mean_replicas:.2f}, max {summary.max_replicas}" + pending_text(summary, ", ")),
        ("failure rate", f"{summary.failure_rate:.2%} of {summary.okay + summary.failed:,} requests"),
    ]


def live_accuracy_text(summary: RunSummary) -> str | None:
    """`70.40% (95 % Wilson 65.7%..74.7%, n=250)`; None for a run without held-out labels."""
    live = live_accuracy([summary])
    return None if live is None else live.text()


def pending_text(summary: RunSummary, before: str = "") -> str:
    """How long replicas waited for capacity, where recorded: `1 waited for capacity (Pending) 45 s`."""
    if not summary.max_pending:
        return ""
    return (f"{before}up to {summary.max_pending} waiting for capacity (Pending), "
            f"{summary.pending_replica_seconds:,.0f} replica-seconds in all")


def usage_coverage(summary: RunSummary, brief: bool = False) -> str:
    """Over how many samples usage was measured, when not over all of them (a new pod has no metrics for its
    first 15-30 s; a run stopped before metrics-server's first sample measured none); `brief` for a table
    cell."""
    if summary.usage_samples >= summary.samples:
        return ""
    if brief:
        return f" (measured in {summary.usage_samples} of {summary.samples} samples)"
    if summary.usage_samples == 0:
        return f" (not measured in any of {summary.samples} samples)"
    return f" (over the {summary.usage_samples} of {summary.samples} samples that measured every replica)"


def restarts_text(summary: RunSummary) -> str:
    if summary.replica_restarts is None:
        return "n/a"
    reasons = ", ".join(f"{reason} x{count}" for reason, count in sorted(summary.restart_reasons.items()))
    return f"{summary.replica_restarts} ({reasons})" if reasons else str(summary.replica_restarts)


def others_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """The CPU other work took on the load's machine (on the one-machine cluster it slowed the replicas);
    nothing for a run that did not record it (older runs, simulations)."""
    if summary.others_cores is None:
        return []
    cores = f" of {summary.machine_cores}" if summary.machine_cores else ""
    counts = f" ({summary.others_counts})" if summary.others_counts else ""
    return [("CPU other processes took during the load", f"{summary.others_cores:.2f}{cores} cores{counts}")]


def time_scale_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """A compressed run on a real cluster: what kept its real length (its autoscaling is slower than the
    load's compressed clock suggests)."""
    if not summary.not_compressed:
        return []
    return [(f"not compressed by --time-scale {summary.time_scale:g}", "; ".join(summary.not_compressed))]


def statistics_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """(statistic, value) for the report's table: the four reference statistics first."""
    return [
        *headline_rows(summary, "report"),
        ("CPU requested (mean)", _number(summary.cpu_requested_core, 3, " cores")),
        ("CPU used (mean)", _number(summary.cpu_used_core, 3, " cores") + usage_coverage(summary)),
        ("replica-seconds", _number(summary.replica_seconds, 0, " s")),
        ("replicas (mean / max)", f"{summary.mean_replicas:.2f} / {summary.max_replicas}"),
        *([("replicas waiting for capacity", pending_text(summary) or "none")]
          if summary.max_pending is not None else []),
        ("latency p50 / p95 / p99", " / ".join(_ms(v) for v in (summary.latency_p50_s, summary.latency_p95_s,
                                                                 summary.latency_p99_s))),
        ("failure rate", f"{summary.failure_rate:.2%}"),
        ("replica restarts", restarts_text(summary)),
        ("transactions (OKAY / failed)", f"{summary.okay:,} / {summary.failed:,}"),
        ("evaluation (sum of Elap Time)", f"{summary.evaluation_s:,.0f} s in {summary.runs} runs"),
        *others_rows(summary),
        *time_scale_rows(summary),
    ]


PHASE_COLUMNS = ["phase", "runs", "offered /s", "OKAY/s", "resp. time", "p50", "p95", "p99", "failures",
                 "replicas", "CPU used"]


def phase_rows(phases: list[PhaseSummary]) -> list[list[str]]:
    return [
        [f"{p.phase + 1}. {p.label}", str(p.runs), _number(p.offered_rate, 2), _number(p.transaction_rate, 2),
         _ms(p.response_time_s), _ms(p.latency_p50_s), _ms(p.latency_p95_s), _ms(p.latency_p99_s),
         "n/a" if p.failure_rate is None else f"{p.failure_rate:.1%}", _number(p.mean_replicas, 2),
         _number(p.cpu_used_core, 2)]
        for p in phases
    ]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_table(header: list[str], rows: list[list[str]], marked: set[int] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=mark' if marked and i in marked else ''}>"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def embedded_png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}tr.mark{background:#e8f4e8;font-weight:600}
img{max-width:100%}figure{margin:1em 0}.note{color:#666;font-size:.9em}"""


def html_page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


@dataclass(frozen=True)
class Report:
    """A run folder's report: report.html, and the statistics it shows (what summary.json holds)."""

    page: Path
    summary: RunSummary


def write_report(run_dir: str | Path) -> Report:
    """Write report.md, report.html, summary.json and the PNGs into the run folder; return report.html and the
    statistics, so a caller needs not summarise the folder again."""
    data = RunData(run_dir)
    summary = summarize_data(data)
    folder = data.run_dir
    figures = [
        (plots.resources_over_time(data, folder / "report_resources.png"),
         "Replicas, CPU and memory requested vs used over time"),
        (plots.phases_against_load(summary.phases, folder / "report_phases.png"),
         "Response time and transaction rate per phase against the offered load"),
    ]
    latency = plots.latency_distribution(data, summary, folder / "report_latency.png")
    if latency is not None:
        figures.append((latency, "Latency distribution"))
    data.folder.summary_file.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")

    title = f"Evaluation report: {summary.name}"
    stats = [[name, value] for name, value in statistics_rows(summary)]
    no_requests = "" if latency else "No requests.csv in this run: no per-request percentiles or latency plot."
    markdown = [f"# {title}\n", f"Run folder: `{folder}`" + (f", model `{summary.model}`" if summary.model else ""),
                "", "## Statistics\n", markdown_table(["statistic", "value"], stats),
                "## Phases\n", markdown_table(PHASE_COLUMNS, phase_rows(summary.phases))]
    if no_requests:
        markdown.append(f"_{no_requests}_\n")
    for path, caption in figures:
        markdown.append(f"## {caption}\n\n![{caption}]({path.name})\n")
    (folder / "report.md").write_text("\n".join(markdown), encoding="utf-8")

    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class=note>Run folder {html.escape(str(folder))}"
            + (f", model {html.escape(summary.model)}" if summary.model else "") + "</p>",
            "<h2>Statistics</h2>", html_table(["statistic", "value"], stats),
            "<h2>Phases</h2>", html_table(PHASE_COLUMNS, phase_rows(summary.phases))]
    if no_requests:
        body.append(f"<p class=note>{html.escape(no_requests)}</p>")
    for path, caption in figures:
        body += [f"<h2>{html.escape(caption)}</h2>", embedded_png(path, caption)]
    page = folder / "report.html"
    page.write_text(html_page(title, "\n".join(body)), encoding="utf-8")
    return Report(page, summary)
