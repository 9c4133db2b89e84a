"""The statistics of one evaluation (a run folder), computed from the files the run kept.

A run folder holds `resource_usage.csv` (monitor) and `load_output.csv` (siege --log format), and may hold
`requests.csv` (per-request log), `load_profile.yaml` (the profile that ran, as the load driver keeps it;
`profile.yaml` also works), `run.json` (optional `name`, `accuracy`, `model`) and a model artifact (`*.onnx`).

The four reference statistics, exactly:
- memory requested = mean of `mem_req_KB`; memory used = mean of `mem_use_KB` (plain means over samples;
  where `replica_states.csv` says a sample had a replica whose usage was not measured yet, that sample's
  usage, 0 for that replica, is left out of the used means: memory and CPU used are over the samples
  measured, and None when there was none);
- transaction rate = sum(OKAY) / evaluation seconds;
- response time = sum(OKAY x Resp Time) / sum(OKAY) (an OKAY-weighted mean, not the column's mean).

Evaluation seconds = sum of `Elap Time` over the load runs: the time load was actually offered, which is
the evaluation length the reference divides by (30 runs x 60 s) as siege measured it, without the second
or so between runs of the reference's bash loop.

Percentiles are over OKAY requests (status 1..399) of requests.csv; failures (connection errors, 4xx, 5xx)
count in the failure rate only, since a fast 503 or a timeout says nothing about service time. Without
requests.csv the failure rate comes from the siege log: Failed / (OKAY + Failed) (siege counts a >= 400
answer and a socket error as Failed, never as OKAY).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from servetune.config import (
    LoadPhase,
    LoadRunRow,
    PhaseSummary,
    ReplicaStates,
    RequestRecord,
    ResourceSample,
    RunSummary,
)
from servetune.errors import ServetuneError
from servetune.load.profile import LoadProfileError, parse_profile
from servetune.load.request_log import RequestLogError, read_request_log
from servetune.load.siege import SiegeLogError, read_siege_log
from servetune.monitor.replica_states import ReplicaStatesError, read_replica_states
from servetune.monitor.resource_csv import ResourceCsvError, on_wall_clock, parse_time, read_resource_csv
from servetune.run_record import RunRecord
from servetune.runfolder import (
    LOAD_FILE,
    RESOURCE_FILE,
    RUN_FILE,
    RunFolder,
    RunFolderError,
    headline_accuracy,
)

DEFAULT_INTERVAL_S = 5.0


class AnalysisError(ServetuneError, ValueError):
    """A run folder that cannot be analysed; the message names the file (and line) and the problem."""


class RunData:
    """The parsed files of one run folder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = RunFolder(run_dir)
        self.run_dir = self.folder.path
        if not self.run_dir.is_dir():
            raise AnalysisError(f"{self.run_dir}: no such run folder")
        try:
            self.resources = read_resource_csv(self._required(self.folder.resource_csv))
            self.load_rows = read_siege_log(self._required(self.folder.load_log))
            requests_path = self.folder.request_log
            self.requests = read_request_log(requests_path) if requests_path.is_file() else None
            profile = self.folder.profile_file()
            self.profile = parse_profile(profile) if profile else None
            self.record: RunRecord = self.folder.read_record()
            states = read_replica_states(self.folder.replica_states) if self.folder.replica_states.is_file() else []
        except (ResourceCsvError, SiegeLogError, RequestLogError, LoadProfileError, RunFolderError,
                ReplicaStatesError) as error:
            raise AnalysisError(str(error)) from None
        if not self.resources:
            raise AnalysisError(f"{self.folder.resource_csv}: no samples (only a header)")
        if not self.load_rows:
            raise AnalysisError(f"{self.folder.load_log}: no load runs (only a header)")
        by_time = {row.time: row for row in states}
        # Each resource sample's states (None: not recorded), matched by the `time` both rows carry.
        self.states: list[ReplicaStates | None] = [by_time.get(sample.time) for sample in self.resources]
        if (first := self.record.monitor_first_sample_at) is not None:
            self.resources = on_wall_clock(self.resources, first)  # seconds since the first sample -> clock

    @staticmethod
    def _required(path: Path) -> Path:
        if not path.is_file():
            raise AnalysisError(f"{path}: missing (a run folder holds {RESOURCE_FILE} and {LOAD_FILE})")
        return path

    def phase_of_runs(self) -> list[tuple[int, LoadPhase | None]]:
        """(phase index, phase) for each load row: from the profile, else from requests.csv, else its own."""
        if self.profile is not None:
            runs = self.profile.runs()
            return [runs[i] if i < len(runs) else (i, None) for i in range(len(self.load_rows))]
        if self.requests:
            return [(self._phase_from_requests(row, i), None) for i, row in enumerate(self.load_rows)]
        return [(i, None) for i in range(len(self.load_rows))]

    def _phase_from_requests(self, row: LoadRunRow, index: int) -> int:
        # siege stamps a run's line when it ends; a second of slack for the stamp's resolution.
        end = run_end(row)
        start = end - timedelta(seconds=row.elap_time + 1)
        phases = Counter(
            r.phase for r in self.requests or []
            if start <= datetime.fromtimestamp(r.start) <= end + timedelta(seconds=1)
        )
        return phases.most_common(1)[0][0] if phases else index


def run_end(row: LoadRunRow) -> datetime:
    return datetime.strptime(row.date_time, "%Y-%m-%d %H:%M:%S")


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def weighted_response_time(rows: Sequence[LoadRunRow]) -> float | None:
    """sum(OKAY x Resp Time) / sum(OKAY); rows without OKAY add nothing (their Resp Time may be nan)."""
    okay = sum(row.okay for row in rows)
    if okay == 0:
        return None
    return sum(row.okay * row.resp_time for row in rows if row.okay) / okay


def transaction_rate(rows: Sequence[LoadRunRow]) -> float:
    seconds = sum(row.elap_time for row in rows)
    return sum(row.okay for row in rows) / seconds if seconds > 0 else 0.0


def sample_seconds(samples: Sequence[ResourceSample]) -> list[float]:
    """Each sample's time in seconds on one axis (seconds since start, or unix time for wall-clock rows)."""
    times = [parse_time(s.time) for s in samples]
    return [t.timestamp() if isinstance(t, datetime) else t for t in times]


def replica_seconds(samples: Sequence[ResourceSample], counts: Sequence[int] | None = None) -> float:
    """n_replica (or `counts`, one per sample) integrated as a step function: each sample holds until the
    next one; the last one holds for the median sampling interval (5 s when there is a single sample)."""
    times = sample_seconds(samples)
    steps = [b - a for a, b in itertools.pairwise(times)]
    last = float(np.median(steps)) if steps else DEFAULT_INTERVAL_S
    counts = [s.n_replica for s in samples] if counts is None else counts
    return sum(count * dt for count, dt in zip(counts, [*steps, last], strict=True))


def pending_statistics(samples: Sequence[ResourceSample],
                       states: Sequence[ReplicaStates | None]) -> dict[str, float | int | None]:
    """How long replicas waited for capacity (replica-seconds Pending) and the most at once; None without
    replica_states.csv (a reference run folder)."""
    if not states or any(state is None for state in states):
        return {"pending_replica_seconds": None, "max_pending": None}
    pending = [state.pending for state in states if state is not None]
    return {"pending_replica_seconds": replica_seconds(samples, pending), "max_pending": max(pending)}


def is_okay(record: RequestRecord) -> bool:
    return 0 < record.status < 400


def percentiles(records: Sequence[RequestRecord]) -> tuple[float | None, float | None, float | None]:
    return latency_percentiles([r.latency_s for r in records if is_okay(r)])


def latency_percentiles(latencies: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 of the answered requests' latencies (None each when there are none)."""
    if not latencies:
        return None, None, None
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def failure_rate(records: Sequence[RequestRecord]) -> float | None:
    return sum(not is_okay(r) for r in records) / len(records) if records else None


def phase_label(index: int, phase: LoadPhase | None) -> str:
    if phase is None:
        return f"phase {index + 1}"
    return f"{phase.users} users, d{phase.delay:g}"


def offered_rate(phase: LoadPhase | None) -> float | None:
    if phase is None:
        return None
    try:
        return phase.open_loop_rate()
    except ValueError:
        return None  # delay 0 and no rate: the users offer as much as the server answers


def summarize_phases(data: RunData) -> list[PhaseSummary]:
    groups: dict[int, list[LoadRunRow]] = defaultdict(list)
    phases: dict[int, LoadPhase | None] = {}
    for row, (index, phase) in zip(data.load_rows, data.phase_of_runs(), strict=True):
        groups[index].append(row)
        phases[index] = phase
    requests_by_phase: dict[int, list[RequestRecord]] = defaultdict(list)
    for record in data.requests or []:
        requests_by_phase[record.phase].append(record)
    wall_clock = all(isinstance(parse_time(s.time), datetime) for s in data.resources)
    summaries = []
    for index, rows in groups.items():
        records = requests_by_phase.get(index, [])
        p50, p95, p99 = percentiles(records)
        in_phase = phase_samples(data.resources, rows) if wall_clock else []
        in_phase_measured = phase_samples(usage_measured(data.resources, data.states), rows) if wall_clock else []
        summaries.append(PhaseSummary(
            phase=index,
            label=phase_label(index, phases[index]),
            users=phases[index].users if phases[index] else None,
            delay=phases[index].delay if phases[index] else None,
            offered_rate=offered_rate(phases[index]),
            runs=len(rows),
            seconds=sum(row.elap_time for row in rows),
            okay=sum(row.okay for row in rows),
            failed=sum(row.failed for row in rows),
            transaction_rate=transaction_rate(rows),
            response_time_s=weighted_response_time(rows),
            latency_p50_s=p50,
            latency_p95_s=p95,
            latency_p99_s=p99,
            failure_rate=failure_rate(records) if records else siege_failure_rate(rows),
            mean_replicas=mean([s.n_replica for s in in_phase]) if in_phase else None,
            cpu_used_core=mean([s.cpu_use_core for s in in_phase_measured]) if in_phase_measured else None,
        ))
    return summaries


def phase_samples(samples: Sequence[ResourceSample], rows: Sequence[LoadRunRow]) -> list[ResourceSample]:
    """The wall-clock samples taken while any of these load runs was running."""
    windows = [(run_end(r) - timedelta(seconds=r.elap_time), run_end(r)) for r in rows]
    return [s for s in samples if any(a <= parse_time(s.time) <= b for a, b in windows)]


def siege_failure_rate(rows: Sequence[LoadRunRow]) -> float | None:
    attempts = sum(row.okay + row.failed for row in rows)
    return sum(row.failed for row in rows) / attempts if attempts else None


def accuracy(data: RunData) -> tuple[float | None, str | None, str | None]:
    """(accuracy, where it came from, model name): run.json's `accuracy`, else the run's model artifact."""
    record = data.record
    if record.accuracy is not None:
        return record.accuracy, RUN_FILE, record.model
    models = sorted(data.run_dir.glob("*.onnx"))
    if not models:
        return None, None, record.model
    from servetune.model.artifact import ArtifactError, read_spec

    try:
        card = read_spec(models[0])
    except ArtifactError as error:
        raise AnalysisError(str(error)) from None
    if (chosen := headline_accuracy(card.accuracy)) is None:
        return None, None, card.name
    split, value = chosen
    return value, f"{models[0].name} ({split})", card.name


def others_cores(record: RunRecord) -> tuple[float | None, int | None, str | None]:
    """(cores other work took during the load, the machine's cores, what that counts): from run.json's
    `node_cpu` (Kubernetes: the replicas' nodes, from the metrics API), else its `host_cpu` (this machine)."""
    nodes, host = record.node_cpu, record.host_cpu
    if nodes is not None and nodes.others_cores is not None:
        return nodes.others_cores, None, nodes.counts or None
    if host is None:
        return None, None, None
    return host.others_cores, host.cores, host.counts or None


def summarize(run_dir: str | Path) -> RunSummary:
    """The statistics of the run folder; AnalysisError naming the file and line when an input is bad."""
    return summarize_data(RunData(run_dir))


def usage_measured(samples: Sequence[ResourceSample], states: Sequence[ReplicaStates | None]) -> list[ResourceSample]:
    """The samples whose usage columns measured every replica they count."""
    return [s for s, state in zip(samples, states, strict=True) if state is None or state.usage_unmeasured == 0]


def sample_statistics(samples: Sequence[ResourceSample],
                      states: Sequence[ReplicaStates | None] | None = None) -> dict[str, float | int | None]:
    """The RunSummary fields taken from the monitor's samples alone (plain means, the most replicas); usage
    over the samples that measured it (`states`: each sample's, where recorded)."""
    measured = usage_measured(samples, states or [None] * len(samples))
    return {
        "memory_requested_KB": mean([s.mem_req_KB for s in samples]),
        "memory_used_KB": mean([s.mem_use_KB for s in measured]) if measured else None,
        "cpu_requested_core": mean([s.cpu_req_core for s in samples]),
        "cpu_used_core": mean([s.cpu_use_core for s in measured]) if measured else None,
        "samples": len(samples),
        "usage_samples": len(measured),
        "cpu_limit_core": mean([s.cpu_lim_core for s in samples]),
        "memory_limit_KB": mean([s.mem_lim_KB for s in samples]),
        "mean_replicas": mean([s.n_replica for s in samples]),
        "max_replicas": max(s.n_replica for s in samples),
    }


def load_statistics(rows: Sequence[LoadRunRow]) -> dict[str, float | int | None]:
    """The RunSummary fields taken from the siege log alone."""
    return {
        "transaction_rate": transaction_rate(rows),
        "response_time_s": weighted_response_time(rows),
        "evaluation_s": sum(row.elap_time for row in rows),
        "runs": len(rows),
        "transactions": sum(row.trans for row in rows),
        "okay": sum(row.okay for row in rows),
        "failed": sum(row.failed for row in rows),
    }


def summarize_data(data: RunData) -> RunSummary:
    samples, rows = data.resources, data.load_rows
    p50, p95, p99 = percentiles(data.requests or [])
    if data.requests:
        failures = failure_rate(data.requests)
    else:
        failures = siege_failure_rate(rows)
    value, source, model = accuracy(data)
    record = data.record
    live = record.live_accuracy if record.live_accuracy is not None and record.live_accuracy.accuracy is not None \
        else None
    others, cores, counts = others_cores(record)
    return RunSummary(
        run_dir=str(data.run_dir),
        name=record.name or data.run_dir.resolve().name,
        **sample_statistics(samples, data.states),
        **load_statistics(rows),
        replica_seconds=replica_seconds(samples),
        **pending_statistics(samples, data.states),
        failure_rate=failures if failures is not None else 0.0,
        requests=len(data.requests) if data.requests is not None else None,
        latency_p50_s=p50,
        latency_p95_s=p95,
        latency_p99_s=p99,
        accuracy=value,
        accuracy_source=source,
        live_accuracy=live.accuracy if live else None,
        live_accuracy_n=live.n if live else None,
        live_accuracy_interval=live.wilson_95 if live else None,
        live_accuracy_source=live.source if live else None,
        model=model,
        replica_restarts=record.restarts,
        restart_reasons=record.restart_reasons or {},
        others_cores=others,
        machine_cores=cores,
        others_counts=counts,
        time_scale=record.time_scale or 1.0,
        not_compressed=record.time_scale_on_cluster.not_compressed if record.time_scale_on_cluster else [],
        phases=summarize_phases(data),
    )
