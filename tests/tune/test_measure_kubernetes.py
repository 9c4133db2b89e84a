"""`tune calibrate --backend kubernetes` against the loopback API server (tests/kubernetes_api.py) and a
stand-in for the calibration pod's app behind its NodePort: the objects applied and deleted (also after a
failure or Ctrl-C), the figures taken from the metrics API's samples, and the errors a user meets."""

from __future__ import annotations

import pytest

from servetune.model.artifact import default_model_path
from servetune.tune import measure_kubernetes
from servetune.tune.measure import CalibrationFailed
from servetune.tune.measure_kubernetes import NAME, Place, calibrate_on_cluster
from tune.calibration_cluster import calibration_cluster

LIMITS = (0.5, 1.0)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    with calibration_cluster(tmp_path, monkeypatch) as parts:
        yield parts


def calibrate(api, service, kubeconfig, events=None, **options):
    place = Place(kubeconfig=kubeconfig, url=service.url, ready_timeout_s=5)
    return calibrate_on_cluster(default_model_path(), place, seconds=0.5, limits=LIMITS, metrics_window_s=0,
                                sample_every_s=0.05, on_event=(events if events is not None else []).append,
                                **options)


def applied(api) -> list[dict]:
    return [r.body for r in api.requests
            if r.method == "PATCH" and "/deployments/" in r.path and not r.query.get("dryRun")]


def deleted(api) -> list[str]:
    return [r.path.split("/namespaces/default/")[1] for r in api.requests if r.method == "DELETE"]


def assert_nothing_left(api) -> None:
    assert not [key for key in api.objects if key[0] in ("deployments", "services")]


def test_one_pod_at_each_limit_measured_by_the_metrics_api_and_deleted(cluster):
    api, service, kubeconfig = cluster
    events: list[str] = []
    result = calibrate(api, service, kubeconfig, events)

    # one Deployment of one replica per CPU limit, requests = limits, one at a time, each deleted after
    limits = [body["spec"]["template"]["spec"]["containers"][0]["resources"] for body in applied(api)]
    assert [(r["limits"]["cpu"], r["requests"]["cpu"], r["limits"]["memory"]) for r in limits] == [
        ("500m", "500m", "1024Mi"), ("1", "1", "1024Mi")]
    assert all(body["spec"]["replicas"] == 1 for body in applied(api))
    assert deleted(api) == [f"services/{NAME}", f"deployments/{NAME}"] * 2
    assert_nothing_left(api)
    assert events == [f"deployment/{NAME} created", f"service/{NAME} created", f"service/{NAME} deleted",
                      f"deployment/{NAME} deleted"] * 2

    # CPU from the pod's usage as metrics-server reports it: 0.8 x the limit while loaded
    for setting in result.service:
        busy_cores = setting.saturated_cpu_ms_per_request * setting.saturated_per_s / 1000
        assert 0.6 * setting.cpu_limit < busy_cores < 1.1 * setting.cpu_limit, setting
    assert result.idle_cpu_cores == 0.002
    assert result.rss_idle_bytes == 180 * 2**20 and result.rss_peak_bytes == result.rss_loaded_bytes == 300 * 2**20
    # start-up from the pod's timestamps: created 04:58:12, container started 04:58:14, Ready 04:58:20
    assert result.start_to_ready_s == 8.0 and result.start_cpu_s == 3.0  # (20 - 14) s x 0.5 CPU
    assert result.backend == "kubernetes"
    assert result.machine == (f"Kubernetes 1.34 at {api.url}, node node-1: 4 CPUs, 16 GiB, amd64, e2-standard-4")
    assert service.hits >= sum(s.requests for s in result.service) > 0  # the load went through --url


def test_a_pod_never_ready_says_why_and_is_deleted(cluster):
    api, service, kubeconfig = cluster
    api.pod_waiting = ("CrashLoopBackOff", "back-off 40s restarting failed container=ml-app")
    api.last_terminated = {"exitCode": 1, "reason": "Error", "startedAt": "2026-11-29T04:58:14Z",
                           "finishedAt": "2026-11-29T04:58:15Z"}
    with pytest.raises(CalibrationFailed) as failure:
        calibrate(api, service, kubeconfig)
    message = str(failure.value)
    assert message.startswith(f"{default_model_path()}: at 0.5 CPU on the cluster: the calibration pod was never "
                              "ready: deployment/servetune-calibrate: pod servetune-calibrate-7d9f8-0 is "
                              "crash-looping (CrashLoopBackOff: last exit code 1 (Error), 4 restarts)")
    assert "must hold the model: make image MODEL=" in message
    assert deleted(api) == [f"services/{NAME}", f"deployments/{NAME}"]
    assert_nothing_left(api)


def test_no_permission_is_said_before_anything_is_applied(cluster):
    api, service, kubeconfig = cluster
    api.denied = {"pods.metrics.k8s.io", "services"}
    with pytest.raises(Exception, match="may not get services, create services, patch services, delete services, "
                       r"list pods.metrics.k8s.io in namespace default \(the README's Permissions section has the "
                       "Role a calibration needs"):
        calibrate(api, service, kubeconfig)
    assert not [r for r in api.requests if r.method in ("PATCH", "DELETE")]


def test_no_metrics_fails_clearly_and_the_pod_is_deleted(cluster, monkeypatch):
    api, service, kubeconfig = cluster
    api.metrics = []
    api.usage = lambda amounts: None  # metrics-server never reports the pod
    monkeypatch.setattr(measure_kubernetes, "METRICS_WAIT_S", 0.3)
    with pytest.raises(CalibrationFailed, match="reported no usage of the calibration pod within 0.3 s: is "
                       "metrics-server running"):
        calibrate(api, service, kubeconfig)
    assert deleted(api) == [f"services/{NAME}", f"deployments/{NAME}"]
    assert_nothing_left(api)


def test_ctrl_c_during_the_load_deletes_the_pod(cluster):
    api, service, kubeconfig = cluster

    def interrupt(text: str) -> None:
        if "GET /test" in text:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        calibrate(api, service, kubeconfig, progress=interrupt)
    assert len(applied(api)) == 1
    assert deleted(api) == [f"services/{NAME}", f"deployments/{NAME}"]
    assert_nothing_left(api)
