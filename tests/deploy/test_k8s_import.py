"""The course's deployment.yaml shapes become deployment specs with their numbers, and render to objects
that pass the strict Kubernetes schemas."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity
from typer.testing import CliRunner

from servetune.cli import app
from servetune.config import DeploymentSpec
from servetune.deploy.k8s_import import ManifestError, memory_mib, translate
from servetune.deploy.manifests import KUBERNETES_VERSION, render_manifests
from servetune.deploy.spec import load_deployment_spec, read_deployment

COURSE = Path(__file__).parents[1] / "data" / "course_manifests"


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def by_kind(objects: list[dict]) -> dict[str, dict]:
    return {obj["kind"]: obj for obj in objects}


def test_hpa_manifest_keeps_every_number_and_says_what_changed(tmp_path):
    code, output = run_cli("deploy", "import", str(COURSE / "deployment_hpa.yaml"), "--out", str(tmp_path / "s.yaml"))

    assert code == 0, output
    assert "readinessProbe: httpGet /test becomes /readyz" in output
    assert "image node-0:5000/ml-app:0.0.1: not carried over" in output
    assert "autoscaled 1-5 at 40% CPU, requests 1 CPU / 2048 MiB, limits 2 CPU / 4096 MiB, LoadBalancer port 32000" in output
    spec = load_deployment_spec(tmp_path / "s.yaml")
    assert (spec.requests.cpu, spec.requests.memory_mb, spec.limits.cpu, spec.limits.memory_mb) == (1, 2048, 2, 4096)
    assert (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (1, 5)
    assert spec.autoscaling.target_cpu_utilization == 40
    assert (spec.service_type, spec.node_port, spec.container_port, spec.replicas) == ("LoadBalancer", 32000, 5000, 1)
    assert (spec.readiness_probe.initial_delay_seconds, spec.readiness_probe.period_seconds) == (5, 5)
    assert spec.model == "default"


@pytest.mark.parametrize(
    ("file_name", "replicas", "service_type", "autoscaled"),
    [("deployment_k8s.yaml", 1, "NodePort", False), ("deployment_lb.yaml", 5, "LoadBalancer", False),
     ("deployment_hpa.yaml", 1, "LoadBalancer", True)],
)
def test_course_manifests_render_to_schema_valid_objects(file_name, replicas, service_type, autoscaled):
    objects = by_kind(render_manifests(load_deployment_spec(COURSE / file_name)))

    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    deployment = objects["Deployment"]["spec"]
    assert deployment["replicas"] == replicas
    assert objects["Service"]["spec"]["type"] == service_type
    assert objects["Service"]["spec"]["ports"][0]["nodePort"] == 32000
    assert ("HorizontalPodAutoscaler" in objects) == autoscaled
    container = deployment["template"]["spec"]["containers"][0]
    assert container["name"] == "ml-app" and container["ports"][0]["containerPort"] == 5000
    if autoscaled:
        hpa = objects["HorizontalPodAutoscaler"]["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
        assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 40
        assert container["resources"] == {"requests": {"cpu": "1", "memory": "2048Mi"},
                                          "limits": {"cpu": "2", "memory": "4096Mi"}}


def leaves(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict) and obj:
        return {p: v for key, value in obj.items() for p, v in leaves(value, f"{prefix}.{key}".lstrip(".")).items()}
    if isinstance(obj, list) and obj:
        return {p: v for i, value in enumerate(obj) for p, v in leaves(value, f"{prefix}[{i}]").items()}
    return {prefix: obj}


# Where a field of the manifest lives in the rendered object when the API version moves it.
MOVED = {("HorizontalPodAutoscaler", "spec.targetCPUUtilizationPercentage"):
         "spec.metrics[0].resource.target.averageUtilization"}
K8S_PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                      "failureThreshold": 3}


def named_in(notes: list[str], path: str, value: object) -> bool:
    """A note that names this field: its value, and its key or the object it belongs to."""
    keys = [re.sub(r"\[\d+\]", "", part).rstrip("s") for part in path.split(".")[-2:]]
    return any(str(value) in note and any(key in note for key in keys) for note in notes)


@pytest.mark.parametrize("file_name", ["deployment_k8s.yaml", "deployment_lb.yaml", "deployment_hpa.yaml"])
def test_every_field_of_a_course_manifest_is_carried_over_or_named(file_name):
    """Import, render, and compare each field of the input objects with the rendered ones: equal (quantities as
    quantities), or named in a note. The rendered objects have no probe the manifest lacks, and each probe timing
    the manifest left out is Kubernetes' default, as the API server would have filled it in."""
    documents = list(yaml.safe_load_all((COURSE / file_name).read_text()))
    translation = translate(documents)
    rendered = by_kind(render_manifests(DeploymentSpec.model_validate(translation.fields)))
    for obj in documents:
        out = rendered[obj["kind"]]
        out_leaves = leaves(out)
        for path, value in leaves(obj).items():
            if named_in(translation.notes, path, value):
                continue
            got = out_leaves.get(MOVED.get((obj["kind"], path), path))
            if ".resources." in path:
                value, got = parse_quantity(str(value)), parse_quantity(str(got))
            assert got == value, f"{obj['kind']} {path}: {value!r} became {got!r} and no note says so"
    theirs = documents[-1]["spec"]["template"]["spec"]["containers"][0]
    ours = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert {key for key in ours if key.endswith("Probe")} == {key for key in theirs if key.endswith("Probe")}
    for kind in (key for key in theirs if key.endswith("Probe")):
        for timing, default in K8S_PROBE_DEFAULTS.items():
            assert ours[kind][timing] == theirs[kind].get(timing, default), (kind, timing)


def test_what_the_course_manifest_changes_is_kept():
    """The readiness probe's successThreshold 3, the Service's own name and port, the pull policy Always; no
    liveness or startup probe, and no timeout or failure threshold of servetune's own."""
    spec = load_deployment_spec(COURSE / "deployment_hpa.yaml")
    assert spec.readiness_probe.success_threshold == 3
    assert (spec.readiness_probe.timeout_seconds, spec.readiness_probe.failure_threshold) == (1, 3)
    assert spec.liveness_probe is None and spec.startup_probe is None
    assert (spec.service_name, spec.service_port, spec.image_pull_policy) == ("ml-service-lb", 6000, "Always")
    objects = by_kind(render_manifests(spec))
    assert objects["Service"]["metadata"]["name"] == "ml-service-lb"
    assert objects["Service"]["spec"]["selector"] == {"app": "ml-app-hpa"}


def test_fields_with_no_place_in_a_spec_are_named():
    documents = list(yaml.safe_load_all((COURSE / "deployment_k8s.yaml").read_text()))
    container = documents[1]["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "WORKERS", "value": "4"}]
    documents[1]["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    notes = translate(documents).notes
    assert ("Deployment ml-kube-app: spec.template.spec.containers[0].env[0].name, "
            "spec.template.spec.containers[0].env[0].value, spec.template.spec.nodeSelector.disk: not carried over "
            "(no place in a servetune spec)") in notes
    assert "container ml-kube-app becomes ml-app (the reference resource monitor counts only containers named ml-app)" in notes


def test_render_takes_a_manifest_directly_with_a_model(tmp_path):
    model = tmp_path / "food.onnx"
    code, output = run_cli("deploy", "import", str(COURSE / "deployment_lb.yaml"), "--out", str(tmp_path / "lb.yaml"),
                           "--model", str(model))
    assert code == 0, output
    assert load_deployment_spec(tmp_path / "lb.yaml").model == str(model)
    code, output = run_cli("deploy", "render", str(COURSE / "deployment_k8s.yaml"))
    assert code == 0, output
    documents = list(yaml.safe_load_all(output[output.index("---"):]))
    assert [doc["kind"] for doc in documents] == ["Deployment", "Service"]


def test_autoscaling_v2_with_behavior_and_other_metrics():
    documents = yaml.safe_load_all(
        (COURSE / "deployment_k8s.yaml").read_text()
        + """---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: ml-app}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: ml-app}
  minReplicas: 2
  maxReplicas: 8
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 65}}
  - type: Resource
    resource: {name: memory, target: {type: Utilization, averageUtilization: 80}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 120
      policies: [{type: Pods, value: 1, periodSeconds: 30}]
"""
    )
    translation = translate(list(documents))

    hpa = translation.fields["autoscaling"]
    assert (hpa["min_replicas"], hpa["max_replicas"], hpa["target_cpu_utilization"]) == (2, 8, 65)
    assert hpa["behavior"]["scale_down"] == {
        "stabilization_window_seconds": 120, "policies": [{"type": "Pods", "value": 1, "period_seconds": 30}]
    }
    assert any("metric Resource memory not carried over" in note for note in translation.notes)
    assert any("replicas 1: outside the autoscaler's bounds" in note for note in translation.notes)


def test_memory_quantities():
    assert [memory_mib(v, "x") for v in ("2Gi", "512Mi", "1G", "1048576Ki", "1073741824")] == [2048, 512, 954, 1024, 1024]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n", "expected one Deployment, found 0"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {template: {spec: {containers: []}}}\n",
         "containers is empty"),
        (("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  template:\n    spec:\n"
          "      containers:\n      - name: a\n        resources: {requests: {cpu: lots, memory: 1Gi}}\n"),
         "'lots' is not a CPU quantity"),
        (("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  template:\n    spec:\n"
          "      containers:\n      - name: a\n        env: [{name: SERVETUNE_HOLDOUT_FRACTION, value: '2'}]\n"),
         "Deployment a: labels.holdout_fraction 2 (SERVETUNE_HOLDOUT_FRACTION): Input should be less than or equal to 1"),
    ],
)
def test_bad_manifests_are_clear_errors(tmp_path, text, reason):
    source = tmp_path / "deployment.yaml"
    source.write_text(text)
    code, output = run_cli("deploy", "import", str(source), "--out", str(tmp_path / "spec.yaml"))
    assert code != 0 and reason in output and "deployment.yaml" in output and "Traceback" not in output
    assert not (tmp_path / "spec.yaml").exists()
    with pytest.raises(ManifestError):
        translate(list(yaml.safe_load_all(text)))


LABELLED = {"name": "food", "namespace": "shop", "service_type": "LoadBalancer", "node_port": 31500,
            "labels": {"holdout_fraction": 0.2, "review_below": 0.3, "feedback": True, "label_ttl_s": 600,
                       "label_rate_per_min": 30, "database": "postgresql",
                       "postgres": {"image": "postgres:16", "storage_gb": 5, "storage_class": "fast"}}}


def without_secret_data(objects: list[dict]) -> list[dict]:
    """The objects with the Secret's password and URL left out: render makes a new password each time."""
    return [{**obj, "stringData": None} if obj["kind"] == "Secret" else obj for obj in objects]


@pytest.mark.parametrize("store_last", [False, True])
def test_a_rendered_label_store_reads_back_as_the_spec_it_came_from(tmp_path, store_last):
    """`deploy render` of a spec with its own PostgreSQL, read back with -c: the app's Service is the one that
    selects the Deployment's pods (whichever comes first), the labels section comes back whole, and the only
    thing not carried over is the Secret's password, which the notes name."""
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(LABELLED))
    code, output = run_cli("deploy", "render", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out.yaml"))
    assert code == 0, output
    documents = list(yaml.safe_load_all((tmp_path / "out.yaml").read_text()))
    assert [doc["kind"] for doc in documents] == ["Secret", "Service", "StatefulSet", "Deployment", "Service"]
    if store_last:
        documents = documents[3:] + documents[:3]
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump_all(documents))

    spec, notes = read_deployment(tmp_path / "manifest.yaml")
    original = DeploymentSpec.model_validate(LABELLED)
    assert spec.labels == original.labels
    assert (spec.service_name, spec.service_port, spec.service_type, spec.node_port) == (None, None, "LoadBalancer", 31500)
    assert without_secret_data(render_manifests(spec)) == without_secret_data(render_manifests(original))
    [secret_note] = [note for note in notes if note.startswith("Secret food-labels-db")]
    assert "stringData.password" in secret_note and "a new password" in secret_note
    assert not [note for note in notes if "food-labels-db" in note and note is not secret_note]
    [app_deployment] = [doc for doc in documents if doc["kind"] == "Deployment"]
    env = app_deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    label_env = [f"env[{i}]." for i, variable in enumerate(env) if variable["name"].startswith("SERVETUNE_")]
    assert len(label_env) == 6 and not [note for note in notes if any(path in note for path in label_env)]

    code, output = run_cli("deploy", "render", str(tmp_path / "manifest.yaml"))  # the CLI reads it too
    assert code == 0, output
    assert "note: Secret food-labels-db" in output and "note: Service food-labels-db" not in output


def test_a_label_store_from_an_existing_secret_and_a_changed_store_are_named(tmp_path):
    """A spec that takes the store's URL from a Secret of its own renders no store; the import carries the
    Secret's name back. A StatefulSet edited by hand keeps its storage and image, and what servetune would
    render differently is named."""
    external = {"name": "food", "labels": {"holdout_fraction": 0.1, "database_secret": "shared-db"}}
    spec, _ = read_deployment(manifest_file(tmp_path / "external.yaml", render_manifests(
        DeploymentSpec.model_validate(external))))
    assert spec.labels == DeploymentSpec.model_validate(external).labels
    in_pod = {"name": "food", "labels": {"holdout_fraction": 0.1, "feedback": True}}  # SQLite in the pod's /tmp
    spec, notes = read_deployment(manifest_file(tmp_path / "in-pod.yaml", render_manifests(
        DeploymentSpec.model_validate(in_pod))))
    assert spec.labels == DeploymentSpec.model_validate(in_pod).labels
    assert not [note for note in notes if any(f"env[{i}]" in note for i in (2, 3, 4))]  # the label variables

    objects = render_manifests(DeploymentSpec.model_validate(LABELLED))
    stateful_set = next(obj for obj in objects if obj["kind"] == "StatefulSet")
    stateful_set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "20Gi"
    stateful_set["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "2Gi"
    objects.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "metrics"},
                    "spec": {"selector": {"app": "prometheus"}, "ports": [{"port": 9090}]}})
    spec, notes = read_deployment(manifest_file(tmp_path / "edited.yaml", objects))
    assert spec.labels.postgres.storage_gb == 20 and spec.labels.postgres.image == "postgres:16"
    assert spec.service_name is None and spec.service_port is None
    assert any(note.startswith("StatefulSet food-labels-db: spec.template.spec.containers[0].resources.limits.memory")
               and "2Gi" in note for note in notes), notes
    assert any(note.startswith("Service metrics: ") and "selects no pod of Deployment food" in note for note in notes)


def manifest_file(path: Path, objects: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(objects))
    return path
