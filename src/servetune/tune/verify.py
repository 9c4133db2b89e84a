"""Verification: the best candidates run for real through the evaluation protocol (`servetune run`).

Each verified candidate is also simulated again at the verification's own time scale and on its backend's
metrics path, so the side-by-side compares like with like (a compressed run weighs each run's opening burst
more; see OPTIMIZER.md). With `repeats` N > 1 every spec runs N times, into <folder>-r1 .. -rN, and is judged
on its mean over the runs (`tune/repeats.py`). A candidate fails verification when a run does not complete, a
run has failed requests beyond --max-failure-rate, or its measured statistics break a constraint; the bounds a
baseline sets (--no-slower-than, --better-than) are then its own measured statistics, from its real runs just
before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from servetune.analyze.live_accuracy import LiveAccuracy, live_accuracy
from servetune.backend.protocol import BackendName
from servetune.config import DeploymentSpec, RunSummary
from servetune.host.machine_cpu import QUIET_OTHERS_CORES
from servetune.load.labelling_users import LabellingPlan
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
    repeats: int = 1  # real runs of each spec, judged on their mean
    labelling: LabellingPlan | None = None  # labelling users beside each run's load: its live accuracy
    holdout_fraction: float | None = None  # overrides each spec's labels.holdout_fraction


@dataclass
class Repeat:
    """One real run of a spec."""

    run_dir: Path
    status: str  # the run's status: completed, failed, interrupted
    error: str | None
    measured: RunSummary | None  # what its analysis summarised; None when nothing was


@dataclass
class Verification:
    label: str
    spec_file: Path
    simulated: RunSummary  # at the verification's time scale
    repeats: list[Repeat]  # in the order run; the first that did not complete is the last
    violations: list[Violation] = field(default_factory=list)

    @property
    def status(self) -> str:
        """completed when every run completed, else the status of the one that did not."""
        return next((r.status for r in self.repeats if r.status != "completed"), "completed")

    @property
    def measured(self) -> list[RunSummary]:
        """The statistics of each run that measured any."""
        return [r.measured for r in self.repeats if r.measured is not None]

    @property
    def live(self) -> LiveAccuracy | None:
        """The held-out labels of its runs' labelling users, pooled over the runs; None without them."""
        return live_accuracy(self.measured)

    @property
    def offline_accuracy(self) -> float | None:
        """The model's own accuracy on a fixed data set (its card), as its runs recorded it."""
        return next((s.accuracy for s in self.measured if s.accuracy is not None), None)

    def accuracy_text(self) -> str:
        """'live accuracy 70.40% (95 % Wilson ..., n=250) from held-out labels; offline 69.00% (the model's
        card)', or '' when its runs had no labelling users."""
        if (live := self.live) is None:
            return ""
        offline = self.offline_accuracy
        return (f"live accuracy {live.text()} from held-out labels during the run"
                f"{'s' if len(self.measured) > 1 else ''}; offline "
                + ("not measured" if offline is None else f"{offline:.2%} (the model's, on a fixed data set)"))

    @property
    def passed(self) -> bool:
        return self.status == "completed" and len(self.measured) == len(self.repeats) and not self.violations

    def shared_machine_notes(self) -> list[str]:
        """The runs during which other processes took a share of the machine the replicas ran on."""
        return [f"{r.run_dir.name}: other processes took {r.measured.others_cores:.2f} cores during the load; "
                "the replicas got less than on a quiet machine, so its response time reads slow"
                for r in self.repeats
                if r.measured is not None and (r.measured.others_cores or 0.0) > QUIET_OTHERS_CORES]

    def verdict(self) -> str:
        if self.passed:
            return "verified"
        if self.status != "completed":
            index, run = next((i, r) for i, r in enumerate(self.repeats) if r.status != "completed")
            which = f" {index + 1} of {len(self.repeats)}" if len(self.repeats) > 1 else ""
            return f"failed verification: run{which} {run.status}" + (f" ({run.error})" if run.error else "")
        reasons = "; ".join(v.message for v in self.violations) or "nothing was measured"
        return f"failed verification: {reasons}"


def run_spec(spec: DeploymentSpec, spec_file: Path, out: Path, real: RealRun,
             console: Console | None = None) -> Repeat:
    """The one place the tuner calls the evaluation protocol: `spec` as it is (`spec_file`, where the tune
    wrote it, is what run.json names), its run folder with the statistics the run's analysis made."""
    from servetune.run import RunError, RunOptions, evaluate

    try:
        result = evaluate(RunOptions(
            spec=str(spec_file), deployment=spec, out=out, backend=real.backend, profile=real.profile,
            time_scale=real.time_scale, kubeconfig=real.kubeconfig, context=real.context, url=real.url,
            labelling=real.labelling, holdout_fraction=real.holdout_fraction,
        ), console)
    except RunError as error:
        return Repeat(out, "failed", str(error), None)
    return Repeat(out, result.status, result.record.error, result.summary)


def run_dirs(out: Path, repeats: int) -> list[Path]:
    """The run folders of a spec run `repeats` times: out itself for one run, out-r1 .. out-rN for more."""
    return [out] if repeats == 1 else [out.with_name(f"{out.name}-r{index + 1}") for index in range(repeats)]


def verify(label: str, spec: DeploymentSpec, spec_file: Path, out: Path, simulated: RunSummary, real: RealRun,
           constraints: Constraints, console: Console | None = None) -> Verification:
    """Run one candidate for real `real.repeats` times and judge the measurements against the constraints;
    a run that does not complete ends the repeats (its verdict is known, and Ctrl-C stops there)."""
    repeats = []
    for run_dir in run_dirs(out, real.repeats):
        repeats.append(run_spec(spec, spec_file, run_dir, real, console))
        if repeats[-1].status != "completed":
            break
    return judge(label, spec_file, repeats, simulated, constraints)


def judge(label: str, spec_file: Path, repeats: list[Repeat], simulated: RunSummary,
          constraints: Constraints) -> Verification:
    """The verdict on a spec's real runs: their measured statistics against the constraints."""
    measured = [r.measured for r in repeats if r.measured is not None]
    violations = measured_violations(measured, constraints) if measured else []
    return Verification(label, spec_file, simulated, repeats, violations)
