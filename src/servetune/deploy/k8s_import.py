"""Translate a Kubernetes manifest (the course's deployment.yaml) into a servetune deployment spec.

Takes a Deployment, an optional HorizontalPodAutoscaler (autoscaling/v1 or v2) and an optional Service
(NodePort or LoadBalancer), keeps every number that has a place in a `DeploymentSpec` (requests, limits,
replicas, HPA bounds, target and behavior, ports, probe timings) and says, in `notes`, what it could not
carry over and why. A pure step: parsed YAML documents in, spec fields and notes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SERVETUNE_PROBE_PATHS = {"readiness_probe": "/readyz", "liveness_probe": "/healthz", "startup_probe": "/readyz"}
K8S_PROBES = {"readiness_probe": "readinessProbe", "liveness_probe": "livenessProbe", "startup_probe": "startupProbe"}
PROBE_FIELDS = {"initialDelaySeconds": "initial_delay_seconds", "periodSeconds": "period_seconds",
                "timeoutSeconds": "timeout_seconds", "failureThreshold": "failure_threshold"}
MEMORY_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class ManifestError(ValueError):
    """A manifest that cannot be translated; the message says which object and field."""


@dataclass
class Translation:
    fields: dict  # DeploymentSpec fields
    notes: list[str] = field(default_factory=list)  # what was not carried over, and why


def is_manifest(documents: list) -> bool:
    """True when the YAML documents are Kubernetes objects (apiVersion and kind) rather than a spec."""
    return any(isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc for doc in documents)


def translate(documents: list) -> Translation:
    objects = [doc for doc in documents if isinstance(doc, dict)]
    deployments = [doc for doc in objects if doc.get("kind") == "Deployment"]
    if len(deployments) != 1:
        raise ManifestError(f"expected one Deployment, found {len(deployments)}")
    result = Translation(fields={})
    deployment_fields(deployments[0], result)
    for obj in objects:
        kind = obj.get("kind")
        if kind == "HorizontalPodAutoscaler":
            autoscaler_fields(obj, result)
        elif kind == "Service":
            service_fields(obj, result)
        elif kind != "Deployment":
            result.notes.append(f"{kind} {name_of(obj)}: not carried over (servetune renders Deployment, "
                                "Service and HorizontalPodAutoscaler only)")
    return result


def name_of(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def deployment_fields(obj: dict, result: Translation) -> None:
    metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    fields = result.fields
    if "name" in metadata:
        fields["name"] = metadata["name"]
    if "namespace" in metadata:
        fields["namespace"] = metadata["namespace"]
    if "replicas" in spec:
        fields["replicas"] = spec["replicas"]
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    if not containers:
        raise ManifestError(f"Deployment {name_of(obj)}: spec.template.spec.containers is empty")
    if len(containers) > 1:
        result.notes.append(f"Deployment {name_of(obj)}: {len(containers) - 1} extra container(s) not carried "
                            "over (servetune runs one serving container)")
    container = containers[0]
    if container.get("image"):
        result.notes.append(
            f"image {container['image']}: not carried over; servetune runs its own serving image "
            "(spec field `image`, default servetune:0.1.0, built with `make image`) with the model at /models"
        )
    ports = container.get("ports") or []
    if ports and "containerPort" in ports[0]:
        fields["container_port"] = ports[0]["containerPort"]
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        amounts = resources.get(kind)
        if amounts:
            fields[kind] = resource_amounts(amounts, f"Deployment {name_of(obj)}: resources.{kind}")
    if resources.get("requests") and not resources.get("limits"):
        fields["limits"] = None
    for ours, theirs in K8S_PROBES.items():
        if theirs in container:
            fields[ours] = probe_fields(container[theirs], theirs, SERVETUNE_PROBE_PATHS[ours], result)


def resource_amounts(amounts: dict, where: str) -> dict:
    if "cpu" not in amounts or "memory" not in amounts:
        raise ManifestError(f"{where}: give both cpu and memory (servetune needs both)")
    return {"cpu": cpu_cores(amounts["cpu"], where), "memory_mb": memory_mib(amounts["memory"], where)}


def cpu_cores(value, where: str) -> float:
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", text)
    if not match:
        raise ManifestError(f"{where}.cpu: {text!r} is not a CPU quantity (e.g. 1, 0.5, 500m)")
    number = float(match.group(1))
    return number / 1000 if match.group(2) else number


def memory_mib(value, where: str) -> int:
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", text)
    if not match:
        raise ManifestError(f"{where}.memory: {text!r} is not a memory quantity (e.g. 2Gi, 512Mi, 1G)")
    mib = float(match.group(1)) * MEMORY_UNITS[match.group(2) or ""] / 2**20
    return max(1, round(mib))


def probe_fields(probe: dict, kind: str, our_path: str, result: Translation) -> dict:
    http = probe.get("httpGet")
    if http is None:
        result.notes.append(f"{kind}: not an httpGet probe; servetune's probe on {our_path} is used instead")
    elif http.get("path") != our_path:
        result.notes.append(f"{kind}: httpGet {http.get('path')} becomes {our_path} (servetune's endpoint for it; "
                            "the timings are kept)")
    return {ours: probe[theirs] for theirs, ours in PROBE_FIELDS.items() if theirs in probe}


def autoscaler_fields(obj: dict, result: Translation) -> None:
    spec = obj.get("spec") or {}
    where = f"HorizontalPodAutoscaler {name_of(obj)}"
    autoscaling: dict = {"min_replicas": spec.get("minReplicas", 1)}
    if "maxReplicas" not in spec:
        raise ManifestError(f"{where}: spec.maxReplicas is missing")
    autoscaling["max_replicas"] = spec["maxReplicas"]
    if "targetCPUUtilizationPercentage" in spec:  # autoscaling/v1
        autoscaling["target_cpu_utilization"] = spec["targetCPUUtilizationPercentage"]
    for metric in spec.get("metrics") or []:  # autoscaling/v2
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu" and "averageUtilization" in target:
            autoscaling["target_cpu_utilization"] = target["averageUtilization"]
        else:
            result.notes.append(f"{where}: metric {metric.get('type')} {resource.get('name', '')} not carried over "
                                "(servetune scales on CPU utilisation only)")
    behavior = spec.get("behavior")
    if behavior:
        autoscaling["behavior"] = {
            ours: scaling_rules(behavior[theirs]) for theirs, ours in (("scaleUp", "scale_up"), ("scaleDown", "scale_down"))
            if behavior.get(theirs)
        }
    if "replicas" in result.fields and not autoscaling["min_replicas"] <= result.fields["replicas"] <= autoscaling[
        "max_replicas"
    ]:
        result.notes.append(f"Deployment replicas {result.fields['replicas']}: outside the autoscaler's bounds; "
                            "the deployment starts at minReplicas")
        del result.fields["replicas"]
    result.fields["autoscaling"] = autoscaling


def scaling_rules(rules: dict) -> dict:
    out: dict = {}
    if "stabilizationWindowSeconds" in rules:
        out["stabilization_window_seconds"] = rules["stabilizationWindowSeconds"]
    if "selectPolicy" in rules:
        out["select_policy"] = rules["selectPolicy"]
    out["policies"] = [
        {"type": policy.get("type"), "value": policy.get("value"), "period_seconds": policy.get("periodSeconds")}
        for policy in rules.get("policies") or []
    ]
    return out


def service_fields(obj: dict, result: Translation) -> None:
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind in ("NodePort", "LoadBalancer"):
        result.fields["service_type"] = kind
    else:
        result.notes.append(f"Service {name_of(obj)}: type {kind} becomes NodePort (servetune's load test reaches "
                            "the service through a node port)")
    ports = spec.get("ports") or []
    if ports and "nodePort" in ports[0]:
        result.fields["node_port"] = ports[0]["nodePort"]
    if ports and ports[0].get("port") not in (None, ports[0].get("targetPort"), result.fields.get("container_port")):
        result.notes.append(f"Service {name_of(obj)}: port {ports[0]['port']} becomes the container port "
                            "(servetune's Service listens on the container's port)")
