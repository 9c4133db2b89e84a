"""A loopback stand-in for a Kubernetes API server with metrics-server, for contract tests.

It answers the two requests the monitor makes with JSON shaped exactly like a real API server's (objects
as `kubectl get --raw` prints them: PodList from /api/v1, PodMetricsList from /apis/metrics.k8s.io/v1beta1,
Status objects for errors) and records every request it receives.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

TOKEN = "contract-test-token"


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
            "creationTimestamp": "2026-11-29T04:58:12Z",
            "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0],
                                 "uid": "5e0f1d2c-8b7a-4c3d-9e1f-0a2b3c4d5e6f", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-11-29T04:58:12Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:generateName": {}}}}],
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
            "containers": full_containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": "node-1",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": "2026-11-29T04:58:20Z"}],
            "hostIP": "10.0.0.11",
            "podIP": "10.244.1.17",
            "podIPs": [{"ip": "10.244.1.17"}],
            "startTime": "2026-11-29T04:58:12Z",
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


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": {}, "code": code}


@dataclass
class FakeApiServer:
    pods: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    pods_error: tuple[int, dict] | None = None
    metrics_error: tuple[int, dict] | None = None
    metrics_delay_s: float = 0.0
    requests: list[tuple[float, str, dict[str, list[str]], str]] = field(default_factory=list)
    port: int = 0

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and parts[4:] == ["pods"]:
            if self.pods_error:
                return self.pods_error
            items = [p for p in self.pods if p["metadata"]["namespace"] == parts[3]]
            items = [p for p in items if matches(p["metadata"]["labels"], query.get("labelSelector", [""])[0])]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "48250"},
                         "items": items}
        if parts[:4] == ["apis", "metrics.k8s.io", "v1beta1", "namespaces"] and parts[5:] == ["pods"]:
            time.sleep(self.metrics_delay_s)
            if self.metrics_error:
                return self.metrics_error
            items = [m for m in self.metrics if m["metadata"]["namespace"] == parts[4]]
            items = [m for m in items if matches(m["metadata"]["labels"], query.get("labelSelector", [""])[0])]
            return 200, {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {},
                         "items": items}
        return 404, status(404, "NotFound", "the server could not find the requested resource")

    def kubeconfig(self, path: Path, namespace: str = "servetune") -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "loopback", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "tester", "user": {"token": TOKEN}}],
            "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "tester",
                                                          "namespace": namespace}}],
            "current-context": "loopback",
        }))
        return path

    def paths(self, kind: str) -> list[str]:
        return [path for _, path, _, _ in self.requests if kind in path]


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


def serve(api: FakeApiServer) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            api.requests.append((time.monotonic(), url.path, query, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                code, body = 401, status(401, "Unauthorized", "Unauthorized")
            else:
                code, body = api.answer(url.path, query)
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    api.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
