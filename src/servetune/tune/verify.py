"""Verification: the best candidates run for real through the evaluation protocol (`servetune run`).

Each verified candidate is also simulated again at the verification's own time scale and on its backend's
metrics path, so the side-by-side compares like with like (a compressed run weighs each run's opening burst
more; see OPTIMIZER.md). A candidate fails verification when the run does not complete or its measured
statistics break a constraint; the bounds a baseline sets (--no-slower-than, --better-than) are then its own
measured statistics, from its real run just before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from servetune.backend.protocol import BackendName
from servetune.config import RunSummary
from servetune.tune.constraints import Constraints, Violation, measured_violations


@dataclass(frozen=True)
class RealRun:
    """How to run a spec for real."""

    backend: BackendName = BackendName.LOCAL
    profile: str = "reference"
    time_scale: float = 1.0
    kubeconfig: Path | None = None
    context: str | None = None
    url: str | None = None


@dataclass
class Verification:
    label: str
    spec_file: Path
    run_dir: Path
    status: str  # the run's status: completed, failed, interrupted
    simulated: RunSummary  # at the verification's time scale
    measured: RunSummary | None
    violations: list[Violation] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "completed" and self.measured is not None and not self.violations

    def verdict(self) -> str:
        if self.passed:
            return "verified"
        if self.status != "completed":
            return f"failed verification: run {self.status}" + (f" ({self.error})" if self.error else "")
        reasons = "; ".join(v.message for v in self.violations) or "nothing was measured"
        return f"failed verification: {reasons}"


def run_spec(spec_file: Path, out: Path, real: RealRun, console: Console | None = None) -> tuple[str, str | None]:
    """The one place the tuner calls the evaluation protocol; returns (status, error)."""
    from servetune.run import RunError, RunOptions, evaluate

    try:
        result = evaluate(RunOptions(
            spec=str(spec_file), out=out, backend=real.backend, profile=real.profile,
            time_scale=real.time_scale, kubeconfig=real.kubeconfig, context=real.context, url=real.url,
        ), console)
    except RunError as error:
        return "failed", str(error)
    return result.status, result.record.get("error")


def verify(label: str, spec_file: Path, out: Path, simulated: RunSummary, real: RealRun,
           constraints: Constraints, console: Console | None = None) -> Verification:
    """Run one candidate for real and judge the measurement against the constraints."""
    status, error = run_spec(spec_file, out, real, console)
    return judge(label, spec_file, out, status, error, simulated, constraints)


def judge(label: str, spec_file: Path, out: Path, status: str, error: str | None, simulated: RunSummary,
          constraints: Constraints) -> Verification:
    """The verdict on a run folder a real run wrote: its measured statistics against the constraints."""
    from servetune.analyze.stats import AnalysisError, summarize

    try:
        measured = summarize(out)
    except (AnalysisError, OSError):
        measured = None
    violations = measured_violations(measured, constraints) if measured is not None else []
    return Verification(label, spec_file, out, status, simulated, measured, violations, error)
