"""Measure a model's calibration on a Kubernetes cluster (`servetune tune calibrate --backend kubernetes`).

For each CPU limit the local calibration uses (0.25, 0.5, 1, 2 cores), one at a time: a Deployment of one
replica (servetune's image, the model inside it as `deploy` renders it, requests = limits, memory to spare)
and its NodePort Service are applied (server-side, as `servetune run` does), the pod is waited for (a pod
that cannot become ready fails with the kubelet's reason), and this machine's load driver sends the same
loads as the local calibration through the NodePort (or `--url`). Then both objects are deleted and their
pod waited for: also after a failure or Ctrl-C.

What is measured, as the Kubernetes monitor reads it (monitor/kubernetes.py's sampler, every second):
- CPU per request: the pod's mean CPU usage (metrics.k8s.io) during a load x its length / requests
  answered. metrics-server averages each pod's usage over a window of about 15 s: the samples of a load's
  first `metrics_window_s` are left out and each load lasts 30 s by default;
- memory: the pod's working set from the same samples: idle (its first sample), after the loads, the peak;
- start-up: from the pod's own timestamps: created until its Ready condition (the median over the limits of
  1 core and more, whose node has pulled the image by then), and the CPU it spends until ready estimated as
  the least over the limits of (container started until ready) x limit (a start under a small quota uses
  all of it);
- latency at one user and answers per second at 20, from the load driver as locally; the overhead is the
  client latency at one user and 1 CPU beyond the pod's CPU per request (network and driver).
The calibration records `backend: kubernetes` and, as its machine, the cluster and node(s) it ran on.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import ValidationError

from servetune.config import DeploymentSpec, ProbeSpec
from servetune.deploy.access_check import CALIBRATE_NEEDS, missing_access, refused_needs
from servetune.deploy.kubernetes import KubernetesCluster, KubernetesError, node_address, object_names
from servetune.deploy.local import model_footprint
from servetune.deploy.manifests import CONTAINER_NAME, render_manifests
from servetune.deploy.spec import DEFAULT_MODEL
from servetune.model.artifact import default_model_path, read_spec
from servetune.monitor.kubernetes import KubernetesSampler, quantity
from servetune.tune.calibration import Calibration
from servetune.tune.measure import (
    CPU_LIMITS,
    TARGETS,
    CalibrationFailed,
    Setting,
    build_calibration,
    measure_target,
    one_replica,
    sample_images,
)

NAME = "servetune-calibrate"  # the Deployment's and the Service's
NODE_PORT = 32099  # not the default spec's 32000: an app deployed there keeps its port
SECONDS = 30.0  # per load: twice metrics-server's window
METRICS_WINDOW_S = 15.0
METRICS_WAIT_S = 120.0  # a new pod's first usage takes metrics-server 15-60 s
# A slow model under 0.25 CPU may take minutes to load: the startup probe must not restart it meanwhile.
STARTUP_PROBE = ProbeSpec(period_seconds=5, failure_threshold=100)


@dataclass(frozen=True)
class Place:
    """Where the calibration runs: the cluster, the namespace, the image holding the model, how to reach it."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str = "default"
    image: str = "servetune:0.1.0"
    node_port: int = NODE_PORT
    url: str | None = None  # default: a node's address and the NodePort
    ready_timeout_s: float = 300.0


class PodUsage:
    """The calibration pod's usage (cores, KiB) as the Kubernetes monitor reads it, sampled in a thread."""

    def __init__(self, api_client: Any, namespace: str, selector: str, every_s: float) -> None:
        self.sampler = KubernetesSampler(api_client, namespace, selector=selector,
                                         request_timeout_s=max(0.5, min(4.0, every_s * 0.8)))
        self.every_s = every_s
        self.samples: list[tuple[float, float, float]] = []  # (monotonic time, cores, KiB): measured ones only
        self.error: KubernetesError | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                sample = self.sampler()
            except KubernetesError as error:  # access refused: the measurement cannot go on
                self.error = error
                return
            if sample is not None and sample.n_replica == 1 and sample.states.usage_unmeasured == 0:
                self.samples.append((time.monotonic(), sample.cpu_use_core, sample.mem_use_KB))
            self.stop.wait(self.every_s)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def first(self, timeout_s: float) -> tuple[float, float]:
        """The first measured (cores, KiB), waited for; CalibrationFailed when the metrics API has none."""
        deadline = time.monotonic() + timeout_s
        while not self.samples:
            self.check()
            if time.monotonic() >= deadline:
                raise CalibrationFailed(f"the metrics API (metrics.k8s.io) reported no usage of the calibration "
                                        f"pod within {timeout_s:g} s: is metrics-server running?")
            time.sleep(min(self.every_s, 0.2))
        return self.samples[0][1:]

    def mean_cores(self, start: float, end: float) -> float | None:
        inside = [cores for at, cores, _ in self.samples if start <= at <= end]
        return statistics.fmean(inside) if inside else None

    def peak_kib(self) -> float:
        return max(kib for _, _, kib in self.samples)

    def latest_kib(self) -> float:
        return self.samples[-1][2]


class MetricsCpu:
    """The pod's CPU seconds during a load from the metrics API: its mean usage after the first window x the
    load's length (tune/measure.py's CpuMeter)."""

    def __init__(self, usage: PodUsage, window_s: float) -> None:
        self.usage, self.window_s, self.began = usage, window_s, 0.0

    def start(self) -> None:
        self.began = time.monotonic()

    def stop(self) -> float:
        ended = time.monotonic()
        self.usage.check()
        cores = self.usage.mean_cores(self.began + self.window_s, ended)
        if cores is None:
            raise CalibrationFailed(
                f"the metrics API measured no usage of the calibration pod in a load of {ended - self.began:.0f} s "
                f"after its first {self.window_s:g} s (metrics-server's window): more --seconds")
        return cores * (ended - self.began)


@dataclass(frozen=True)
class PodStart:
    """A pod's own timestamps, seconds from its creation: its container started, it was Ready."""

    node: str
    started_s: float
    ready_s: float

    @classmethod
    def of(cls, pod: Any) -> PodStart:
        created = pod.metadata.creation_timestamp
        ready = next((c.last_transition_time for c in pod.status.conditions or []
                      if c.type == "Ready" and c.status == "True"), None)
        container = next((c for c in pod.status.container_statuses or [] if c.name == CONTAINER_NAME), None)
        running = container.state.running if container is not None and container.state is not None else None
        if created is None or ready is None:
            raise CalibrationFailed(f"pod {pod.metadata.name} reports no creation time or Ready condition")
        started = running.started_at if running is not None and running.started_at is not None else created
        return cls(pod.spec.node_name or "", (started - created).total_seconds(), (ready - created).total_seconds())


def calibration_spec(model_path: Path, limit: float, footprint_bytes: int, place: Place) -> DeploymentSpec:
    """One replica of the model at `limit` CPU (requests = limits), in the place's namespace and image."""
    model = DEFAULT_MODEL if model_path.resolve() == default_model_path().resolve() else str(model_path)
    fields = one_replica(limit, footprint_bytes).model_dump() | {
        "name": NAME, "model": model, "image": place.image, "namespace": place.namespace,
        "node_port": place.node_port, "startup_probe": STARTUP_PROBE.model_dump()}
    try:
        return DeploymentSpec.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        raise CalibrationFailed(f"the calibration's deployment: {'.'.join(map(str, first['loc']))}: "
                                f"{first['msg']}") from None


@contextmanager
def calibration_pod(cluster: KubernetesCluster, spec: DeploymentSpec, timeout_s: float,
                    on_event: Callable[[str], None]) -> Iterator[None]:
    """The spec's Deployment and Service applied; deleted and their pod gone afterwards, whatever happened."""
    try:
        for action in cluster.apply_objects(render_manifests(spec, sleep_action=cluster.sleep_action())):
            on_event(action)
        yield
    finally:
        objects = object_names(spec)[1:]  # the Service and the Deployment: no autoscaler is applied
        try:
            for kind, name in objects:
                if cluster.delete_object(kind, spec.namespace, name):
                    on_event(f"{kind.lower()}/{name} deleted")
            cluster.wait_pods_gone(spec.namespace, {"app": spec.name}, timeout_s)
        except KubernetesError as error:
            left = " ".join(f"{kind.lower()}/{name}" for kind, name in objects)
            on_event(f"warning: the calibration's objects may be left on the cluster ({error}): "
                     f"kubectl delete -n {spec.namespace} {left}")


def calibrate_on_cluster(
    model_path: Path,
    place: Place,
    *,
    seconds: float = SECONDS,
    limits: tuple[float, ...] = CPU_LIMITS,
    progress: Callable[[str], None] = lambda text: None,
    on_event: Callable[[str], None] = lambda text: None,
    metrics_window_s: float = METRICS_WINDOW_S,
    sample_every_s: float = 1.0,
) -> Calibration:
    """Measure `model_path` on the cluster; `progress` hears one line per step, `on_event` what changed there."""
    model = read_spec(model_path)
    cluster = KubernetesCluster(place.kubeconfig, place.context)
    needed, _ = missing_access(cluster, place.namespace, needs_nodes=place.url is None, needs=CALIBRATE_NEEDS,
                               would_use=[])
    if needed:
        raise refused_needs(needed, place.namespace, place.node_port, "a calibration")
    url = place.url or f"http://{node_address(cluster)}:{place.node_port}"
    footprint = model_footprint(model_path)
    settings: list[Setting] = []
    starts: list[tuple[float, PodStart]] = []
    rss_idle: list[int] = []
    rss_loaded: list[int] = []
    idle_cores: list[float] = []
    rss_peak = 0
    with tempfile.TemporaryDirectory(prefix="servetune-calibrate-") as folder:
        work = Path(folder)
        images = sample_images(work)
        for limit in limits:
            spec = calibration_spec(model_path, limit, footprint, place)
            progress(f"{model.name}: one pod at {limit:g} CPU on the cluster: until ready")
            try:
                with calibration_pod(cluster, spec, place.ready_timeout_s, on_event):
                    starts.append((limit, ready_pod(cluster, spec, place.ready_timeout_s)))
                    with PodUsage(cluster.api_client, spec.namespace, f"app={spec.name}", sample_every_s) as usage:
                        cores, kib = usage.first(METRICS_WAIT_S)
                        idle_cores.append(cores)
                        rss_idle.append(int(kib * 1024))
                        for target in TARGETS:
                            progress(f"{model.name}: {target} at {limit:g} CPU through {url}")
                            measured = measure_target(url, MetricsCpu(usage, metrics_window_s), target, seconds,
                                                      images, work / f"load-{limit:g}", saturated_s=seconds)
                            settings.append(Setting(target, limit, *measured))
                        rss_loaded.append(int(usage.latest_kib() * 1024))
                        rss_peak = max(rss_peak, int(usage.peak_kib() * 1024))
            except (CalibrationFailed, KubernetesError) as error:
                raise CalibrationFailed(f"{model_path}: at {limit:g} CPU on the cluster: {error}") from None
    return cluster_calibration(model_path, model, settings, starts, rss_idle, rss_loaded, rss_peak, idle_cores,
                               cluster_text(cluster, sorted({start.node for _, start in starts})))


def ready_pod(cluster: KubernetesCluster, spec: DeploymentSpec, timeout_s: float) -> PodStart:
    """Wait until the one pod is ready (the kubelet's reason when it cannot be); its timestamps."""
    try:
        cluster.wait_deployment_ready(spec.namespace, spec.name, timeout_s, show_progress=False)
    except KubernetesError as error:
        raise CalibrationFailed(f"the calibration pod was never ready: {error} (the image {spec.image} must hold "
                                "the model: make image MODEL=...)") from None
    pods = cluster.request("list pods", cluster.core.list_namespaced_pod, spec.namespace,
                           label_selector=f"app={spec.name}").items
    live = [pod for pod in pods if pod.metadata.deletion_timestamp is None]
    if not live:
        raise CalibrationFailed(f"deployment/{spec.name} was ready but lists no pod")
    return PodStart.of(live[0])


def cluster_calibration(model_path: Path, model: Any, settings: list[Setting],
                        starts: list[tuple[float, PodStart]], rss_idle: list[int], rss_loaded: list[int],
                        rss_peak: int, idle_cores: list[float], machine: str) -> Calibration:
    """build_calibration's figures with the cluster's start-up, overhead, backend and machine."""
    ready = [start.ready_s for limit, start in starts if limit >= 1] or [start.ready_s for _, start in starts]
    start_cpu = min((start.ready_s - start.started_s) * limit for limit, start in starts)
    calibration = build_calibration(model_path, model.name, model.accuracy, settings, ready, [start_cpu],
                                    rss_idle, rss_loaded, rss_peak, idle_cores)
    alone = next((s for s in settings if s.limit == 1.0 and s.target == "GET /test"), settings[0])
    overhead = max(calibration.overhead_ms, statistics.median(alone.latencies_ms) - alone.cpu_ms)
    return calibration.model_copy(update={"backend": "kubernetes", "machine": machine,
                                          "overhead_ms": round(overhead, 3)})


def cluster_text(cluster: KubernetesCluster, nodes: list[str]) -> str:
    """The cluster (API server, version) and each node the pods ran on, with its CPUs and memory when the
    user may read nodes."""
    major, minor = cluster.server_version()
    described = []
    for name in nodes:
        try:
            node = cluster.request(f"read node/{name}", cluster.core.read_node, name)
        except KubernetesError:  # a namespaced user: the node's name only
            described.append(f"node {name}")
            continue
        capacity = (node.status.capacity if node.status else None) or {}
        labels = node.metadata.labels or {}
        info = node.status.node_info if node.status else None
        parts = [f"{capacity['cpu']} CPUs" if "cpu" in capacity else "",
                 f"{quantity(capacity['memory']) / 2**30:.0f} GiB" if "memory" in capacity else "",
                 info.architecture if info is not None else "",
                 labels.get("node.kubernetes.io/instance-type", "")]
        described.append(f"node {name}: " + ", ".join(part for part in parts if part))
    return f"Kubernetes {major}.{minor} at {cluster.host}, " + "; ".join(described)
