"""The Kubernetes resource monitor: requests/limits from CoreV1, usage from metrics.k8s.io.

What one sample counts (the reference monitor's semantics, with its usage bug fixed):
- replicas are the pods in the namespace (optionally matching a label selector) that have a container
  named `ml-app`, whatever their phase, as the reference counts them; `n_replica` is their number;
- requests and limits are the sums over those `ml-app` containers (CPU in cores, memory in KiB);
- usage is the sum of the `ml-app` containers' usage in PodMetrics, for those same pods only. The reference
  sums the first container of every pod in the namespace, which counts other workloads running there;
  `usage_all_pods=True` restores that behaviour for comparisons with old runs.

Gaps: metrics-server answers 404/503 while it starts, and a new pod has no metrics for its first
~15-60 s. Neither crashes the monitor or delays the cadence: each pod's usage carries its last measured
value, and a pod never measured yet contributes 0 to the row (a warning names it) and is counted in the
sample's `states.usage_unmeasured`, so a run's statistics can leave that row's usage out instead of
reading 0 as a measurement. `states` also splits the replicas into ready, starting, pending (unschedulable:
waiting for capacity) and terminating (a deletion timestamp). If the pod list itself cannot
be read (API server unreachable), that sample is skipped with a warning; authentication or permission
errors (401/403) stop the monitor with a clear error.

The connection (kubeconfig, context, in-cluster namespace) is deploy/kubernetes_client.py's; errors are its
`KubernetesError`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servetune.config import ReplicaStates, ResourceSample
from servetune.deploy.kubernetes_client import (
    AccessRefused,
    Connection,
    KubernetesError,
    NotFound,
    call,
    connect,
    kubernetes_client,
)
from servetune.deploy.manifests import CONTAINER_NAME
from servetune.monitor.record import record
from servetune.monitor.resource_csv import wall_clock_text

log = logging.getLogger(__name__)


def quantity(value: str) -> float:
    from kubernetes.utils import parse_quantity

    return float(parse_quantity(value))


def _sum(amounts: list[dict[str, str] | None], key: str, scale: float = 1.0) -> float:
    return sum(quantity(a[key]) / scale for a in amounts if a and key in a)


class KubernetesSampler:
    """Call it to take one ResourceSample (or None when the pod list could not be read this time)."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        *,
        selector: str | None = None,
        usage_all_pods: bool = False,
        request_timeout_s: float = 4.0,
        on_pods: Callable[[list[Any]], None] | None = None,
    ) -> None:
        """`on_pods`: called with each pod listing (the client's V1Pod objects), e.g. to count restarts."""
        client = kubernetes_client()
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.selector = selector or None
        self.usage_all_pods = usage_all_pods
        self.request_timeout_s = request_timeout_s
        self.on_pods = on_pods
        self._last_usage: dict[str, tuple[float, float]] = {}  # pod name -> (cores, KiB)
        self._metrics_gap = False
        self._warned_pods: set[str] = set()
        self._warned_no_pods = False

    def __call__(self) -> ResourceSample | None:
        now = wall_clock_text()
        pods = self._call("listing pods", self.core.list_namespaced_pod, self.namespace,
                          label_selector=self.selector)
        if pods is None:
            return None
        if self.on_pods is not None:
            self.on_pods(pods.items)
        containers, counted = {}, []
        for pod in pods.items:
            ml_app = [c for c in pod.spec.containers if c.name == CONTAINER_NAME]
            if ml_app:
                containers[pod.metadata.name] = ml_app[0]
                counted.append(pod)
        if not containers and not self._warned_no_pods:
            self._warned_no_pods = True
            matching = f" matching {self.selector!r}" if self.selector else ""
            log.warning("no pod%s in namespace %r has a container named %s: its rows count 0 replicas until one "
                        "does", matching, self.namespace, CONTAINER_NAME)
        requests = [c.resources.requests if c.resources else None for c in containers.values()]
        limits = [c.resources.limits if c.resources else None for c in containers.values()]
        cpu_use, mem_use, unmeasured = self._usage(set(containers))
        return ResourceSample(
            time=now,
            n_replica=len(containers),
            cpu_req_core=_sum(requests, "cpu"),
            mem_req_KB=_sum(requests, "memory", 1024),
            cpu_lim_core=_sum(limits, "cpu"),
            mem_lim_KB=_sum(limits, "memory", 1024),
            cpu_use_core=cpu_use,
            mem_use_KB=mem_use,
            states=replica_states(counted, now, len(unmeasured)),
        )

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The API answer, or None after a warning for a transient failure."""
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=self.request_timeout_s, **kwargs)
        except ApiException as error:
            if error.status in (401, 403):
                raise AccessRefused(
                    f"{what} in namespace {self.namespace!r}: access refused "
                    f"(HTTP {error.status} {error.reason}); check the kubeconfig's user and RBAC"
                ) from None
            log.warning("%s failed: HTTP %s %s", what, error.status, error.reason)
        except (HTTPError, OSError) as error:
            log.warning("%s failed: %s", what, error)
        return None

    def _usage(self, counted: set[str]) -> tuple[float, float, set[str]]:
        """(cores, KiB) summed, and the counted pods whose usage was never measured (they add 0)."""
        metrics = self._call(
            "reading metrics.k8s.io PodMetrics", self.custom.list_namespaced_custom_object,
            "metrics.k8s.io", "v1beta1", self.namespace, "pods",
        )
        if metrics is None:
            if not self._metrics_gap:
                log.warning("metrics.k8s.io gap: carrying each pod's last measured usage until it answers")
            self._metrics_gap = True
            measured = {}
        else:
            self._metrics_gap = False
            measured = self._measured(metrics)
        if self.usage_all_pods:
            # The reference: every pod the metrics API lists; during a gap, those of its last answer.
            pods = set(measured) if metrics is not None else set(self._last_usage)
        else:
            pods = counted
        usage = {}
        for pod in pods:
            if pod in measured:
                usage[pod] = measured[pod]
            elif pod in self._last_usage:
                usage[pod] = self._last_usage[pod]
            elif pod not in self._warned_pods and metrics is not None:
                self._warned_pods.add(pod)
                log.warning("pod %s has no metrics yet: its usage is not measured (0 in the CSV) until it has", pod)
        self._last_usage = usage
        unmeasured = counted - set(usage)
        return sum(u[0] for u in usage.values()), sum(u[1] for u in usage.values()), unmeasured

    def _measured(self, metrics: dict[str, Any]) -> dict[str, tuple[float, float]]:
        """pod name -> (cores, KiB) of the container this monitor counts in each PodMetrics item."""
        measured = {}
        for item in metrics.get("items") or []:
            containers = item.get("containers") or []
            if not self.usage_all_pods:
                containers = [c for c in containers if c.get("name") == CONTAINER_NAME]
            if not containers:
                continue
            usage = containers[0].get("usage") or {}
            try:
                measured[item["metadata"]["name"]] = (
                    quantity(usage["cpu"]), quantity(usage["memory"]) / 1024
                )
            except (KeyError, TypeError, ValueError, ArithmeticError):
                continue  # an item without usable numbers counts as a pod without metrics
        return measured


def replica_states(pods: list[Any], time: str, usage_unmeasured: int) -> ReplicaStates:
    """The counted pods by state: terminating (deletion requested), ready, pending (the scheduler found no
    node: waiting for capacity), else starting."""
    counts = dict.fromkeys(("ready", "starting", "pending", "terminating"), 0)
    for pod in pods:
        conditions = {c.type: c for c in (pod.status.conditions if pod.status else None) or []}
        scheduled, ready = conditions.get("PodScheduled"), conditions.get("Ready")
        if pod.metadata.deletion_timestamp is not None:
            counts["terminating"] += 1
        elif ready is not None and ready.status == "True":
            counts["ready"] += 1
        elif scheduled is not None and scheduled.status == "False":
            counts["pending"] += 1
        else:
            counts["starting"] += 1
    return ReplicaStates(time=time, usage_unmeasured=usage_unmeasured, **counts)


def require_namespace(connection: Connection, namespace: str) -> None:
    """Fail when the namespace does not exist (its pod list would just be empty); a user who may not read
    namespaces, or a server that does not answer now, is not stopped here."""
    core = kubernetes_client().CoreV1Api(connection.api_client)
    try:
        call(connection.host, f"read namespace {namespace}", core.read_namespace, namespace, timeout=(5, 10))
    except NotFound:
        raise KubernetesError(f"namespace {namespace!r} does not exist on {connection.host}") from None
    except KubernetesError:
        pass


def monitor_kubernetes(
    out_path: str | Path,
    *,
    namespace: str | None = None,
    selector: str | None = None,
    interval_s: float = 5.0,
    duration_s: float | None = None,
    usage_all_pods: bool = False,
    kubeconfig: str | Path | None = None,
    context: str | None = None,
    stop_event: threading.Event | None = None,
    on_sample: Callable[[ResourceSample], None] | None = None,
) -> int:
    """Write resource_usage.csv every `interval_s` seconds for `duration_s` (or until stopped); rows written."""
    connection = connect(kubeconfig, context)
    namespace = namespace or connection.namespace
    try:
        require_namespace(connection, namespace)
        return monitor_namespace(connection.api_client, out_path, namespace, selector=selector, interval_s=interval_s,
                                 duration_s=duration_s, usage_all_pods=usage_all_pods, stop_event=stop_event,
                                 on_sample=on_sample)
    finally:
        connection.close()


def monitor_namespace(
    api_client: Any,
    out_path: str | Path,
    namespace: str,
    *,
    selector: str | None = None,
    interval_s: float = 5.0,
    duration_s: float | None = None,
    usage_all_pods: bool = False,
    stop_event: threading.Event | None = None,
    on_sample: Callable[[ResourceSample], None] | None = None,
    on_pods: Callable[[list[Any]], None] | None = None,
) -> int:
    """monitor_kubernetes through a connection that is open already (a deployment's own, say)."""
    sampler = KubernetesSampler(
        api_client, namespace, selector=selector, usage_all_pods=usage_all_pods,
        request_timeout_s=max(0.5, min(4.0, interval_s * 0.8)),  # a sample gives up before the next is due
        on_pods=on_pods,
    )
    return record(sampler, out_path, interval_s=interval_s, duration_s=duration_s, stop_event=stop_event,
                  on_sample=on_sample)
