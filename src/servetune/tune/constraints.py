"""What a candidate must satisfy, and the facts about each model that the constraints need.

Two kinds of check:
- before simulating (`static_violations`): memory request at least the calibrated peak resident memory of
  the pod's workers plus a margin (below it the pod would be OOM-killed), limit/request ratios at most
  `max_limit_ratio` (limits far above requests overcommit the node), the model's measured accuracy, and one
  pod fitting the cluster's capacity;
- after simulating (`measured_violations`): the upper bounds on response time, memory requested and CPU
  requested, and the failure rate.
Each violation carries an amount (how far off, relative), so the search can prefer the nearly feasible.

The upper bounds come from their own flags or from baselines (`baseline_bounds`): `--no-slower-than SPEC`
bounds the response time by SPEC's, `--better-than SPEC` all three by SPEC's, so a feasible candidate is no
worse than SPEC on any of them (equal is allowed). The baselines' statistics are simulated in the search and
measured in the verification, where a spec run N times (`--verify-repeats`) is judged on its means over the
runs against each baseline's mean plus half its range (see `tune/repeats.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from servetune.config import DeploymentSpec, RunSummary
from servetune.deploy.capacity import MIB, Capacity
from servetune.tune.calibration import Calibration
from servetune.tune.repeats import Spread, spread
from servetune.tune.space import Candidate, SearchSpace

DEFAULT_MAX_LIMIT_RATIO = 2.0
DEFAULT_MEMORY_MARGIN = 0.15  # like the VPA recommender's 15 % safety margin over observed usage
# In the search, bounds taken from baselines may be set tighter than the baselines' simulated figures
# (`--headroom`): two real runs of one spec differ by a few percent, so a candidate simulated just under a
# baseline can measure just over it. None by default: on the reference profile the course's deployment is
# within 2 % of the fastest response time any candidate at default's CPU reaches, and 2 % left nothing.
DEFAULT_HEADROOM = 0.0
# With no bound on the response time at all, the tune bounds it by this multiple of the fastest baseline's
# simulated one, so that no candidate several times slower than what the user compares it with is picked.
UNBOUNDED_RESPONSE_FACTOR = 2.0
# A statistic equal to its bound meets it; this only absorbs float rounding (a baseline's own figures,
# recomputed, must meet the bounds taken from them), it is no tolerance on the measurement.
ROUNDING = 1e-9


@dataclass(frozen=True)
class Bounded:
    """A statistic with an upper bound: its flag, the Constraints fields holding the bound and where the bound
    came from, and how to read the statistic from a run's statistics in the bound's unit."""

    flag: str
    name: str
    unit: str
    bound_field: str
    source_field: str
    read: Callable[[RunSummary], float | None]
    fmt: str  # as the tables show it

    def text(self, value: float) -> str:
        shown = format(value, self.fmt)
        if value != 0 and float(shown.replace(",", "")) == 0:  # a bound below the shown precision is no zero
            shown = f"{value:g}"
        return f"{shown} {self.unit}"

    def over_text(self, value: float, bound: float) -> str:
        """A value over its bound, with more digits where the table's precision would show them equal."""
        return self.text(value) if self.text(value) != self.text(bound) else f"{value:,g} {self.unit}"


RESPONSE_TIME = Bounded("--max-response-ms", "response time", "ms", "max_response_ms", "response_source",
                        lambda s: None if s.response_time_s is None else s.response_time_s * 1000, ".1f")
MEMORY_REQUESTED = Bounded("--max-memory-requested-mib", "memory requested", "MiB", "max_memory_requested_mib",
                           "memory_source", lambda s: s.memory_requested_KB / 1024, ",.0f")
CPU_REQUESTED = Bounded("--max-cpu-requested", "CPU requested", "CPU", "max_cpu_requested", "cpu_source",
                        lambda s: s.cpu_requested_core, ".3f")
BOUNDED = (RESPONSE_TIME, MEMORY_REQUESTED, CPU_REQUESTED)


@dataclass(frozen=True)
class Constraints:
    max_response_ms: float | None = None
    max_failure_rate: float = 0.0
    min_accuracy: float | None = None  # 0..1
    max_limit_ratio: float = DEFAULT_MAX_LIMIT_RATIO
    memory_margin: float = DEFAULT_MEMORY_MARGIN
    capacity: Capacity | None = None
    response_source: str = ""  # where max_response_ms came from, when not from the flag itself
    max_memory_requested_mib: float | None = None  # the run's mean memory requested
    max_cpu_requested: float | None = None  # the run's mean CPU requested, cores
    memory_source: str = ""
    cpu_source: str = ""

    def bound(self, statistic: Bounded) -> float | None:
        return getattr(self, statistic.bound_field)

    def bound_text(self, statistic: Bounded) -> str:
        """The bound with where it came from, or 'none'."""
        bound, source = self.bound(statistic), getattr(self, statistic.source_field)
        if bound is None:
            return "none"
        return statistic.text(bound) + (f" ({source})" if source else "")

    def describe(self) -> list[tuple[str, str]]:
        """(flag, value) for the report."""
        capacity = "unbounded"
        if self.capacity is not None:
            capacity = f"{self.capacity.cpu_cores:g} CPU, {self.capacity.memory_bytes / MIB:,.0f} MiB"
        return [
            *[(statistic.flag, self.bound_text(statistic)) for statistic in BOUNDED],
            ("--max-failure-rate", f"{self.max_failure_rate:.2%}"),
            ("--min-accuracy", "none" if self.min_accuracy is None else f"{self.min_accuracy:.2%}"),
            ("--max-limit-ratio", f"limits at most {self.max_limit_ratio:g} x requests (CPU and memory)"),
            ("--memory-margin", f"memory request >= workers x calibrated peak RSS x {1 + self.memory_margin:g}"),
            ("--capacity", capacity),
        ]


@dataclass(frozen=True)
class ModelFacts:
    """One model variant: its measured accuracy (None: not measured) and its calibrated memory."""

    path: str  # 'default' or the artifact's path, as the space names it
    name: str
    accuracy: float | None
    accuracy_split: str | None
    rss_peak_bytes: int  # per worker process
    # the least memory limit the one-machine cluster starts a replica with (deploy/local.py refuses less: the
    # peak RSS of loading the model in a fresh process); 0 where the verification runs elsewhere
    footprint_bytes: int = 0

    def minimum_memory_mb(self, workers: int, margin: float) -> int:
        return math.ceil(workers * self.rss_peak_bytes * (1 + margin) / MIB)

    def accuracy_text(self) -> str:
        if self.accuracy is None:
            return "not measured (cannot be ranked on accuracy)"
        return f"{self.accuracy:.2%} ({self.accuracy_split})"


def model_facts(path: str, calibration: Calibration) -> ModelFacts:
    """Accuracy from the artifact's metadata (the split analyze reports first), memory from the calibration."""
    from servetune.model.artifact import default_model_path, read_spec
    from servetune.runfolder import ACCURACY_SPLITS

    artifact = read_spec(default_model_path() if path == "default" else Path(path))
    for split in [*ACCURACY_SPLITS, *artifact.accuracy]:
        if split in artifact.accuracy:
            return ModelFacts(path, artifact.name, artifact.accuracy[split], split, calibration.rss_peak_bytes)
    return ModelFacts(path, artifact.name, None, None, calibration.rss_peak_bytes)


@dataclass(frozen=True)
class Violation:
    constraint: str  # the flag that excludes the candidate, e.g. "--max-response-ms"
    message: str
    amount: float  # > 0: how far off, relative to the bound


def static_violations(candidate: Candidate, facts: ModelFacts, constraints: Constraints) -> list[Violation]:
    found = []
    least = facts.minimum_memory_mb(candidate.workers, constraints.memory_margin)
    if candidate.memory_request_mb < least:
        found.append(Violation(
            "--memory-margin",
            f"memory request {candidate.memory_request_mb} MiB < {least} MiB ({candidate.workers} worker(s) x "
            f"peak RSS {facts.rss_peak_bytes / MIB:.0f} MiB + {constraints.memory_margin:.0%})",
            1 - candidate.memory_request_mb / least))
    if candidate.memory_limit_mb * MIB < facts.footprint_bytes:
        floor = math.ceil(facts.footprint_bytes / MIB)
        found.append(Violation(
            "--memory-margin", f"memory limit {candidate.memory_limit_mb} MiB < {floor} MiB, the model's footprint "
            "as a replica of the one-machine cluster (it would refuse to start it)",
            1 - candidate.memory_limit_mb / floor))
    for what, request, limit in (("CPU", candidate.cpu_request, candidate.cpu_limit),
                                 ("memory", candidate.memory_request_mb, candidate.memory_limit_mb)):
        ratio = limit / request
        if ratio > constraints.max_limit_ratio + 1e-9:
            found.append(Violation("--max-limit-ratio", f"{what} limit/request {ratio:.2f} > "
                                   f"{constraints.max_limit_ratio:g}", ratio / constraints.max_limit_ratio - 1))
    if constraints.min_accuracy is not None:
        if facts.accuracy is None:
            found.append(Violation("--min-accuracy", f"{facts.name}: accuracy not measured", 1.0))
        elif facts.accuracy < constraints.min_accuracy:
            found.append(Violation("--min-accuracy", f"accuracy {facts.accuracy:.2%} < "
                                   f"{constraints.min_accuracy:.2%}", constraints.min_accuracy - facts.accuracy))
    capacity = constraints.capacity
    if capacity is not None and (candidate.cpu_request > capacity.cpu_cores
                                 or candidate.memory_request_mb * MIB > capacity.memory_bytes):
        found.append(Violation("--capacity", "one pod's requests do not fit the cluster's capacity", 1.0))
    return found


def limit_ratio(spec: DeploymentSpec) -> float:
    """The larger of a spec's CPU and memory limit/request ratios (1 without limits: nothing to overcommit)."""
    if spec.limits is None:
        return 1.0
    return max(spec.limits.cpu / spec.requests.cpu, spec.limits.memory_mb / spec.requests.memory_mb)


def runs_of(statistics: RunSummary | Sequence[RunSummary]) -> Sequence[RunSummary]:
    """One run's statistics, or a spec's repeated runs (`--verify-repeats`), as the runs."""
    return [statistics] if isinstance(statistics, RunSummary) else statistics


def measured_violations(statistics: RunSummary | Sequence[RunSummary],
                        constraints: Constraints) -> list[Violation]:
    """What one run's statistics break, or several runs' of one spec: each bounded statistic judged on its mean
    over the runs, the failure rate on each run (a failed request in any of them counts)."""
    runs = runs_of(statistics)
    found = []
    if any(s.response_time_s is None for s in runs):
        found.append(Violation(RESPONSE_TIME.flag, "no request was answered", 1.0))
    over = "" if len(runs) == 1 else f" (mean of {len(runs)} runs)"
    for statistic in BOUNDED:
        values, bound = [statistic.read(s) for s in runs], constraints.bound(statistic)
        if None in values or bound is None:
            continue
        value = spread(values).mean
        if value <= bound * (1 + ROUNDING):
            continue
        found.append(Violation(statistic.flag, f"{statistic.name} {statistic.over_text(value, bound)}{over} > "
                               f"{constraints.bound_text(statistic)}", value / bound - 1 if bound > 0 else 1.0))
    worst = max(runs, key=lambda s: s.failure_rate)
    if worst.failure_rate > constraints.max_failure_rate:
        where = "" if len(runs) == 1 else f" (run {list(runs).index(worst) + 1} of {len(runs)})"
        found.append(Violation("--max-failure-rate", f"failure rate {worst.failure_rate:.2%}{where} > "
                               f"{constraints.max_failure_rate:.2%}",
                               worst.failure_rate - constraints.max_failure_rate + 1e-3))
    return found


def repeats_text(statistic: Bounded, runs: Spread) -> str:
    """How a bound was taken from several runs of a baseline ('' from one)."""
    if runs.runs == 1:
        return ""
    return (f" (mean of {runs.runs} runs {statistic.text(runs.mean)} + half their range "
            f"{statistic.text(runs.half_range)})")


def baseline_bounds(constraints: Constraints, baselines: Mapping[str, RunSummary | Sequence[RunSummary]],
                    how: str, no_slower_than: Sequence[str] = (), better_than: Sequence[str] = (),
                    headroom: float = 0.0) -> Constraints:
    """The one place baselines' statistics become bounds: the response time at most the least of the
    --no-slower-than and --better-than baselines', memory and CPU requested at most the least of the
    --better-than ones', each `headroom` (a fraction) below it. A flag's own bound stays where it is tighter.
    `how` (simulated, measured) goes into the bound's source text; a baseline without statistics in
    `baselines` bounds nothing. A baseline run several times (`--verify-repeats`) bounds each statistic by its
    mean plus half its range over the runs (`Spread.bar`); run once, by its figure."""
    changes: dict[str, float | str] = {}
    less = f" less {headroom:.0%}" if headroom > 0 else ""
    for statistic in BOUNDED:
        flags = {name: "--better-than" for name in better_than}
        if statistic is RESPONSE_TIME:
            flags = {**{name: "--no-slower-than" for name in no_slower_than}, **flags}
        readings = {name: [statistic.read(s) for s in runs_of(baselines[name])] for name in flags if name in baselines}
        readings = {name: [value for value in values if value is not None] for name, values in readings.items()}
        spreads = {name: spread(values) for name, values in readings.items() if values}  # a run may answer none
        if not spreads:
            continue
        name = min(spreads, key=lambda name: spreads[name].bar)
        value = spreads[name].bar * (1 - headroom)
        bound = constraints.bound(statistic)
        if bound is not None and bound <= value:
            continue
        changes[statistic.bound_field] = value
        runs = repeats_text(statistic, spreads[name])
        changes[statistic.source_field] = f"the {how} {statistic.name} of {name}{runs}{less}, {flags[name]}"
    return replace(constraints, **changes)


def response_cap(constraints: Constraints, baselines: Mapping[str, RunSummary]) -> Constraints:
    """Where nothing bounds the response time, `UNBOUNDED_RESPONSE_FACTOR` x the fastest baseline's simulated
    one; the constraints unchanged where something does, or no baseline answered a request."""
    if constraints.max_response_ms is not None:
        return constraints
    times = {name: RESPONSE_TIME.read(s) for name, s in baselines.items()}
    times = {name: value for name, value in times.items() if value is not None and value > 0}
    if not times:
        return constraints
    name = min(times, key=lambda name: times[name])
    return replace(constraints, max_response_ms=UNBOUNDED_RESPONSE_FACTOR * times[name],
                   response_source=f"{UNBOUNDED_RESPONSE_FACTOR:g} x the simulated response time of {name}, the "
                   "fastest baseline: no response bound was given")


def space_problems(space: SearchSpace, facts: dict[str, ModelFacts], constraints: Constraints) -> list[str]:
    """Why no candidate of the space can be feasible, before anything is simulated (empty: some can)."""
    problems = []
    for what, ratios in (("cpu_limit_ratio", space.cpu_limit_ratio), ("memory_limit_ratio", space.memory_limit_ratio)):
        if min(ratios) > constraints.max_limit_ratio + 1e-9:
            problems.append(f"every {what} ({', '.join(map(str, ratios))}) is above --max-limit-ratio "
                            f"{constraints.max_limit_ratio:g}")
    model_problems, least_memory = [], []
    for model in space.models:
        known = facts[model]
        least = known.minimum_memory_mb(min(space.workers), constraints.memory_margin)
        if max(space.memory_request_mb) < least:
            model_problems.append(
                f"{known.name}: every memory_request_mb is below {least} MiB (the calibrated peak RSS "
                f"{known.rss_peak_bytes / MIB:.0f} MiB per worker + {constraints.memory_margin:.0%}: such a pod "
                "would be OOM-killed)")
        elif constraints.min_accuracy is not None and (known.accuracy is None
                                                       or known.accuracy < constraints.min_accuracy):
            model_problems.append(f"{known.name}: accuracy {known.accuracy_text()} is below --min-accuracy "
                                  f"{constraints.min_accuracy:.2%}")
        else:
            least_memory.append(least)
    if not least_memory:
        problems += model_problems
    capacity = constraints.capacity
    if not problems and capacity is not None and (min(space.cpu_request) > capacity.cpu_cores
                                                  or min(least_memory) * MIB > capacity.memory_bytes):
        problems.append(f"not even one pod of the smallest candidate fits --capacity ({capacity.cpu_cores:g} "
                        f"CPU, {capacity.memory_bytes / MIB:,.0f} MiB)")
    return problems
