"""A real cluster as a backend: deploy/kubernetes.py's objects, monitor/kubernetes.py's samples."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from servetune.backend.measure import load_and_monitor
from servetune.backend.protocol import BackendName, Measurement
from servetune.config import DeploymentSpec, ResourceSample
from servetune.deploy.access_check import missing_access, refused_needs
from servetune.deploy.compressed_hpa import compressed_spec
from servetune.deploy.hpa_watch import AutoscalerWatch
from servetune.deploy.kubernetes import (
    KubernetesCluster,
    KubernetesError,
    load_failure,
    node_address,
    pod_status,
)
from servetune.deploy.pod_restarts import PodRestarts
from servetune.monitor.node_usage import NodeOthers
from servetune.runfolder import RunRecorder

WARM_UP_REPLICAS = 5  # deploy/manifests.py's warm-up Deployment
WITHOUT = {  # what a run does without a permission it would use (resource + group)
    "events": "the autoscaler's events and the pods' warnings are not read",
    "podsmetrics.k8s.io": "no usage is measured (memory and CPU used are n/a)",
}


class KubernetesBackend:
    name = BackendName.KUBERNETES
    warm_up_description = f"{WARM_UP_REPLICAS} replicas, then delete"
    host_cpu_counts = ("this machine's busy cores less servetune's own processes (the load driver); where a node "
                       "of the cluster is this machine, its pods (the replicas too) and its control plane count "
                       "here as well: run.json's node_cpu says what the replicas' nodes did besides the replicas")

    def __init__(self, spec: DeploymentSpec, kubeconfig: Path | None = None, context: str | None = None,
                 url: str | None = None, ready_timeout_s: float = 300.0, progress: bool = True,
                 on_event: Callable[[str], None] = print, time_scale: float = 1.0) -> None:
        """`url`: where the load goes [default: the first node's address and the spec's NodePort].
        `time_scale`: the run's; the HPA is applied with its behavior compressed (deploy/compressed_hpa.py)."""
        self.spec, self.compression = compressed_spec(spec, time_scale)
        self.ready_timeout_s, self.progress, self.on_event = ready_timeout_s, progress, on_event
        self.cluster = KubernetesCluster(kubeconfig, context)
        self.applied = False
        self._url = url
        self.restarts: PodRestarts | None = None  # counted from apply() on
        self.broken: str | None = None  # why the deployment went down during the load (deploy/kubernetes.py)
        self.node_others = NodeOthers(self.cluster.api_client)

    def warm_up(self) -> str:
        if self.compression.not_compressed:
            self.on_event(f"warning: {self.compression.warning()}")
        self.check_access()
        self.cluster.warm_up(self.spec, timeout=2 * self.ready_timeout_s, show_progress=self.progress)
        return f"{WARM_UP_REPLICAS} warm-up replicas were ready, then deleted and gone"

    def check_access(self) -> None:
        """Fail before anything changes when the user may not do what the run needs; warn of what it would use."""
        namespace = self.spec.namespace
        needed, useful = missing_access(self.cluster, namespace, needs_nodes=self._url is None)
        for refusal in useful:
            self.on_event(f"warning: the kubeconfig's user may not {refusal} in namespace {namespace}: "
                          + WITHOUT.get(refusal.access.resource + refusal.access.group, "the run carries on without"))
        if needed:
            raise refused_needs(needed, namespace, self.spec.node_port)

    def apply(self) -> str:
        if self.spec.autoscaling is not None and (warning := self.cluster.metrics_api_warning()):
            self.on_event(f"warning: {warning}")
        restarts = PodRestarts()
        restarts.baseline(self.cluster.pods(self.spec.namespace, self.selector))  # pods an earlier apply left
        self.restarts = restarts
        self.applied = True
        actions = list(self.cluster.apply(self.spec))
        for action in actions:
            self.on_event(action)
        return "; ".join(actions)

    def wait_ready(self) -> str:
        status = self.cluster.wait_ready(self.spec, self.ready_timeout_s, self.progress)
        self.count_restarts(status.pods)
        if self._url is None:
            self._url = f"http://{node_address(self.cluster)}:{self.spec.node_port}"
        return f"{status.ready}/{status.desired} replicas ready; load goes to {self._url}"

    @property
    def url(self) -> str:
        if self._url is None:
            raise KubernetesError("the service's URL is known once the replicas are ready (wait_ready() first)")
        return self._url

    def monitor(self, out: Path, interval_s: float, stop: threading.Event,
                on_sample: Callable[[ResourceSample], None]) -> int:
        from servetune.monitor.kubernetes import monitor_namespace

        watch = AutoscalerWatch(self.cluster, self.spec.namespace, self.spec.name) if self.spec.autoscaling else None
        nodes: set[str] = set()

        def each_listing(pods) -> None:
            """With each sample: the restarts since the last one, whether the deployment is down, what the
            autoscaler did, where replicas run."""
            statuses = [pod_status(pod) for pod in pods]
            self.count_restarts(statuses)
            self.broken = self.broken or load_failure(statuses)
            for line in watch.poll() if watch is not None else []:
                self.on_event(line)
            nodes.clear()
            nodes.update(pod.spec.node_name for pod in pods if pod.spec is not None and pod.spec.node_name)

        def each_sample(sample: ResourceSample) -> None:
            if sample.states is not None and sample.states.usage_unmeasured == 0:
                self.node_others.add(set(nodes), sample.cpu_use_core)
            on_sample(sample)

        # The deployment's own connection: the kubeconfig is read once and its namespace exists.
        return monitor_namespace(self.cluster.api_client, out, self.spec.namespace, selector=f"app={self.spec.name}",
                                 interval_s=interval_s, stop_event=stop, on_sample=each_sample, on_pods=each_listing)

    @property
    def selector(self) -> dict[str, str]:
        return {"app": self.spec.name}

    def count_restarts(self, pods) -> None:
        """Restarts since the last listing, each said as it is seen (terminal and events.log)."""
        if self.restarts is not None:
            for line in self.restarts.observe(pods):
                self.on_event(line)

    def measure(self, measurement: Measurement, recorder: RunRecorder) -> str:
        return load_and_monitor(self, measurement, recorder)

    def failure(self) -> str | None:
        return self.broken

    def limits(self) -> dict:
        counted = self.restarts.record() if self.restarts is not None else {}
        if self.compression.not_compressed:
            counted["time_scale_on_cluster"] = self.compression.record()
        if (nodes := self.node_others.record()) is not None:
            counted["node_cpu"] = nodes
        if self.spec.limits is None:
            return {"limits_enforced": False, "limits_note": "the spec sets no limits", **counted}
        return {"limits_enforced": True, "limits_note": "enforced by the kubelet", **counted}

    def tear_down(self) -> str:
        if not self.applied:
            return "nothing was applied"
        actions = self.cluster.delete(self.spec, timeout=self.ready_timeout_s)
        return "; ".join(actions) or "nothing left to delete"
