"""Kubernetes objects for a `DeploymentSpec`: Deployment, Service (NodePort or LoadBalancer), HPA, and the
label store's PostgreSQL when the spec asks for one (deploy/label_store.py).

The objects are plain dicts in the API's own camelCase shape, so `to_yaml` output is what `kubectl apply`
takes and the Kubernetes client sends them unchanged.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import yaml

from servetune.config import CONTAINER_NAME, DeploymentSpec, ProbeSpec, ScalingRules
from servetune.deploy.label_store import labels_db_env, render_label_store
from servetune.deploy.spec import DEFAULT_MODEL
from servetune.serve.settings import ServerSettings, label_fields

# The Kubernetes version the manifests are written for and validated against (kubernetes-validate's
# bundled schemas). 1.34 is the first release where the preStop `sleep` action is GA (beta, on by default,
# since 1.30), so pods drain without needing a `sleep` binary in the image. Older servers get the same
# pause as an `exec` of the image's `sleep` (python:3.11-slim has coreutils).
KUBERNETES_VERSION = "1.34.0"
OLDEST_KUBERNETES_VERSION = "1.25.0"  # the oldest schema the manifests are checked against
SLEEP_ACTION_SINCE = (1, 30)

MODELS_DIR_IN_IMAGE = PurePosixPath("/models")
RUN_AS_USER = 10001  # the image's non-root user (Dockerfile)
WARMUP_REPLICAS = 5
# The warm-up is there to put the image on the nodes, not to hold capacity: its pods ask for almost nothing,
# so five of them fit beside anything. Their limits stay the candidate's, so each still loads the model.
WARMUP_REQUESTS = {"cpu": "10m", "memory": "32Mi"}


def render_manifests(spec: DeploymentSpec, sleep_action: bool = True, store_password: str | None = None) -> list[dict]:
    """Deployment + Service, plus an HPA when the spec autoscales (otherwise fixed `spec.replicas`), after
    the label store's objects when it has its own PostgreSQL.

    sleep_action: the preStop pause as the `sleep` action (Kubernetes >= 1.30), else as an `exec` of sleep.
    store_password: the label store's password [default: a new random one]; a copy kept for the record
    (the run folder's deployment.yaml) gives a placeholder, so no password is written outside the cluster.
    """
    objects = [*render_label_store(spec, store_password), deployment(spec, spec.name, spec.replicas, sleep_action), service(spec)]
    if spec.autoscaling is not None:
        objects.append(horizontal_pod_autoscaler(spec))
    return objects


def render_warmup(spec: DeploymentSpec, replicas: int = WARMUP_REPLICAS, sleep_action: bool = True) -> list[dict]:
    """The reference protocol's warm-up: the same pod with tiny requests, 5 replicas, no Service and no HPA.

    It exists to pull the image onto the nodes before a measured run; pods prefer distinct nodes.
    """
    name = warmup_name(spec)
    warmup = deployment(spec, name, replicas, sleep_action)
    warmup["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = dict(WARMUP_REQUESTS)
    warmup["spec"]["template"]["spec"]["affinity"] = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": name}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }
    return [warmup]


def warmup_name(spec: DeploymentSpec) -> str:
    return f"{spec.name[:63 - len('-warmup')].rstrip('-')}-warmup"


def to_yaml(objects: list[dict]) -> str:
    """A multi-document YAML stream, fields in the order they were built."""
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, explicit_start=True)


def labels(name: str) -> dict[str, str]:
    return {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "servetune"}


def metadata(spec: DeploymentSpec, name: str) -> dict:
    return {"name": name, "namespace": spec.namespace, "labels": labels(name)}


def deployment(spec: DeploymentSpec, name: str, replicas: int, sleep_action: bool = True) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(spec, name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            # Never fewer ready pods than desired during a rollout: the candidate is measured under load.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {
                    "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "fsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container(spec, sleep_action)],
                    # Writable scratch on a read-only root: gunicorn heartbeats, Prometheus multiprocess files.
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def container(spec: DeploymentSpec, sleep_action: bool = True) -> dict:
    port = spec.container_port
    body = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": ["servetune", "serve", "--host", "0.0.0.0", "--port", str(port), "--workers", str(spec.workers)],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": environment(spec),
        "resources": resources(spec),
        "readinessProbe": probe(spec.readiness_probe, "/readyz", port),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.liveness_probe is not None:
        body["livenessProbe"] = probe(spec.liveness_probe, "/healthz", port)
    if spec.startup_probe is not None:
        # On /readyz: liveness waits until the model is loaded and warmed, however long that takes.
        body["startupProbe"] = probe(spec.startup_probe, "/readyz", port)
    if spec.pre_stop_seconds > 0:
        # The endpoint removal and SIGTERM race; sleeping first lets kube-proxy stop routing to the pod.
        pause = {"sleep": {"seconds": spec.pre_stop_seconds}}
        if not sleep_action:
            pause = {"exec": {"command": ["sleep", str(spec.pre_stop_seconds)]}}
        body["lifecycle"] = {"preStop": pause}
    return body


def environment(spec: DeploymentSpec) -> list[dict]:
    env = [
        {"name": "PROMETHEUS_MULTIPROC_DIR", "value": "/tmp"},
        {"name": "HOME", "value": "/tmp"},
    ]
    # threads unset: the server sizes its threads from the container's CPU quota
    settings = ServerSettings(model_path=model_path_in_image(spec), threads=spec.threads, **label_fields(spec.labels))
    env.extend({"name": name, "value": value} for name, value in settings.to_env().items())
    env.extend(labels_db_env(spec))  # the URL, with its password, only ever from the Secret
    return env


def model_path_in_image(spec: DeploymentSpec) -> str | None:
    """Where the container finds the model: None for the packaged default, else /models/<file name>."""
    if spec.model == DEFAULT_MODEL:
        return None
    return str(MODELS_DIR_IN_IMAGE / PurePosixPath(spec.model.replace("\\", "/")).name)


def resources(spec: DeploymentSpec) -> dict:
    amounts = {"requests": {"cpu": cpu_quantity(spec.requests.cpu), "memory": f"{spec.requests.memory_mb}Mi"}}
    if spec.limits is not None:
        amounts["limits"] = {"cpu": cpu_quantity(spec.limits.cpu), "memory": f"{spec.limits.memory_mb}Mi"}
    return amounts


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity: 0.5 -> "500m", 2.0 -> "2"."""
    millicores = max(1, round(cores * 1000))
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def probe(settings: ProbeSpec, path: str, port: int) -> dict:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": settings.initial_delay_seconds,
        "periodSeconds": settings.period_seconds,
        "timeoutSeconds": settings.timeout_seconds,
        "successThreshold": settings.success_threshold,
        "failureThreshold": settings.failure_threshold,
    }


def service(spec: DeploymentSpec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**metadata(spec, spec.name), "name": spec.service_object_name},
        "spec": {
            "type": spec.service_type,  # a LoadBalancer also opens the node port
            "selector": {"app": spec.name},
            "ports": [
                {
                    "name": "http",
                    "protocol": "TCP",
                    "port": spec.service_port or spec.container_port,
                    "targetPort": spec.container_port,
                    "nodePort": spec.node_port,
                }
            ],
        },
    }


def horizontal_pod_autoscaler(spec: DeploymentSpec) -> dict:
    hpa = spec.autoscaling
    assert hpa is not None
    body = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
        "minReplicas": hpa.min_replicas,
        "maxReplicas": hpa.max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": hpa.target_cpu_utilization},
                },
            }
        ],
    }
    if hpa.behavior is not None:
        behavior = {}
        if hpa.behavior.scale_up is not None:
            behavior["scaleUp"] = scaling_rules(hpa.behavior.scale_up)
        if hpa.behavior.scale_down is not None:
            behavior["scaleDown"] = scaling_rules(hpa.behavior.scale_down)
        if behavior:
            body["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(spec, spec.name),
        "spec": body,
    }


def scaling_rules(rules: ScalingRules) -> dict:
    body: dict = {"selectPolicy": rules.select_policy}
    if rules.stabilization_window_seconds is not None:
        body["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
    if rules.policies:  # none given: the API server fills in Kubernetes' default policies
        body["policies"] = [
            {"type": policy.type, "value": policy.value, "periodSeconds": policy.period_seconds}
            for policy in rules.policies
        ]
    return body
