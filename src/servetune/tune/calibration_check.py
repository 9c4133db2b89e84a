"""A calibration checked against the real runs of its model: the CPU per request each one used.

A calibration's CPU per request sets how busy the simulated pods are, so one that is off makes the
simulator throttle (or spare) CPU-limited specs that really do not (or do). After real runs of the same
model file on the same backend (the tune's verification runs), each run's CPU used per request (what
`--from-run` would recalibrate to: the monitor's CPU less the replicas' idle, over the requests) is
compared with the calibration's mean for the run's endpoint; more than DISAGREEMENT apart warns, with both
figures and the command that recalibrates from the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from servetune.analyze.stats import AnalysisError, RunData
from servetune.deploy.spec import SpecError, load_deployment_spec
from servetune.runfolder import SPEC_FILE
from servetune.tune.calibration import Calibration
from servetune.tune.evaluate import ModelCalibrations
from servetune.tune.from_run import run_cpu_ms_per_request, run_workers
from servetune.tune.measure import quantile_mean

DISAGREEMENT = 0.15  # relative to the calibration's figure


@dataclass(frozen=True)
class CpuCheck:
    """A run's CPU used per request beside its model's calibration."""

    run_dir: Path
    target: str
    calibrated_ms: float
    run_ms: float

    @property
    def relative(self) -> float:
        return self.run_ms / self.calibrated_ms - 1

    @property
    def disagrees(self) -> bool:
        return abs(self.relative) > DISAGREEMENT

    def warning(self, calibration: Calibration, file: Path | None) -> str:
        given = f" --calibration {file}" if file is not None else ""
        where = str(file) if file is not None else "the packaged calibration"
        return (f"{where} ({calibration.model}) says {self.calibrated_ms:.1f} ms of CPU per {self.target}; the real "
                f"run {self.run_dir} used {self.run_ms:.1f} ms ({self.relative:+.0%}, more than "
                f"{DISAGREEMENT:.0%} apart): the simulator's CPU is off by as much; recalibrate from the run: "
                f"servetune tune calibrate --from-run {self.run_dir}{given}")


def check_run(run_dir: Path, calibration: Calibration) -> CpuCheck | None:
    """The run beside the calibration, or None where they are not comparable: a run not completed,
    simulated, of another model file or backend, of several endpoints, without requests.csv or CPU."""
    try:
        data = RunData(run_dir)
        spec = load_deployment_spec(Path(run_dir) / SPEC_FILE)
    except (AnalysisError, SpecError, OSError):
        return None
    record = data.record
    sha256 = record.model_file.sha256 if record.model_file else None
    if (record.status != "completed" or record.simulated or sha256 != calibration.model_sha256
            or (record.backend or "local") != calibration.backend or not data.requests):
        return None
    targets = {phase.target for phase in data.profile.phases} if data.profile else {"GET /test"}
    if len(targets) != 1 or (target := targets.pop()) not in calibration.cpu_ms_quantiles:
        return None
    idle = calibration.idle_cpu_cores * run_workers(data, spec.workers)
    run_ms = run_cpu_ms_per_request(data, idle, len(data.requests))
    calibrated = quantile_mean(calibration.cpu_ms_quantiles[target])
    if run_ms <= 0 or calibrated <= 0:
        return None
    return CpuCheck(Path(run_dir), target, round(calibrated, 3), round(run_ms, 3))


def disagreements(run_dirs: Iterable[Path], calibrations: Iterable[tuple[Calibration, Path | None]]) -> list[str]:
    """A warning for each run whose CPU per request is more than DISAGREEMENT from its model's calibration
    (each calibration with its file; None: the packaged one)."""
    known = list(calibrations)
    warnings = []
    for run_dir in run_dirs:
        for calibration, file in known:
            check = check_run(run_dir, calibration)
            if check is not None and check.disagrees:
                warnings.append(check.warning(calibration, file))
    return warnings


def check_calibrations(calibrations: ModelCalibrations, run_dirs: Iterable[Path]) -> list[str]:
    """disagreements() for the calibrations a tune used (each once, with its --calibration file)."""
    files = {id(calibration): path for path, calibration in calibrations.given.items()}
    used = {id(calibration): calibration for calibration in calibrations.calibrations.values()}
    return disagreements(run_dirs, [(c, files.get(key)) for key, c in used.items()])
