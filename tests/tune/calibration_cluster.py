"""The loopback API server (tests/kubernetes_api.py) as a cluster a calibration runs on, with a stand-in
for the calibration pod's app behind its NodePort (reached through `Place.url`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kubernetes_api import DeployedService, FakeApiServer, pod_metrics, serve
from servetune.deploy import kubernetes as cluster_module
from servetune.tune import measure_kubernetes
from servetune.tune.measure_kubernetes import NAME

POD = f"{NAME}-7d9f8-0"  # the fake API server's name for the Deployment's one pod
IDLE = {"cpu": "2m", "memory": "180Mi"}


class Cluster(FakeApiServer):
    """The fake API server whose metrics-server reports the calibration pod idle until the load's first
    request, then busy at 80 % of its CPU limit; a deleted Deployment's next pod starts idle again."""

    def usage(self, amounts: dict[str, str]) -> None:
        self.metrics = [pod_metrics(POD, "default", {"ml-app": amounts}, {"app": NAME})]

    def loaded(self, number: int) -> None:
        with self.lock:
            deployment = self.objects.get(("deployments", "default", NAME))
            if deployment is not None and number >= 1:
                limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]
                cores = float(limit.rstrip("m")) / 1000 if limit.endswith("m") else float(limit)
                self.usage({"cpu": f"{round(800 * cores)}m", "memory": "300Mi"})

    def delete(self, key):
        self.usage(IDLE)
        return super().delete(key)


@contextmanager
def calibration_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                        ) -> Iterator[tuple[Cluster, DeployedService, Path]]:
    """(the API server, the app's stand-in, the kubeconfig) with fast polling and no model loaded for its
    footprint (it only sizes the pod's memory)."""
    api = Cluster(namespaces={"default"})
    api.usage(IDLE)
    server = serve(api)
    service = DeployedService(api.loaded)
    monkeypatch.setattr(cluster_module, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(measure_kubernetes, "model_footprint", lambda path: 100 * 2**20)
    try:
        yield api, service, api.kubeconfig(tmp_path / "kubeconfig")
    finally:
        service.close()
        server.shutdown()
        server.server_close()
