"""Contract tests of the Kubernetes monitor.

These are contract tests: the real `kubernetes` client (kubeconfig loading, bearer auth, URL building,
PodList deserialization) talks HTTP to a loopback server that answers with Kubernetes API JSON shaped
exactly like a real API server's and metrics-server's (tests/kubernetes_api.py). What they pin
down is the monitor's side of that contract: which requests it makes and how it turns the answers into
resource_usage.csv rows.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time

import pytest

from kubernetes_api import FakeApiServer, pod, pod_metrics, serve, status
from servetune.deploy.kubernetes_client import KubernetesError, connect
from servetune.monitor.kubernetes import KubernetesSampler, monitor_kubernetes
from servetune.monitor.resource_csv import read_resource_csv

NS = "servetune"
ML_APP = {"app": "ml-app"}
RESOURCES = {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


@pytest.fixture
def api(tmp_path):
    """A namespace with two ml-app replicas (one behind a sidecar) and an unrelated database pod."""
    fake = FakeApiServer(
        pods=[
            pod("ml-app-7d9c-abcde", NS, [{"name": "ml-app", "resources": RESOURCES}], ML_APP),
            pod("ml-app-7d9c-fghij", NS, [{"name": "istio-proxy", "resources": {"requests": {"cpu": "100m"}}},
                                          {"name": "ml-app", "resources": RESOURCES}], ML_APP),
            pod("postgres-0", NS, [{"name": "postgres", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}],
                {"app": "db"}),
            pod("ml-app-other-ns-1", "elsewhere", [{"name": "ml-app", "resources": RESOURCES}], ML_APP),
        ],
        metrics=[
            pod_metrics("ml-app-7d9c-abcde", NS, {"ml-app": {"cpu": "412345678n", "memory": "183500Ki"}}, ML_APP),
            pod_metrics("ml-app-7d9c-fghij", NS, {"istio-proxy": {"cpu": "3m", "memory": "40Mi"},
                                                  "ml-app": {"cpu": "250m", "memory": "200Mi"}}, ML_APP),
            pod_metrics("postgres-0", NS, {"postgres": {"cpu": "1500m", "memory": "2Gi"}}, {"app": "db"}),
        ],
    )
    server = serve(fake)
    fake.kubeconfig_path = fake.kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    yield fake
    server.shutdown()
    server.server_close()


def sampler(api, **options) -> KubernetesSampler:
    connection = connect(api.kubeconfig_path)
    return KubernetesSampler(connection.api_client, connection.namespace, **options)


def test_counts_ml_app_containers_and_only_their_usage(api):
    sample = sampler(api)()
    assert sample.n_replica == 2
    assert sample.cpu_req_core == pytest.approx(1.0)  # 2 x 500m, not the sidecar's or postgres' requests
    assert sample.mem_req_KB == pytest.approx(2 * 262144)  # 2 x 256Mi in KiB
    assert sample.cpu_lim_core == pytest.approx(2.0)
    assert sample.mem_lim_KB == pytest.approx(2 * 524288)
    assert sample.cpu_use_core == pytest.approx(0.412345678 + 0.25)
    assert sample.mem_use_KB == pytest.approx(183500 + 200 * 1024)
    # The kubeconfig's namespace, bearer token, and namespaced list calls (never all namespaces).
    assert api.paths("pods") == [f"/api/v1/namespaces/{NS}/pods", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods"]
    assert {r.auth for r in api.requests} == {"Bearer contract-test-token"}


def test_usage_all_pods_flag_reproduces_the_reference_sum(api):
    sample = sampler(api, usage_all_pods=True)()
    # The reference: first container of every pod in the namespace, postgres and the sidecar included.
    assert sample.cpu_use_core == pytest.approx(0.412345678 + 0.003 + 1.5)
    assert sample.mem_use_KB == pytest.approx(183500 + 40 * 1024 + 2 * 1024 * 1024)
    assert sample.n_replica == 2  # requests are counted the same way either way


def test_label_selector_is_sent_and_limits_the_pods(api):
    api.pods.append(pod("ml-app-canary-zzzzz", NS, [{"name": "ml-app", "resources": RESOURCES}],
                        {"app": "ml-app", "track": "canary"}))
    api.metrics.append(pod_metrics("ml-app-canary-zzzzz", NS, {"ml-app": {"cpu": "1", "memory": "1Gi"}}))
    everything = sampler(api)()
    canary = sampler(api, selector="track=canary")()
    assert (everything.n_replica, canary.n_replica) == (3, 1)
    assert canary.cpu_use_core == pytest.approx(1.0) and canary.mem_use_KB == pytest.approx(1024 * 1024)
    pod_queries = [r.query for r in api.requests if r.path.startswith("/api/v1/namespaces/")]
    assert pod_queries[-1]["labelSelector"] == ["track=canary"]


def test_metrics_gap_carries_last_usage_and_a_new_pod_counts_zero(api, caplog):
    take = sampler(api)
    first = take()
    api.metrics_error = (503, status(503, "ServiceUnavailable",
                                     "the server is currently unable to handle the request (get pods.metrics.k8s.io)"))
    with caplog.at_level(logging.WARNING, logger="servetune.monitor.kubernetes"):
        during_503 = take()
        api.metrics_error = (404, status(404, "NotFound", "the server could not find the requested resource"))
        during_404 = take()
    assert "metrics.k8s.io gap" in caplog.text
    for carried in (during_503, during_404):
        assert (carried.cpu_use_core, carried.mem_use_KB) == (first.cpu_use_core, first.mem_use_KB)
    # Metrics back; a replica scheduled meanwhile has none yet: it counts 0 and is named once.
    api.metrics_error = None
    api.pods.append(pod("ml-app-7d9c-new01", NS, [{"name": "ml-app", "resources": RESOURCES}], ML_APP))
    with caplog.at_level(logging.WARNING, logger="servetune.monitor.kubernetes"):
        after = take()
    assert after.n_replica == 3 and after.cpu_req_core == pytest.approx(1.5)
    assert after.cpu_use_core == pytest.approx(first.cpu_use_core)
    assert "ml-app-7d9c-new01 has no metrics yet" in caplog.text
    # ... and the sample says its usage left one replica unmeasured, where the others said none.
    assert [s.states.usage_unmeasured for s in (first, during_503, during_404, after)] == [0, 0, 0, 1]
    assert (after.states.ready, after.states.starting, after.states.pending, after.states.terminating) == (3, 0, 0, 0)


def test_pod_without_metrics_keeps_its_last_value_and_gone_pods_drop_out(api):
    take = sampler(api)
    take()
    api.metrics = [m for m in api.metrics if m["metadata"]["name"] != "ml-app-7d9c-fghij"]
    assert take().cpu_use_core == pytest.approx(0.412345678 + 0.25)  # fghij's last value carried
    api.pods = [p for p in api.pods if p["metadata"]["name"] != "ml-app-7d9c-fghij"]
    gone = take()
    assert gone.n_replica == 1 and gone.cpu_use_core == pytest.approx(0.412345678)


def test_slow_metrics_api_does_not_hold_the_sample(api):
    take = sampler(api, request_timeout_s=0.3)
    first = take()
    api.metrics_delay_s = 2.0
    started = time.monotonic()
    slow = take()
    assert time.monotonic() - started < 1.5
    assert slow.cpu_use_core == first.cpu_use_core


def test_monitor_keeps_cadence_through_gaps_and_writes_every_row(api, tmp_path, caplog):
    out = tmp_path / "resource_usage.csv"

    def flip_metrics(sample):  # metrics-server goes away after the 2nd row and returns after the 4th
        rows = len([p for p in api.paths("/api/v1/") if p.endswith("/pods")])
        api.metrics_error = (503, status(503, "ServiceUnavailable", "unavailable")) if rows in (2, 3) else None

    with caplog.at_level(logging.WARNING, logger="servetune.monitor.kubernetes"):
        rows = monitor_kubernetes(out, kubeconfig=api.kubeconfig_path, interval_s=0.2, duration_s=1.1,
                                  on_sample=flip_metrics)
    assert caplog.text.count("HTTP 503") == 2
    assert rows == 6
    samples = read_resource_csv(out)
    assert [s.n_replica for s in samples] == [2] * 6
    assert len({s.cpu_use_core for s in samples}) == 1
    pod_list_times = [r.time for r in api.requests if r.path.endswith("/pods") and r.path.startswith("/api/v1/")]
    gaps = [b - a for a, b in itertools.pairwise(pod_list_times)]
    assert all(0.12 < gap < 0.28 for gap in gaps), gaps


def test_stop_event_ends_the_monitor(api, tmp_path):
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    rows = monitor_kubernetes(tmp_path / "r.csv", kubeconfig=api.kubeconfig_path, interval_s=0.2, stop_event=stop)
    assert 2 <= rows <= 4 and time.monotonic() - started < 1.5


def test_api_server_down_skips_the_row_without_crashing(api, caplog):
    take = sampler(api, request_timeout_s=0.5)
    api.pods_error = (500, status(500, "InternalError", "etcdserver: request timed out"))
    with caplog.at_level(logging.WARNING, logger="servetune.monitor.kubernetes"):
        assert take() is None
    assert "listing pods failed: HTTP 500" in caplog.text
    api.pods_error = None
    assert take().n_replica == 2


def test_refused_access_is_a_clear_error(api):
    api.pods_error = (403, status(403, "Forbidden", 'pods is forbidden: User "tester" cannot list resource "pods"'))
    with pytest.raises(KubernetesError, match=r"access refused \(HTTP 403.*RBAC"):
        sampler(api)()


def test_configuration_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(KubernetesError, match="no such file"):
        connect(tmp_path / "absent")
    bad = tmp_path / "bad"
    bad.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    with pytest.raises(KubernetesError, match=f"kubeconfig {bad}"):
        connect(bad)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubernetesError, match="no kubeconfig found"):
        connect()


def test_missing_client_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(KubernetesError, match=r"pip install 'servetune\[kubernetes\]'"):
        connect()


def test_a_namespace_that_does_not_exist_is_an_error(api, tmp_path):
    api.namespaces = {NS}
    with pytest.raises(KubernetesError, match="namespace 'nosuch' does not exist"):
        monitor_kubernetes(tmp_path / "r.csv", namespace="nosuch", kubeconfig=api.kubeconfig_path, duration_s=0.1)
    assert not (tmp_path / "r.csv").exists()
    api.cluster_scope_forbidden = True  # a namespaced user cannot tell: the monitor runs
    rows = monitor_kubernetes(tmp_path / "r.csv", namespace="nosuch", kubeconfig=api.kubeconfig_path,
                              interval_s=0.1, duration_s=0.15)
    assert rows == 2


def test_a_namespace_without_ml_app_pods_warns_once(api, tmp_path, caplog):
    api.namespaces = {NS, "empty"}
    with caplog.at_level(logging.WARNING, logger="servetune.monitor.kubernetes"):
        rows = monitor_kubernetes(tmp_path / "r.csv", namespace="empty", kubeconfig=api.kubeconfig_path,
                                  interval_s=0.1, duration_s=0.25)
    assert rows == 3 and all(s.n_replica == 0 for s in read_resource_csv(tmp_path / "r.csv"))
    assert caplog.text.count("no pod in namespace 'empty' has a container named ml-app") == 1
