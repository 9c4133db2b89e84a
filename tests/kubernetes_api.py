"""A loopback stand-in for a Kubernetes API server (with metrics-server), for contract tests.

No control plane can run on this project's machines, so the deploy, monitor and run tests drive the real
`kubernetes` client against this server. It answers the REST paths servetune calls as kube-apiserver does:
objects carry metadata.uid/resourceVersion/generation and a status; errors are `Status` objects with the
real reason and message (404 NotFound, 409 AlreadyExists, 422 Invalid with its causes, 403 Forbidden from
RBAC, 415 for a patch type it does not take); server-side apply (`PATCH` with application/apply-patch+yaml)
tracks each field manager's fields, reports conflicts with other managers unless forced, and creates what
is missing; `dryRun=All` validates without storing; a Service's nodePort is allocated once per cluster
(the port allocator answers before the name check, so a second create of the same NodePort Service is a
422, not a 409); a Deployment's pods are derived from its state, one more replica ready each time it is read.

What it is not: a scheduler, a controller or a kubelet. Tests set the pods' fate (`pod_waiting`,
`unschedulable`, `warning_events`) and the autoscaler's (`scale`).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

TOKEN = "contract-test-token"
TIMESTAMP = "2026-11-29T04:58:12Z"
OBJECT_PATH = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
KINDS = {"deployments": "Deployment", "services": "Service", "horizontalpodautoscalers": "HorizontalPodAutoscaler",
         "statefulsets": "StatefulSet", "secrets": "Secret"}
GROUPS = {"deployments": "apps", "services": "", "horizontalpodautoscalers": "autoscaling", "statefulsets": "apps",
          "secrets": ""}
METRICS_APISERVICE = "v1beta1.metrics.k8s.io"
SERVER_FIELDS = {"status"}  # never owned by a manager: the server's and the controllers'


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A failure `Status` as kube-apiserver writes it."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


def qualified(resource: str) -> str:
    """`deployments.apps`, `services`: how the API server names a resource in its messages."""
    return f"{resource}.{GROUPS[resource]}" if GROUPS.get(resource) else resource


def not_found(resource: str, name: str) -> tuple[int, dict]:
    group = GROUPS.get(resource, "")
    return 404, status(404, "NotFound", f'{qualified(resource)} "{name}" not found',
                       {"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource})


def invalid(kind: str, name: str, field_path: str, message: str, cause: str = "FieldValueInvalid") -> tuple[int, dict]:
    group = {"Deployment": ".apps", "HorizontalPodAutoscaler": ".autoscaling"}.get(kind, "")
    details = {"name": name, "group": group.lstrip("."), "kind": kind,
               "causes": [{"reason": cause, "message": message, "field": field_path}]}
    if not group:
        details.pop("group")
    return 422, status(422, "Invalid", f'{kind}{group} "{name}" is invalid: {field_path}: {message}', details)


def pod(name: str, namespace: str, containers: list[dict], labels: dict[str, str] | None = None,
        phase: str = "Running") -> dict:
    """A Pod as the API server returns it inside a PodList (Deployment-owned, scheduled, running)."""
    labels = labels or {}
    full_containers = [
        {
            "name": c["name"],
            "image": c.get("image", "registry.local/servetune:0.1.0"),
            "ports": [{"containerPort": 5000, "protocol": "TCP"}],
            "resources": c.get("resources", {}),
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
            "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": True,
                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        }
        for c in containers
    ]
    return {
        "metadata": {
            "name": name,
            "generateName": name.rsplit("-", 1)[0] + "-",
            "namespace": namespace,
            "uid": f"0b6c{abs(hash(name)) % 10**8:08d}-51f2-4c2e-9a3d-6a8f2f0c1e77",
            "resourceVersion": "48213",
            "creationTimestamp": TIMESTAMP,
            "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0],
                                 "uid": "5e0f1d2c-8b7a-4c3d-9e1f-0a2b3c4d5e6f", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
            "containers": full_containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": "node-1",
            "schedulerName": "default-scheduler",
            "priority": 0,
        },
        "status": {
            "phase": phase,
            "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": TIMESTAMP},
                           {"type": "Ready", "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": "2026-11-29T04:58:20Z"}],
            "hostIP": "10.0.0.11",
            "podIP": "10.244.1.17",
            "startTime": TIMESTAMP,
            "containerStatuses": [
                {"name": c["name"], "state": {"running": {"startedAt": "2026-11-29T04:58:14Z"}},
                 "lastState": {}, "ready": True, "restartCount": 0, "image": "registry.local/servetune:0.1.0",
                 "imageID": "registry.local/servetune@sha256:" + "ab" * 32,
                 "containerID": "containerd://" + "cd" * 32, "started": True}
                for c in containers
            ],
            "qosClass": "Burstable",
        },
    }


def pod_metrics(name: str, namespace: str, usage: dict[str, dict[str, str]],
                labels: dict[str, str] | None = None) -> dict:
    """A PodMetrics item as metrics-server returns it; `usage` maps container name -> {cpu, memory}."""
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2026-11-29T05:00:03Z",
                     "labels": labels or {}},
        "timestamp": "2026-11-29T04:59:51Z",
        "window": "10.263s",
        "containers": [{"name": container, "usage": amounts} for container, amounts in usage.items()],
    }


def node_metrics(name: str, cpu: str, memory: str = "2811924Ki") -> dict:
    """A NodeMetrics item as metrics-server returns it: the node's whole usage over its last window."""
    return {"metadata": {"name": name, "creationTimestamp": "2026-11-29T05:00:03Z",
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "timestamp": "2026-11-29T04:59:56Z", "window": "20.029s", "usage": {"cpu": cpu, "memory": memory}}


def deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def leaves(obj: dict, prefix: str = "") -> dict[str, object]:
    """Field path -> value; lists count as one field (servetune always sends whole lists)."""
    found = {}
    for key, value in obj.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            found.update(leaves(value, path))
        else:
            found[path] = value
    return found


def drop(obj: dict, path: str) -> None:
    keys = path.strip(".").split(".")
    for key in keys[:-1]:
        obj = obj.get(key, {})
    obj.pop(keys[-1], None)


def matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors (`a=b,c==d,e!=f`), as the API server evaluates them."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=")
            if labels.get(key) == value:
                return False
        else:
            key, value = term.replace("==", "=").split("=")
            if labels.get(key) != value:
                return False
    return True


@dataclass
class Request:
    time: float
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    body: dict | None
    content_type: str
    auth: str


@dataclass
class FakeApiServer:
    version: tuple[int, int] = (1, 34)
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (resource, namespace, name)
    managers: dict[tuple[str, str, str], dict[str, dict]] = field(default_factory=dict)  # key -> manager -> fields
    namespaces: set[str] | None = None  # None: every namespace exists
    pods: list[dict] = field(default_factory=list)  # pods of no Deployment here (the monitor's tests)
    metrics: list[dict] = field(default_factory=list)
    node_metrics: list[dict] = field(default_factory=list)  # NodeMetrics items (node_metrics())
    pods_error: tuple[int, dict] | None = None
    metrics_error: tuple[int, dict] | None = None
    metrics_delay_s: float = 0.0
    api_groups: list[str] = field(default_factory=lambda: ["apps", "autoscaling", "metrics.k8s.io"])
    metrics_available: tuple[str, str, str] = ("True", "Passed", "all checks passed")  # APIService Available
    forbidden_user: str | None = None
    cluster_scope_forbidden: bool = False  # a namespaced user: no namespaces, nodes or apiservices
    denied: set[str] = field(default_factory=set)  # resource.group the tester's Role leaves out (reviews say so)
    denial_reason: str = ""  # what an access review adds to `allowed: false` (RBAC usually says nothing)
    pod_waiting: tuple[str, str] | None = None  # (reason, message) of every pod's container, which is not ready
    last_terminated: dict | None = None
    exits: dict[str, list[dict]] = field(default_factory=dict)  # pod name -> its container's ends (restart())
    unschedulable: bool = False
    unschedulable_from: int | None = None  # pods from this index on find no node (the rest run)
    warning_events: list[tuple[str, str]] = field(default_factory=list)  # (reason, message) on every pod
    write_errors: dict[str, tuple[int, dict]] = field(default_factory=dict)  # resource -> failure of a write
    hpa_observed: bool = True  # False: the HPA controller has not synced it yet (no current replicas)
    hpa_metrics_missing: bool = False  # the controller synced but got no CPU metrics: nothing computed yet
    old_pods: int = 0  # pods of each Deployment's previous ReplicaSet still terminating (a rollout)
    hpa_events: list[dict] = field(default_factory=list)  # the controller's events (scale() adds one)
    terminating_lists: int = 2  # a deleted Deployment's pods stay listed this many times
    ready: dict[str, int] = field(default_factory=dict)  # deployment name -> ready replicas
    gone: dict[str, tuple[int, int]] = field(default_factory=dict)  # deleted deployment -> (replicas, lists left)
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.versions = itertools.count(100)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- what tests look at and set -----------------------------------------------------------------

    def sent(self, method: str, resource: str) -> list[dict | None]:
        return [r.body for r in self.requests if r.method == method and f"/{resource}" in r.path]

    def calls(self) -> list[str]:
        """`METHOD path` of every request, in order (dry runs marked)."""
        return [f"{r.method} {r.path}" + (" (dry run)" if r.query.get("dryRun") else "") for r in self.requests]

    def paths(self, kind: str) -> list[str]:
        return [r.path for r in self.requests if kind in r.path]

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """What the HorizontalPodAutoscaler controller does: an Update of spec.replicas as its own manager."""
        key = ("deployments", namespace, name)
        self.managers[key]["kube-controller-manager"] = {"spec": {"replicas": replicas}}
        for manager, fields in self.managers[key].items():
            if manager != "kube-controller-manager":
                fields.get("spec", {}).pop("replicas", None)  # an Update takes the field over
        meta = self.objects[key]["metadata"]
        meta.update(generation=meta["generation"] + 1, resourceVersion=str(next(self.versions)))
        direction = "above" if replicas > self.objects[key]["spec"]["replicas"] else "below"
        self.objects[key]["spec"]["replicas"] = replicas
        number = len(self.hpa_events)
        self.hpa_events.append({  # what kube-controller-manager's HPA controller records on a rescale
            "metadata": {"name": f"{name}.17c2a{number:03x}", "namespace": namespace,
                         "resourceVersion": str(700 + number), "creationTimestamp": TIMESTAMP},
            "involvedObject": {"kind": "HorizontalPodAutoscaler", "namespace": namespace, "name": name,
                               "uid": f"uid-{name}", "apiVersion": "autoscaling/v2", "resourceVersion": "4711"},
            "reason": "SuccessfulRescale", "type": "Normal", "count": 1,
            "message": f"New size: {replicas}; reason: cpu resource utilization (percentage of request) {direction} "
                       "target",
            "source": {"component": "horizontal-pod-autoscaler"}, "firstTimestamp": f"2026-11-29T05:1{number}:00Z",
            "lastTimestamp": f"2026-11-29T05:1{number}:00Z", "reportingComponent": "", "reportingInstance": "",
        })

    def restart(self, pod_name: str, reason: str = "OOMKilled", exit_code: int = 137) -> None:
        """What the kubelet does when a container exits: restart it, count it, keep how it ended."""
        self.exits.setdefault(pod_name, []).append({
            "exitCode": exit_code, "reason": reason, "startedAt": "2026-11-29T04:58:14Z",
            "finishedAt": "2026-11-29T05:01:02Z", "containerID": "containerd://" + "ef" * 32,
        })

    def kubeconfig(self, path: Path, namespace: str | None = None) -> Path:
        context = {"cluster": "loopback", "user": "tester"} | ({"namespace": namespace} if namespace else {})
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "loopback", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": TOKEN}}],
            "contexts": [{"name": "loopback", "context": context}],
            "current-context": "loopback",
        }))
        return path

    # --- answers ------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: dict | None,
               content_type: str) -> tuple[int, dict]:
        if path in ("/version", "/version/"):
            major, minor = self.version
            return 200, {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.3",
                         "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": TIMESTAMP,
                         "goVersion": "go1.22.5", "compiler": "gc", "platform": "linux/amd64"}
        if path in ("/apis", "/apis/") and method == "GET":
            return 200, self.group_list()
        if path == f"/apis/apiregistration.k8s.io/v1/apiservices/{METRICS_APISERVICE}":
            return self.apiservice()
        if path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" and method == "POST":
            return self.access_review(body)
        if path == "/api/v1/nodes":
            if self.cluster_scope_forbidden:
                return 403, self.refusal("list", "nodes", "", None, None)
            return 200, self.node_list()
        if path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
            return self.namespace(path.rsplit("/", 1)[1])
        if path.startswith("/api/v1/nodes/"):
            if self.cluster_scope_forbidden:
                return 403, self.refusal("get", "nodes", "", None, path.rsplit("/", 1)[1])
            if path.rsplit("/", 1)[1] != "node-1":
                return 404, status(404, "NotFound", f'nodes "{path.rsplit("/", 1)[1]}" not found')
            return 200, {"kind": "Node", "apiVersion": "v1", **self.node()}
        if path == "/apis/metrics.k8s.io/v1beta1/nodes":
            if self.cluster_scope_forbidden:
                return 403, self.refusal("list", "nodes", "metrics.k8s.io", None, None)
            return 200, {"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {},
                         "items": self.node_metrics}
        if path.startswith("/apis/metrics.k8s.io/v1beta1/namespaces/") and path.endswith("/pods"):
            return self.pod_metrics_list(path.split("/")[5], query)
        match = OBJECT_PATH.match(path)
        if not match:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        group_version, namespace, resource, name = match.groups()
        group = "" if group_version == "api/v1" else group_version.split("/")[1]
        if not self.allowed(f"{resource}.{group}" if group else resource, namespace):
            verb = {"GET": "list" if name is None else "get", "POST": "create", "PUT": "update",
                    "PATCH": "patch", "DELETE": "delete"}[method]
            return 403, self.refusal(verb, resource, group, namespace, name)
        if resource == "pods" and name is None and method == "GET":
            if self.pods_error:
                return self.pods_error
            return 200, self.pod_list(namespace, query.get("labelSelector", [""])[0])
        if resource == "events" and name is None and method == "GET":
            return 200, self.event_list(namespace, query.get("fieldSelector", [""])[0])
        if resource not in KINDS:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        dry_run = query.get("dryRun") == ["All"]
        if method in ("POST", "PATCH", "DELETE") and not dry_run and resource in self.write_errors:
            return self.write_errors[resource]
        if method == "POST":
            return self.create((resource, namespace, body["metadata"]["name"]), body, "before-first-apply", dry_run)
        key = (resource, namespace, name)
        if method == "PATCH":
            return self.patch(key, query, body, content_type, dry_run)
        if key not in self.objects:
            return not_found(resource, name)
        if method == "GET":
            return 200, self.read(key)
        if method == "DELETE":
            return self.delete(key)
        return 405, status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def allowed(self, resource: str, namespace: str | None) -> bool:
        """What RBAC lets the tester do: nothing as `forbidden_user`; nothing at the cluster scope as a
        namespaced user; everything else, except what `denied` names (resource.group)."""
        if self.forbidden_user:
            return False
        if self.cluster_scope_forbidden and (not namespace or resource in ("nodes", "namespaces", "apiservices")):
            return False
        return resource not in self.denied

    def access_review(self, body: dict) -> tuple[int, dict]:
        """A SelfSubjectAccessReview answered as kube-apiserver does: the review echoed with its status."""
        attributes = (body.get("spec") or {}).get("resourceAttributes") or {}
        resource = attributes.get("resource", "")
        qualified_resource = f"{resource}.{attributes['group']}" if attributes.get("group") else resource
        allowed = self.allowed(qualified_resource, attributes.get("namespace"))
        verdict = {"allowed": allowed}
        if not allowed and self.denial_reason:
            verdict["reason"] = self.denial_reason
        return 201, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                     "metadata": {"creationTimestamp": None}, "spec": body.get("spec") or {}, "status": verdict}

    def refusal(self, verb: str, resource: str, group: str, namespace: str | None, name: str | None) -> dict:
        """kube-apiserver's RBAC denial, word for word in its shape."""
        subject = f"{resource}.{group}" if group else resource
        subject = f'{subject} "{name}"' if name else subject
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        user = self.forbidden_user or "tester"
        message = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
                   f'in API group "{group}"{where}')
        return status(403, "Forbidden", message, {"name": name, "group": group, "kind": resource} if name
                      else {"group": group, "kind": resource})

    def group_list(self) -> dict:
        groups = [{"name": name, "versions": [{"groupVersion": f"{name}/v1", "version": "v1"}],
                   "preferredVersion": {"groupVersion": f"{name}/v1", "version": "v1"}} for name in self.api_groups]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def apiservice(self) -> tuple[int, dict]:
        if self.cluster_scope_forbidden:
            return 403, self.refusal("get", "apiservices", "apiregistration.k8s.io", None, METRICS_APISERVICE)
        if "metrics.k8s.io" not in self.api_groups:
            return 404, status(404, "NotFound", f'apiservices.apiregistration.k8s.io "{METRICS_APISERVICE}" not found',
                               {"name": METRICS_APISERVICE, "group": "apiregistration.k8s.io", "kind": "apiservices"})
        available, reason, message = self.metrics_available
        return 200, {
            "kind": "APIService", "apiVersion": "apiregistration.k8s.io/v1",
            "metadata": {"name": METRICS_APISERVICE, "resourceVersion": "311", "creationTimestamp": TIMESTAMP},
            "spec": {"service": {"namespace": "kube-system", "name": "metrics-server", "port": 443},
                     "group": "metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": True,
                     "groupPriorityMinimum": 100, "versionPriority": 100},
            "status": {"conditions": [{"type": "Available", "status": available, "lastTransitionTime": TIMESTAMP,
                                       "reason": reason, "message": message}]},
        }

    def namespace(self, name: str) -> tuple[int, dict]:
        if self.cluster_scope_forbidden:
            return 403, self.refusal("get", "namespaces", "", None, name)
        if self.namespaces is not None and name not in self.namespaces:
            return 404, status(404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"})
        return 200, {"kind": "Namespace", "apiVersion": "v1",
                     "metadata": {"name": name, "uid": f"uid-ns-{name}", "resourceVersion": "7",
                                  "creationTimestamp": TIMESTAMP, "labels": {"kubernetes.io/metadata.name": name}},
                     "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def node_list(self) -> dict:
        return {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}, "items": [self.node()]}

    @staticmethod
    def node() -> dict:
        """The one node, as a kubelet on a 4-core machine reports it."""
        return {"metadata": {"name": "node-1", "uid": "uid-node-1", "resourceVersion": "9",
                             "creationTimestamp": TIMESTAMP,
                             "labels": {"kubernetes.io/hostname": "node-1", "kubernetes.io/arch": "amd64",
                                        "node.kubernetes.io/instance-type": "e2-standard-4"}},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                         {"type": "Hostname", "address": "node-1"}],
                           "capacity": {"cpu": "4", "memory": "16393872Ki", "pods": "110"},
                           "allocatable": {"cpu": "3920m", "memory": "13498512Ki", "pods": "110"},
                           "nodeInfo": {"architecture": "amd64", "kernelVersion": "6.1.0-28-cloud-amd64",
                                        "osImage": "Debian GNU/Linux 12 (bookworm)", "operatingSystem": "linux",
                                        "containerRuntimeVersion": "containerd://1.7.22",
                                        "kubeletVersion": "v1.34.3", "kubeProxyVersion": "v1.34.3",
                                        "machineID": "0" * 32, "systemUUID": "0" * 32, "bootID": "0" * 32}}}

    # --- writes -------------------------------------------------------------------------------------

    def validate(self, key: tuple[str, str, str], obj: dict, creating: bool) -> tuple[int, dict] | None:
        """The checks kube-apiserver makes that servetune can trip: the preStop handler, the nodePort."""
        resource, _namespace, name = key
        if resource == "deployments" and self.version < (1, 30):
            for index, container in enumerate(obj["spec"]["template"]["spec"].get("containers", [])):
                pre_stop = container.get("lifecycle", {}).get("preStop")
                if pre_stop is not None and not ({"exec", "httpGet", "tcpSocket"} & set(pre_stop)):
                    # An older server drops the unknown `sleep` field, and then no handler is left.
                    return invalid("Deployment", name, f"spec.template.spec.containers[{index}].lifecycle.preStop",
                                   "Required value: must specify a handler type", "FieldValueRequired")
        if resource == "services":
            for index, port in enumerate(obj["spec"].get("ports", [])):
                node_port = port.get("nodePort")
                holder = self.node_port_holder(node_port)
                if node_port is not None and holder is not None and (holder != key or creating):
                    return invalid("Service", name, f"spec.ports[{index}].nodePort",
                                   f"Invalid value: {node_port}: provided port is already allocated")
        return None

    def node_port_holder(self, node_port: int | None) -> tuple[str, str, str] | None:
        for key, obj in self.objects.items():
            if key[0] == "services" and any(p.get("nodePort") == node_port for p in obj["spec"].get("ports", [])):
                return key
        return None

    def create(self, key, body: dict, manager: str, dry_run: bool) -> tuple[int, dict]:
        # The Service's port allocator runs before the storage's name check: a 422 comes first.
        if problem := self.validate(key, body, creating=True):
            return problem
        if key in self.objects:
            group = GROUPS[key[0]]
            details = {"name": key[2], "group": group, "kind": key[0]} if group else {"name": key[2], "kind": key[0]}
            return 409, status(409, "AlreadyExists", f'{qualified(key[0])} "{key[2]}" already exists', details)
        fields = copy.deepcopy({k: v for k, v in body.items() if k not in SERVER_FIELDS})
        stored = self.build(key, {manager: fields}, None)
        if not dry_run:
            self.store(key, stored, {manager: fields})
        return 201, stored

    def patch(self, key, query: dict[str, list[str]], body: dict, content_type: str,
              dry_run: bool) -> tuple[int, dict]:
        content_type = content_type.split(";")[0].strip()
        if content_type == "application/merge-patch+json":
            if key not in self.objects:
                return not_found(key[0], key[2])
            managers = copy.deepcopy(self.managers[key])
            managers["before-first-apply"] = deep_merge(managers.get("before-first-apply", {}), body)
            return self.update(key, managers, dry_run)
        if content_type != "application/apply-patch+yaml":
            return 415, status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                               "accepted media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/apply-patch+yaml")
        manager = query.get("fieldManager", [""])[0]
        if not manager:
            return 422, status(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                               "value: is required for apply patch",
                               {"group": "meta.k8s.io", "kind": "PatchOptions",
                                "causes": [{"reason": "FieldValueRequired", "message": "Required value: is "
                                            "required for apply patch", "field": "fieldManager"}]})
        applied = copy.deepcopy({k: v for k, v in body.items() if k not in SERVER_FIELDS})
        if key not in self.objects:
            return self.create(key, applied, manager, dry_run)
        managers = copy.deepcopy(self.managers[key])
        conflicts = []
        new_leaves = leaves(applied)
        for other, fields in managers.items():
            if other == manager:
                continue
            for path, value in leaves(fields).items():
                if path in new_leaves and new_leaves[path] != value:
                    conflicts.append((other, path))
        if conflicts and query.get("force") != ["true"]:
            api_version = applied.get("apiVersion", "v1")
            listed = "\n".join(f'conflict with "{other}": {path}' for other, path in conflicts)
            return 409, status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict"
                               f"{'s' if len(conflicts) > 1 else ''}: {listed}",
                               {"causes": [{"reason": "FieldManagerConflict", "message": f'conflict with "{o}" '
                                            f"using {api_version}", "field": p} for o, p in conflicts]})
        for other, path in conflicts:  # forced: the fields move to this manager
            drop(managers[other], path)
        managers[manager] = applied  # fields it no longer applies are no longer its own
        return self.update(key, managers, dry_run)

    def update(self, key, managers: dict[str, dict], dry_run: bool) -> tuple[int, dict]:
        existing = self.objects[key]
        stored = self.build(key, managers, existing)
        if problem := self.validate(key, stored, creating=False):
            return problem
        if not dry_run:
            self.store(key, stored, managers)
        return 200, stored

    def build(self, key, managers: dict[str, dict], existing: dict | None) -> dict:
        """The object from every manager's fields, the server's own fields and its defaults."""
        obj: dict = {}
        for fields in managers.values():
            obj = deep_merge(obj, fields)
        meta = obj.setdefault("metadata", {})
        meta.update(name=key[2], namespace=key[1])
        if existing is None:
            meta.update(uid=f"uid-{key[2]}", resourceVersion=str(next(self.versions)), generation=1,
                        creationTimestamp=TIMESTAMP)
        else:
            old = existing["metadata"]
            changed = obj.get("spec") != existing.get("spec")
            meta.update(uid=old["uid"], creationTimestamp=old["creationTimestamp"],
                        resourceVersion=str(next(self.versions)) if obj != existing else old["resourceVersion"],
                        generation=old["generation"] + (1 if changed else 0))
            if "status" in existing:
                obj["status"] = existing["status"]
        if key[0] == "deployments":
            obj["spec"].setdefault("replicas", 1)  # the API server's default for an absent field
        if key[0] == "services":
            obj["spec"]["clusterIP"] = existing["spec"]["clusterIP"] if existing else "10.96.0.17"
        meta["managedFields"] = [{"manager": name, "operation": "Apply" if name == "servetune" else "Update",
                                  "apiVersion": obj.get("apiVersion", "v1"), "time": TIMESTAMP,
                                  "fieldsType": "FieldsV1"} for name in managers]
        return obj

    def store(self, key, obj: dict, managers: dict[str, dict]) -> None:
        if key not in self.objects and key[0] == "deployments":
            self.ready[key[2]] = 0
            self.gone.pop(key[2], None)
        self.objects[key] = obj
        self.managers[key] = managers

    def delete(self, key) -> tuple[int, dict]:
        removed = self.objects.pop(key)
        self.managers.pop(key, None)
        if key[0] == "deployments":
            self.gone[key[2]] = (removed["spec"]["replicas"], self.terminating_lists)
        if key[0] == "services":  # kube-apiserver answers a Service's deletion with the deleted object
            return 200, removed
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": key[2], "group": GROUPS[key[0]], "kind": key[0], "uid": removed["metadata"]["uid"]}}

    # --- reads --------------------------------------------------------------------------------------

    def read(self, key) -> dict:
        obj = self.objects[key]
        if key[0] == "deployments":
            # The controller makes one more replica ready each time it is looked at, unless pods cannot run.
            desired = obj["spec"]["replicas"]
            if self.pod_waiting:
                self.ready[key[2]] = 0  # its pods' containers wait to (re)start: none is ready
            elif not self.unschedulable:
                schedulable = desired if self.unschedulable_from is None else min(desired, self.unschedulable_from)
                self.ready[key[2]] = min(schedulable, self.ready[key[2]] + 1)
            ready = self.ready[key[2]]
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": desired,
                             "updatedReplicas": desired, "readyReplicas": ready, "availableReplicas": ready}
        if key[0] == "horizontalpodautoscalers":
            target = self.objects.get(("deployments", key[1], obj["spec"]["scaleTargetRef"]["name"]))
            replicas = target["spec"]["replicas"] if target else 0
            if not self.hpa_observed:
                obj["status"] = {"desiredReplicas": 0, "currentMetrics": None}
                return obj
            if self.hpa_metrics_missing:  # what the controller writes when it cannot read the pods' CPU
                obj["status"] = {"currentReplicas": replicas, "desiredReplicas": 0, "currentMetrics": None,
                                 "conditions": [
                    {"type": "AbleToScale", "status": "True", "lastTransitionTime": TIMESTAMP,
                     "reason": "SucceededGetScale", "message": "the HPA controller was able to get the target's "
                     "current scale"},
                    {"type": "ScalingActive", "status": "False", "lastTransitionTime": TIMESTAMP,
                     "reason": "FailedGetResourceMetric", "message": "the HPA was unable to compute the replica "
                     "count: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics "
                     "returned from resource metrics API"}]}
                return obj
            obj["status"] = {"currentReplicas": replicas, "desiredReplicas": replicas, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 42,
                                                                             "averageValue": "210m"}}}],
                             "conditions": [
                {"type": "AbleToScale", "status": "True", "lastTransitionTime": TIMESTAMP,
                 "reason": "ReadyForNewScale", "message": "recommended size matches current size"},
                {"type": "ScalingActive", "status": "True", "lastTransitionTime": TIMESTAMP,
                 "reason": "ValidMetricFound", "message": "the HPA was able to successfully calculate a replica count "
                 "from cpu resource utilization (percentage of request)"},
                {"type": "ScalingLimited", "status": "True" if replicas >= obj["spec"]["maxReplicas"] else "False",
                 "lastTransitionTime": TIMESTAMP,
                 "reason": "TooManyReplicas" if replicas >= obj["spec"]["maxReplicas"] else "DesiredWithinRange",
                 "message": "the desired replica count is more than the maximum replica count"
                 if replicas >= obj["spec"]["maxReplicas"] else "the desired count is within the acceptable range"}]}
        return obj

    def deployment_pods(self, namespace: str) -> list[dict]:
        pods = []
        for (resource, ns, name), deployment in self.objects.items():
            if resource == "deployments" and ns == namespace:
                replicas = deployment["spec"]["replicas"]
                pods += [self.derived_pod(namespace, name, i, i < self.ready[name], deployment)
                         for i in range(replicas)]
                pods += [self.terminating(self.derived_pod(namespace, name, i, True, deployment, "5c4b7"))
                         for i in range(self.old_pods)]
        for name, (replicas, lists_left) in list(self.gone.items()):
            if lists_left > 0:
                pods += [self.terminating(self.derived_pod(namespace, name, i, True, None)) for i in range(replicas)]
        return pods

    @staticmethod
    def terminating(pod_obj: dict) -> dict:
        """A pod whose deletion was asked for: listed with a deletion timestamp until its containers stop; the
        kubelet still reports the container running and ready through its preStop pause."""
        pod_obj["metadata"].update(deletionTimestamp="2026-11-29T05:20:00Z", deletionGracePeriodSeconds=30)
        return pod_obj

    def pod_list(self, namespace: str, selector: str) -> dict:
        candidates = self.deployment_pods(namespace) + [p for p in self.pods if p["metadata"]["namespace"] == namespace]
        items = [p for p in candidates if matches(p["metadata"]["labels"], selector)]
        for name, (replicas, lists_left) in list(self.gone.items()):
            if lists_left > 0 and any(p["metadata"]["labels"].get("app") == name for p in items):
                self.gone[name] = (replicas, lists_left - 1)
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "48250"}, "items": items}

    def derived_pod(self, namespace: str, app_name: str, index: int, ready: bool, deployment: dict | None,
                    revision: str = "7d9f8") -> dict:
        containers = [{"name": "ml-app", "image": "servetune:0.1.0"}]
        if deployment is not None:
            containers = [{"name": c["name"], "image": c["image"], "resources": c.get("resources", {})}
                          for c in deployment["spec"]["template"]["spec"]["containers"]]
        result = pod(f"{app_name}-{revision}-{index}", namespace, containers, {"app": app_name})
        unscheduled = self.unschedulable or (self.unschedulable_from is not None and index >= self.unschedulable_from)
        ready = ready and not unscheduled
        container = result["status"]["containerStatuses"][0]
        container["ready"] = ready
        if exits := self.exits.get(result["metadata"]["name"]):
            container.update(restartCount=len(exits), lastState={"terminated": exits[-1]})
        if unscheduled:
            result["status"] = {"phase": "Pending", "qosClass": "Burstable", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastProbeTime": None,
                 "lastTransitionTime": TIMESTAMP, "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
            result["spec"].pop("nodeName")
        elif self.pod_waiting:
            reason, message = self.pod_waiting
            ready = False  # a container waiting to (re)start is neither started nor ready
            container.update(state={"waiting": {"reason": reason, "message": message}}, ready=False, started=False)
            result["status"]["phase"] = "Pending" if "Image" in reason or "Sandbox" in reason else "Running"
            if self.last_terminated:
                container["lastState"] = {"terminated": self.last_terminated}
                container["restartCount"] = 4
        if not ready:
            result["status"]["conditions"] = [c for c in result["status"]["conditions"] if c["type"] != "Ready"]
        return result

    def event_list(self, namespace: str, field_selector: str) -> dict:
        wanted = dict(term.split("=", 1) for term in field_selector.split(",") if term)
        items = [event for event in self.hpa_events if event["metadata"]["namespace"] == namespace and all(
            {"type": event["type"], "reason": event["reason"], "involvedObject.kind": event["involvedObject"]["kind"],
             "involvedObject.name": event["involvedObject"]["name"]}.get(k) == v for k, v in wanted.items())]
        for index, pod_obj in enumerate(self.deployment_pods(namespace)):
            if any(c["type"] == "Ready" for c in pod_obj["status"]["conditions"]):
                continue
            for number, (reason, message) in enumerate(self.warning_events):
                event = {
                    "metadata": {"name": f"{pod_obj['metadata']['name']}.{number:x}", "namespace": namespace,
                                 "resourceVersion": str(500 + index), "creationTimestamp": TIMESTAMP},
                    "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod_obj["metadata"]["name"],
                                       "uid": pod_obj["metadata"]["uid"], "apiVersion": "v1"},
                    "reason": reason, "message": message, "type": "Warning", "count": 3 + number,
                    "source": {"component": "kubelet", "host": "node-1"},
                    "firstTimestamp": TIMESTAMP, "lastTimestamp": f"2026-11-29T05:0{number}:00Z",
                    "reportingComponent": "kubelet", "reportingInstance": "node-1",
                }
                fields = {"type": "Warning", "involvedObject.kind": "Pod",
                          "involvedObject.name": pod_obj["metadata"]["name"], "reason": reason}
                if all(fields.get(k) == v for k, v in wanted.items()):
                    items.append(event)
        return {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "600"}, "items": items}

    def pod_metrics_list(self, namespace: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        if self.metrics_error:
            return self.metrics_error
        if "metrics.k8s.io" not in self.api_groups:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        if self.metrics_available[0] != "True":
            return 503, status(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        items = [m for m in self.metrics if m["metadata"]["namespace"] == namespace]
        items = [m for m in items if matches(m["metadata"]["labels"], query.get("labelSelector", [""])[0])]
        return 200, {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}


def serve(api: FakeApiServer) -> ThreadingHTTPServer:
    """Start answering on a free loopback port (`api.url`); shut the returned server down after the test."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = yaml.safe_load(raw) if raw else None  # JSON, or YAML for apply patches
            content_type = self.headers.get("Content-Type", "")
            auth = self.headers.get("Authorization", "")
            if url.path.startswith("/apis/metrics.k8s.io/"):
                time.sleep(api.metrics_delay_s)  # a slow metrics-server holds up only its own answers
            with api.lock:
                api.requests.append(Request(time.monotonic(), self.command, url.path, query, body, content_type,
                                            auth))
                if auth != f"Bearer {TOKEN}":
                    code, payload = 401, status(401, "Unauthorized", "Unauthorized")
                else:
                    code, payload = api.handle(self.command, url.path, query, body, content_type)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    api.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


class DeployedService:
    """A stand-in for the deployed app behind its NodePort: answers GET /test and POST /predict as the app
    does and calls `on_request` (with the request's number, from 1) before each answer. `close()` after the test."""

    def __init__(self, on_request: Callable[[int], None] = lambda number: None) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.hits += 1
                on_request(outer.hits)
                body = b'{"prediction": "Soup", "probability": 0.9}'
                self.answer(body)

            def do_POST(self):  # POST /predict: the photo read, the same answer
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def answer(self, body: bytes) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the load's end closed its connections
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

