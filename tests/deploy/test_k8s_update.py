"""A tuned spec written back into the user's own manifest: their names, labels, Service and probes kept."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from servetune.config import AutoscalingSpec, DeploymentSpec, ResourceAmounts, ScalingBehavior, ScalingRules
from servetune.deploy.k8s_import import ManifestError
from servetune.deploy.k8s_update import manifest_diff, manifest_text, updated_manifest
from servetune.deploy.manifests import KUBERNETES_VERSION

COURSE = Path(__file__).parents[1] / "data" / "course_manifests"
IMAGE = "node-0:5000/ml-app:servetune-mine-160-int8"


def course(name: str) -> list:
    return list(yaml.safe_load_all((COURSE / name).read_text()))


def of_kind(documents: list, kind: str) -> dict:
    (found,) = [doc for doc in documents if doc["kind"] == kind]
    return found


def tuned(autoscaled: bool, down_s: int = 300, limits: bool = True) -> DeploymentSpec:
    hpa = None
    if autoscaled:
        hpa = AutoscalingSpec(min_replicas=1, max_replicas=3, target_cpu_utilization=60, behavior=ScalingBehavior(
            scale_down=ScalingRules(stabilization_window_seconds=down_s)))
    return DeploymentSpec(replicas=2, requests=ResourceAmounts(cpu=0.5, memory_mb=96),
                          limits=ResourceAmounts(cpu=1.0, memory_mb=192) if limits else None, autoscaling=hpa)


def test_only_the_numbers_and_the_image_change_in_the_courses_hpa_manifest():
    before = course("deployment_hpa.yaml")
    after, notes = updated_manifest(before, tuned(autoscaled=True), IMAGE)
    assert notes == []
    diff = manifest_diff(before, after, "deployment.yaml", "tuned.yaml")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert f"+        image: {IMAGE}" in changed and "-        image: node-0:5000/ml-app:0.0.1" in changed
    keys = {line[1:].split(":")[0].strip() for line in changed}
    assert keys <= {"image", "requests", "limits", "cpu", "memory", "maxReplicas",
                    "targetCPUUtilizationPercentage"}, diff
    deployment, service, hpa = (of_kind(after, kind) for kind in ("Deployment", "Service", "HorizontalPodAutoscaler"))
    assert [doc["kind"] for doc in after] == [doc["kind"] for doc in before]  # their order
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "96Mi"},
                                      "limits": {"cpu": "1", "memory": "192Mi"}}
    assert (hpa["spec"]["maxReplicas"], hpa["spec"]["targetCPUUtilizationPercentage"]) == (3, 60)
    # names, Service untouched
    assert deployment["metadata"] == {"name": "ml-app-hpa"} and service == of_kind(before, "Service")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"path": "/test", "port": 5000}  # their probe, as it was
    assert hpa["apiVersion"] == "autoscaling/v1"
    for obj in after:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_v1_autoscaler_cannot_hold_a_scaling_behavior_and_says_so():
    after, notes = updated_manifest(course("deployment_hpa.yaml"), tuned(autoscaled=True, down_s=60), IMAGE)
    assert notes == [("HorizontalPodAutoscaler ml-app-hpa: autoscaling/v1 has no behavior field; the pick's "
                      "scaling behavior is not written (Kubernetes' default applies)")]
    assert "behavior" not in of_kind(after, "HorizontalPodAutoscaler")["spec"]


def test_a_fixed_pick_removes_the_autoscaler_and_an_autoscaled_one_adds_a_v2_autoscaler():
    fixed, notes = updated_manifest(course("deployment_hpa.yaml"), tuned(autoscaled=False, limits=False), IMAGE)
    assert [doc["kind"] for doc in fixed] == ["Service", "Deployment"]
    assert notes == ["HorizontalPodAutoscaler ml-app-hpa: removed (the pick is a fixed count of 2 replicas)"]
    deployment = of_kind(fixed, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "limits" not in deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    plain = [doc for doc in course("deployment_hpa.yaml") if doc["kind"] != "HorizontalPodAutoscaler"]
    added, notes = updated_manifest(plain, tuned(autoscaled=True, down_s=60), IMAGE)
    assert notes == ["HorizontalPodAutoscaler ml-app-hpa: added (the pick autoscales)"]
    hpa = added[-1]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["name"] == "ml-app-hpa"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    for obj in [*fixed, *added]:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert manifest_text(added).count("---") == 3


def test_a_manifest_without_one_deployment_is_refused():
    with pytest.raises(ManifestError, match="expected one Deployment, found 0"):
        updated_manifest([course("deployment_hpa.yaml")[1]], tuned(autoscaled=False), IMAGE)
