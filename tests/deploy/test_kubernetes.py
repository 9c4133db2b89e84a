"""Contract tests for deploy/kubernetes.py and the `servetune deploy apply|status|delete` commands.

No Kubernetes control plane can run on this project's machines, so these tests run the real `kubernetes`
client against the loopback API server of tests/kubernetes_api.py, which answers as kube-apiserver does
(server-side apply with field managers, dry runs, the nodePort allocator, `Status` objects for errors).
They check the contract (which requests are sent, with which bodies, and how answers are interpreted),
not a real cluster's behaviour.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kubernetes_api import TIMESTAMP, TOKEN, FakeApiServer, serve, status
from servetune.cli import app
from servetune.deploy import kubernetes as cluster_module
from servetune.deploy.kubernetes import KubernetesCluster
from servetune.deploy.kubernetes_client import KubernetesError, connect
from servetune.deploy.manifests import render_manifests, render_warmup
from servetune.deploy.spec import load_deployment_spec

APPLY_QUERY = {"fieldManager": ["servetune"], "force": ["true"]}


@pytest.fixture
def api_server():
    state = FakeApiServer(namespaces={"default"})
    server = serve(state)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setattr(cluster_module, "POLL_SECONDS", 0.01)


@pytest.fixture
def kubeconfig(tmp_path, api_server) -> Path:
    return api_server.kubeconfig(tmp_path / "kubeconfig")


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


def test_apply_is_a_server_side_apply_of_every_object_after_a_dry_run(api_server, kubeconfig, spec_file):
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "20")
    assert result.exit_code == 0, result.output
    expected = render_manifests(load_deployment_spec(spec_file))
    patches = [r for r in api_server.requests if r.method == "PATCH"]
    paths = ["/apis/apps/v1/namespaces/default/deployments/ml-app", "/api/v1/namespaces/default/services/ml-app",
             "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/ml-app"]
    assert [r.path for r in patches] == paths + paths  # every object dry-run first, then applied
    assert [r.query.get("dryRun") for r in patches] == [["All"]] * 3 + [None] * 3
    assert all(r.content_type == "application/apply-patch+yaml" for r in patches)
    assert all({k: r.query[k] for k in APPLY_QUERY} == APPLY_QUERY for r in patches)
    assert [r.body for r in patches[3:]] == expected
    assert not [r for r in api_server.requests if r.method in ("POST", "PUT")]
    # One more replica became ready per poll: 1/3, 2/3, 3/3; the command waited for all three.
    assert "deployment/ml-app created" in result.stdout and "horizontalpodautoscaler/ml-app created" in result.stdout
    assert "deployment/ml-app: 3/3 replicas ready" in result.stdout
    assert "3/3" in result.stderr  # the progress display
    assert "warning" not in result.stderr


def test_the_api_calls_of_apply_status_and_delete(api_server, kubeconfig, spec_file):
    """The requests each command makes, in order (the README's RBAC section lists what they need)."""
    assert deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "20").exit_code == 0
    deployment, service, hpa = ("/apis/apps/v1/namespaces/default/deployments/ml-app",
                                "/api/v1/namespaces/default/services/ml-app",
                                "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/ml-app")
    applied = [f"PATCH {path}{mode}" for mode in (" (dry run)", "") for path in (deployment, service, hpa)]
    poll = [f"GET {deployment}", "GET /api/v1/namespaces/default/pods"]
    assert api_server.calls() == [
        "GET /apis/", "GET /apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io", "GET /version/",
        f"GET {deployment}", *applied, *poll, "GET /api/v1/namespaces/default/events", *poll, *poll,
    ]
    api_server.requests.clear()
    assert deploy("status", spec_file, "--kubeconfig", kubeconfig).exit_code == 0
    assert api_server.calls() == [*poll, f"GET {hpa}"]
    api_server.requests.clear()
    assert deploy("delete", spec_file, "--kubeconfig", kubeconfig).exit_code == 0
    assert api_server.calls() == [f"DELETE {hpa}", f"DELETE {service}", f"DELETE {deployment}",
                                  *["GET /api/v1/namespaces/default/pods"] * 3]


def test_apply_again_configures_and_keeps_the_autoscalers_replica_count(api_server, kubeconfig, spec_file):
    spec = load_deployment_spec(spec_file)
    cluster = KubernetesCluster(kubeconfig)
    assert cluster.apply(spec) == [
        "deployment/ml-app created", "service/ml-app created", "horizontalpodautoscaler/ml-app created"
    ]
    api_server.scale("default", "ml-app", 5)  # the HPA scaled up
    assert cluster.apply(spec) == [
        "deployment/ml-app configured", "service/ml-app configured", "horizontalpodautoscaler/ml-app configured"
    ]
    deployment = api_server.objects[("deployments", "default", "ml-app")]
    assert deployment["spec"]["replicas"] == 5
    assert deployment["metadata"]["generation"] == 2  # the scale-up; the re-apply changed nothing
    assert api_server.sent("PATCH", "deployments/ml-app")[-1]["spec"]["replicas"] == 5
    service = api_server.objects[("services", "default", "ml-app")]
    assert service["spec"]["clusterIP"] == "10.96.0.17" and service["spec"]["ports"][0]["nodePort"] == 32000


def test_apply_takes_over_an_app_left_over_by_a_plain_create(api_server, kubeconfig, spec_file):
    """The real cluster's failure: `create` of the NodePort Service again is a 422, not a 409."""
    spec = load_deployment_spec(spec_file)
    for obj in render_manifests(spec):  # as `kubectl create -f` (or an older servetune) left them
        group = "api/v1" if obj["kind"] == "Service" else f"apis/{obj['apiVersion']}"
        resource = {"Deployment": "deployments", "Service": "services"}.get(obj["kind"], "horizontalpodautoscalers")
        code, _ = send(api_server, "POST", f"/{group}/namespaces/default/{resource}", obj)
        assert code == 201
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "20")
    assert result.exit_code == 0, result.output
    assert "service/ml-app configured" in result.stdout
    assert set(api_server.managers[("services", "default", "ml-app")]) == {"before-first-apply", "servetune"}


def test_a_port_held_by_another_service_changes_nothing_and_says_so(api_server, kubeconfig, spec_file):
    other = render_manifests(load_deployment_spec(spec_file))[1]
    other["metadata"]["name"] = "someone-else"
    assert send(api_server, "POST", "/api/v1/namespaces/default/services", other)[0] == 201
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig)
    assert_clear_failure(
        result, 'apply service/ml-app (dry run): invalid: Service "ml-app" is invalid: spec.ports[0].nodePort: '
        "Invalid value: 32000: provided port is already allocated",
    )
    assert ("deployments", "default", "ml-app") not in api_server.objects  # the dry run stopped it all


def test_a_failure_half_way_names_what_was_applied(api_server, kubeconfig, spec_file):
    api_server.write_errors["horizontalpodautoscalers"] = (
        500, status(500, "InternalError", "Internal error occurred: etcdserver: request timed out"))
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig)
    assert_clear_failure(
        result, "apply horizontalpodautoscaler/ml-app: HTTP 500: Internal error occurred: etcdserver: request timed "
        "out (already applied: deployment/ml-app created, service/ml-app created)",
    )


def test_a_fixed_spec_removes_the_previous_autoscaler(api_server, kubeconfig, spec_file, tmp_path):
    cluster = KubernetesCluster(kubeconfig)
    cluster.apply(load_deployment_spec(spec_file))
    actions = cluster.apply(load_deployment_spec("fixed-1"))
    assert "horizontalpodautoscaler/ml-app deleted (the spec has fixed replicas)" in actions
    assert ("horizontalpodautoscalers", "default", "ml-app") not in api_server.objects
    assert api_server.objects[("deployments", "default", "ml-app")]["spec"]["replicas"] == 1


# --- the fake answers as kube-apiserver does -----------------------------------------------------


def send(api_server, method: str, path: str, body: dict | None = None,
         content_type: str = "application/json") -> tuple[int, dict]:
    """One raw request to the fake API server: its status code and JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api_server.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_fake_create_twice_the_port_allocator_answers_before_the_name_check(api_server, spec_file):
    deployment, service, _ = render_manifests(load_deployment_spec(spec_file))
    assert send(api_server, "POST", "/api/v1/namespaces/default/services", service)[0] == 201
    code, answer = send(api_server, "POST", "/api/v1/namespaces/default/services", service)
    assert code == 422 and answer["reason"] == "Invalid" and answer["kind"] == "Status"
    assert answer["message"] == ('Service "ml-app" is invalid: spec.ports[0].nodePort: Invalid value: 32000: '
                                 "provided port is already allocated")
    assert answer["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.ports[0].nodePort",
                                            "message": "Invalid value: 32000: provided port is already allocated"}]
    assert send(api_server, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment)[0] == 201
    code, answer = send(api_server, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment)
    assert (code, answer["reason"], answer["message"]) == (409, "AlreadyExists",
                                                           'deployments.apps "ml-app" already exists')
    assert answer["details"] == {"name": "ml-app", "group": "apps", "kind": "deployments"}


def test_fake_not_found_and_patch_types(api_server, spec_file):
    code, answer = send(api_server, "GET", "/apis/apps/v1/namespaces/default/deployments/absent")
    assert (code, answer["status"], answer["reason"]) == (404, "Failure", "NotFound")
    assert answer["message"] == 'deployments.apps "absent" not found'
    path = "/apis/apps/v1/namespaces/default/deployments/ml-app"
    deployment = render_manifests(load_deployment_spec(spec_file))[0]
    code, answer = send(api_server, "PATCH", path, deployment, "application/apply-patch+yaml")
    assert code == 422 and "fieldManager: Required value: is required for apply patch" in answer["message"]
    code, _ = send(api_server, "PATCH", path + "?fieldManager=kubectl", deployment, "application/apply-patch+yaml")
    assert code == 201  # apply creates what is missing
    changed = json.loads(json.dumps(deployment))
    changed["spec"]["replicas"] = 7
    code, answer = send(api_server, "PATCH", path + "?fieldManager=servetune", changed, "application/apply-patch+yaml")
    assert (code, answer["reason"]) == (409, "Conflict")
    assert answer["message"] == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    code, answer = send(api_server, "PATCH", path + "?fieldManager=servetune&force=true", changed,
                        "application/apply-patch+yaml")
    assert code == 200 and answer["spec"]["replicas"] == 7 and answer["metadata"]["generation"] == 2
    code, answer = send(api_server, "PATCH", path, {"spec": {"replicas": 2}}, "application/merge-patch+json")
    assert code == 200 and answer["spec"]["replicas"] == 2
    code, answer = send(api_server, "PATCH", path, [{"op": "remove", "path": "/spec"}], "application/json")
    assert (code, answer["reason"]) == (415, "UnsupportedMediaType")


def test_fake_refuses_the_sleep_action_before_1_30(api_server, spec_file):
    api_server.version = (1, 24)
    deployment = render_manifests(load_deployment_spec(spec_file))[0]
    code, answer = send(api_server, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment)
    assert code == 422 and answer["message"] == (
        'Deployment.apps "ml-app" is invalid: spec.template.spec.containers[0].lifecycle.preStop: '
        "Required value: must specify a handler type")
    older = render_manifests(load_deployment_spec(spec_file), sleep_action=False)[0]
    assert send(api_server, "POST", "/apis/apps/v1/namespaces/default/deployments", older)[0] == 201


# --- the server version ---------------------------------------------------------------------------


def test_before_1_30_the_pre_stop_pause_is_an_exec_of_sleep(api_server, kubeconfig, spec_file):
    api_server.version = (1, 24)
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "20")
    assert result.exit_code == 0, result.output
    container = api_server.objects[("deployments", "default", "ml-app")]["spec"]["template"]["spec"]["containers"][0]
    seconds = load_deployment_spec(spec_file).pre_stop_seconds
    assert container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", str(seconds)]}}}


def test_a_server_older_than_1_23_is_refused_before_any_change(api_server, kubeconfig, spec_file):
    api_server.version = (1, 22)
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig)
    assert_clear_failure(result, "the cluster runs Kubernetes 1.22; servetune needs 1.23 or later")
    assert not [r for r in api_server.requests if r.method != "GET"]


# --- metrics --------------------------------------------------------------------------------------


def test_missing_metrics_api_warns_and_still_applies(api_server, kubeconfig, spec_file):
    api_server.api_groups.remove("metrics.k8s.io")
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--no-wait")
    assert result.exit_code == 0, result.output
    assert "warning: the cluster serves no metrics API (metrics.k8s.io)" in result.stderr
    assert "install metrics-server" in result.stderr
    assert ("horizontalpodautoscalers", "default", "ml-app") in api_server.objects


def test_an_unavailable_metrics_api_warns_with_its_reason(api_server, kubeconfig, spec_file):
    message = ("failing or missing response from https://10.96.1.5:443/apis/metrics.k8s.io/v1beta1: bad status "
               "from https://10.96.1.5:443/apis/metrics.k8s.io/v1beta1: 503")
    api_server.metrics_available = ("False", "FailedDiscoveryCheck", message)
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--no-wait")
    assert result.exit_code == 0, result.output
    assert (f"warning: the metrics API is not available (apiservice v1beta1.metrics.k8s.io: FailedDiscoveryCheck: "
            f"{message})") in " ".join(result.stderr.split())
    # A namespaced user may not read APIServices: one read of the metrics tells instead.
    api_server.cluster_scope_forbidden = True
    again = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--no-wait")
    assert again.exit_code == 0, again.output
    assert "the metrics API does not answer (read pod metrics: HTTP 503: the server is currently unable to handle " \
           "the request)" in " ".join(again.stderr.split())
    api_server.metrics_available = ("True", "Passed", "all checks passed")
    assert "warning" not in deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--no-wait").stderr


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
        'read deployment/ml-app: forbidden: deployments.apps "ml-app" is forbidden: User '
        '"system:serviceaccount:ci:deployer" cannot get resource "deployments" in API group "apps" in the '
        'namespace "default"',
    )
    assert result.exit_code == 1
    assert not api_server.objects


def test_unreachable_api_server(tmp_path, spec_file):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    config = FakeApiServer(port=port).kubeconfig(tmp_path / "kubeconfig")  # nothing answers there
    result = deploy("status", spec_file, "--kubeconfig", config)
    assert_clear_failure(result, f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}")


def test_no_kubeconfig(tmp_path, spec_file, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = deploy("apply", spec_file)
    assert_clear_failure(result, f"no kubeconfig found: $KUBECONFIG is unset and {tmp_path}/.kube/config "
                         "(kubectl's ~/.kube/config) does not exist, and this is not a pod in a cluster "
                         "($KUBERNETES_SERVICE_HOST is unset); pass --kubeconfig FILE")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a.yaml:~/b.yaml")
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")  # not read: $KUBECONFIG is set, as kubectl does
    listed = deploy("apply", spec_file)
    assert_clear_failure(listed, f"no kubeconfig found: $KUBECONFIG lists {tmp_path}/a.yaml, ~/b.yaml, and none "
                         "of them is a file")
    missing = deploy("status", spec_file, "--kubeconfig", tmp_path / "absent")
    assert_clear_failure(missing, f"kubeconfig {tmp_path / 'absent'}: no such file")


def test_kubeconfig_files_listed_in_KUBECONFIG_are_merged(api_server, tmp_path, monkeypatch):
    whole = yaml.safe_load(api_server.kubeconfig(tmp_path / "whole", namespace="team-a").read_text())
    clusters = {**whole, "contexts": [], "current-context": ""}
    contexts = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
                "contexts": whole["contexts"], "current-context": whole["current-context"]}
    (tmp_path / "clusters").write_text(yaml.safe_dump(clusters))
    (tmp_path / "contexts").write_text(yaml.safe_dump(contexts))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{tmp_path / 'clusters'}:{tmp_path / 'contexts'}")
    connection = connect()
    assert (connection.host, connection.namespace) == (api_server.url, "team-a")
    connection.close()


def test_in_a_pod_the_service_account_and_its_namespace_are_used(tmp_path, monkeypatch):
    """The files kubelet mounts into a pod, at paths of the test's own."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (account / "namespace").write_text("team-b\n")
    monkeypatch.setattr("kubernetes.config.incluster_config.SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr("kubernetes.config.incluster_config.SERVICE_CERT_FILENAME", str(account / "ca.crt"))
    monkeypatch.setattr("servetune.deploy.kubernetes_client.IN_CLUSTER_NAMESPACE_FILE", account / "namespace")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    connection = connect()
    assert (connection.host, connection.namespace) == ("https://10.96.0.1:443", "team-b")
    assert connection.api_client.configuration.api_key["BearerToken"].lower() == "bearer pod-token"
    connection.close()
    (account / "token").write_text("")
    with pytest.raises(KubernetesError, match="in-cluster configuration: "):
        connect()


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


def test_a_pod_that_stays_unschedulable_fails_after_the_grace_period(api_server, kubeconfig, spec_file, monkeypatch):
    monkeypatch.setattr(cluster_module, "UNSCHEDULABLE_GRACE_S", 0.05)
    api_server.unschedulable = True
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "600")
    assert_clear_failure(
        result, "deployment/ml-app: pod ml-app-7d9f8-0 cannot be scheduled (Unschedulable: 0/3 nodes are available: "
        "3 Insufficient cpu.)", "lower the spec's requests, or add or free nodes",
    )


def test_waiting_shows_the_pods_latest_warning_event(api_server, kubeconfig, spec_file):
    api_server.pod_waiting = ("ContainerCreating", "")
    api_server.warning_events = [
        ("FailedScheduling", "0/1 nodes are available: 1 node(s) had untolerated taint."),
        ("FailedCreatePodSandBox", ('Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup '
                                   'network for sandbox "4f1c": plugin type="bridge" failed (add): failed to set '
                                   "bridge addr: could not add IP address to \"cni0\": permission denied")),
    ]
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--timeout", "1")
    assert_clear_failure(
        result, "timed out after 1 s with 0/3 replicas ready: 3 ContainerCreating; latest warning: "
        "FailedCreatePodSandBox: Failed to create pod sandbox: rpc error",
    )
    live_line = result.stderr.split("error:")[0]  # the progress display, cut to the terminal's width
    assert "(3 ContainerCreating; latest warning: FailedCreatePod" in " ".join(live_line.split())
    events = [r for r in api_server.requests if r.path.endswith("/events")]
    assert events and events[0].query["fieldSelector"] == ["type=Warning,involvedObject.kind=Pod"]


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


def test_status_before_the_autoscaler_has_looked(api_server, kubeconfig, spec_file):
    api_server.hpa_observed = False
    assert deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--no-wait").exit_code == 0
    result = deploy("status", spec_file, "--kubeconfig", kubeconfig)
    assert result.exit_code == 0, result.output
    assert "autoscaler: 3..5 replicas, replicas not yet observed, CPU unknown of target 70%" in result.stdout
    assert "None" not in result.stdout


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
    pod_lists = [r.path for r in api_server.requests if r.method == "DELETE" or "/pods" in r.path]
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
    assert api_server.sent("PATCH", "deployments") == render_warmup(spec) * 2  # the dry run, then the apply
    assert api_server.ready["ml-app-warmup"] == 5
    deleted = [(r.path, r.query) for r in api_server.requests if r.method == "DELETE"]
    assert deleted == [("/apis/apps/v1/namespaces/default/deployments/ml-app-warmup",
                        {"propagationPolicy": ["Background"]})]
    assert not api_server.objects and api_server.gone["ml-app-warmup"][1] == 0


def test_status_during_a_rollout_shows_terminating_pods_as_such(api_server, kubeconfig, spec_file):
    assert deploy("apply", spec_file, "--kubeconfig", kubeconfig).exit_code == 0
    api_server.old_pods = 2  # the previous ReplicaSet's pods, deleted, still in their preStop pause
    result = deploy("status", spec_file, "--kubeconfig", kubeconfig)
    assert result.exit_code == 0, result.output
    rows = [[cell for cell in line.split() if cell != "│"] for line in result.stdout.splitlines() if "ml-app-" in line]
    old = [row for row in rows if "ml-app-5c4b7-" in row[0]]
    assert len(old) == 2 and all(row[1:3] == ["Terminating", "no"] for row in old), result.stdout
    assert all(row[1:3] == ["Running", "yes"] for row in rows if "ml-app-7d9f8-" in row[0])


def test_status_before_the_autoscaler_has_computed_anything(api_server, kubeconfig, spec_file):
    api_server.hpa_metrics_missing = True
    assert deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--no-wait").exit_code == 0
    result = deploy("status", spec_file, "--kubeconfig", kubeconfig)
    assert result.exit_code == 0, result.output
    assert ("autoscaler: 3..5 replicas, current 3, desired not computed yet (ScalingActive FailedGetResourceMetric: "
            "the HPA was unable to compute the replica count") in " ".join(result.stdout.split())
    assert "desired 0" not in result.stdout


def test_a_failed_wait_says_what_stays_on_the_cluster_and_how_to_delete_it(api_server, kubeconfig, spec_file,
                                                                           monkeypatch):
    monkeypatch.setattr(cluster_module, "UNSCHEDULABLE_GRACE_S", 0.05)
    api_server.unschedulable = True
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig)
    assert_clear_failure(result, "cannot be scheduled", "deployment/ml-app, service/ml-app, horizontalpodautoscaler/"
                         f"ml-app stay on the cluster in namespace default; delete them with: servetune deploy delete "
                         f"{spec_file} --kubeconfig {kubeconfig} (or apply with --cleanup-on-failure)")
    assert ("deployments", "default", "ml-app") in api_server.objects


def test_cleanup_on_failure_deletes_what_a_failed_apply_left(api_server, kubeconfig, spec_file, monkeypatch):
    monkeypatch.setattr(cluster_module, "UNSCHEDULABLE_GRACE_S", 0.05)
    api_server.unschedulable = True
    result = deploy("apply", spec_file, "--kubeconfig", kubeconfig, "--cleanup-on-failure", "--timeout", "20")
    assert_clear_failure(result, "cannot be scheduled", "; --cleanup-on-failure: horizontalpodautoscaler/ml-app "
                         "deleted, service/ml-app deleted, deployment/ml-app deleted")
    assert not api_server.objects
