"""Apply, watch, inspect and delete a deployment on a real cluster with the official `kubernetes` client.

The connection is deploy/kubernetes_client.py's, made when a `KubernetesCluster` is created. Every failure a
user can meet (no kubeconfig, unreachable API server, forbidden, image pull failure, crash loop, timeout) is
raised as `KubernetesError` with a readable message.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from servetune.config import DeploymentSpec
from servetune.deploy.kubernetes_client import (
    Conflict,
    KubernetesError,
    NotFound,
    call,
    connect,
    kubernetes_client,
)
from servetune.deploy.manifests import CONTAINER_NAME, render_manifests, render_warmup, warmup_name

POLL_SECONDS = 1.0
REQUEST_TIMEOUT = (5, 30)  # seconds to connect, seconds to read one response
IMAGE_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONTAINER_FAILURES = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass
class PodStatus:
    name: str
    phase: str
    ready: bool
    restarts: int
    reason: str = ""  # why it is not running or not ready, when known
    node: str = ""


@dataclass
class RolloutStatus:
    namespace: str
    name: str
    desired: int
    ready: int
    updated: int
    available: int
    rolled_out: bool
    hpa: dict | None = None  # min, max, current, desired replicas and current/target CPU utilisation
    pods: list[PodStatus] = field(default_factory=list)


class KubernetesCluster:
    """One cluster reached through one kubeconfig context."""

    def __init__(self, kubeconfig: str | Path | None = None, context: str | None = None):
        self.connection = connect(kubeconfig, context)  # first: it explains a missing client
        self.api_client = self.connection.api_client
        self.host = self.connection.host
        client = kubernetes_client()
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.autoscaling = client.AutoscalingV2Api(self.api_client)
        self.apis = client.ApisApi(self.api_client)
        # kind -> (create, read, replace, delete), each taking (namespace, ...) like the client's methods
        self.verbs = {
            "Deployment": (
                self.apps.create_namespaced_deployment,
                self.apps.read_namespaced_deployment,
                self.apps.replace_namespaced_deployment,
                self.apps.delete_namespaced_deployment,
            ),
            "Service": (
                self.core.create_namespaced_service,
                self.core.read_namespaced_service,
                self.core.replace_namespaced_service,
                self.core.delete_namespaced_service,
            ),
            "HorizontalPodAutoscaler": (
                self.autoscaling.create_namespaced_horizontal_pod_autoscaler,
                self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                self.autoscaling.replace_namespaced_horizontal_pod_autoscaler,
                self.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
            ),
        }

    # --- requests ---------------------------------------------------------------------------------

    def request(self, what: str, method, *args, **kwargs):
        """Call one client method; every failure is a KubernetesError that says what it was."""
        return call(self.host, what, method, *args, timeout=REQUEST_TIMEOUT, **kwargs)

    def metrics_api_warning(self) -> str | None:
        """A warning when the cluster serves no metrics API: an HPA then never scales."""
        groups = self.request("list API groups", self.apis.get_api_versions)
        if any(group.name == "metrics.k8s.io" for group in groups.groups or []):
            return None
        return (
            "the cluster serves no metrics API (metrics.k8s.io): the HorizontalPodAutoscaler cannot read CPU "
            "usage and will not scale; install metrics-server"
        )

    # --- apply ------------------------------------------------------------------------------------

    def apply(self, spec: DeploymentSpec) -> list[str]:
        """Create or replace the spec's Deployment, Service and HPA; remove an HPA the spec no longer has."""
        actions = self.apply_objects(render_manifests(spec), keep_replicas=spec.autoscaling is not None)
        if spec.autoscaling is None and self.delete_object("HorizontalPodAutoscaler", spec.namespace, spec.name):
            actions.append(f"horizontalpodautoscaler/{spec.name} deleted (the spec has fixed replicas)")
        return actions

    def apply_objects(self, objects: list[dict], keep_replicas: bool = False) -> list[str]:
        """Create each object, or replace it when it exists. keep_replicas: leave an HPA's scaling alone."""
        actions = []
        for body in objects:
            kind, namespace, name = body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]
            create, read, replace, _ = self.verbs[kind]
            label = f"{kind.lower()}/{name}"
            try:
                self.request(f"create {label}", create, namespace, body)
                actions.append(f"{label} created")
                continue
            except Conflict:
                pass
            existing = self.request(f"read {label}", read, name, namespace)
            body = copy.deepcopy(body)
            body["metadata"]["resourceVersion"] = existing.metadata.resource_version
            if kind == "Service":  # the allocated cluster IP cannot change
                body["spec"]["clusterIP"] = existing.spec.cluster_ip
            if kind == "Deployment" and keep_replicas and existing.spec.replicas is not None:
                body["spec"]["replicas"] = existing.spec.replicas
            self.request(f"replace {label}", replace, name, namespace, body)
            actions.append(f"{label} replaced")
        return actions

    # --- watch ------------------------------------------------------------------------------------

    def status(self, spec: DeploymentSpec) -> RolloutStatus:
        return self.rollout_status(spec.namespace, spec.name, with_hpa=True)

    def rollout_status(self, namespace: str, name: str, with_hpa: bool = False) -> RolloutStatus:
        deployment = self.request(f"read deployment/{name}", self.apps.read_namespaced_deployment, name, namespace)
        desired = deployment.spec.replicas if deployment.spec.replicas is not None else 1
        state = deployment.status
        ready, updated = state.ready_replicas or 0, state.updated_replicas or 0
        rolled_out = (
            (state.observed_generation or 0) >= (deployment.metadata.generation or 0)
            and updated >= desired
            and ready >= desired
            and (state.replicas or 0) == desired  # no pods of an older revision left
        )
        status = RolloutStatus(
            namespace=namespace,
            name=name,
            desired=desired,
            ready=ready,
            updated=updated,
            available=state.available_replicas or 0,
            rolled_out=rolled_out,
            pods=self.pods(namespace, deployment.spec.selector.match_labels),
        )
        if with_hpa:
            status.hpa = self.hpa_status(namespace, name)
        return status

    def pods(self, namespace: str, match_labels: dict[str, str]) -> list[PodStatus]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        listing = self.request("list pods", self.core.list_namespaced_pod, namespace, label_selector=selector)
        return [pod_status(pod) for pod in listing.items]

    def hpa_status(self, namespace: str, name: str) -> dict | None:
        try:
            hpa = self.request(
                f"read horizontalpodautoscaler/{name}",
                self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                name,
                namespace,
            )
        except NotFound:
            return None
        target = current = None
        for metric in hpa.spec.metrics or []:
            if metric.resource is not None and metric.resource.name == "cpu":
                target = metric.resource.target.average_utilization
        for metric in (hpa.status.current_metrics or []) if hpa.status else []:
            if metric.resource is not None and metric.resource.name == "cpu":
                current = metric.resource.current.average_utilization
        return {
            "min": hpa.spec.min_replicas,
            "max": hpa.spec.max_replicas,
            "current": hpa.status.current_replicas if hpa.status else None,
            "desired": hpa.status.desired_replicas if hpa.status else None,
            "cpu_utilization": current,
            "cpu_target": target,
        }

    def wait_ready(self, spec: DeploymentSpec, timeout: float = 300, show_progress: bool = True) -> RolloutStatus:
        return self.wait_deployment_ready(spec.namespace, spec.name, timeout, show_progress)

    def wait_deployment_ready(
        self, namespace: str, name: str, timeout: float = 300, show_progress: bool = True
    ) -> RolloutStatus:
        """Poll until every desired replica is ready; fail fast on image pull failures and crash loops."""
        deadline = time.monotonic() + timeout
        console = Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not show_progress) as progress:
            task = progress.add_task(f"deployment/{name} ready", total=None)
            while True:
                status = self.rollout_status(namespace, name)
                failure = pod_failure(status.pods)
                if failure:
                    raise KubernetesError(f"deployment/{name}: {failure}")
                waiting = pod_waiting_reasons(status.pods)
                description = f"deployment/{name} ready" + (f" ({waiting})" if waiting else "")
                progress.update(task, total=status.desired, completed=status.ready, description=description)
                if status.rolled_out:
                    return status
                if time.monotonic() >= deadline:
                    raise KubernetesError(
                        f"deployment/{name}: timed out after {timeout:g} s with {status.ready}/{status.desired} "
                        f"replicas ready" + (f": {waiting}" if waiting else "")
                    )
                time.sleep(POLL_SECONDS)

    # --- delete -----------------------------------------------------------------------------------

    def delete(self, spec: DeploymentSpec, timeout: float = 300) -> list[str]:
        """Delete the HPA, Service and Deployment, then wait until their pods are gone."""
        actions = []
        for kind in ("HorizontalPodAutoscaler", "Service", "Deployment"):
            if self.delete_object(kind, spec.namespace, spec.name):
                actions.append(f"{kind.lower()}/{spec.name} deleted")
        self.wait_pods_gone(spec.namespace, {"app": spec.name}, timeout)
        return actions

    def delete_object(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one object (its pods in the background); False when there was none."""
        remove = self.verbs[kind][3]
        try:
            # The answer (a Status, or the deleted object for some kinds) is not needed: left unparsed.
            self.request(
                f"delete {kind.lower()}/{name}", remove, name, namespace,
                propagation_policy="Background", _preload_content=False,
            )
        except NotFound:
            return False
        return True

    def wait_pods_gone(self, namespace: str, match_labels: dict[str, str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while pods := self.pods(namespace, match_labels):
            if time.monotonic() >= deadline:
                names = ", ".join(pod.name for pod in pods)
                raise KubernetesError(f"timed out after {timeout:g} s waiting for pods to terminate: {names}")
            time.sleep(POLL_SECONDS)

    # --- the reference protocol's warm-up ---------------------------------------------------------

    def warm_up(self, spec: DeploymentSpec, timeout: float = 600, show_progress: bool = True) -> None:
        """Deploy 5 replicas of the same pod, wait until ready, delete them and wait until gone."""
        name = warmup_name(spec)
        self.apply_objects(render_warmup(spec))
        try:
            self.wait_deployment_ready(spec.namespace, name, timeout, show_progress)
        finally:
            self.delete_object("Deployment", spec.namespace, name)
        self.wait_pods_gone(spec.namespace, {"app": name}, timeout)


def pod_status(pod) -> PodStatus:
    containers = [c for c in pod.status.container_statuses or [] if c.name == CONTAINER_NAME]
    restarts = sum(c.restart_count or 0 for c in containers)
    ready = bool(containers) and all(c.ready for c in containers)
    reason = ""
    for c in containers:
        if c.state is not None and c.state.waiting is not None:
            reason = c.state.waiting.reason or ""
            detail = c.state.waiting.message or ""
            if reason == "CrashLoopBackOff" and c.last_state is not None and c.last_state.terminated is not None:
                ended = c.last_state.terminated
                detail = f"last exit code {ended.exit_code}" + (f" ({ended.reason})" if ended.reason else "")
            reason = f"{reason}: {detail}" if detail else reason
    if not reason:
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                reason = f"{condition.reason}: {condition.message}" if condition.message else condition.reason
    return PodStatus(
        name=pod.metadata.name,
        phase=pod.status.phase or "Unknown",
        ready=ready,
        restarts=restarts,
        reason=reason,
        node=(pod.spec.node_name or "") if pod.spec is not None else "",
    )


def pod_failure(pods: list[PodStatus]) -> str | None:
    """Why the rollout cannot succeed by waiting, or None."""
    for pod in pods:
        kind = pod.reason.split(":", 1)[0]
        if kind in IMAGE_PULL_FAILURES:
            return (
                f"pod {pod.name} cannot pull its image ({pod.reason}); push the image to a registry the nodes "
                "can reach, or load it into the nodes, and check the spec's `image`"
            )
        if kind == "CrashLoopBackOff":
            hint = "; raise limits.memory_mb" if "OOMKilled" in pod.reason else ""
            return (
                f"pod {pod.name} is crash-looping ({pod.reason}, {pod.restarts} restarts){hint}; see "
                f"`kubectl logs {pod.name} -c {CONTAINER_NAME} --previous`"
            )
        if kind in CONTAINER_FAILURES:
            return f"pod {pod.name} cannot start its container ({pod.reason})"
    return None


def pod_waiting_reasons(pods: list[PodStatus]) -> str:
    """What unready pods wait for, counted: e.g. `2 Unschedulable: 0/3 nodes are available...`."""
    counts: dict[str, int] = {}
    for pod in pods:
        if not pod.ready and pod.reason:
            counts[pod.reason] = counts.get(pod.reason, 0) + 1
    return "; ".join(f"{count} {reason}" for reason, count in counts.items())


def status_report(status: RolloutStatus) -> list[str | Table]:
    """The rollout and the autoscaler (one line each) and a table of the pods, for `servetune deploy status`."""
    rollout = (
        f"deployment {status.namespace}/{status.name}: {status.ready}/{status.desired} ready, "
        f"{status.updated} updated, {status.available} available"
    )
    lines: list[str | Table] = [rollout]
    if status.hpa is not None:
        hpa = status.hpa
        utilisation = "unknown" if hpa["cpu_utilization"] is None else f"{hpa['cpu_utilization']}%"
        lines.append(
            f"autoscaler: {hpa['min']}..{hpa['max']} replicas, current {hpa['current']}, desired "
            f"{hpa['desired']}, CPU {utilisation} of target {hpa['cpu_target']}%"
        )
    table = Table()
    for column in ("pod", "phase", "ready", "restarts", "node", "reason"):
        table.add_column(column)
    for pod in status.pods:
        table.add_row(pod.name, pod.phase, "yes" if pod.ready else "no", str(pod.restarts), pod.node, pod.reason)
    return [*lines, table]
