"""The evaluation protocol: warm up, apply, load test and monitor on one clock, tear down, keep everything.

1. prepare: keep the spec, the rendered Kubernetes objects and the model in the run folder.
2. warm-up: Kubernetes deploys the 5-replica warm-up Deployment, waits until ready, deletes it and waits
   until its pods are gone (the image is then on the nodes); the one-machine cluster loads the model once
   (ONNX Runtime reads the whole file, which leaves it in the page cache).
3. apply the candidate and wait until every replica is ready.
4. load: the backend measures (backend/measure.py: the resource monitor's first sample, then the load
   profile at once, both on this process's wall clock, stopping together).
5. tear down, also after an error or Ctrl-C.
6. analyse what was measured: summary.json, report.html/.md with plots.

The backends (backend/) do each step; this module keeps their order and run.json (runfolder.RunRecorder):
status (completed, failed, interrupted), the failing step and its error, the timing of every step, the
backend and whether limits were enforced. run.json is rewritten after every step, so a run that stops
part-way still says what happened. docs/architecture.md describes the run folder.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from rich.console import Console

from servetune.backend.protocol import Backend, BackendName, Measurement
from servetune.config import DeploymentSpec, LabelsSpec, LoadProfile, RunSummary
from servetune.deploy.compressed_hpa import compressed_spec
from servetune.deploy.manifests import render_manifests, to_yaml
from servetune.deploy.spec import DEFAULT_MODEL, read_deployment, spec_model_path
from servetune.errors import ServetuneError
from servetune.load.labelling_users import LabellingPlan
from servetune.load.profile import load_profile
from servetune.load.runner import LoadDriver
from servetune.monitor.cadence import monitor_interval_s
from servetune.run_record import Machine, RunRecord, Status
from servetune.runfolder import (
    MANIFEST_FILE,
    SPEC_FILE,
    RunFolder,
    RunRecorder,
    StepFailed,
    headline_accuracy,
)

if TYPE_CHECKING:  # analyze/ is imported when a run is analysed: its plots are slow to import
    from servetune.analyze.report import Report

PASSWORD_PLACEHOLDER = "made-at-apply"


class RunError(ServetuneError):
    """Input that cannot start a run (spec, profile, model, options); the message names the problem."""


def is_autoscaler_sync(line: str) -> bool:
    """The one-machine cluster's autoscaler reports each sync as `HH:MM:SS replicas …`, its own clock first."""
    return line[:2].isdigit() and line[2:3] == ":" and " replicas " in line


def shows_scaling(line: str) -> bool:
    """Scaling decisions, restarts and warnings; the autoscaler's routine sync lines go to events.log only."""
    return not is_autoscaler_sync(line) or "-> scale to" in line


@dataclass
class RunOptions:
    spec: str  # the spec file (or bundled name) as given; run.json's `spec`
    out: Path
    backend: BackendName = BackendName.LOCAL
    profile: str = "reference"
    time_scale: float = 1.0  # in config.TIME_SCALE_MIN..TIME_SCALE_MAX
    driver: LoadDriver = LoadDriver.BUILTIN
    copy_model: bool = True
    port: int = 0
    kubeconfig: Path | None = None
    context: str | None = None
    url: str | None = None  # kubernetes: where the load goes [default: first node's address + NodePort]
    monitor_interval_s: float | None = None  # [default: 5 s x time_scale, at least 0.5 s]
    ready_timeout_s: float = 300.0
    progress: bool = True
    show_event: Callable[[str], bool] = shows_scaling  # which cluster events reach the terminal
    labelling: LabellingPlan | None = None  # labelling users beside the load: the run's live accuracy
    holdout_fraction: float | None = None  # overrides the spec's labels.holdout_fraction
    # The spec itself, when the caller holds it (the tune, which wrote it to `spec`): used as it is, not read back
    deployment: DeploymentSpec | None = None

    def monitor_interval(self) -> float:
        if self.monitor_interval_s is not None:
            return self.monitor_interval_s
        return monitor_interval_s(self.time_scale)


@dataclass
class RunResult:
    run_dir: Path
    status: Status
    record: RunRecord
    report: Path | None = None
    summary: RunSummary | None = None  # the statistics the report shows (summary.json); None when not analysed


@dataclass
class Inputs:
    """What a run needs, checked before anything starts."""

    spec: DeploymentSpec
    profile: LoadProfile
    model_path: Path | None  # None: on Kubernetes, a model that only the image holds
    notes: list[str]  # what a Kubernetes manifest given as the spec could not carry over


def held_out_spec(spec: DeploymentSpec, holdout_fraction: float | None,
                  labelling: LabellingPlan | None) -> DeploymentSpec:
    """The spec with --holdout-fraction in its labels section; RunError when labelling users would find no
    held-out uploads."""
    if holdout_fraction is not None:
        labels = spec.labels or LabelsSpec()
        spec = spec.model_copy(update={"labels": labels.model_copy(update={"holdout_fraction": holdout_fraction})})
    if labelling is not None and (spec.labels is None or spec.labels.holdout_fraction == 0):
        raise RunError(
            "labelling users need held-out uploads: set labels.holdout_fraction in the spec, or --holdout-fraction"
        )
    return spec


def read_inputs(options: RunOptions) -> Inputs:
    """The spec, the profile and the model file; RunError (or the stage's own error) when one is unusable."""
    spec, notes = (options.deployment, []) if options.deployment is not None else read_deployment(options.spec)
    spec = held_out_spec(spec, options.holdout_fraction, options.labelling)
    profile = load_profile(options.profile, options.time_scale)
    model_path: Path | None = spec_model_path(spec.model)
    if not model_path.is_file():
        if options.backend == BackendName.LOCAL:
            hint = " (the packaged default model is missing)" if spec.model == DEFAULT_MODEL else ""
            raise RunError(f"{model_path}: no such model file{hint}")
        model_path = None
    folder = RunFolder(options.out)
    if folder.path.exists() and not folder.path.is_dir():
        raise RunError(f"{folder.path}: exists and is not a folder")
    if folder.path.is_dir() and folder.holds_a_run():
        raise RunError(f"{folder.path}: already holds a run (run.json); choose another --out")
    return Inputs(spec, profile, model_path, notes)


def keep_inputs(folder: RunFolder, inputs: Inputs, options: RunOptions) -> dict:
    """spec.yaml, deployment.yaml and the model (hash, metadata, copy); returns run.json's model fields."""
    from servetune.model.artifact import ArtifactError, file_sha256, read_spec

    spec = inputs.spec
    (folder / SPEC_FILE).write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    on_cluster = spec
    if options.backend == BackendName.KUBERNETES:  # the objects as applied: the HPA's behavior compressed
        on_cluster = compressed_spec(spec, options.time_scale)[0]
    manifests = render_manifests(on_cluster, store_password=PASSWORD_PLACEHOLDER)  # the Secret's real one: at apply
    (folder / MANIFEST_FILE).write_text(to_yaml(manifests), encoding="utf-8")
    path = inputs.model_path
    if path is None:
        return {"model": Path(spec.model).name, "model_file": {"path": spec.model, "in_image_only": True}}
    model = {"path": str(path.resolve()), "sha256": file_sha256(path), "bytes": path.stat().st_size,
             "copied": False}
    fields: dict = {"model_file": model}
    try:
        artifact = read_spec(path)
    except ArtifactError:
        return fields  # the warm-up step reports it, as the failure of that step
    fields["model"] = artifact.name
    if (chosen := headline_accuracy(artifact.accuracy)) is not None:
        split, accuracy = chosen
        fields.update(accuracy=accuracy, accuracy_split=split)
    if options.copy_model:
        shutil.copyfile(path, folder / path.name)
        model["copied"] = True
    return fields


def open_backend(options: RunOptions, inputs: Inputs, folder: RunFolder, on_event: Callable[[str], None]) -> Backend:
    if options.backend == BackendName.LOCAL:
        from servetune.backend.local import LocalBackend

        if inputs.model_path is None:
            raise RunError("the local backend needs a model file")
        return LocalBackend(inputs.spec, inputs.model_path, folder.cluster_dir, port=options.port,
                            time_scale=options.time_scale, ready_timeout_s=options.ready_timeout_s,
                            on_event=on_event)
    if options.backend == BackendName.SIMULATED:
        raise RunError("the simulated backend needs a calibration: pass backend= (cli/run.py makes it)")
    from servetune.backend.kubernetes import KubernetesBackend

    return KubernetesBackend(inputs.spec, options.kubeconfig, options.context, url=options.url,
                             ready_timeout_s=options.ready_timeout_s, progress=options.progress, on_event=on_event,
                             time_scale=options.time_scale)


def machine() -> Machine:
    return Machine(host=platform.node(), platform=platform.platform(), python=platform.python_version(),
                   cpus=os.cpu_count())


def evaluate(options: RunOptions, console: Console | None = None, backend: Backend | None = None) -> RunResult:
    """Run the whole protocol into options.out. RunError (nothing started) for unusable input; otherwise
    the result says how it went, and run.json in the folder says the same. `backend`: one made by the
    caller (a simulator, say) instead of the one options.backend names."""
    console = console or Console(stderr=True)
    inputs = read_inputs(options)
    for note in inputs.notes:
        console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    folder = RunFolder(options.out)
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
        events = folder.events_log.open("a", encoding="utf-8")
    except OSError as error:
        raise RunError(f"{folder.path}: cannot write the run folder: {error.strerror or error}") from None

    def on_event(line: str) -> None:
        events.write(f"{line}\n" if is_autoscaler_sync(line) else f"{time.strftime('%H:%M:%S')} {line}\n")
        events.flush()
        if options.show_event(line):
            console.print(f"    {line}", highlight=False, markup=False)

    recorder = RunRecorder(folder, console, RunRecord(
        name=folder.path.resolve().name,
        backend=str(backend.name if backend is not None else options.backend),
        spec=options.spec,
        profile=inputs.profile.name,
        profile_seconds=inputs.profile.total_seconds(),
        time_scale=options.time_scale,
        driver=str(options.driver),
        monitor_interval_s=options.monitor_interval(),
        started_at=time.time(),
        machine=machine(),
    ))
    measurement = Measurement(inputs.profile, folder, options.driver, options.monitor_interval(), options.progress,
                              options.labelling)
    try:
        with recorder.step("prepare", f"keep the spec, rendered objects and model in {folder.path}"):
            recorder.update(**keep_inputs(folder, inputs, options))
            backend = backend or open_backend(options, inputs, folder, on_event)
        try:
            with recorder.step("warm-up", f"warm up ({backend.warm_up_description})") as step:
                step.detail = backend.warm_up()
            with recorder.step("apply", f"apply {inputs.spec.name} and wait until ready") as step:
                backend.apply()
                step.detail = backend.wait_ready()
                recorder.update(url=backend.url, **backend.limits())
            with recorder.step("load", f"load profile {inputs.profile.name} "
                             f"({inputs.profile.total_seconds():.0f} s) with the resource monitor") as step:
                step.outcome = backend.measure(measurement, recorder)
        finally:
            with recorder.step("tear-down", "tear down") as step:
                if backend is not None:
                    recorder.update(**backend.limits())
                    step.detail = backend.tear_down()
    except (StepFailed, KeyboardInterrupt):
        pass
    finally:
        events.close()
    report = analyze(folder, recorder)
    if recorder.running:
        recorder.record.status = "completed"
    recorder.update(ended_at=time.time())
    if report is None:
        return RunResult(folder.path, recorder.record.status, recorder.record)
    return RunResult(folder.path, recorder.record.status, recorder.record, report.page, report.summary)


def analyze(folder: RunFolder, recorder: RunRecorder) -> Report | None:
    """summary.json and the reports from whatever was measured; an analysis error is noted, not raised."""
    from servetune.analyze.report import write_report
    from servetune.runfolder import message_of

    if not folder.was_measured():
        recorder.update(analysis="skipped: nothing was measured")
        return None
    recorder.console.print("[bold cyan][*][/] analyse: summary.json, report.html, plots", highlight=False)
    try:
        report = write_report(folder.path)
    except (ServetuneError, OSError, ValueError) as error:
        recorder.update(analysis=f"failed: {message_of(error)}")
        recorder.console.print(f"    [red]analysis failed[/]: {message_of(error)}", highlight=False)
        return None
    recorder.update(analysis="completed", report=report.page.name)
    return report
