"""The label store on Kubernetes: what the replicas are told (SERVETUNE_LABELS_DB from a Secret, the label
settings) and, for `labels.database: postgresql` without `database_secret`, a PostgreSQL server of its own:
a Secret (password and URL), a headless Service and a one-pod StatefulSet with a volume.

The password is made at render time and lives only in the Secret; `apply` never replaces a Secret that
exists (the database was initialised with its password), and `delete` leaves the store's objects and
volume alone: the labels outlive the deployment.
"""

from __future__ import annotations

import secrets

from servetune.config import DeploymentSpec, LabelsSpec
from servetune.serve.settings import ENV_NAMES, ServerSettings, label_fields

DB_USER = "servetune"
DB_NAME = "servetune"
DB_PORT = 5432
POSTGRES_UID = 999  # the postgres image's user
URL_KEY = "url"
LABELS_DB_VARIABLE = ENV_NAMES["labels_db"]
SQLITE_IN_POD = "/tmp/labels.db"  # the pod's own store, lost with it: only for trying the flow


def store_name(spec: DeploymentSpec) -> str:
    return f"{spec.name[:63 - len('-labels-db')].rstrip('-')}-labels-db"


def secret_name(spec: DeploymentSpec) -> str:
    labels = spec.labels
    assert labels is not None
    return labels.database_secret or store_name(spec)


def uses_postgresql(labels: LabelsSpec | None) -> bool:
    return labels is not None and (labels.database == "postgresql" or labels.database_secret is not None)


def labels_db_env(spec: DeploymentSpec) -> list[dict]:
    """The container's SERVETUNE_LABELS_DB: from the Secret (PostgreSQL), or a file in the pod's /tmp
    (SQLite: the pod's own store, lost with it; only for trying the flow)."""
    labels = spec.labels
    if labels is None or not ServerSettings(**label_fields(labels)).labelling():
        return []
    if not uses_postgresql(labels):
        return [{"name": LABELS_DB_VARIABLE, "value": SQLITE_IN_POD}]
    return [{"name": LABELS_DB_VARIABLE,
             "valueFrom": {"secretKeyRef": {"name": secret_name(spec), "key": URL_KEY}}}]


def render_label_store(spec: DeploymentSpec, password: str | None = None) -> list[dict]:
    """Secret, Service and StatefulSet of the spec's own PostgreSQL; none when it has no such store."""
    labels = spec.labels
    if labels is None or labels.database != "postgresql" or labels.database_secret is not None:
        return []
    name = store_name(spec)
    password = password or secrets.token_urlsafe(24)
    meta = {"name": name, "namespace": spec.namespace,
            "labels": {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "servetune",
                       "app.kubernetes.io/component": "label-store"}}
    url = f"postgresql://{DB_USER}:{password}@{name}.{spec.namespace}.svc:{DB_PORT}/{DB_NAME}"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
              "stringData": {"password": password, URL_KEY: url}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
        "clusterIP": "None", "selector": {"app": name},
        "ports": [{"name": "postgres", "port": DB_PORT, "targetPort": DB_PORT, "protocol": "TCP"}],
    }}
    claim: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{labels.postgres.storage_gb}Gi"}}}
    if labels.postgres.storage_class is not None:
        claim["storageClassName"] = labels.postgres.storage_class
    ready = {"exec": {"command": ["pg_isready", "-U", DB_USER, "-d", DB_NAME]}, "periodSeconds": 5,
             "timeoutSeconds": 3, "failureThreshold": 6}
    stateful_set = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": {
        "serviceName": name, "replicas": 1, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": meta["labels"]}, "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": POSTGRES_UID, "runAsGroup": POSTGRES_UID,
                                "fsGroup": POSTGRES_UID, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "postgres", "image": labels.postgres.image, "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "postgres", "containerPort": DB_PORT, "protocol": "TCP"}],
                "env": [
                    {"name": "POSTGRES_USER", "value": DB_USER},
                    {"name": "POSTGRES_DB", "value": DB_NAME},
                    {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}}},
                    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "readinessProbe": ready,
                "livenessProbe": {**ready, "periodSeconds": 20},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                 {"name": "run", "mountPath": "/var/run/postgresql"}],
            }],
            "volumes": [{"name": "run", "emptyDir": {}}],
        }},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
    }}
    return [secret, service, stateful_set]
