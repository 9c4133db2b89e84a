"""Rendered Kubernetes objects: checked offline against the real schemas (kubernetes-validate --strict at
the pinned Kubernetes version) and for the behaviour each field must carry."""

from __future__ import annotations

import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from servetune.cli import app
from servetune.config import DeploymentSpec
from servetune.deploy.manifests import (
    KUBERNETES_VERSION,
    OLDEST_KUBERNETES_VERSION,
    SLEEP_ACTION_SINCE,
    cpu_quantity,
    render_manifests,
    render_warmup,
    to_yaml,
)
from servetune.deploy.spec import SPECS_DIR, load_deployment_spec

# The newest schemas kubernetes-validate bundles: the manifests must stay valid on current clusters too.
NEWEST_VERSION = kubernetes_validate.utils.latest_version()

BEHAVIOR = {
    "scale_up": {
        "stabilization_window_seconds": 0,
        "select_policy": "Max",
        "policies": [{"type": "Pods", "value": 2, "period_seconds": 15}],
    },
    "scale_down": {
        "stabilization_window_seconds": 60,
        "select_policy": "Min",
        "policies": [
            {"type": "Percent", "value": 50, "period_seconds": 30},
            {"type": "Pods", "value": 1, "period_seconds": 60},
        ],
    },
}

SPECS = {
    "default": load_deployment_spec("default"),
    "fixed-1": load_deployment_spec("fixed-1"),
    "example": load_deployment_spec(SPECS_DIR / "example.yaml"),
    "behavior": DeploymentSpec.model_validate(
        {"threads": 2, "workers": 2, "model": "/data/food11-lite1-int8.onnx",
         "autoscaling": {"min_replicas": 2, "max_replicas": 6, "behavior": BEHAVIOR}}
    ),
    "window-only": DeploymentSpec.model_validate(
        {"autoscaling": {"behavior": {"scale_down": {"stabilization_window_seconds": 30}}}}
    ),
    "bare": DeploymentSpec.model_validate(
        {"name": "bare", "namespace": "bench", "limits": None, "pre_stop_seconds": 0, "replicas": 0}
    ),
}


def validate(obj: dict, version: str = KUBERNETES_VERSION) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES_VERSION, KUBERNETES_VERSION, NEWEST_VERSION])
def test_every_rendered_object_passes_the_strict_schema(name, version):
    sleep_action = tuple(map(int, version.split(".")[:2])) >= SLEEP_ACTION_SINCE
    objects = render_manifests(SPECS[name], sleep_action) + render_warmup(SPECS[name], sleep_action=sleep_action)
    for obj in objects:
        validate(obj, version)
    assert len(objects) >= 3


def test_strict_validation_rejects_what_kubernetes_would():
    # Proof the check has teeth: an unknown field, and a wrong type, each fail.
    deployment = render_manifests(SPECS["default"])[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["path"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    hpa = render_manifests(SPECS["default"])[2]
    hpa["spec"]["maxReplicas"] = "3"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(hpa)


def test_rendered_file_passes_the_kubernetes_validate_command(tmp_path):
    out = tmp_path / "manifests"
    for args in (["example"], ["example", "--warmup"]):
        spec_path = str(SPECS_DIR / f"{args[0]}.yaml")
        result = CliRunner().invoke(app, ["deploy", "render", spec_path, "--out", f"{out}/", *args[1:]])
        assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.yaml"))
    assert [f.name for f in files] == ["ml-app-warmup.yaml", "ml-app.yaml"]
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, *map(str, files)]
    checked = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("INFO") == 4  # deployment, service, hpa, warm-up deployment


def by_kind(objects: list[dict]) -> dict[str, dict]:
    return {obj["kind"]: obj for obj in objects}


def test_autoscaled_deployment_service_and_hpa():
    spec = SPECS["behavior"]
    objects = by_kind(render_manifests(spec))
    assert set(objects) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    deployment = objects["Deployment"]["spec"]
    assert deployment["replicas"] == 2  # starts at min_replicas
    container = deployment["template"]["spec"]["containers"][0]
    assert container["name"] == "ml-app"
    assert container["args"][-2:] == ["--workers", "2"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["SERVETUNE_THREADS"] == "2"
    assert env["SERVETUNE_MODEL"] == "/models/food11-lite1-int8.onnx"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    service = objects["Service"]["spec"]
    assert service["type"] == "NodePort"
    assert service["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 5000, "targetPort": 5000, "nodePort": 32000}
    ]
    assert service["selector"] == deployment["selector"]["matchLabels"] == {"app": "ml-app"}
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ml-app"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert hpa["spec"]["behavior"] == {
        "scaleUp": {
            "selectPolicy": "Max",
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}],
        },
        "scaleDown": {
            "selectPolicy": "Min",
            "stabilizationWindowSeconds": 60,
            "policies": [
                {"type": "Percent", "value": 50, "periodSeconds": 30},
                {"type": "Pods", "value": 1, "periodSeconds": 60},
            ],
        },
    }


def test_behavior_without_policies_leaves_them_to_kubernetes_defaults():
    hpa = by_kind(render_manifests(SPECS["window-only"]))["HorizontalPodAutoscaler"]
    assert hpa["spec"]["behavior"] == {"scaleDown": {"selectPolicy": "Max", "stabilizationWindowSeconds": 30}}
    assert "behavior" not in by_kind(render_manifests(SPECS["default"]))["HorizontalPodAutoscaler"]["spec"]


def test_fixed_spec_has_no_hpa_and_its_own_replica_count():
    objects = by_kind(render_manifests(SPECS["fixed-1"]))
    assert set(objects) == {"Deployment", "Service"}
    assert objects["Deployment"]["spec"]["replicas"] == 1
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}
    env = {item["name"] for item in container["env"]}
    # No thread count and the packaged model: the server sizes threads from the cgroup quota itself.
    assert "SERVETUNE_THREADS" not in env and "SERVETUNE_MODEL" not in env


def test_probes_drain_and_hardening():
    spec = SPECS["default"]
    pod = render_manifests(spec)[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 5000}  # the container port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 5000}
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["failureThreshold"] == spec.startup_probe.failure_threshold
    assert container["readinessProbe"]["periodSeconds"] == spec.readiness_probe.period_seconds
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": spec.pre_stop_seconds}}}
    older = render_manifests(spec, sleep_action=False)[0]["spec"]["template"]["spec"]["containers"][0]
    assert older["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", str(spec.pre_stop_seconds)]}}}
    assert pod["terminationGracePeriodSeconds"] == spec.termination_grace_period_seconds > spec.pre_stop_seconds
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    assert {"name": "PROMETHEUS_MULTIPROC_DIR", "value": "/tmp"} in container["env"]


def test_no_pre_stop_hook_and_no_limits_when_not_asked():
    objects = render_manifests(SPECS["bare"])
    container = objects[0]["spec"]["template"]["spec"]["containers"][0]
    assert "lifecycle" not in container
    assert set(container["resources"]) == {"requests"}
    assert all(obj["metadata"]["namespace"] == "bench" for obj in objects)
    assert objects[0]["spec"]["replicas"] == 0


def test_warmup_is_the_same_pod_five_times_without_service_or_hpa():
    spec = SPECS["behavior"]
    (warmup,) = render_warmup(spec)
    candidate = render_manifests(spec)[0]
    assert warmup["kind"] == "Deployment" and warmup["metadata"]["name"] == "ml-app-warmup"
    assert warmup["spec"]["replicas"] == 5
    assert warmup["spec"]["selector"]["matchLabels"] == {"app": "ml-app-warmup"}  # not behind the Service
    (warm_container,) = warmup["spec"]["template"]["spec"]["containers"]
    (candidate_container,) = candidate["spec"]["template"]["spec"]["containers"]
    # The same container, asking for almost nothing: the warm-up pulls the image, it holds no capacity.
    assert warm_container["resources"]["requests"] == {"cpu": "10m", "memory": "32Mi"}
    assert warm_container["resources"].get("limits") == candidate_container["resources"].get("limits")
    warm_container["resources"], candidate_container["resources"] = {}, {}
    assert warm_container == candidate_container
    assert "podAntiAffinity" in warmup["spec"]["template"]["spec"]["affinity"]


@pytest.mark.parametrize(
    ("cores", "quantity"), [(0.5, "500m"), (1.0, "1"), (2, "2"), (0.25, "250m"), (1.5, "1500m"), (0.001, "1m")]
)
def test_cpu_quantity(cores, quantity):
    assert cpu_quantity(cores) == quantity


def test_yaml_round_trips_and_cli_writes_to_stdout():
    objects = render_manifests(SPECS["example"])
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects
    result = CliRunner().invoke(app, ["deploy", "render", "default"])
    assert result.exit_code == 0
    assert list(yaml.safe_load_all(result.stdout)) == render_manifests(SPECS["default"])


def test_cli_render_to_a_file(tmp_path):
    out = tmp_path / "sub" / "fixed.yaml"
    result = CliRunner().invoke(app, ["deploy", "render", "fixed-1", "--out", str(out)])
    assert result.exit_code == 0 and f"wrote {out}" in result.stdout
    assert [obj["kind"] for obj in yaml.safe_load_all(out.read_text())] == ["Deployment", "Service"]
