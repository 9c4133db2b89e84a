"""Contract tests for deploy/kubernetes.py and the `servetune deploy apply|status|delete` commands.

No Kubernetes control plane can run on this project's machines, so these tests run the real `kubernetes`
client against a loopback HTTP server that answers the REST paths it calls with JSON shaped like a real
kube-apiserver's (objects with metadata.resourceVersion/generation and status, `Status` objects for errors,
an `APIGroupList` for /apis). They check the contract (which requests are sent, with which bodies, and how
answers are interpreted), not a real cluster's behaviour.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from typer.testing import CliRunner

from servetune.cli import app
from servetune.deploy import kubernetes as cluster_module
from servetune.deploy.kubernetes import KubernetesCluster
from servetune.deploy.kubernetes_client import KubernetesError, connect
from servetune.deploy.manifests import render_manifests, render_warmup
from servetune.deploy.spec import load_deployment_spec

TIMESTAMP = "2026-01-01T00:00:00Z"
OBJECT_PATH = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
KINDS = {"deployments": "Deployment", "services": "Service", "horizontalpodautoscalers": "HorizontalPodAutoscaler"}


def status_object(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeApiServer:
    """State and answers of a one-namespace API server; pods are derived from each Deployment's state."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}  # (resource, namespace, name) -> object
        self.requests: list[tuple[str, str, dict | None]] = []  # method, path with query, body
        self.api_groups = ["apps", "autoscaling", "metrics.k8s.io"]
        self.forbidden_user: str | None = None
        self.pod_waiting: tuple[str, str] | None = None  # (reason, message) of every pod's container
        self.last_terminated: dict | None = None
        self.unschedulable = False
        self.terminating_lists = 2  # a deleted Deployment's pods stay listed this many times
        self.ready: dict[str, int] = {}  # deployment name -> ready replicas
        self.gone: dict[str, tuple[int, int]] = {}  # deleted deployment -> (replicas, lists left)
        self.versions = itertools.count(100)
        self.lock = threading.Lock()

    # --- answers ----------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: dict | None) -> tuple[int, dict]:
        with self.lock:
            self.requests.append((method, raw_path, body))
            url = urlparse(raw_path)
            if url.path in ("/apis", "/apis/") and method == "GET":  # discovery: open to every user
                return 200, self.group_list()
            match = OBJECT_PATH.match(url.path)
            if not match:
                return 404, status_object(404, "NotFound", "the server could not find the requested resource")
            group_version, namespace, resource, name = match.groups()
            if self.forbidden_user:
                return 403, self.forbidden(method, group_version, namespace, resource, name)
            if resource == "pods" and name is None and method == "GET":
                return 200, self.pod_list(namespace, parse_qs(url.query).get("labelSelector", [""])[0])
            key = (resource, namespace, name or (body or {}).get("metadata", {}).get("name"))
            if method == "POST":
                return self.create(key, body)
            if key not in self.objects:
                return 404, status_object(404, "NotFound", f'{resource} "{key[2]}" not found')
            if method == "GET":
                return 200, self.read(key)
            if method == "PUT":
                return self.replace(key, body)
            if method == "DELETE":
                return self.delete(key)
            return 405, status_object(405, "MethodNotAllowed", method)

    def forbidden(self, method, group_version, namespace, resource, name) -> dict:
        """kube-apiserver's RBAC denial, word for word in its shape."""
        verb = {"GET": "get", "POST": "create", "PUT": "update", "DELETE": "delete"}[method]
        group = "" if group_version == "api/v1" else group_version.split("/")[1]
        qualified = f"{resource}.{group}" if group else resource
        subject = f'{qualified} "{name}"' if name else qualified
        message = (f'{subject} is forbidden: User "{self.forbidden_user}" cannot {verb} resource "{resource}" '
                   f'in API group "{group}" in the namespace "{namespace}"')
        return status_object(403, "Forbidden", message)

    def group_list(self) -> dict:
        groups = [{"name": name, "versions": [{"groupVersion": f"{name}/v1", "version": "v1"}],
                   "preferredVersion": {"groupVersion": f"{name}/v1", "version": "v1"}} for name in self.api_groups]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def create(self, key, body):
        if key in self.objects:
            return 409, status_object(409, "AlreadyExists", f'{key[0]} "{key[2]}" already exists')
        stored = copy.deepcopy(body)
        stored["metadata"].update(uid=f"uid-{key[2]}", resourceVersion=str(next(self.versions)),
                                  generation=1, creationTimestamp=TIMESTAMP)
        if key[0] == "services":
            stored["spec"]["clusterIP"] = "10.96.0.17"
        if key[0] == "deployments":
            self.ready[key[2]] = 0
            self.gone.pop(key[2], None)
        self.objects[key] = stored
        return 201, stored

    def replace(self, key, body):
        existing = self.objects[key]
        if body["metadata"].get("resourceVersion") != existing["metadata"]["resourceVersion"]:
            return 409, status_object(409, "Conflict", "the object has been modified")
        stored = copy.deepcopy(body)
        stored["metadata"].update(uid=existing["metadata"]["uid"], resourceVersion=str(next(self.versions)),
                                  generation=existing["metadata"]["generation"] + 1, creationTimestamp=TIMESTAMP)
        self.objects[key] = stored
        return 200, stored

    def delete(self, key):
        removed = self.objects.pop(key)
        if key[0] == "deployments":
            self.gone[key[2]] = (removed["spec"]["replicas"], self.terminating_lists)
        if key[0] == "services":  # kube-apiserver answers a Service's deletion with the deleted object
            return 200, removed
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": key[2], "kind": key[0]}}

    def read(self, key) -> dict:
        obj = self.objects[key]
        if key[0] == "deployments":
            # The controller makes one more replica ready each time it is looked at, unless pods cannot run.
            desired = obj["spec"]["replicas"]
            if not (self.pod_waiting or self.unschedulable):
                self.ready[key[2]] = min(desired, self.ready[key[2]] + 1)
            ready = self.ready[key[2]]
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": desired,
                             "updatedReplicas": desired, "readyReplicas": ready, "availableReplicas": ready}
        if key[0] == "horizontalpodautoscalers":
            target = self.objects.get(("deployments", key[1], obj["spec"]["scaleTargetRef"]["name"]))
            replicas = target["spec"]["replicas"] if target else 0
            obj["status"] = {"currentReplicas": replicas, "desiredReplicas": replicas, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 42,
                                                                             "averageValue": "210m"}}}]}
        return obj

    def pod_list(self, namespace: str, selector: str) -> dict:
        labels = dict(part.split("=", 1) for part in selector.split(",") if part)
        name = labels.get("app", "")
        pods = []
        deployment = self.objects.get(("deployments", namespace, name))
        if deployment is not None:
            pods = [self.pod(name, i, i < self.ready[name], deployment) for i in range(deployment["spec"]["replicas"])]
        elif name in self.gone:
            replicas, lists_left = self.gone[name]
            if lists_left > 0:
                self.gone[name] = (replicas, lists_left - 1)
                pods = [self.pod(name, i, False, None) for i in range(replicas)]
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": pods}

    def pod(self, app_name: str, index: int, ready: bool, deployment: dict | None) -> dict:
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"] if deployment else "servetune:0.1.0"
        container = {"name": "ml-app", "image": image, "imageID": "", "ready": ready, "restartCount": 0,
                     "state": {"running": {"startedAt": TIMESTAMP}}}
        conditions = [{"type": "PodScheduled", "status": "True"}]
        phase = "Running"
        if self.unschedulable:
            phase, container = "Pending", None
            conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/3 nodes are available: 3 Insufficient cpu."}]
        elif self.pod_waiting:
            reason, message = self.pod_waiting
            container["state"] = {"waiting": {"reason": reason, "message": message}}
            phase = "Pending" if "Image" in reason else "Running"
            if self.last_terminated:
                container["lastState"] = {"terminated": self.last_terminated}
                container["restartCount"] = 4
        status = {"phase": phase, "conditions": conditions}
        if container:
            status["containerStatuses"] = [container]
        return {"metadata": {"name": f"{app_name}-7d9f8-{index}", "namespace": "default",
                             "labels": {"app": app_name}},
                "spec": {"containers": [{"name": "ml-app", "image": image}], "nodeName": "node-1"},
                "status": status}

    # --- what the tests look at -------------------------------------------------------------------

    def sent(self, method: str, resource: str) -> list[dict | None]:
        return [body for m, path, body in self.requests if m == method and f"/{resource}" in path]


@pytest.fixture
def api_server():
    state = FakeApiServer()

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            code, payload = state.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setattr(cluster_module, "POLL_SECONDS", 0.01)


def write_kubeconfig(path: Path, server_url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "loopback", "cluster": {"server": server_url}}],
        "users": [{"name": "tester", "user": {"token": "contract-test-token"}}],
        "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "tester"}}],
        "current-context": "loopback",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def kubeconfig(tmp_path, api_server) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", api_server.url)


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "scaled.yaml"
    path.write_text("name: ml-app\nautoscaling: {min_replicas: 3, max_replicas: 5}\n")
    return path


def deploy(*args: str):
    return CliRunner().invoke(app, ["deploy", *map(str, args)])


def assert_clear_failure(result, *phrases: str) -> None:
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit through `fail`, not an escaped exception
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


# --- apply ----------------------------------------------------------------------------------------


def test_apply_creates_the_rendered_objects_and_waits_until_ready(api_server, kubeconfig, spec_file):
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "20")
    assert result.exit_code == 0, result.output
    expected = {obj["kind"]: obj for obj in render_manifests(load_deployment_spec(spec_file))}
    assert api_server.sent("POST", "deployments") == [expected["Deployment"]]
    assert api_server.sent("POST", "services") == [expected["Service"]]
    assert api_server.sent("POST", "horizontalpodautoscalers") == [expected["HorizontalPodAutoscaler"]]
    posted = [path for method, path, _ in api_server.requests if method == "POST"]
    assert posted == ["/apis/apps/v1/namespaces/default/deployments", "/api/v1/namespaces/default/services",
                      "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"]
    # One more replica became ready per poll: 1/3, 2/3, 3/3; the command waited for all three.
    assert len(api_server.sent("GET", "deployments/ml-app")) == 3
    assert "deployment/ml-app created" in result.stdout
    assert "deployment/ml-app: 3/3 replicas ready" in result.stdout
    assert "3/3" in result.stderr  # the progress display
    assert "warning" not in result.stderr


def test_apply_again_replaces_and_keeps_the_autoscalers_replica_count(api_server, kubeconfig, spec_file):
    spec = load_deployment_spec(spec_file)
    cluster = KubernetesCluster(kubeconfig)
    assert cluster.apply(spec) == [
        "deployment/ml-app created", "service/ml-app created", "horizontalpodautoscaler/ml-app created"
    ]
    api_server.objects[("deployments", "default", "ml-app")]["spec"]["replicas"] = 5  # the HPA scaled up
    assert cluster.apply(spec) == [
        "deployment/ml-app replaced", "service/ml-app replaced", "horizontalpodautoscaler/ml-app replaced"
    ]
    (deployment,) = api_server.sent("PUT", "deployments/ml-app")
    assert deployment["spec"]["replicas"] == 5
    assert deployment["metadata"]["resourceVersion"] == "100"
    (service,) = api_server.sent("PUT", "services/ml-app")
    assert service["spec"]["clusterIP"] == "10.96.0.17"  # immutable: carried over
    assert api_server.objects[("deployments", "default", "ml-app")]["metadata"]["generation"] == 2


def test_a_fixed_spec_removes_the_previous_autoscaler(api_server, kubeconfig, spec_file, tmp_path):
    cluster = KubernetesCluster(kubeconfig)
    cluster.apply(load_deployment_spec(spec_file))
    actions = cluster.apply(load_deployment_spec("fixed-1"))
    assert "horizontalpodautoscaler/ml-app deleted (the spec has fixed replicas)" in actions
    assert ("horizontalpodautoscalers", "default", "ml-app") not in api_server.objects
    assert api_server.objects[("deployments", "default", "ml-app")]["spec"]["replicas"] == 1


def test_missing_metrics_api_warns_and_still_applies(api_server, kubeconfig, spec_file):
    api_server.api_groups.remove("metrics.k8s.io")
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--no-wait")
    assert result.exit_code == 0, result.output
    assert "warning: the cluster serves no metrics API (metrics.k8s.io)" in result.stderr
    assert "install metrics-server" in result.stderr
    assert ("horizontalpodautoscalers", "default", "ml-app") in api_server.objects


# --- failures a user meets ------------------------------------------------------------------------


def test_image_pull_failure_is_reported(api_server, kubeconfig, spec_file):
    api_server.pod_waiting = ("ImagePullBackOff", 'Back-off pulling image "servetune:0.1.0"')
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "20")
    assert_clear_failure(result, "cannot pull its image", "ImagePullBackOff", 'Back-off pulling image "servetune:0.1.0"')
    assert result.exit_code == 1


def test_crash_loop_is_reported_with_the_exit_and_where_to_look(api_server, kubeconfig, spec_file):
    api_server.pod_waiting = ("CrashLoopBackOff", "back-off 40s restarting failed container")
    api_server.last_terminated = {"exitCode": 137, "reason": "OOMKilled", "startedAt": TIMESTAMP,
                                  "finishedAt": TIMESTAMP}
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "20")
    assert_clear_failure(
        result, "is crash-looping", "last exit code 137 (OOMKilled)", "4 restarts", "raise limits.memory_mb",
        "kubectl logs ml-app-7d9f8-0 -c ml-app --previous",
    )


def test_forbidden_is_reported_with_the_servers_reason(api_server, kubeconfig, spec_file):
    api_server.forbidden_user = "system:serviceaccount:ci:deployer"
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig)
    assert_clear_failure(
        result,
        'create deployment/ml-app: forbidden: deployments.apps is forbidden: User "system:serviceaccount:ci:deployer" '
        'cannot create resource "deployments" in API group "apps" in the namespace "default"',
    )
    assert result.exit_code == 1
    assert not api_server.objects


def test_unreachable_api_server(tmp_path, spec_file):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    result = deploy("status", spec_file, "--kubeconfig", config)
    assert_clear_failure(result, f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}")


def test_no_kubeconfig(tmp_path, spec_file, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = deploy("apply", spec_file)
    assert_clear_failure(result, "no kubeconfig", "pass --kubeconfig FILE")
    missing = deploy("status", spec_file, "--kubeconfig", tmp_path / "absent")
    assert_clear_failure(missing, f"kubeconfig {tmp_path / 'absent'}: no such file")


def test_unreadable_kubeconfig(tmp_path, spec_file):
    broken = tmp_path / "broken"
    broken.write_text("clusters: [\n")
    result = deploy("apply", spec_file, "--kubeconfig", broken)
    assert_clear_failure(result, f"kubeconfig {broken}: ")


def test_unknown_context(kubeconfig, spec_file):
    result = deploy("status", spec_file, "--kubeconfig", kubeconfig, "--context", "production")
    assert_clear_failure(result, f"kubeconfig {kubeconfig}", "production")


def test_timeout_says_what_the_pods_wait_for(api_server, kubeconfig, spec_file):
    api_server.unschedulable = True
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "1")
    assert_clear_failure(
        result, "timed out after 1 s with 0/3 replicas ready",
        "3 Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.",
    )


def test_missing_kubernetes_client_is_explained(monkeypatch, kubeconfig):
    monkeypatch.setitem(__import__("sys").modules, "kubernetes", None)
    with pytest.raises(KubernetesError, match=r"pip install 'servetune\[kubernetes\]'"):
        connect(kubeconfig)


# --- status, delete, warm-up ----------------------------------------------------------------------


def test_status_shows_rollout_autoscaler_and_pods(api_server, kubeconfig, spec_file):
    assert deploy("apply", spec_file, "--kubeconfig", kubeconfig).exit_code == 0
    result = deploy("status", spec_file, "--kubeconfig", kubeconfig)
    assert result.exit_code == 0, result.output
    assert "deployment default/ml-app: 3/3 ready" in result.stdout
    assert "autoscaler: 3..5 replicas, current 3, desired 3, CPU 42% of target 70%" in result.stdout
    assert result.stdout.count("ml-app-7d9f8-") == 3 and "node-1" in result.stdout


def test_status_of_an_absent_deployment(api_server, kubeconfig, spec_file):
    result = deploy("status", spec_file, "--kubeconfig", kubeconfig)
    assert_clear_failure(result, "read deployment/ml-app: not found")


def test_delete_removes_everything_and_waits_until_the_pods_are_gone(api_server, kubeconfig, spec_file):
    assert deploy("apply", spec_file, "--kubeconfig", kubeconfig).exit_code == 0
    result = deploy("delete", spec_file, "--kubeconfig", kubeconfig, "--timeout", "20")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "horizontalpodautoscaler/ml-app deleted", "service/ml-app deleted", "deployment/ml-app deleted"
    ]
    assert not api_server.objects
    pod_lists = [path for method, path, _ in api_server.requests if method == "DELETE" or "/pods" in path]
    # The pods were listed until none were left (two lists still showed terminating pods).
    assert sum("/pods" in path for path in pod_lists[3:]) == api_server.terminating_lists + 1
    again = deploy("delete", spec_file, "--kubeconfig", kubeconfig)
    assert again.exit_code == 0 and "nothing to delete for ml-app" in again.stdout


def test_delete_times_out_when_pods_linger(api_server, kubeconfig, spec_file):
    api_server.terminating_lists = 10**6
    assert deploy("apply", spec_file, "--kubeconfig", kubeconfig).exit_code == 0
    result = deploy("delete", spec_file, "--kubeconfig", kubeconfig, "--timeout", "1")
    assert_clear_failure(result, "timed out after 1 s waiting for pods to terminate: ml-app-7d9f8-0")


def test_warm_up_deploys_five_replicas_then_removes_them(api_server, kubeconfig, spec_file):
    spec = load_deployment_spec(spec_file)
    KubernetesCluster(kubeconfig).warm_up(spec, timeout=20, show_progress=False)
    assert api_server.sent("POST", "deployments") == render_warmup(spec)
    assert api_server.ready["ml-app-warmup"] == 5
    deleted = [path for method, path, _ in api_server.requests if method == "DELETE"]
    assert deleted == ["/apis/apps/v1/namespaces/default/deployments/ml-app-warmup?propagationPolicy=Background"]
    assert not api_server.objects and api_server.gone["ml-app-warmup"][1] == 0
