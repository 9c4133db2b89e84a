"""Write a tuned spec's numbers back into the user's own Kubernetes manifest, in their layout.

The reverse of `k8s_import.py`: their objects keep their names, labels, selectors, Service (name, type,
ports) and probes; only the numbers the tune chose (replicas, requests, limits, the autoscaler's bounds,
target and behavior) and the container image change. An autoscaler is added (autoscaling/v2, named after
their Deployment) when the pick autoscales and they had none, and removed when the pick is a fixed count.
Workers, threads and the model file are the image's business (see `tune/chosen.py`'s Dockerfile), so the
manifest does not grow servetune-specific fields. A pure step: parsed YAML documents in, documents and
notes out; `manifest_diff` shows the change as a unified diff of the two, both written the same way.
"""

from __future__ import annotations

import copy
import difflib

import yaml

from servetune.config import DeploymentSpec, ScalingRules
from servetune.deploy.hpa import DOWNSCALE_STABILIZATION_S
from servetune.deploy.manifest_fields import ManifestError, name_of
from servetune.deploy.manifests import resources as spec_resources
from servetune.deploy.manifests import scaling_rules


def updated_manifest(documents: list, spec: DeploymentSpec, image: str) -> tuple[list, list[str]]:
    """Their documents with the spec's numbers and `image`; notes say what was added or removed."""
    objects = [copy.deepcopy(doc) for doc in documents if isinstance(doc, dict)]
    deployments = [doc for doc in objects if doc.get("kind") == "Deployment"]
    if len(deployments) != 1:
        raise ManifestError(f"expected one Deployment, found {len(deployments)}")
    deployment, notes = deployments[0], []
    update_deployment(deployment, spec, image)
    autoscalers = [doc for doc in objects if doc.get("kind") == "HorizontalPodAutoscaler"]
    if spec.autoscaling is None:
        for hpa in autoscalers:
            objects.remove(hpa)
            replicas = f"{spec.replicas} replica{'s' if spec.replicas != 1 else ''}"
            notes.append(f"HorizontalPodAutoscaler {name_of(hpa)}: removed (the pick is a fixed count of {replicas})")
    elif autoscalers:
        for hpa in autoscalers:
            notes.extend(update_autoscaler(hpa, spec))
    else:
        objects.append(new_autoscaler(deployment, spec))
        notes.append(f"HorizontalPodAutoscaler {name_of(deployment)}: added (the pick autoscales)")
    return objects, notes


def update_deployment(deployment: dict, spec: DeploymentSpec, image: str) -> None:
    body = deployment.setdefault("spec", {})
    body["replicas"] = spec.autoscaling.min_replicas if spec.autoscaling else spec.replicas
    container = body["template"]["spec"]["containers"][0]
    container["image"] = image
    amounts, resources = spec_resources(spec), container.setdefault("resources", {})
    for kind in ("requests", "limits"):  # in place: the manifest keeps its own key order
        if kind in amounts:
            resources[kind] = amounts[kind]
        else:
            resources.pop(kind, None)


def update_autoscaler(hpa: dict, spec: DeploymentSpec) -> list[str]:
    """Bounds, target and behavior set in the HPA's own API version (v1 has no behavior: a note then)."""
    scaling = spec.autoscaling
    assert scaling is not None
    body = hpa.setdefault("spec", {})
    body["minReplicas"], body["maxReplicas"] = scaling.min_replicas, scaling.max_replicas
    if str(hpa.get("apiVersion", "")).endswith("/v1"):
        body["targetCPUUtilizationPercentage"] = scaling.target_cpu_utilization
        if not default_behavior(scaling.behavior):
            return [(f"HorizontalPodAutoscaler {name_of(hpa)}: autoscaling/v1 has no behavior field; the pick's "
                    "scaling behavior is not written (Kubernetes' default applies)")]
        return []
    metrics = body.setdefault("metrics", [])
    cpu = [m for m in metrics if (m.get("resource") or {}).get("name") == "cpu"]
    if cpu:
        cpu[0]["resource"]["target"] = {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization}
    else:
        metrics.append(cpu_metric(scaling.target_cpu_utilization))
    behavior = behavior_body(scaling.behavior)
    if behavior:
        body["behavior"] = behavior
    else:
        body.pop("behavior", None)
    return []


def default_behavior(behavior) -> bool:
    """True when the behavior is Kubernetes' own (what an HPA without `behavior` does)."""
    if behavior is None:
        return True
    down = behavior.scale_down
    return behavior.scale_up is None and (down is None or (
        down.stabilization_window_seconds in (None, DOWNSCALE_STABILIZATION_S) and not down.policies))


def cpu_metric(target: int) -> dict:
    return {"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}


def behavior_body(behavior) -> dict:
    if behavior is None:
        return {}
    rules: dict[str, ScalingRules | None] = {"scaleUp": behavior.scale_up, "scaleDown": behavior.scale_down}
    return {key: scaling_rules(value) for key, value in rules.items() if value is not None}


def new_autoscaler(deployment: dict, spec: DeploymentSpec) -> dict:
    scaling = spec.autoscaling
    assert scaling is not None
    metadata = {"name": name_of(deployment)}
    if "namespace" in (deployment.get("metadata") or {}):
        metadata["namespace"] = deployment["metadata"]["namespace"]
    body = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name_of(deployment)},
            "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
            "metrics": [cpu_metric(scaling.target_cpu_utilization)]}
    behavior = behavior_body(scaling.behavior)
    if behavior:
        body["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": metadata, "spec": body}


def manifest_text(documents: list) -> str:
    """Documents as YAML in their own key order (what the tune writes and what the diff compares)."""
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, explicit_start=True)


def manifest_diff(before: list, after: list, before_name: str, after_name: str) -> str:
    """A unified diff of the two manifests, each written by `manifest_text` (so only content differs)."""
    lines = difflib.unified_diff(manifest_text(before).splitlines(keepends=True),
                                 manifest_text(after).splitlines(keepends=True), before_name, after_name)
    return "".join(lines)
