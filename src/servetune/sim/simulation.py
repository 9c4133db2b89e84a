"""A simulated evaluation: the statistics `servetune analyze` computes, and the run folder it would have left.

The statistics are analyze/stats.py's (its RunSummary and its functions over load rows and samples),
applied to rows built in memory rather than read from files, so a simulation costs no file I/O;
percentiles and failure rates come from the simulator's per-phase counters, which hold the same figures
as requests.csv without a record per request. `Simulation.write` writes the run folder whose
`servetune analyze` gives the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from servetune.analyze.stats import (
    latency_percentiles,
    load_statistics,
    mean,
    offered_rate,
    phase_label,
    replica_seconds,
    sample_statistics,
    transaction_rate,
    weighted_response_time,
)
from servetune.config import (
    DeploymentSpec,
    LoadProfile,
    LoadRunRow,
    PhaseSummary,
    RequestRecord,
    ResourceSample,
    RunSummary,
)
from servetune.deploy.capacity import MIB
from servetune.load.request_log import write_request_log
from servetune.load.siege import write_siege_log
from servetune.load.tally import SIEGE_FAILED_STATUSES, c_divide
from servetune.monitor.resource_csv import ResourceCsvWriter, elapsed_text, parse_time, wall_clock_text
from servetune.run_record import CalibrationUsed, RunRecord
from servetune.runfolder import SPEC_FILE, RunFolder, headline_accuracy
from servetune.sim.costs import Costs

# Simulated time 0 (the load's start) on the wall clock of the files: 2026-01-01 00:00:00 UTC.
EPOCH = 1_767_225_600


@dataclass(frozen=True)
class MetricsTiming:
    """How CPU usage reaches the autoscaler and the monitor.

    kubernetes: metrics-server scrapes every `resolution_s` (15 s, --metric-resolution); a sample is the
    CPU rate between two scrapes and is usable `delay_s` later; pods are seen from their second scrape.
    local (the one-machine cluster): at each HPA sync the CPU of each replica since the previous sync
    (none for a replica it has not seen before); the monitor's usage is the CPU since its last sample.
    """

    backend: Literal["kubernetes", "local"] = "kubernetes"
    resolution_s: float = 15.0
    delay_s: float = 2.0
    offset_s: float | None = None  # first scrape and HPA sync after the load starts; None: at random


class RawRun:
    """The simulator's counters per load run (siege's accounting) and per phase (requests.csv's)."""

    def __init__(self, runs: int, phases: int) -> None:
        self.trans = [0] * runs
        self.okay = [0] * runs
        self.failed = [0] * runs
        self.total_time = [0.0] * runs
        self.latencies: list[list[float]] = [[] for _ in range(phases)]  # OKAY requests' latencies
        self.requests = [0] * phases
        self.not_okay = [0] * phases

    def add(self, run: int, phase: int, status: int, latency: float) -> None:
        """One answered request, as load/tally.py counts it (status 0: no HTTP answer)."""
        self.requests[phase] += 1
        if status == 0:
            self.failed[run] += 1
            self.not_okay[phase] += 1
            return
        self.total_time[run] += latency
        if status in SIEGE_FAILED_STATUSES:
            self.failed[run] += 1
            self.not_okay[phase] += 1
            return
        self.trans[run] += 1
        if status < 400:
            self.okay[run] += 1
            self.latencies[phase].append(latency)
        else:
            self.not_okay[phase] += 1


@dataclass
class Simulation:
    """One simulated evaluation: its statistics and what a run folder would hold."""

    spec: DeploymentSpec
    profile: LoadProfile
    calibration: Costs
    statistics: RunSummary
    resources: list[ResourceSample]
    load_rows: list[LoadRunRow]
    requests: list[RequestRecord] | None = None
    events: list[str] = field(default_factory=list)
    seed: int = 0

    def write(self, run_folder: str | Path) -> Path:
        """The measured files (`write_measured`), spec.yaml, events.log and run.json with `simulated: true`, so
        `servetune report`/`compare` read it (`servetune run --backend simulated` writes the same through run.py)."""
        folder = RunFolder(run_folder)
        folder.path.mkdir(parents=True, exist_ok=True)
        first = self.write_measured(folder)
        (folder / SPEC_FILE).write_text(yaml.safe_dump(self.spec.model_dump(mode="json"), sort_keys=False))
        folder.events_log.write_text("".join(line + "\n" for line in self.events))
        folder.write_record(RunRecord(
            name=self.statistics.name, status="completed", simulated=True, monitor_first_sample_at=first,
            model=self.calibration.model, accuracy=self.statistics.accuracy, profile=self.profile.name,
            time_scale=self.profile.time_scale, seed=self.seed, calibration=calibration_record(self.calibration),
        ))
        return folder.path

    def write_measured(self, folder: RunFolder) -> float | None:
        """What a run's load step leaves: resource_usage.csv, load_output.csv, load_profile.yaml and
        requests.csv (when recorded). Returns when the monitor's first sample was (run.json's
        `monitor_first_sample_at`, so the analysis lines the samples up with the load log, as for a real run)."""
        # `time` as the reference monitor writes it (seconds since its first sample)
        first = parse_time(self.resources[0].time).timestamp() if self.resources else None
        with ResourceCsvWriter(folder.resource_csv) as writer:
            for sample in self.resources:
                since = parse_time(sample.time).timestamp() - first
                writer.write(sample.model_copy(update={"time": elapsed_text(since)}))
        write_siege_log(folder.load_log, self.load_rows)
        if self.requests is not None:
            write_request_log(folder.request_log, self.requests)
        folder.keep_profile(self.profile)
        return first


def calibration_record(costs: Costs) -> CalibrationUsed:
    """Which calibration a simulation used, as run.json keeps it."""
    return CalibrationUsed(machine=costs.machine, date=costs.date, version=costs.version, source=costs.source)


def round_like_siege(seconds: float) -> float:
    return seconds if math.isnan(seconds) or math.isinf(seconds) else float(f"{seconds:.2f}")


def _accuracy(calibration: Costs) -> tuple[float | None, str | None]:
    if (chosen := headline_accuracy(calibration.accuracy)) is None:
        return None, None
    split, value = chosen
    return value, f"calibration ({split})"


def _load_rows(raw: RawRun, calibration: Costs, run_starts: list[float], run_ends: list[float]) -> list[LoadRunRow]:
    """siege's log rows, one per load run."""
    load_rows = []
    for run, (start, end) in enumerate(zip(run_starts, run_ends, strict=True)):
        elapsed = end - start
        megabytes = int(raw.okay[run] * calibration.response_bytes / MIB)
        load_rows.append(LoadRunRow(
            date_time=wall_clock_text(EPOCH + end), trans=raw.trans[run], elap_time=elapsed,
            # siege's log keeps Resp Time to 10 ms (%.2f s); analyze weights that column, so round as it does
            data_trans=megabytes, resp_time=round_like_siege(c_divide(raw.total_time[run], raw.trans[run])),
            trans_rate=c_divide(raw.trans[run], elapsed), throughput=c_divide(megabytes, elapsed),
            concurrent=c_divide(raw.total_time[run], elapsed), okay=raw.okay[run], failed=raw.failed[run],
        ))
    return load_rows


def _resources(spec: DeploymentSpec, samples: list[tuple[float, int, float, float]]) -> list[ResourceSample]:
    """The monitor's rows, from its samples (time, replicas, CPU used, memory used)."""
    cpu_request = spec.requests.cpu
    memory_request_kb = spec.requests.memory_mb * 1024
    cpu_limit = spec.limits.cpu if spec.limits else 0.0
    memory_limit_kb = spec.limits.memory_mb * 1024 if spec.limits else 0
    return [
        ResourceSample(
            time=wall_clock_text(EPOCH + t), n_replica=count, cpu_req_core=round(count * cpu_request, 6),
            mem_req_KB=count * memory_request_kb, cpu_lim_core=round(count * cpu_limit, 6),
            mem_lim_KB=count * memory_limit_kb, cpu_use_core=round(cpu, 6), mem_use_KB=round(memory / 1024, 3),
        )
        for t, count, cpu, memory in samples
    ]


def summarize_simulation(
    spec: DeploymentSpec,
    profile: LoadProfile,
    calibration: Costs,
    raw: RawRun,
    samples: list[tuple[float, int, float, float]],
    run_starts: list[float],
    run_ends: list[float],
    requests: list[tuple] | None,
    events: list[str],
    seed: int,
) -> Simulation:
    """The files' contents and analyze's statistics from the simulator's counters."""
    runs = profile.runs()
    load_rows = _load_rows(raw, calibration, run_starts, run_ends)
    resources = _resources(spec, samples)
    record_list = None
    if requests is not None:
        record_list = [
            RequestRecord(start=EPOCH + sent, latency_s=latency, status=status,
                          bytes=calibration.response_bytes if status == 200 else 0,
                          phase=runs[run][0], replica=replica)
            for sent, latency, status, run, replica in requests
        ]

    all_latencies = [x for phase in raw.latencies for x in phase]
    p50, p95, p99 = latency_percentiles(all_latencies)
    request_count = sum(raw.requests)
    value, source = _accuracy(calibration)
    statistics = RunSummary(
        run_dir="",
        name=spec.name,
        **sample_statistics(resources),
        **load_statistics(load_rows),
        replica_seconds=replica_seconds(resources),  # as analyze integrates the monitor's CSV
        failure_rate=sum(raw.not_okay) / request_count if request_count else 0.0,
        requests=request_count,
        latency_p50_s=p50,
        latency_p95_s=p95,
        latency_p99_s=p99,
        accuracy=value,
        accuracy_source=source,
        model=calibration.model,
        phases=_phases(profile, raw, load_rows, resources, samples, run_ends),
    )
    return Simulation(spec, profile, calibration, statistics, resources, load_rows, record_list, events, seed)


def _phases(profile: LoadProfile, raw: RawRun, load_rows: list[LoadRunRow], resources: list[ResourceSample],
            samples: list[tuple], run_ends: list[float]) -> list[PhaseSummary]:
    runs = profile.runs()
    summaries = []
    for index, phase in enumerate(profile.phases):
        members = [run for run, (phase_index, _) in enumerate(runs) if phase_index == index]
        rows = [load_rows[run] for run in members]
        # analyze: the samples whose whole-second time lies in a run's [end - Elap Time, end] (whole seconds)
        windows = [(math.floor(run_ends[run]) - load_rows[run].elap_time, math.floor(run_ends[run]))
                   for run in members]
        inside = [r for r, s in zip(resources, samples, strict=True)
                  if any(a <= math.floor(s[0]) <= b for a, b in windows)]
        p50, p95, p99 = latency_percentiles(raw.latencies[index])
        summaries.append(PhaseSummary(
            phase=index, label=phase_label(index, phase), users=phase.users, delay=phase.delay,
            offered_rate=offered_rate(phase), runs=len(rows), seconds=sum(row.elap_time for row in rows),
            okay=sum(row.okay for row in rows), failed=sum(row.failed for row in rows),
            transaction_rate=transaction_rate(rows),
            response_time_s=weighted_response_time(rows),
            latency_p50_s=p50, latency_p95_s=p95, latency_p99_s=p99,
            failure_rate=raw.not_okay[index] / raw.requests[index] if raw.requests[index] else None,
            mean_replicas=mean([r.n_replica for r in inside]) if inside else None,
            cpu_used_core=mean([r.cpu_use_core for r in inside]) if inside else None,
        ))
    return summaries
