"""The label store on Kubernetes: the rendered PostgreSQL (Secret, headless Service, StatefulSet), the
replicas' URL from the Secret only, and an apply that never replaces the Secret's password."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from deploy.test_kubernetes import api_server, fast_polling, kubeconfig  # noqa: F401 - fixtures
from servetune.cli import app
from servetune.config import DeploymentSpec
from servetune.deploy.manifests import (
    KUBERNETES_VERSION,
    OLDEST_KUBERNETES_VERSION,
    render_manifests,
)

OWN = DeploymentSpec.model_validate({"labels": {"holdout_fraction": 0.1, "feedback": True, "database": "postgresql"}})
GIVEN = DeploymentSpec.model_validate({"labels": {"holdout_fraction": 0.1, "database_secret": "team-db"}})


def container_env(objects: list[dict]) -> dict:
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION])
def test_the_store_objects_pass_the_strict_schema(version: str) -> None:
    objects = render_manifests(OWN, sleep_action=version >= "1.30")
    assert [o["kind"] for o in objects] == ["Secret", "Service", "StatefulSet", "Deployment", "Service"]
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_password_is_only_in_the_secret() -> None:
    objects = render_manifests(OWN, store_password="pw-7Hq2")
    secret = objects[0]
    assert secret["stringData"]["url"] == "postgresql://servetune:pw-7Hq2@ml-app-labels-db.default.svc:5432/servetune"
    assert all("pw-7Hq2" not in yaml.safe_dump(o) for o in objects[1:])
    env = container_env(objects)
    assert env["SERVETUNE_LABELS_DB"] == {"secretKeyRef": {"name": "ml-app-labels-db", "key": "url"}}
    assert env["SERVETUNE_HOLDOUT_FRACTION"] == "0.1" and env["SERVETUNE_FEEDBACK"] == "True"
    stateful = objects[2]["spec"]
    postgres_env = {e["name"]: e for e in stateful["template"]["spec"]["containers"][0]["env"]}
    assert postgres_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"
    assert stateful["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert render_manifests(OWN)[0]["stringData"]["password"] != render_manifests(OWN)[0]["stringData"]["password"]


def test_an_existing_secret_is_used_and_nothing_is_rendered_for_it() -> None:
    objects = render_manifests(GIVEN)
    assert [o["kind"] for o in objects] == ["Deployment", "Service"]
    assert container_env(objects)["SERVETUNE_LABELS_DB"] == {"secretKeyRef": {"name": "team-db", "key": "url"}}
    assert "SERVETUNE_LABELS_DB" not in container_env(render_manifests(DeploymentSpec()))


def test_apply_creates_the_secret_once_and_delete_keeps_the_store(api_server, kubeconfig, tmp_path) -> None:  # noqa: F811
    spec = tmp_path / "labels.yaml"
    spec.write_text("name: ml-app\nlabels: {holdout_fraction: 0.2, database: postgresql}\n")
    first = CliRunner().invoke(app, ["deploy", "apply", str(spec), "--kubeconfig", str(kubeconfig), "--timeout", "20"])
    assert first.exit_code == 0, first.output
    assert "secret/ml-app-labels-db created" in first.stdout and "statefulset/ml-app-labels-db created" in first.stdout
    secret_path = "/api/v1/namespaces/default/secrets/ml-app-labels-db"
    api_server.requests.clear()
    again = CliRunner().invoke(app, ["deploy", "apply", str(spec), "--kubeconfig", str(kubeconfig), "--timeout", "20"])
    assert again.exit_code == 0, again.output
    assert not [r for r in api_server.requests if r.method == "PATCH" and r.path == secret_path]
    assert "statefulset/ml-app-labels-db configured" in again.stdout
    api_server.requests.clear()
    deleted = CliRunner().invoke(app, ["deploy", "delete", str(spec), "--kubeconfig", str(kubeconfig), "--timeout", "20"])
    assert deleted.exit_code == 0, deleted.output
    assert not [r for r in api_server.requests if r.method == "DELETE" and "labels-db" in r.path]
    printed = CliRunner().invoke(app, ["deploy", "render", str(spec)])
    assert printed.exit_code == 0 and "kind: StatefulSet" in printed.stdout
