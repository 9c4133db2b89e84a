"""The evaluation protocol: warm up, apply, load test and monitor on one clock, tear down, keep everything.

1. warm-up: Kubernetes deploys the 5-replica warm-up Deployment, waits until ready, deletes it and waits
   until its pods are gone (the image is then on the nodes); the one-machine cluster loads the model once
   (ONNX Runtime reads the whole file, which leaves it in the page cache).
2. apply the candidate and wait until every replica is ready.
3. the resource monitor (a thread) takes its first sample, then the load profile starts at once, in this
   thread: both run on the wall clock of this process and stop together.
4. tear down, also after an error or Ctrl-C.
5. analyse what was measured: summary.json, report.html/.md with plots.

The run folder keeps spec.yaml, deployment.yaml (the rendered Kubernetes objects), the model (name and
sha256 in run.json, a copy unless told not to), load_output.csv, requests.csv, resource_usage.csv, the
reports and run.json: status (completed, failed, interrupted), the failing step and its error, the timing
of every step, the backend and whether limits were enforced. run.json is rewritten after every step, so a
run that stops part-way still says what happened.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from rich.console import Console

from servetune import __version__
from servetune.config import DeploymentSpec, LoadProfile
from servetune.deploy.manifests import render_manifests, to_yaml
from servetune.deploy.spec import load_deployment_spec
from servetune.load.profile import load_profile

RUN_FILE = "run.json"
SPEC_FILE = "spec.yaml"
MANIFEST_FILE = "deployment.yaml"
RESOURCE_FILE = "resource_usage.csv"
EVENTS_FILE = "events.log"
CLUSTER_DIR = "cluster"
MONITOR_INTERVAL_S = 5.0  # the reference monitor's cadence, before time compression
MIN_MONITOR_INTERVAL_S = 0.5
ACCURACY_SPLITS = ("evaluation", "test", "validation")  # the split analyze/stats.py reports first

Backend = Literal["local", "kubernetes"]
Status = Literal["running", "completed", "failed", "interrupted"]


class RunError(ValueError):
    """Input that cannot start a run (spec, profile, model, options); the message names the problem."""


class StepFailed(RuntimeError):
    """A protocol step failed; its message is what run.json records as the error."""


def is_autoscaler_sync(line: str) -> bool:
    """The one-machine cluster's autoscaler reports each sync as `HH:MM:SS replicas …`, its own clock first."""
    return line[:2].isdigit() and line[2:3] == ":" and " replicas " in line


def shows_scaling(line: str) -> bool:
    """Scaling decisions, restarts and warnings; the autoscaler's routine sync lines go to events.log only."""
    return not is_autoscaler_sync(line) or "-> scale to" in line


@dataclass
class RunOptions:
    spec: str
    out: Path
    backend: Backend = "local"
    profile: str = "reference"
    time_scale: float = 1.0
    driver: Literal["builtin", "siege"] = "builtin"
    copy_model: bool = True
    port: int = 0
    kubeconfig: Path | None = None
    context: str | None = None
    url: str | None = None  # kubernetes: where the load goes [default: first node's address + NodePort]
    monitor_interval_s: float | None = None  # [default: 5 s x time_scale, at least 0.5 s]
    ready_timeout_s: float = 300.0
    progress: bool = True
    show_event: Callable[[str], bool] = shows_scaling  # which cluster events reach the terminal


@dataclass
class RunResult:
    run_dir: Path
    status: Status
    record: dict
    report: Path | None = None


@dataclass
class Inputs:
    """What a run needs, checked before anything starts."""

    spec: DeploymentSpec
    profile: LoadProfile
    model_path: Path | None  # None: on Kubernetes, a model that only the image holds


def read_inputs(options: RunOptions) -> Inputs:
    """The spec, the profile and the model file; RunError when one of them cannot be used."""
    from servetune.deploy.spec import SpecError
    from servetune.load.profile import ProfileError
    from servetune.model.artifact import default_model_path

    if options.backend not in ("local", "kubernetes"):
        raise RunError(f"backend must be local or kubernetes, not {options.backend!r}")
    if options.driver not in ("builtin", "siege"):
        raise RunError(f"driver must be builtin or siege, not {options.driver!r}")
    if not 0 < options.time_scale <= 1:
        raise RunError(f"time scale must be in (0, 1], got {options.time_scale:g}")
    try:
        spec = load_deployment_spec(options.spec)
        profile = load_profile(options.profile, options.time_scale)
    except (SpecError, ProfileError) as error:
        raise RunError(str(error)) from None
    model_path = default_model_path() if spec.model == "default" else Path(spec.model)
    if not model_path.is_file():
        if options.backend == "local":
            hint = " (the packaged default model is missing)" if spec.model == "default" else ""
            raise RunError(f"{model_path}: no such model file{hint}")
        model_path = None
    if options.out.exists() and not options.out.is_dir():
        raise RunError(f"{options.out}: exists and is not a folder")
    if options.out.is_dir() and (options.out / RUN_FILE).exists():
        raise RunError(f"{options.out}: already holds a run (run.json); choose another --out")
    return Inputs(spec, profile, model_path)


# --- the run record ----------------------------------------------------------------------------------


class RunRecord:
    """run.json, rewritten after each change, and the step-by-step progress on the terminal."""

    def __init__(self, run_dir: Path, console: Console, data: dict) -> None:
        self.path = run_dir / RUN_FILE
        self.console = console
        self._lock = threading.Lock()  # the monitor thread may record a failure
        self.data = {"status": "running", "failed_step": None, "error": None, **data, "steps": []}
        self.save()

    def save(self) -> None:
        with self._lock:
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            temporary.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)

    def update(self, **fields: object) -> None:
        self.data.update(fields)
        self.save()

    @contextmanager
    def step(self, name: str, description: str) -> Iterator[dict]:
        """Time one step; a failure marks the run failed (or interrupted on Ctrl-C) at this step."""
        entry = {"name": name, "status": "running", "started_at": time.time()}
        self.data["steps"].append(entry)
        self.save()
        number = len(self.data["steps"])
        self.console.print(f"[bold cyan][{number}][/] {description} ...", highlight=False)
        began = time.monotonic()
        try:
            yield entry
        except KeyboardInterrupt:
            self._end(entry, began, "interrupted")
            self.fail(name, "interrupted (Ctrl-C)", "interrupted")
            raise
        except Exception as error:
            self._end(entry, began, "failed")
            self.fail(name, message_of(error))
            raise StepFailed(message_of(error)) from error
        self._end(entry, began, entry.get("outcome", "completed"))
        mark = "[green]done[/]" if entry["status"] == "completed" else f"[yellow]{entry['status']}[/]"
        self.console.print(f"    {mark} in {entry['seconds']:.1f} s", highlight=False)

    def _end(self, entry: dict, began: float, status: str) -> None:
        entry.pop("outcome", None)
        entry.update(status=status, ended_at=time.time(), seconds=round(time.monotonic() - began, 3))
        self.save()

    def fail(self, step: str, error: str, status: Status = "failed") -> None:
        """Record the first failure only: what broke first is what the user needs to read."""
        if self.data["status"] == "running":
            self.data.update(status=status, failed_step=step, error=error)
            self.save()
        colour = "yellow" if status == "interrupted" else "red"
        self.console.print(f"    [{colour}]{status}[/]: {error}", highlight=False)


def message_of(error: BaseException) -> str:
    return str(error) or type(error).__name__


# --- backends ----------------------------------------------------------------------------------------


class LocalBackend:
    """The one-machine cluster (deploy/local.py) and its monitor (monitor/local.py)."""

    name = "local"

    def __init__(self, spec: DeploymentSpec, model_path: Path, options: RunOptions, run_dir: Path,
                 on_event: Callable[[str], None]) -> None:
        self.spec, self.model_path, self.options = spec, model_path, options
        self.workdir = run_dir / CLUSTER_DIR
        self.on_event = on_event
        self.cluster = None

    def warm_up(self) -> str:
        import onnxruntime as ort

        from servetune.model.artifact import read_spec

        read_spec(self.model_path)  # a clear error for a file that is not a servetune artifact
        ort.InferenceSession(str(self.model_path), providers=["CPUExecutionProvider"])  # as a replica loads it
        return f"model loaded once ({self.model_path.stat().st_size / 1e6:.1f} MB now in the page cache)"

    def apply(self) -> str:
        from servetune.deploy.local import LocalCluster

        self.cluster = LocalCluster(
            self.spec, self.model_path, port=self.options.port, workdir=self.workdir,
            time_scale=self.options.time_scale, on_event=self.on_event,
        )
        self.cluster.start()
        self.cluster.wait_ready(self.options.ready_timeout_s)
        return f"{min(self.spec.replicas, self.cluster.capacity)} replica(s) ready on port {self.cluster.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cluster.port}"

    def monitor(self, out: Path, interval_s: float, stop: threading.Event, on_sample) -> int:
        from servetune.monitor.local import monitor_local

        return monitor_local(self.cluster.state_path, out, interval_s=interval_s, stop_event=stop,
                             on_sample=on_sample)

    def failure(self) -> str | None:
        """Why the deployment broke while it ran, or None."""
        return self.cluster.error if self.cluster is not None else None

    def limits(self) -> dict:
        if self.cluster is None:
            return {}
        return {"limits_enforced": self.cluster.limits_enforced, "limits_note": self.cluster.limits_note,
                "restarts": self.cluster.restarts, "restart_reasons": self.cluster.restart_reasons}

    def tear_down(self) -> str:
        if self.cluster is None:
            return "nothing was started"
        self.cluster.stop()
        return "every replica has exited"


class KubernetesBackend:
    """A real cluster (deploy/kubernetes.py) and the Kubernetes monitor (monitor/kubernetes.py)."""

    name = "kubernetes"

    def __init__(self, spec: DeploymentSpec, options: RunOptions, on_event: Callable[[str], None]) -> None:
        from servetune.deploy.kubernetes import KubernetesCluster

        self.spec, self.options, self.on_event = spec, options, on_event
        self.cluster = KubernetesCluster(options.kubeconfig, options.context)
        self.applied = False
        self._url = options.url

    def warm_up(self) -> str:
        self.cluster.warm_up(self.spec, timeout=2 * self.options.ready_timeout_s, show_progress=self.options.progress)
        return "5 warm-up replicas were ready, then deleted and gone"

    def apply(self) -> str:
        if self.spec.autoscaling is not None and (warning := self.cluster.metrics_api_warning()):
            self.on_event(f"warning: {warning}")
        self.applied = True
        for action in self.cluster.apply(self.spec):
            self.on_event(action)
        status = self.cluster.wait_ready(self.spec, self.options.ready_timeout_s, self.options.progress)
        if self._url is None:
            self._url = f"http://{self.node_address()}:{self.spec.node_port}"
        return f"{status.ready}/{status.desired} replicas ready; load goes to {self._url}"

    def node_address(self) -> str:
        """A node's address for the NodePort: ExternalIP first, then InternalIP."""
        from servetune.deploy.kubernetes import KubernetesError

        nodes = self.cluster.request("list nodes", self.cluster.core.list_node).items
        addresses = [a for node in nodes for a in (node.status.addresses or [])]
        for kind in ("ExternalIP", "InternalIP"):
            for address in addresses:
                if address.type == kind:
                    return address.address
        raise KubernetesError("no node reports an address: pass --url http://NODE:PORT")

    @property
    def url(self) -> str:
        return self._url

    def monitor(self, out: Path, interval_s: float, stop: threading.Event, on_sample) -> int:
        from servetune.monitor.kubernetes import monitor_kubernetes

        return monitor_kubernetes(
            out, namespace=self.spec.namespace, selector=f"app={self.spec.name}", interval_s=interval_s,
            kubeconfig=self.options.kubeconfig, context=self.options.context, stop_event=stop,
            on_sample=on_sample,
        )

    def failure(self) -> str | None:
        return None

    def limits(self) -> dict:
        if self.spec.limits is None:
            return {"limits_enforced": False, "limits_note": "the spec sets no limits"}
        return {"limits_enforced": True, "limits_note": "enforced by the kubelet"}

    def tear_down(self) -> str:
        if not self.applied:
            return "nothing was applied"
        actions = self.cluster.delete(self.spec, timeout=self.options.ready_timeout_s)
        return "; ".join(actions) or "nothing left to delete"


# --- the protocol ------------------------------------------------------------------------------------


def monitor_interval(options: RunOptions) -> float:
    if options.monitor_interval_s is not None:
        return options.monitor_interval_s
    return max(MIN_MONITOR_INTERVAL_S, MONITOR_INTERVAL_S * options.time_scale)


def keep_inputs(run_dir: Path, inputs: Inputs, options: RunOptions) -> dict:
    """spec.yaml, deployment.yaml and the model (hash, metadata, copy); returns run.json's model fields."""
    from servetune.model.artifact import ArtifactError, file_sha256, read_spec

    spec = inputs.spec
    (run_dir / SPEC_FILE).write_text(
        yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    (run_dir / MANIFEST_FILE).write_text(to_yaml(render_manifests(spec)), encoding="utf-8")
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
    for split in [*ACCURACY_SPLITS, *artifact.accuracy]:
        if split in artifact.accuracy:
            fields.update(accuracy=artifact.accuracy[split], accuracy_split=split)
            break
    if options.copy_model:
        shutil.copyfile(path, run_dir / path.name)
        model["copied"] = True
    return fields


def machine() -> dict:
    return {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}


def evaluate(options: RunOptions, console: Console | None = None) -> RunResult:
    """Run the whole protocol into options.out. RunError (nothing started) for unusable input; otherwise
    the result says how it went, and run.json in the folder says the same."""
    console = console or Console(stderr=True)
    inputs = read_inputs(options)
    run_dir = options.out
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        events = (run_dir / EVENTS_FILE).open("a", encoding="utf-8")
    except OSError as error:
        raise RunError(f"{run_dir}: cannot write the run folder: {error.strerror or error}") from None

    def on_event(line: str) -> None:
        events.write(f"{line}\n" if is_autoscaler_sync(line) else f"{time.strftime('%H:%M:%S')} {line}\n")
        events.flush()
        if options.show_event(line):
            console.print(f"    {line}", highlight=False, markup=False)

    record = RunRecord(run_dir, console, {
        "name": run_dir.resolve().name,
        "backend": options.backend,
        "spec": options.spec,
        "profile": inputs.profile.name,
        "profile_seconds": inputs.profile.total_seconds(),
        "time_scale": options.time_scale,
        "driver": options.driver,
        "monitor_interval_s": monitor_interval(options),
        "started_at": time.time(),
        "servetune": __version__,
        "machine": machine(),
    })
    backend = None
    try:
        with record.step("prepare", f"keep the spec, rendered objects and model in {run_dir}"):
            record.update(**keep_inputs(run_dir, inputs, options))
            if options.backend == "local":
                backend = LocalBackend(inputs.spec, inputs.model_path, options, run_dir, on_event)
            else:
                backend = KubernetesBackend(inputs.spec, options, on_event)
        try:
            with record.step("warm-up", "warm up" + (" (5 replicas, then delete)" if backend.name ==
                                                     "kubernetes" else " (load the model once)")) as step:
                step["detail"] = backend.warm_up()
            with record.step("apply", f"apply {inputs.spec.name} and wait until ready") as step:
                step["detail"] = backend.apply()
                record.update(url=backend.url, **backend.limits())
            with record.step("load", f"load profile {inputs.profile.name} "
                             f"({inputs.profile.total_seconds():.0f} s) with the resource monitor") as step:
                load_and_monitor(backend, inputs.profile, options, run_dir, record, step)
        finally:
            with record.step("tear-down", "tear down") as step:
                if backend is not None:
                    record.update(**backend.limits())
                    step["detail"] = backend.tear_down()
    except (StepFailed, KeyboardInterrupt):
        pass
    finally:
        events.close()
    report = analyze(run_dir, record)
    if record.data["status"] == "running":
        record.data["status"] = "completed"
    record.update(ended_at=time.time())
    return RunResult(run_dir, record.data["status"], record.data, report)


def load_and_monitor(backend, profile: LoadProfile, options: RunOptions, run_dir: Path, record: RunRecord,
                     step: dict) -> None:
    """The monitor's first sample, then the load at once; both stop when the load ends (or fails)."""
    stop_monitor = threading.Event()
    stop_load = threading.Event()
    first_sample = threading.Event()
    monitor_error: list[BaseException] = []
    samples: list[float] = []

    def on_sample(sample) -> None:
        samples.append(time.time())
        first_sample.set()
        if not stop_load.is_set() and (failure := backend.failure()) is not None:
            record.fail("load", f"the deployment failed during the load: {failure}")
            stop_load.set()

    def monitor() -> None:
        try:
            backend.monitor(run_dir / RESOURCE_FILE, monitor_interval(options), stop_monitor, on_sample)
        except Exception as error:  # noqa: BLE001 - reported in run.json; the load stops with it
            monitor_error.append(error)
            stop_load.set()
        finally:
            first_sample.set()

    thread = threading.Thread(target=monitor, name="resource-monitor", daemon=True)
    thread.start()
    try:
        first_sample.wait(timeout=max(30.0, 3 * monitor_interval(options)))
        if monitor_error:
            raise StepFailed(f"resource monitor: {message_of(monitor_error[0])}")
        load_started = time.time()
        record.update(load_started_at=load_started, monitor_first_sample_at=samples[0] if samples else None)
        run_load(profile, backend.url, run_dir, options, stop_load)
        if options.progress and not record.console.is_terminal:
            record.console.line()  # the live view's last frame ends without a newline when not on a terminal
        record.update(load_ended_at=time.time())
    finally:
        stop_monitor.set()
        thread.join(timeout=30)
        record.update(monitor_samples=len(samples))
    if monitor_error:
        raise StepFailed(f"resource monitor: {message_of(monitor_error[0])}")
    if stop_load.is_set() and record.data["status"] == "running":
        # run_load_test sets the stop event on the first Ctrl-C and returns the rows measured so far.
        record.fail("load", "interrupted (Ctrl-C): the load stopped early", "interrupted")
        step["outcome"] = "interrupted"
    elif record.data["status"] != "running":
        step["outcome"] = "failed"


def run_load(profile: LoadProfile, url: str, run_dir: Path, options: RunOptions, stop: threading.Event) -> None:
    if options.driver == "siege":
        from servetune.load.siege import run_siege

        run_siege(profile, url, run_dir, stop=stop)
        (run_dir / "load_profile.yaml").write_text(  # what the built-in driver keeps too
            yaml.safe_dump(profile.model_dump(), sort_keys=False), encoding="utf-8"
        )
    else:
        from servetune.load.driver import LoadOptions, run_load_test

        run_load_test(profile, url, run_dir, LoadOptions(progress=options.progress), stop)


def analyze(run_dir: Path, record: RunRecord) -> Path | None:
    """summary.json and the reports from whatever was measured; an analysis error is noted, not raised."""
    from servetune.analyze.report import write_report
    from servetune.analyze.stats import AnalysisError

    if not (run_dir / RESOURCE_FILE).is_file() or not (run_dir / "load_output.csv").is_file():
        record.update(analysis="skipped: nothing was measured")
        return None
    record.console.print("[bold cyan][*][/] analyse: summary.json, report.html, plots", highlight=False)
    try:
        report = write_report(run_dir)
    except (AnalysisError, OSError, ValueError) as error:
        record.update(analysis=f"failed: {message_of(error)}")
        record.console.print(f"    [red]analysis failed[/]: {message_of(error)}", highlight=False)
        return None
    record.update(analysis="completed", report=report.name)
    return report

