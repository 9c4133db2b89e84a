"""Candidates to predicted statistics: the simulator, called once per candidate, over every core.

`CandidateSimulator` is a plain picklable callable, so a process pool can map it over a batch; the search
sees only `evaluate(candidate) -> statistics`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from servetune.config import DeploymentSpec, LoadProfile, RunSummary
from servetune.deploy.capacity import MIB, Capacity
from servetune.deploy.spec import DEFAULT_MODEL, spec_model_path
from servetune.sim.simulate import MetricsTiming, Simulation, simulate
from servetune.stop_signals import leave_signals_to_the_parent, stops_held
from servetune.tune.calibration import Calibration, CalibrationError, default_calibration, load_calibration
from servetune.tune.search import Sharing
from servetune.tune.space import Candidate, SearchSpace, candidate_spec


@dataclass(frozen=True)
class CandidateSimulator:
    """Simulates a candidate's spec under the profile with its model's calibration."""

    profile: LoadProfile
    calibrations: dict[str, Calibration]  # by the space's model entry
    base: DeploymentSpec
    capacity: Capacity | None = None
    metrics: MetricsTiming | None = None
    seed: int = 0
    node_cpu: float | None = None  # cores pods (and a local load driver) get together; None: only quotas

    def __call__(self, candidate: Candidate) -> RunSummary:
        return self.simulation(candidate).statistics

    def simulation(self, candidate: Candidate, record: bool = False,
                   profile: LoadProfile | None = None) -> Simulation:
        return self.spec_simulation(candidate_spec(candidate, self.base), candidate.model, record, profile)

    def spec_simulation(self, spec: DeploymentSpec, model: str, record: bool = False,
                        profile: LoadProfile | None = None) -> Simulation:
        return simulate(spec, profile or self.profile, self.calibrations[model], capacity=self.capacity,
                        seed=self.seed, record=record, metrics=self.metrics, node_cpu=self.node_cpu)


def memory_free(candidate: Candidate) -> Candidate:
    """The candidate without its memory settings: the simulation depends on them only through the memory
    figures (requests and limits times replicas) when the capacity's memory never limits the pods (see
    `memory_never_binds`) and the limit is above the calibrated peak, which the constraints ensure before
    any simulation."""
    return replace(candidate, memory_request_mb=0, memory_limit_mb=0)


def with_memory(statistics: RunSummary, simulated: Candidate, other: Candidate) -> RunSummary:
    """`simulated`'s statistics for `other`, which differs only in its memory request and limit."""
    return statistics.model_copy(update={
        "memory_requested_KB": statistics.memory_requested_KB * other.memory_request_mb / simulated.memory_request_mb,
        "memory_limit_KB": statistics.memory_limit_KB * other.memory_limit_mb / simulated.memory_limit_mb,
    })


MEMORY_SHARING = Sharing(memory_free, with_memory)


def memory_never_binds(space: SearchSpace, capacity: Capacity | None) -> bool:
    """True when the capacity's memory holds the most pods of the largest memory request the space allows."""
    if capacity is None:
        return True
    pods = max([*space.replicas, *(space.autoscaling.max_replicas if space.autoscaling else [])])
    return capacity.memory_bytes >= pods * max(space.memory_request_mb) * MIB


@contextmanager
def process_pool(jobs: int | None = None) -> Iterator[Callable[[Callable, Iterable], list]]:
    """A `map` over `jobs` processes (default: every core); plain `map` for one."""
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        yield lambda function, items: list(map(function, items))
        return
    with stops_held():  # the workers, and the pool's threads that fork replacements, start with them held
        pool = multiprocessing.get_context("fork").Pool(jobs, initializer=leave_signals_to_the_parent)
    with pool:
        def parallel_map(function: Callable, items: Iterable) -> list:
            items = list(items)
            return pool.map(function, items, chunksize=max(1, len(items) // (4 * jobs)))

        yield parallel_map


def model_file(model: str) -> tuple[Path, str]:
    """The file a space's or spec's model entry names, and its sha256; CalibrationError when it is missing."""
    from servetune.model.artifact import file_sha256

    path = spec_model_path(model)
    if not path.is_file():
        raise CalibrationError(f"{path}: no such model file")
    return path, file_sha256(path)


def model_text(model: str, path: Path, digest: str) -> str:
    """A model entry as a user reads it: `default (food11-lite0-int8.onnx, sha256 29f1d0da7679)`, or the path."""
    if model == DEFAULT_MODEL:
        return f"{model} ({path.name}, sha256 {digest[:12]})"
    return f"{path} (sha256 {digest[:12]})"


def covering(given: dict[Path, Calibration], path: Path, digest: str) -> Path | None:
    """The file whose calibration is of this model file: the same hash, else (a calibration that records
    none) the same file name."""
    return next((file for file, c in given.items() if c.model_sha256 == digest), None) or next(
        (file for file, c in given.items() if not c.model_sha256 and c.model_file == path.name), None)


def describe(calibration: Calibration) -> str:
    """The model a calibration was measured with, e.g. `food11-lite0-112-int8 (food11-lite0-int8.onnx, sha256
    29f1d0da7679)`."""
    digest = calibration.model_sha256[:12] or "not recorded"
    return f"{calibration.model} ({calibration.model_file or 'file not recorded'}, sha256 {digest})"


@dataclass
class ModelCalibrations:
    """Each model's calibration: the --calibration file that matches it, else the packaged calibration where
    it is of the same model file; a line per model saying which, and a warning for each model the given
    files miss (the user meant to calibrate it and would not otherwise know)."""

    given: dict[Path, Calibration]
    calibrations: dict[str, Calibration] = field(default_factory=dict)  # by the space's or spec's model entry
    used: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def covered(self) -> str:
        """What the given files are calibrations of, for messages."""
        return "; ".join(f"{file}: {describe(c)}" for file, c in self.given.items())

    def add(self, model: str) -> Calibration:
        """The model's calibration, found once; CalibrationError names a model without one."""
        if model in self.calibrations:
            return self.calibrations[model]
        path, digest = model_file(model)
        name = model_text(model, path, digest)
        if (file := covering(self.given, path, digest)) is not None:
            calibration, source = self.given[file], str(file)
        else:  # read the packaged calibration only when no given file covers the model
            calibration, source = default_calibration(), "the packaged calibration"
            if model != DEFAULT_MODEL and calibration.model_sha256 != digest:
                given = f"; the --calibration files given are of: {self.covered()}" if self.given else ""
                raise CalibrationError(f"{path}: no calibration for this model (sha256 {digest[:12]}){given}; "
                                       f"measure one with `servetune tune calibrate --model {path}` and pass it "
                                       "with --calibration FILE")
            if self.given:
                self.warnings.append(f"no --calibration file matches model {name}: it is simulated with the "
                                     f"packaged calibration; the files given are of: {self.covered()}")
        self.calibrations[model] = calibration
        self.used.append(f"model {name}: {source} ({calibration.model}, measured {calibration.date[:10]})")
        return calibration


def other_models(baselines: Mapping[str, DeploymentSpec], model: str,
                 calibrations: ModelCalibrations) -> dict[str, str]:
    """The baselines that serve another model file than `model`, each with that model's name: their figures
    compare a deployment of another model, not only another deployment."""
    def identity(entry: str) -> str:
        return calibrations.calibrations[entry].model_sha256 or entry

    return {name: calibrations.calibrations[spec.model].model for name, spec in baselines.items()
            if identity(spec.model) != identity(model)}


def calibrations_for(models: list[str], files: list[Path]) -> ModelCalibrations:
    """Each model's calibration (see ModelCalibrations); CalibrationError names a model without one."""
    found = ModelCalibrations({path: load_calibration(path) for path in files})
    for model in models:
        found.add(model)
    return found
