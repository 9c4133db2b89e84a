"""`servetune run --backend kubernetes` against the loopback API server (tests/kubernetes_api.py): what a
real cluster does during a run and what the run folder must then say.

One run serves every test of this module (the module-scoped `cluster_run`): at the load's first request a
container is killed (the kubelet restarts it and counts it) and the autoscaler scales from 1 to 3 replicas,
the third of which finds no node with room for it (Pending); --time-scale 0.1 compresses a 20 s profile.
"""

from __future__ import annotations

import io
import json

import pytest
import yaml
from rich.console import Console

from kubernetes_api import DeployedService, FakeApiServer, node_metrics, pod_metrics, serve
from servetune.analyze.stats import summarize
from servetune.backend.protocol import BackendName
from servetune.config import RESOURCE_COLUMNS
from servetune.deploy import kubernetes as cluster_module
from servetune.load.siege import read_siege_log
from servetune.run import RunOptions, evaluate

KILLED_POD = "ml-app-7d9f8-0"


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """(run folder, run.json, the API server, the terminal's output) of one compressed Kubernetes run."""
    folder = tmp_path_factory.mktemp("k8s")
    api = FakeApiServer(namespaces={"default"})
    server = serve(api)

    def first_request(number: int) -> None:
        if number == 1:
            with api.lock:
                api.restart(KILLED_POD, "OOMKilled", 137)
                api.unschedulable_from = 2  # two replicas fit the node (the warm-up's five asked for little)
                api.scale("default", "ml-app", 3)

    service = DeployedService(first_request)
    poll = cluster_module.POLL_SECONDS
    cluster_module.POLL_SECONDS = 0.01
    try:
        spec = folder / "k8s.yaml"
        spec.write_text("name: ml-app\nautoscaling: {min_replicas: 1, max_replicas: 3}\n")
        profile = folder / "short.yaml"
        profile.write_text(yaml.safe_dump({"name": "short", "phases": [{"users": 2, "delay": 0.1, "duration_s": 20}]}))
        console = Console(file=(output := io.StringIO()), width=200)
        result = evaluate(RunOptions(
            spec=str(spec), out=folder / "run", backend=BackendName.KUBERNETES, profile=str(profile),
            time_scale=0.1, kubeconfig=api.kubeconfig(folder / "kubeconfig"), url=service.url, progress=False,
        ), console=console)
        yield result.run_dir, result.record.as_json(), api, output.getvalue()  # as run.json holds it
    finally:
        cluster_module.POLL_SECONDS = poll
        service.close()
        server.shutdown()
        server.server_close()


def test_the_run_completes(cluster_run):
    _, record, _, output = cluster_run
    assert record["status"] == "completed", output


def test_a_restarted_container_is_counted_with_its_reason(cluster_run):
    run_dir, record, _, output = cluster_run
    assert record["restarts"] == 1 and record["restart_reasons"] == {"OOMKilled": 1}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["replica_restarts"] == 1 and summary["restart_reasons"] == {"OOMKilled": 1}
    assert "| replica restarts | 1 (OOMKilled x1) |" in (run_dir / "report.md").read_text()
    line = f"replica {KILLED_POD} restarted (OOMKilled): restart #1"
    assert line in output  # said on the terminal as it was seen
    assert line in (run_dir / "events.log").read_text()


def test_restarts_from_before_the_apply_are_not_this_runs(tmp_path):
    from servetune.deploy.kubernetes import PodStatus
    from servetune.deploy.pod_restarts import PodRestarts

    def pod(uid: str, restarts: int, last_exit: str = "") -> PodStatus:
        return PodStatus(name=f"pod-{uid}", phase="Running", ready=True, restarts=restarts, uid=uid,
                         last_exit=last_exit)

    tally = PodRestarts()
    tally.baseline([pod("a", 4, "Error (exit code 1)")])
    assert tally.observe([pod("a", 4, "Error (exit code 1)"), pod("b", 0)]) == []
    assert tally.observe([pod("a", 6, "OOMKilled"), pod("b", 1, "Error (exit code 137)")]) == [
        "replica pod-a restarted 2 times (OOMKilled): restart #2",
        "replica pod-b restarted (Error (exit code 137)): restart #3",
    ]
    assert tally.observe([pod("c", 1, "Error (signal 9)")]) == [
        "replica pod-c restarted (Error (signal 9)): restart #4"]  # a pod created since: all of its restarts
    assert tally.record() == {"restarts": 4, "restart_reasons": {"OOMKilled": 2, "Error (exit code 137)": 1,
                                                                 "Error (signal 9)": 1}}


def test_usage_never_measured_is_n_a_and_the_csv_keeps_the_reference_format(cluster_run):
    """The fake cluster's metrics-server never measured these pods: no usage is a 0 MiB measurement."""
    run_dir, record, _, _ = cluster_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["memory_used_KB"] is None and summary["cpu_used_core"] is None
    assert summary["usage_samples"] == 0 and summary["samples"] == record["monitor_samples"] > 0
    assert "| memory used (mean mem_use_KB) | n/a (not measured in any of" in (run_dir / "report.md").read_text()
    lines = (run_dir / "resource_usage.csv").read_text().splitlines()
    assert lines[0] == ",".join(RESOURCE_COLUMNS) and all(line.endswith(",0,0") for line in lines[1:])
    states = (run_dir / "replica_states.csv").read_text().splitlines()
    assert states[0] == "time,ready,starting,pending,terminating,usage_unmeasured"
    assert [line.split(",")[0] for line in states[1:]] == [line.split(",")[0] for line in lines[1:]]


def test_time_scale_compresses_the_hpa_behavior_and_says_what_it_cannot(cluster_run):
    run_dir, record, api, output = cluster_run
    applied = [r.body for r in api.requests if r.method == "PATCH" and "horizontalpodautoscalers" in r.path
               and not r.query.get("dryRun")]
    assert applied[-1]["spec"]["behavior"] == {  # Kubernetes' defaults written out, x 0.1, in whole seconds
        "scaleUp": {"selectPolicy": "Max", "stabilizationWindowSeconds": 0, "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 2}, {"type": "Percent", "value": 100, "periodSeconds": 2}]},
        "scaleDown": {"selectPolicy": "Max", "stabilizationWindowSeconds": 30, "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 2}]},
    }
    kept = list(yaml.safe_load_all((run_dir / "deployment.yaml").read_text()))
    assert kept[-1]["spec"]["behavior"] == applied[-1]["spec"]["behavior"]  # the run folder keeps what was applied
    on_cluster = record["time_scale_on_cluster"]
    assert on_cluster["time_scale"] == 0.1
    assert "scale-down stabilisation window 300 s -> 30 s" in on_cluster["compressed"]
    assert "scale-down policy 100 % per 15 s -> per 2 s (1.5 s in whole seconds)" in on_cluster["compressed"]
    assert any("15 s sync period" in item for item in on_cluster["not_compressed"])
    assert any("metrics-server's 15 s resolution" in item for item in on_cluster["not_compressed"])
    warning = output[output.index("warning: --time-scale 0.1 on a real cluster"):]
    assert output.index("warning: --time-scale") < output.index("[3] apply")  # said as the warm-up starts
    assert "not the HPA controller's 15 s sync period" in " ".join(warning.split())
    report = (run_dir / "report.md").read_text()
    assert "| not compressed by --time-scale 0.1 | the HPA controller's 15 s sync period" in report


def test_an_uncompressed_run_applies_the_spec_as_it_is():
    from servetune.config import DeploymentSpec
    from servetune.deploy.compressed_hpa import compressed_spec

    spec = DeploymentSpec.model_validate({"autoscaling": {"min_replicas": 1, "max_replicas": 3}})
    same, compression = compressed_spec(spec, 1.0)
    assert same is spec and compression.record() == {"time_scale": 1.0, "compressed": [], "not_compressed": []}
    fixed, compression = compressed_spec(DeploymentSpec(), 0.1)
    assert fixed.autoscaling is None and compression.compressed == [] and compression.not_compressed


def test_a_replica_waiting_for_capacity_is_in_the_report(cluster_run):
    run_dir = cluster_run[0]
    states = (run_dir / "replica_states.csv").read_text().splitlines()
    assert states[1].split(",")[1:5] == ["1", "0", "0", "0"]  # before the scale-up: one ready replica
    assert states[-1].split(",")[1:5] == ["1", "1", "1", "0"]  # then one starting, one Pending
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["max_pending"] == 1 and summary["pending_replica_seconds"] > 0
    assert "| replicas waiting for capacity | up to 1 waiting for capacity (Pending)," in (
        run_dir / "report.md").read_text()


def test_the_autoscalers_decisions_and_conditions_are_in_the_events_log(cluster_run):
    run_dir, _, _, output = cluster_run
    events = (run_dir / "events.log").read_text()
    for line in ("autoscaler: 1 replica(s) desired (current 1, CPU 42% of target 70%)",
                 "autoscaler: 3 replica(s) desired (current 3, CPU 42% of target 70%)",
                 ("autoscaler event Normal SuccessfulRescale: New size: 3; reason: cpu resource utilization "
                  "(percentage of request) above target"),
                 ("autoscaler condition ScalingLimited=False (DesiredWithinRange: the desired count is within the "
                  "acceptable range)"),
                 ("autoscaler condition ScalingLimited=True (TooManyReplicas: the desired replica count is more than "
                  "the maximum replica count)")):
        assert line in events
        assert line in " ".join(output.split())  # and on the terminal


def run_against(api: FakeApiServer, folder, url: str | None = None, repeats: int = 1):
    """A run (a 20 s phase, compressed to 2 s, `repeats` times) of an autoscaled spec against the fake API
    server; its result and terminal output."""
    server = serve(api)
    try:
        spec = folder / "k8s.yaml"
        spec.write_text("name: ml-app\nautoscaling: {min_replicas: 1, max_replicas: 3}\n")
        profile = folder / "short.yaml"
        profile.write_text(yaml.safe_dump({"name": "short", "phases": [
            {"users": 2, "delay": 0.1, "duration_s": 20, "repeats": repeats}]}))
        console = Console(file=(output := io.StringIO()), width=200)
        result = evaluate(RunOptions(
            spec=str(spec), out=folder / "run", backend=BackendName.KUBERNETES, profile=str(profile), time_scale=0.1,
            kubeconfig=api.kubeconfig(folder / "kubeconfig"), url=url, progress=False,
        ), console=console)
        return result, " ".join(output.getvalue().split())
    finally:
        server.shutdown()
        server.server_close()


def test_a_namespaced_user_without_url_is_told_up_front_to_pass_one(tmp_path):
    api = FakeApiServer(namespaces={"default"}, cluster_scope_forbidden=True)
    result, _ = run_against(api, tmp_path)
    assert result.status == "failed" and result.record.failed_step == "warm-up"
    assert result.record.error == (
        "the kubeconfig's user may not list nodes at the cluster scope, which finds a node's address for the "
        "NodePort: pass --url http://NODE_ADDRESS:32000")
    assert not [r for r in api.requests if r.method in ("PATCH", "POST", "DELETE")
                and "selfsubjectaccessreviews" not in r.path]  # nothing was applied, nothing to delete
    reviews = [r.body["spec"]["resourceAttributes"] for r in api.requests if "selfsubjectaccessreviews" in r.path]
    assert {"verb": "list", "group": "", "resource": "nodes"} in reviews
    assert {"verb": "patch", "group": "apps", "resource": "deployments", "namespace": "default"} in reviews


def test_a_role_without_deployments_is_refused_with_the_servers_reason_and_events_only_warned(tmp_path):
    api = FakeApiServer(namespaces={"default"}, denied={"deployments.apps", "events"},
                        denial_reason='RBAC: role.rbac.authorization.k8s.io "servetune" not found')
    result, output = run_against(api, tmp_path, url="http://127.0.0.1:9")
    assert result.record.failed_step == "warm-up"
    reason = ' (RBAC: role.rbac.authorization.k8s.io "servetune" not found)'
    assert result.record.error == (
        "the kubeconfig's user may not " + ", ".join(f"{verb} deployments.apps{reason}" for verb in
                                                     ("get", "create", "patch", "delete"))
        + " in namespace default (the README's Permissions section has the Role a run needs)")
    assert (f"warning: the kubeconfig's user may not list events{reason} in namespace default: the autoscaler's "
            "events and the pods' warnings are not read") in output
    assert not [r for r in api.requests if r.method == "PATCH"]


def test_other_work_on_the_replicas_nodes_comes_from_the_metrics_api(tmp_path):
    api = FakeApiServer(namespaces={"default"}, node_metrics=[node_metrics("node-1", "1200m")],
                        metrics=[pod_metrics("ml-app-7d9f8-0", "default", {"ml-app": {"cpu": "300m", "memory": "180Mi"}},
                                             {"app": "ml-app"})])
    service = DeployedService()
    try:
        result, _ = run_against(api, tmp_path, url=service.url)
    finally:
        service.close()
    record = result.record.as_json()
    assert record["status"] == "completed"
    node_cpu = record["node_cpu"]
    assert (node_cpu["nodes"], node_cpu["busy_cores"], node_cpu["replica_cores"], node_cpu["others_cores"]) == (
        ["node-1"], 1.2, 0.3, 0.9)
    assert node_cpu["samples"] == record["monitor_samples"] > 0
    assert "less servetune's own processes (the load driver)" in record["host_cpu"]["counts"]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["others_cores"] == 0.9 and summary["others_counts"].startswith("the replicas' nodes' CPU")
    assert ("| CPU other processes took during the load | 0.90 cores (the replicas' nodes' CPU (metrics.k8s.io "
            "NodeMetrics) less the replicas' own") in (result.run_dir / "report.md").read_text()


def test_a_user_who_may_not_read_node_metrics_gets_the_reason(tmp_path):
    from servetune.deploy.kubernetes_client import connect
    from servetune.monitor.node_usage import NodeOthers

    api = FakeApiServer(cluster_scope_forbidden=True, node_metrics=[node_metrics("node-1", "1")])
    server = serve(api)
    try:
        others = NodeOthers(connect(api.kubeconfig(tmp_path / "kubeconfig")).api_client)
        others.add({"node-1"}, 0.25)
    finally:
        server.shutdown()
        server.server_close()
    assert others.record() == {"unavailable": "the kubeconfig's user may not list nodes.metrics.k8s.io (HTTP 403)"}


def test_a_crash_loop_with_no_replica_ready_fails_the_run_and_keeps_the_rows(tmp_path, monkeypatch):
    """As the local backend does for a deployment that dies during the load: once the first of ten runs is
    logged, the only replica is OOM-killed again and again (the kubelet backs off: CrashLoopBackOff), so no
    replica is ready; the run fails with the reason at the next sample and keeps the rows measured."""
    monkeypatch.setattr(cluster_module, "POLL_SECONDS", 0.01)
    api = FakeApiServer(namespaces={"default"})
    load_log = tmp_path / "run" / "load_output.csv"

    def crash_loop(number: int) -> None:
        if api.pod_waiting is None and load_log.is_file() and len(load_log.read_text().splitlines()) >= 2:
            with api.lock:
                api.pod_waiting = ("CrashLoopBackOff", ("back-off 20s restarting failed container=ml-app "
                                   "pod=ml-app-7d9f8-0_default(0b6c0000-51f2-4c2e-9a3d-6a8f2f0c1e77)"))
                api.last_terminated = {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2026-11-29T05:01:10Z",
                                       "finishedAt": "2026-11-29T05:01:12Z",
                                       "containerID": "containerd://" + "ef" * 32}

    service = DeployedService(crash_loop)
    try:
        result, output = run_against(api, tmp_path, url=service.url, repeats=10)
    finally:
        service.close()
    record = result.record.as_json()
    assert result.status == "failed" and record["failed_step"] == "load", output
    assert record["error"] == (
        "the deployment failed during the load: no replica is ready: pod ml-app-7d9f8-0 is crash-looping "
        "(CrashLoopBackOff: last exit code 137 (OOMKilled), 4 restarts); raise limits.memory_mb; see "
        "`kubectl logs ml-app-7d9f8-0 -c ml-app --previous`")
    assert record["restarts"] == 4 and record["restart_reasons"] == {"OOMKilled": 4}
    assert record["steps"][-1]["name"] == "tear-down"  # what was applied is deleted
    rows = read_siege_log(load_log)
    assert 1 <= len(rows) < 10 and rows[0].okay > 0
    assert record["analysis"] == "completed" and summarize(result.run_dir).okay >= rows[0].okay


def test_a_crash_loop_beside_a_ready_replica_is_counted_and_the_run_goes_on(tmp_path):
    from servetune.deploy.kubernetes import PodStatus, load_failure

    looping = PodStatus(name="ml-app-7d9f8-1", phase="Running", ready=False, restarts=3,
                        reason="CrashLoopBackOff: last exit code 137 (OOMKilled)")
    serving = PodStatus(name="ml-app-7d9f8-0", phase="Running", ready=True, restarts=0)
    starting = PodStatus(name="ml-app-7d9f8-2", phase="Running", ready=False, restarts=0)
    assert load_failure([serving, looping]) is None  # the other replica serves: counted in restarts only
    assert load_failure([starting]) is None  # not ready yet, nothing wrong: e.g. a restart's readiness probe
    assert load_failure([starting, looping]).startswith("no replica is ready: pod ml-app-7d9f8-1 is crash-looping")
