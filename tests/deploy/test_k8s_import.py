"""The course's deployment.yaml shapes become deployment specs with their numbers, and render to objects
that pass the strict Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from servetune.cli import app
from servetune.deploy.k8s_import import ManifestError, memory_mib, translate
from servetune.deploy.manifests import KUBERNETES_VERSION, render_manifests
from servetune.deploy.spec import load_deployment_spec

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
