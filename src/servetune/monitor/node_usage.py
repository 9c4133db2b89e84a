"""What else the replicas' nodes did during a run on Kubernetes, from the metrics API.

The machine servetune runs on is not where the replicas run (or, on a one-node cluster on this machine, it
runs them and the control plane too), so its /proc/stat (host/machine_cpu.py) does not say what other work
took from the replicas. metrics-server does: NodeMetrics (metrics.k8s.io/v1beta1 `nodes`, cluster scope)
gives each node's CPU over its last window. With each resource sample whose replicas' usage was measured,
`NodeOthers.add` reads the usage of the nodes those replicas run on and keeps the difference: the cores the
nodes spent on anything but the replicas (the kubelet, the container runtime, the control plane, other
pods, a replica's other containers). Its `record()` is run.json's `node_cpu`, the mean over those samples.
A user who may not read node metrics gets `unavailable` with the reason, and the run carries on.
"""

from __future__ import annotations

from typing import Any

from servetune.deploy.kubernetes_client import kubernetes_client
from servetune.monitor.kubernetes import quantity

COUNTS = "the replicas' nodes' CPU (metrics.k8s.io NodeMetrics) less the replicas' own (their ml-app containers)"


class NodeOthers:
    def __init__(self, api_client: Any, request_timeout_s: float = 4.0) -> None:
        self.custom = kubernetes_client().CustomObjectsApi(api_client)
        self.request_timeout_s = request_timeout_s
        self.nodes: set[str] = set()
        self.samples: list[tuple[float, float]] = []  # (the nodes' cores, the replicas' cores)
        self.unavailable = ""

    def add(self, nodes: set[str], replica_cores: float) -> None:
        """One sample: the nodes' usage now against the replicas' (measured for every replica)."""
        if self.unavailable or not nodes:
            return
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        try:
            listing = self.custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes",
                                                             _request_timeout=self.request_timeout_s)
        except ApiException as error:
            if error.status in (401, 403):
                self.unavailable = f"the kubeconfig's user may not list nodes.metrics.k8s.io (HTTP {error.status})"
            return  # 404/503: metrics-server not there or starting; other samples may do
        except (HTTPError, OSError):
            return
        usage = {item["metadata"]["name"]: quantity(item["usage"]["cpu"]) for item in listing.get("items") or []
                 if "cpu" in (item.get("usage") or {})}
        if not nodes <= set(usage):
            return  # a node without metrics yet: no difference to take
        self.nodes |= nodes
        self.samples.append((sum(usage[node] for node in nodes), replica_cores))

    def record(self) -> dict | None:
        """run.json's `node_cpu`; None when nothing was sampled and nothing refused."""
        if self.unavailable:
            return {"unavailable": self.unavailable}
        if not self.samples:
            return None
        busy = sum(b for b, _ in self.samples) / len(self.samples)
        replicas = sum(r for _, r in self.samples) / len(self.samples)
        return {"nodes": sorted(self.nodes), "busy_cores": round(busy, 3), "replica_cores": round(replicas, 3),
                "others_cores": round(max(0.0, busy - replicas), 3), "samples": len(self.samples),
                "counts": COUNTS}
