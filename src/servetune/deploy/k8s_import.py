"""Translate a Kubernetes manifest (the course's deployment.yaml) into a servetune deployment spec.

Takes a Deployment, an optional HorizontalPodAutoscaler (autoscaling/v1 or v2) and an optional Service
(NodePort or LoadBalancer). Every field of the manifest is either carried over, so that the rendered
object has it with the same meaning (requests, limits, replicas, HPA bounds, target and behavior, the
Service's name, type and ports, the pull policy, probe timings with Kubernetes' defaults for the ones not
given, and no probe the manifest has not), or named in `notes` with what becomes of it and why. A pure
step: parsed YAML documents in, spec fields and notes out.
"""

from __future__ import annotations

from servetune.config import CONTAINER_NAME
from servetune.deploy.label_store_import import labels_section, selects
from servetune.deploy.manifest_fields import ManifestError, ObjectFields, Translation, cpu_cores, memory_bytes

__all__ = ["ManifestError", "Translation", "is_manifest", "memory_mib", "translate"]

SERVETUNE_PROBE_PATHS = {"readiness_probe": "/readyz", "liveness_probe": "/healthz", "startup_probe": "/readyz"}
K8S_PROBES = {"readiness_probe": "readinessProbe", "liveness_probe": "livenessProbe", "startup_probe": "startupProbe"}
PROBE_FIELDS = {"initialDelaySeconds": "initial_delay_seconds", "periodSeconds": "period_seconds",
                "timeoutSeconds": "timeout_seconds", "successThreshold": "success_threshold",
                "failureThreshold": "failure_threshold"}
# What the API server fills in for a probe field the manifest leaves out: the rendered probe writes them.
K8S_PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                      "failureThreshold": 3}
APP_CONTAINER = "spec.template.spec.containers[0]"  # the serving container; others are not carried over
SERVETUNE_ADDS = (
    "servetune adds to the pod what its server needs: the `servetune serve` args and environment, a /tmp "
    "volume on a read-only root filesystem, a non-root security context, a preStop pause before SIGTERM, and a "
    "rolling update that keeps every replica serving (maxUnavailable 0)"
)


def is_manifest(documents: list) -> bool:
    """True when the YAML documents are Kubernetes objects (apiVersion and kind) rather than a spec."""
    return any(isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc for doc in documents)


def translate(documents: list) -> Translation:
    objects = [doc for doc in documents if isinstance(doc, dict)]
    deployments = [doc for doc in objects if doc.get("kind") == "Deployment"]
    if len(deployments) != 1:
        raise ManifestError(f"expected one Deployment, found {len(deployments)}")
    result = Translation(fields={})
    deployment = ObjectFields(deployments[0])
    read = [deployment]
    deployment_fields(deployment, result)
    store = labels_section(objects, deployment, APP_CONTAINER, result)
    others = [obj for obj in objects if obj is not deployments[0] and not any(obj is mine for mine in store)]
    app_service = pick_service(others, deployment)
    for obj in others:
        kind = obj.get("kind")
        if kind == "HorizontalPodAutoscaler":
            read.append(ObjectFields(obj))
            autoscaler_fields(read[-1], deployment, result)
        elif obj is app_service:
            read.append(ObjectFields(obj))
            service_fields(read[-1], deployment, result)
        elif kind == "Service":
            result.notes.append(f"Service {(obj.get('metadata') or {}).get('name', '?')}: selects no pod of "
                                f"{deployment} or another of its Services: not carried over (servetune renders one)")
        else:
            result.notes.append(f"{kind} {(obj.get('metadata') or {}).get('name', '?')}: not carried over "
                                "(servetune renders Deployment, Service and HorizontalPodAutoscaler, and a label "
                                "store's PostgreSQL)")
    result.notes += [note for fields in read if (note := fields.left_over_note())]
    result.notes.append(SERVETUNE_ADDS)
    return result


def pick_service(objects: list[dict], deployment: ObjectFields) -> dict | None:
    """The app's Service: the first whose selector picks the Deployment's pods, else the only Service (its
    selector becomes the Deployment's, and a note says so)."""
    services = [obj for obj in objects if obj.get("kind") == "Service"]
    pods = deployment.peek("spec.template.metadata.labels") or {}
    return next((obj for obj in services if selects(obj, pods)), services[0] if len(services) == 1 else None)


def common_fields(obj: ObjectFields, deployment: ObjectFields, result: Translation) -> None:
    """apiVersion and kind (the rendered object's own), and a namespace that must be the Deployment's."""
    obj.get("apiVersion")
    obj.get("kind")
    namespace = obj.get("metadata.namespace")
    if obj is not deployment and namespace not in (None, deployment.get("metadata.namespace")):
        result.notes.append(f"{obj}: namespace {namespace} becomes the Deployment's "
                            f"({deployment.get('metadata.namespace', 'default')})")


def app_label(obj: ObjectFields, path: str, name: str, result: Translation, what: str) -> None:
    """A selector or label `app` must be the Deployment's name, as servetune renders it."""
    value = obj.get(path)
    if value is not None and value != name:
        result.notes.append(f"{obj}: {path} {value} becomes {name} ({what} the Deployment's name)")


def deployment_fields(obj: ObjectFields, result: Translation) -> None:
    fields = result.fields
    common_fields(obj, obj, result)
    name = obj.get("metadata.name")
    if name is not None:
        fields["name"] = name
    name = name or "ml-app"
    if (namespace := obj.get("metadata.namespace")) is not None:
        fields["namespace"] = namespace
    if (replicas := obj.get("spec.replicas")) is not None:
        fields["replicas"] = replicas
    for path in ("metadata.labels.app", "spec.selector.matchLabels.app", "spec.template.metadata.labels.app"):
        app_label(obj, path, name, result, "servetune labels and selects pods by")
    if (grace := obj.get("spec.template.spec.terminationGracePeriodSeconds")) is not None:
        fields["termination_grace_period_seconds"] = grace
        if grace <= 5:  # the default preStop pause must end within the grace period
            fields["pre_stop_seconds"] = grace - 1
            result.notes.append(f"{obj}: terminationGracePeriodSeconds {grace}: the preStop pause is {grace - 1} s")
    containers = obj.peek("spec.template.spec.containers") or []
    if not containers:
        raise ManifestError(f"{obj}: spec.template.spec.containers is empty")
    if len(containers) > 1:
        result.notes.append(f"{obj}: {len(containers) - 1} extra container(s) not carried over (servetune runs one "
                            "serving container)")
        for index in range(1, len(containers)):
            obj.get(f"spec.template.spec.containers[{index}]")
    container_fields(obj, APP_CONTAINER, result)


def container_fields(obj: ObjectFields, at: str, result: Translation) -> None:
    fields = result.fields
    if (name := obj.get(f"{at}.name")) not in (None, CONTAINER_NAME):
        result.notes.append(f"container {name} becomes {CONTAINER_NAME} (the reference resource monitor counts only "
                            f"containers named {CONTAINER_NAME})")
    if image := obj.get(f"{at}.image"):
        result.notes.append(
            f"image {image}: not carried over; servetune runs its own serving image "
            "(spec field `image`, default servetune:0.1.0, built with `make image`) with the model at /models"
        )
    if (policy := obj.get(f"{at}.imagePullPolicy")) is not None:
        fields["image_pull_policy"] = policy
    if (port := obj.get(f"{at}.ports[0].containerPort")) is not None:
        fields["container_port"] = port
    if (protocol := obj.get(f"{at}.ports[0].protocol")) not in (None, "TCP"):
        result.notes.append(f"container port protocol {protocol} becomes TCP (HTTP)")
    for kind in ("requests", "limits"):
        amounts = obj.get(f"{at}.resources.{kind}")
        if amounts:
            fields[kind] = resource_amounts(amounts, f"{obj}: resources.{kind}", result)
    if obj.get(f"{at}.resources.requests") and not obj.get(f"{at}.resources.limits"):
        fields["limits"] = None
    for ours, theirs in K8S_PROBES.items():
        probe = obj.get(f"{at}.{theirs}")
        if probe is not None:
            fields[ours] = probe_fields(probe, theirs, SERVETUNE_PROBE_PATHS[ours], fields.get("container_port", 5000),
                                        result)
        elif ours == "readiness_probe":
            result.notes.append(f"{obj}: no readinessProbe; servetune adds one on /readyz (every 2 s), so a replica "
                                "takes traffic only once its model is loaded")
        else:
            fields[ours] = None  # none in the manifest: none rendered


def resource_amounts(amounts: dict, where: str, result: Translation) -> dict:
    if "cpu" not in amounts or "memory" not in amounts:
        raise ManifestError(f"{where}: give both cpu and memory (servetune needs both)")
    cores, mib = cpu_cores(amounts["cpu"], where), memory_mib(amounts["memory"], where)
    if mib * 2**20 != memory_bytes(amounts["memory"], where):
        result.notes.append(f"{where}.memory {amounts['memory']} becomes {mib}Mi (servetune counts whole MiB)")
    if round(cores * 1000) != cores * 1000:
        result.notes.append(f"{where}.cpu {amounts['cpu']} becomes {round(cores * 1000)}m (Kubernetes counts "
                            "whole millicores)")
    return {"cpu": cores, "memory_mb": mib}


def memory_mib(value, where: str) -> int:
    return max(1, round(memory_bytes(value, where) / 2**20))


def probe_fields(probe: dict, kind: str, our_path: str, container_port: int, result: Translation) -> dict:
    """The probe's timings, with Kubernetes' defaults for those not given (so the rendered probe, which writes
    every timing, behaves as the manifest's did)."""
    http = probe.get("httpGet")
    if http is None:
        result.notes.append(f"{kind}: not an httpGet probe; servetune's probe on {our_path} is used instead")
    else:
        if http.get("path") != our_path:
            result.notes.append(f"{kind}: httpGet {http.get('path')} becomes {our_path} (servetune's endpoint for "
                                "it; the timings are kept)")
        if http.get("port") not in (container_port, "http"):
            result.notes.append(f"{kind}: httpGet port {http.get('port')} becomes the container port {container_port}")
        if http.get("scheme", "HTTP") != "HTTP" or set(http) - {"path", "port", "scheme"}:
            result.notes.append(f"{kind}: httpGet {', '.join(sorted(set(http) - {'path', 'port'}))} not carried over "
                                "(servetune probes plain HTTP)")
    left = set(probe) - set(PROBE_FIELDS) - {"httpGet", "exec", "tcpSocket", "grpc"}
    if left:
        result.notes.append(f"{kind}: {', '.join(sorted(left))} not carried over")
    return {ours: probe.get(theirs, K8S_PROBE_DEFAULTS[theirs]) for theirs, ours in PROBE_FIELDS.items()}


def autoscaler_fields(obj: ObjectFields, deployment: ObjectFields, result: Translation) -> None:
    common_fields(obj, deployment, result)
    name = result.fields.get("name", "ml-app")
    if (own := obj.get("metadata.name")) not in (None, name):
        result.notes.append(f"{obj}: its name becomes {name} (servetune names it after its Deployment)")
    if obj.get("apiVersion") == "autoscaling/v1":
        result.notes.append(f"{obj}: apiVersion autoscaling/v1 becomes autoscaling/v2, the same rule "
                            "(targetCPUUtilizationPercentage is the cpu metric's averageUtilization)")
    target_ref = obj.get("spec.scaleTargetRef") or {}
    if target_ref.get("name") not in (None, name) or target_ref.get("kind", "Deployment") != "Deployment":
        result.notes.append(f"{obj}: scaleTargetRef {target_ref.get('kind')} {target_ref.get('name')} becomes "
                            f"Deployment {name}")
    autoscaling: dict = {"min_replicas": obj.get("spec.minReplicas", 1)}
    if (most := obj.get("spec.maxReplicas")) is None:
        raise ManifestError(f"HorizontalPodAutoscaler {own or '?'}: spec.maxReplicas is missing")
    autoscaling["max_replicas"] = most
    if (target := obj.get("spec.targetCPUUtilizationPercentage")) is not None:  # autoscaling/v1
        autoscaling["target_cpu_utilization"] = target
    for metric in obj.get("spec.metrics") or []:  # autoscaling/v2
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu" and "averageUtilization" in target:
            autoscaling["target_cpu_utilization"] = target["averageUtilization"]
        else:
            result.notes.append(f"{obj}: metric {metric.get('type')} {resource.get('name', '')} not carried over "
                                "(servetune scales on CPU utilisation only)")
    behavior = obj.get("spec.behavior")
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


def service_fields(obj: ObjectFields, deployment: ObjectFields, result: Translation) -> None:
    common_fields(obj, deployment, result)
    fields = result.fields
    name = fields.get("name", "ml-app")
    if (own := obj.get("metadata.name")) not in (None, name):
        fields["service_name"] = own
    app_label(obj, "spec.selector.app", name, result, "servetune's Service selects pods by")
    kind = obj.get("spec.type", "ClusterIP")
    if kind in ("NodePort", "LoadBalancer"):
        fields["service_type"] = kind
    else:
        result.notes.append(f"{obj}: type {kind} becomes NodePort (servetune's load test reaches the service "
                            "through a node port)")
    container_port = fields.get("container_port", 5000)
    if (node_port := obj.get("spec.ports[0].nodePort")) is not None:
        fields["node_port"] = node_port
    if (port := obj.get("spec.ports[0].port")) not in (None, container_port):
        fields["service_port"] = port
    if (target := obj.get("spec.ports[0].targetPort")) not in (None, container_port, "http"):
        result.notes.append(f"{obj}: targetPort {target} becomes the container port {container_port}")
    if (protocol := obj.get("spec.ports[0].protocol")) not in (None, "TCP"):
        result.notes.append(f"{obj}: protocol {protocol} becomes TCP")
    if obj.get("spec.ports[0].name") not in (None, "http"):
        result.notes.append(f"{obj}: port name {obj.get('spec.ports[0].name')} becomes http")
