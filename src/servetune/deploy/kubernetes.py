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
    AccessRefused,
    KubernetesError,
    NotFound,
    call,
    connect,
    kubernetes_client,
)
from servetune.deploy.manifests import (
    CONTAINER_NAME,
    SLEEP_ACTION_SINCE,
    render_manifests,
    render_warmup,
    warmup_name,
)

POLL_SECONDS = 1.0
REQUEST_TIMEOUT = (5, 30)  # seconds to connect, seconds to read one response
IMAGE_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONTAINER_FAILURES = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
CRASH_LOOP = "CrashLoopBackOff"  # the kubelet backs off restarting a container that keeps exiting
FIELD_MANAGER = "servetune"
APPLY_PATCH = "application/apply-patch+yaml"
OLDEST_SERVER = (1, 23)  # autoscaling/v2 is served from 1.23
METRICS_APISERVICE = "v1beta1.metrics.k8s.io"
UNSCHEDULABLE_GRACE_S = 60.0  # a pod may wait this long for the scheduler (or a cluster autoscaler)
EVENTS_EVERY_S = 5.0  # how often the wait reads the pods' warning events


@dataclass
class PodStatus:
    name: str
    phase: str
    ready: bool
    restarts: int
    reason: str = ""  # why it is not running or not ready, when known
    node: str = ""
    uid: str = ""
    last_exit: str = ""  # why its container last ended (lastState.terminated), in restart_reason's words


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
        self.registration = client.ApiregistrationV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.versions = client.VersionApi(self.api_client)
        self._version: tuple[int, int] | None = None
        self.applied: list[str] = []  # `kind/name` of each object this connection has applied (not dry runs)
        # kind -> (patch with the HTTP status, delete), each taking (name, namespace, ...)
        self.verbs = {
            "Deployment": (
                self.apps.patch_namespaced_deployment_with_http_info,
                self.apps.delete_namespaced_deployment,
            ),
            "Service": (
                self.core.patch_namespaced_service_with_http_info,
                self.core.delete_namespaced_service,
            ),
            "StatefulSet": (
                self.apps.patch_namespaced_stateful_set_with_http_info,
                self.apps.delete_namespaced_stateful_set,
            ),
            "Secret": (
                self.core.patch_namespaced_secret_with_http_info,
                self.core.delete_namespaced_secret,
            ),
            "HorizontalPodAutoscaler": (
                self.autoscaling.patch_namespaced_horizontal_pod_autoscaler_with_http_info,
                self.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
            ),
        }

    # --- requests ---------------------------------------------------------------------------------

    def request(self, what: str, method, *args, timeout=REQUEST_TIMEOUT, **kwargs):
        """Call one client method; every failure is a KubernetesError that says what it was."""
        return call(self.host, what, method, *args, timeout=timeout, **kwargs)

    def server_version(self) -> tuple[int, int]:
        """(major, minor) of the API server, e.g. (1, 24); read once."""
        if self._version is None:
            info = self.request("read the server version", self.versions.get_code)
            try:  # managed clusters report e.g. minor "24+"
                self._version = (int(info.major), int("".join(c for c in info.minor if c.isdigit())))
            except (TypeError, ValueError):
                raise KubernetesError(f"{self.host} reports no readable version ({info.major}.{info.minor})") from None
        return self._version

    def sleep_action(self) -> bool:
        """Whether the preStop `sleep` action exists here; fail on a server too old for the manifests."""
        version = self.server_version()
        if version < OLDEST_SERVER:
            raise KubernetesError(
                f"the cluster runs Kubernetes {version[0]}.{version[1]}; servetune needs "
                f"{OLDEST_SERVER[0]}.{OLDEST_SERVER[1]} or later (autoscaling/v2)"
            )
        return version >= SLEEP_ACTION_SINCE

    def metrics_api_warning(self) -> str | None:
        """A warning when the cluster serves no working metrics API: an HPA then never scales."""
        consequence = "the HorizontalPodAutoscaler cannot read CPU usage and will not scale"
        groups = self.request("list API groups", self.apis.get_api_versions)
        if not any(group.name == "metrics.k8s.io" for group in groups.groups or []):
            return f"the cluster serves no metrics API (metrics.k8s.io): {consequence}; install metrics-server"
        try:
            service = self.request(
                f"read apiservice/{METRICS_APISERVICE}", self.registration.read_api_service, METRICS_APISERVICE
            )
        except (AccessRefused, NotFound):  # a namespaced user: try one read of the metrics instead
            try:
                self.request("read pod metrics", self.custom.list_namespaced_custom_object,
                             "metrics.k8s.io", "v1beta1", self.connection.namespace, "pods")
            except AccessRefused:
                return None
            except KubernetesError as error:
                return f"the metrics API does not answer ({error}): {consequence}"
            return None
        for condition in (service.status.conditions if service.status else None) or []:
            if condition.type == "Available" and condition.status != "True":
                return (
                    f"the metrics API is not available (apiservice {METRICS_APISERVICE}: {condition.reason}: "
                    f"{condition.message}): {consequence}; check metrics-server"
                )
        return None

    # --- apply ------------------------------------------------------------------------------------

    def apply(self, spec: DeploymentSpec) -> list[str]:
        """Apply the spec's Deployment, Service and HPA; remove an HPA the spec no longer has."""
        objects = render_manifests(spec, sleep_action=self.sleep_action())
        actions = self.apply_objects(objects, keep_replicas=spec.autoscaling is not None)
        if spec.autoscaling is None and self.delete_object("HorizontalPodAutoscaler", spec.namespace, spec.name):
            actions.append(f"horizontalpodautoscaler/{spec.name} deleted (the spec has fixed replicas)")
        return actions

    def apply_objects(self, objects: list[dict], keep_replicas: bool = False) -> list[str]:
        """Server-side apply of every object, after a dry run of all of them: a refusal changes nothing.

        keep_replicas: leave the replica count an autoscaler has set (read first, applied unchanged).
        """
        bodies = [self.keeping_replicas(body) if keep_replicas else body for body in objects]
        # The label store's Secret holds the password its database was initialised with: never replaced.
        bodies = [body for body in bodies if not (body["kind"] == "Secret" and self.exists(body))]
        for body in bodies:
            self.server_side_apply(body, dry_run=True)
        actions: list[str] = []
        for body in bodies:
            try:
                actions.append(self.server_side_apply(body))
                self.applied.append(f"{body['kind'].lower()}/{body['metadata']['name']}")
            except KubernetesError as error:
                changed = ", ".join(actions) if actions else "nothing"
                raise type(error)(f"{error} (already applied: {changed})") from None
        return actions

    def exists(self, body: dict) -> bool:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            self.request(f"read secret/{name}", self.core.read_namespaced_secret, name, namespace)
        except NotFound:
            return False
        return True

    def keeping_replicas(self, body: dict) -> dict:
        if body["kind"] != "Deployment":
            return body
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            existing = self.request(f"read deployment/{name}", self.apps.read_namespaced_deployment, name, namespace)
        except NotFound:
            return body
        if existing.spec.replicas is None:
            return body
        body = copy.deepcopy(body)
        body["spec"]["replicas"] = existing.spec.replicas
        return body

    def server_side_apply(self, body: dict, dry_run: bool = False) -> str:
        """PATCH application/apply-patch+yaml as field manager `servetune`, forced; `created` or `configured`."""
        kind, namespace, name = body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]
        label = f"{kind.lower()}/{name}"
        _, code, _ = self.request(  # (object, HTTP status, headers): 201 when the apply created it
            f"apply {label}" + (" (dry run)" if dry_run else ""), self.verbs[kind][0], name, namespace, body,
            field_manager=FIELD_MANAGER, force=True, dry_run="All" if dry_run else None, _content_type=APPLY_PATCH,
        )
        return f"{label} {'created' if code == 201 else 'configured'}"

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

    def latest_warning(self, namespace: str, pods: list[PodStatus]) -> str:
        """The newest Warning event of these pods (`FailedCreatePodSandBox: ...`), or "" (also without access)."""
        names = {pod.name for pod in pods}
        try:
            events = self.request(
                "list events", self.core.list_namespaced_event, namespace,
                field_selector="type=Warning,involvedObject.kind=Pod",
            ).items
        except AccessRefused:
            return ""
        ours = [e for e in events if e.involved_object is not None and e.involved_object.name in names]
        if not ours:
            return ""
        newest = max(ours, key=lambda e: str(e.last_timestamp or e.event_time or e.first_timestamp or ""))
        return f"{newest.reason}: {newest.message}".strip()

    def hpa_status(self, namespace: str, name: str, timeout=REQUEST_TIMEOUT) -> dict | None:
        try:
            hpa = self.request(
                f"read horizontalpodautoscaler/{name}",
                self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                name,
                namespace,
                timeout=timeout,
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
        conditions = [(c.type, c.status, c.reason or "", c.message or "")
                      for c in ((hpa.status.conditions if hpa.status else None) or [])]
        return {
            "min": hpa.spec.min_replicas,
            "max": hpa.spec.max_replicas,
            "current": hpa.status.current_replicas if hpa.status else None,
            "desired": hpa.status.desired_replicas if hpa.status else None,
            "cpu_utilization": current,
            "cpu_target": target,
            "conditions": conditions,  # (type, status, reason, message): AbleToScale, ScalingActive, ...
        }

    def hpa_events(self, namespace: str, name: str, timeout=REQUEST_TIMEOUT) -> list:
        """The events of the HPA `name` (SuccessfulRescale, FailedGetResourceMetric, ...), as core/v1 Events."""
        return self.request(
            "list events", self.core.list_namespaced_event, namespace, timeout=timeout,
            field_selector=f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={name}",
        ).items

    def wait_ready(self, spec: DeploymentSpec, timeout: float = 300, show_progress: bool = True) -> RolloutStatus:
        return self.wait_deployment_ready(spec.namespace, spec.name, timeout, show_progress)

    def wait_deployment_ready(
        self, namespace: str, name: str, timeout: float = 300, show_progress: bool = True
    ) -> RolloutStatus:
        """Poll until every desired replica is ready; fail fast on image pull failures, crash loops and pods
        that stay unschedulable past UNSCHEDULABLE_GRACE_S. Shows the pods' newest warning event meanwhile."""
        started = time.monotonic()
        deadline = started + timeout
        unschedulable_since: dict[str, float] = {}
        warning, warning_read_at = "", -EVENTS_EVERY_S
        console = Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not show_progress) as progress:
            task = progress.add_task(f"deployment/{name} ready", total=None)
            while True:
                status = self.rollout_status(namespace, name)
                now = time.monotonic()
                failure = pod_failure(status.pods) or unschedulable_failure(status.pods, unschedulable_since, now)
                if failure:
                    raise KubernetesError(f"deployment/{name}: {failure}")
                unready = [pod for pod in status.pods if not pod.ready]
                if unready and now - warning_read_at >= EVENTS_EVERY_S:
                    warning, warning_read_at = self.latest_warning(namespace, unready), now
                waiting = "; ".join(filter(None, [
                    pod_waiting_reasons(status.pods), f"latest warning: {warning}" if warning and unready else "",
                ]))
                description = f"deployment/{name} ready" + (f" ({waiting})" if waiting else "")
                progress.update(task, total=status.desired, completed=status.ready, description=description)
                if status.rolled_out:
                    return status
                if now >= deadline:
                    raise KubernetesError(
                        f"deployment/{name}: timed out after {timeout:g} s with {status.ready}/{status.desired} "
                        f"replicas ready" + (f": {waiting}" if waiting else "")
                    )
                time.sleep(POLL_SECONDS)

    # --- delete -----------------------------------------------------------------------------------

    def delete(self, spec: DeploymentSpec, timeout: float = 300) -> list[str]:
        """Delete the HPA, Service and Deployment, then wait until their pods are gone."""
        actions = []
        for kind, name in object_names(spec):
            if self.delete_object(kind, spec.namespace, name):
                actions.append(f"{kind.lower()}/{name} deleted")
        self.wait_pods_gone(spec.namespace, {"app": spec.name}, timeout)
        return actions

    def delete_object(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one object (its pods in the background); False when there was none."""
        remove = self.verbs[kind][1]
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
        """Deploy 5 replicas of the same pod (tiny requests: only the image matters), wait until ready,
        delete them and wait until gone."""
        name = warmup_name(spec)
        self.apply_objects(render_warmup(spec, sleep_action=self.sleep_action()))
        try:
            self.wait_deployment_ready(spec.namespace, name, timeout, show_progress)
        finally:
            self.delete_object("Deployment", spec.namespace, name)
        self.wait_pods_gone(spec.namespace, {"app": name}, timeout)


def node_address(cluster: KubernetesCluster) -> str:
    """A node's address for a NodePort: ExternalIP first, then InternalIP."""
    nodes = cluster.request("list nodes", cluster.core.list_node).items
    addresses = [a for node in nodes for a in (node.status.addresses or [])]
    for kind in ("ExternalIP", "InternalIP"):
        for address in addresses:
            if address.type == kind:
                return address.address
    raise KubernetesError("no node reports an address: pass --url http://NODE:PORT")


def object_names(spec: DeploymentSpec) -> list[tuple[str, str]]:
    """(kind, name) of the objects a spec may have on a cluster, in the order to delete them."""
    return [("HorizontalPodAutoscaler", spec.name), ("Service", spec.service_object_name), ("Deployment", spec.name)]


def pod_status(pod) -> PodStatus:
    containers = [c for c in pod.status.container_statuses or [] if c.name == CONTAINER_NAME]
    restarts = sum(c.restart_count or 0 for c in containers)
    ready = bool(containers) and all(c.ready for c in containers)
    reason = last_exit = ""
    for c in containers:
        if c.last_state is not None and c.last_state.terminated is not None:
            last_exit = restart_reason(c.last_state.terminated)
        if c.state is not None and c.state.waiting is not None:
            reason = c.state.waiting.reason or ""
            detail = c.state.waiting.message or ""
            if reason == CRASH_LOOP and c.last_state is not None and c.last_state.terminated is not None:
                ended = c.last_state.terminated
                detail = f"last exit code {ended.exit_code}" + (f" ({ended.reason})" if ended.reason else "")
            reason = f"{reason}: {detail}" if detail else reason
    if not reason:
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                reason = f"{condition.reason}: {condition.message}" if condition.message else condition.reason
    terminating = pod.metadata.deletion_timestamp is not None
    return PodStatus(
        name=pod.metadata.name,
        # kubectl's word: the kubelet reports the pod Running (and its container ready) through the preStop
        # pause, but its endpoints are gone and it takes no new traffic.
        phase="Terminating" if terminating else pod.status.phase or "Unknown",
        ready=ready and not terminating,
        restarts=restarts,
        reason=reason,
        node=(pod.spec.node_name or "") if pod.spec is not None else "",
        uid=pod.metadata.uid or "",
        last_exit=last_exit,
    )


def restart_reason(terminated) -> str:
    """The kubelet's lastState.terminated in the one-machine cluster's words: `OOMKilled`, `Error (exit code
    137)`, `Error (signal 9)`."""
    reason = terminated.reason or "Error"
    if reason == "OOMKilled":
        return reason
    if terminated.signal:
        return f"{reason} (signal {terminated.signal})"
    return f"{reason} (exit code {terminated.exit_code})" if terminated.exit_code is not None else reason


def pod_failure(pods: list[PodStatus]) -> str | None:
    """Why the rollout cannot succeed by waiting, or None."""
    for pod in pods:
        kind = pod.reason.split(":", 1)[0]
        if kind in IMAGE_PULL_FAILURES:
            return (
                f"pod {pod.name} cannot pull its image ({pod.reason}); push the image to a registry the nodes "
                "can reach, or load it into the nodes, and check the spec's `image`"
            )
        if kind == CRASH_LOOP:
            return crash_loop(pod)
        if kind in CONTAINER_FAILURES:
            return f"pod {pod.name} cannot start its container ({pod.reason})"
    return None


def crash_loop(pod: PodStatus) -> str:
    hint = "; raise limits.memory_mb" if "OOMKilled" in pod.reason else ""
    return (f"pod {pod.name} is crash-looping ({pod.reason}, {pod.restarts} restarts){hint}; see "
            f"`kubectl logs {pod.name} -c {CONTAINER_NAME} --previous`")


def load_failure(pods: list[PodStatus]) -> str | None:
    """Why the deployment is down during the load, or None: no replica ready and one crash-looping (its
    container exited again and again and the kubelet backs off restarting it). A replica not ready for a
    while (a restart's readiness probe) or one crash-looping beside replicas that serve is not a failure:
    its restarts are counted."""
    if any(pod.ready for pod in pods):
        return None
    looping = next((pod for pod in pods if pod.reason.split(":", 1)[0] == CRASH_LOOP), None)
    return None if looping is None else f"no replica is ready: {crash_loop(looping)}"


def unschedulable_failure(pods: list[PodStatus], since: dict[str, float], now: float) -> str | None:
    """A pod the scheduler has refused for longer than the grace period, or None; `since` remembers when."""
    for pod in pods:
        if not pod.reason.startswith("Unschedulable"):
            since.pop(pod.name, None)
            continue
        first = since.setdefault(pod.name, now)
        if now - first >= UNSCHEDULABLE_GRACE_S:
            return (
                f"pod {pod.name} cannot be scheduled ({pod.reason}) for {now - first:.0f} s; lower the spec's "
                "requests, or add or free nodes"
            )
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
        replicas = f"current {hpa['current']}, desired {hpa['desired']}"
        if hpa["current"] is None:  # the controller has not looked at it yet (its first sync is ~15 s away)
            replicas = "replicas not yet observed"
        elif not hpa["desired"]:  # looked, computed nothing yet: no CPU metrics for the pods so far
            inactive = [f"{reason}: {message}" for kind, status, reason, message in hpa["conditions"]
                        if kind == "ScalingActive" and status != "True"]
            replicas = f"current {hpa['current']}, desired not computed yet" + (
                f" (ScalingActive {inactive[0]})" if inactive else "")
        lines.append(
            f"autoscaler: {hpa['min']}..{hpa['max']} replicas, {replicas}, CPU {utilisation} of target "
            f"{hpa['cpu_target']}%"
        )
    table = Table()
    for column in ("pod", "phase", "ready", "restarts", "node", "reason"):
        table.add_column(column)
    for pod in status.pods:
        table.add_row(pod.name, pod.phase, "yes" if pod.ready else "no", str(pod.restarts), pod.node, pod.reason)
    return [*lines, table]
