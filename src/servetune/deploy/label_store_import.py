"""A manifest's label store read back as a spec's `labels` section: `deploy/label_store.py` the other way.

The app container's SERVETUNE_* label variables give the settings, and its SERVETUNE_LABELS_DB where the
store is: a file in the pod (SQLite), or a Secret's `url`, which is either the store servetune renders (a
StatefulSet of the Secret's name is in the manifest: `database: postgresql`, its image and volume carried
over) or one of the user's own (`database_secret`). The store's Secret, headless Service and StatefulSet
are compared field by field with what servetune renders for the section read; what differs is named, and so
is the Secret's password, which a spec never holds.
"""

from __future__ import annotations

import math

from pydantic import ValidationError

from servetune.config import DeploymentSpec, LabelsSpec
from servetune.deploy.label_store import (
    LABELS_DB_VARIABLE,
    SQLITE_IN_POD,
    URL_KEY,
    render_label_store,
    store_name,
)
from servetune.deploy.manifest_fields import (
    ManifestError,
    ObjectFields,
    Translation,
    leaf_paths,
    memory_bytes,
)
from servetune.serve.settings import ENV_NAMES, label_fields

# The section's settings as the container's variables carry them (serve/settings.py).
LABEL_VARIABLES = {ENV_NAMES[name]: name for name in label_fields(LabelsSpec())}
SECRET_VALUES = ("stringData", "data")  # a rendered Secret has stringData; one read from a cluster, data


def labels_section(objects: list[dict], deployment: ObjectFields, at: str, result: Translation) -> list[dict]:
    """Put the `labels` section into result.fields from the container at `at` and the store's objects;
    return the store's objects (read here, none of them the app's)."""
    settings, secret = container_labels(deployment, at, result)
    name = secret or store_name(DeploymentSpec.model_construct(name=result.fields.get("name", "ml-app")))
    stateful_set = next((obj for obj in objects if obj.get("kind") == "StatefulSet" and object_name(obj) == name), None)
    if not settings and secret is None and stateful_set is None:
        return []
    labels: dict = dict(settings)
    if stateful_set is not None:
        labels["database"] = "postgresql"
        labels["postgres"] = postgres_fields(ObjectFields(stateful_set), result)
    elif secret is not None:
        labels["database_secret"] = secret
    try:
        section = LabelsSpec.model_validate(labels)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        variable = next((name for name, field in LABEL_VARIABLES.items() if field == where), None)
        value = f" {problem['input']} ({variable})" if variable else ""
        raise ManifestError(f"{deployment}: labels.{where}{value}: {problem['msg']}") from None
    result.fields["labels"] = section.model_dump(exclude_defaults=True)
    if stateful_set is None:
        return []
    return store_objects(objects, stateful_set, section, result)


def container_labels(deployment: ObjectFields, at: str, result: Translation) -> tuple[dict, str | None]:
    """(the section's settings from the container's variables, the Secret its store's URL comes from)."""
    settings: dict = {}
    secret = None
    for index, variable in enumerate(deployment.peek(f"{at}.env") or []):
        path = f"{at}.env[{index}]"
        name = variable.get("name") if isinstance(variable, dict) else None
        if name in LABEL_VARIABLES and "value" in variable:
            settings[LABEL_VARIABLES[name]] = deployment.get(f"{path}.value")
            deployment.get(path)
        elif name == LABELS_DB_VARIABLE:
            reference = deployment.get(f"{path}.valueFrom.secretKeyRef") or {}
            if reference.get("key") == URL_KEY and reference.get("name"):
                secret = reference["name"]
            elif deployment.peek(f"{path}.value") != SQLITE_IN_POD:  # its value may hold a password: not shown
                result.notes.append(f"{deployment}: {path} {LABELS_DB_VARIABLE}: not carried over (servetune gives "
                                    f"it from a Secret's key `{URL_KEY}`, labels.database_secret, or as a file in the "
                                    "pod)")
            deployment.get(path)
    return settings, secret


def postgres_fields(stateful_set: ObjectFields, result: Translation) -> dict:
    """The `postgres` fields: the server's image and its data volume's size and storage class."""
    fields: dict = {}
    if image := stateful_set.peek("spec.template.spec.containers[0].image"):
        fields["image"] = image
    claim = "spec.volumeClaimTemplates[0].spec"
    if (storage := stateful_set.peek(f"{claim}.resources.requests.storage")) is not None:
        size = memory_bytes(storage, f"{stateful_set}: {claim}.resources.requests.storage") / 2**30
        fields["storage_gb"] = max(1, math.ceil(size))
        if fields["storage_gb"] != size:
            result.notes.append(f"{stateful_set}: storage {storage} becomes {fields['storage_gb']}Gi (the spec counts "
                                "whole GiB)")
    if (storage_class := stateful_set.peek(f"{claim}.storageClassName")) is not None:
        fields["storage_class"] = storage_class
    return fields


def store_objects(objects: list[dict], stateful_set: dict, section: LabelsSpec, result: Translation) -> list[dict]:
    """The store's Secret, Service and StatefulSet in the manifest, each compared with what servetune renders
    for `section`; what differs is named in the notes."""
    spec = DeploymentSpec.model_construct(name=result.fields.get("name", "ml-app"),
                                          namespace=result.fields.get("namespace", "default"), labels=section)
    rendered = {obj["kind"]: obj for obj in render_label_store(spec, password="")}
    pods = (stateful_set.get("spec") or {}).get("template", {}).get("metadata", {}).get("labels") or {}
    found = [obj for obj in objects if obj is stateful_set or is_store_secret(obj, stateful_set)
             or obj.get("kind") == "Service" and selects(obj, pods)]
    for obj in found:
        store_object_notes(ObjectFields(obj), rendered[obj["kind"]], result)
    return found


def is_store_secret(obj: dict, stateful_set: dict) -> bool:
    """The Secret servetune renders beside its StatefulSet has the StatefulSet's name."""
    return obj.get("kind") == "Secret" and object_name(obj) == object_name(stateful_set)


def store_object_notes(obj: ObjectFields, rendered: dict, result: Translation) -> None:
    secret_values = {path for path in obj.unread if path.startswith(SECRET_VALUES)} if obj.kind == "Secret" else set()
    if secret_values:
        result.notes.append(f"{obj}: {', '.join(sorted(secret_values))}: not carried over (a spec holds no password: "
                            "render makes a new password; apply never replaces a Secret that exists, so a store "
                            "already on the cluster keeps its own)")
    rendered_values = {path for path in leaf_paths(rendered) if path.startswith(SECRET_VALUES)}
    if changes := obj.differences(rendered, leave_out=secret_values | rendered_values):
        result.notes.append(f"{obj}: {'; '.join(changes)} (servetune renders its label store from the spec's labels "
                            "section)")


def object_name(obj: dict) -> str | None:
    return (obj.get("metadata") or {}).get("name")


def selects(service: dict, pod_labels: dict) -> bool:
    """Whether the Service's selector picks pods with these labels (an empty selector picks none here)."""
    selector = (service.get("spec") or {}).get("selector") or {}
    return bool(selector) and all(pod_labels.get(key) == value for key, value in selector.items())
