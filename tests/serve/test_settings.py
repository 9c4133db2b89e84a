"""The server settings and their SERVETUNE_* environment."""

from __future__ import annotations

import pytest

from servetune.config import DeploymentSpec
from servetune.deploy.manifests import render_manifests
from servetune.serve.settings import ENV_NAMES, ServerSettings


def test_every_setting_round_trips_through_the_environment():
    settings = ServerSettings(
        model_path="/models/m.onnx", sample_image="/s.jpg", threads=3, ready_dir="/tmp/ready",
        max_upload_bytes=1000, max_pixels=5000, backlog=0, top_k=5, warmup_runs=0,
        holdout_fraction=0.25, labels_db="postgresql://u:p@db/labels", label_ttl_s=60, label_rate_per_min=0,
        review_below=0.5, feedback=True, keep_photos="/photos", keep_photos_mb=10,
    )
    env = settings.to_env()
    assert set(env) == set(ENV_NAMES.values())
    assert env["SERVETUNE_MODEL"] == "/models/m.onnx" and env["SERVETUNE_BACKLOG"] == "0"
    assert ServerSettings.from_env(env) == settings
    assert "postgresql" not in repr(settings)  # the URL may carry a password


def test_defaults_are_not_written_and_unset_or_empty_variables_are_defaults():
    assert ServerSettings().to_env() == {}
    assert ServerSettings(threads=2).to_env() == {"SERVETUNE_THREADS": "2"}
    assert ServerSettings.from_env({"SERVETUNE_THREADS": "", "OTHER": "x"}) == ServerSettings()


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("SERVETUNE_THREADS", "many", "valid integer"),
    ("SERVETUNE_THREADS", "0", "greater than or equal to 1"),
    ("SERVETUNE_MAX_UPLOAD_BYTES", "-5", "greater than 0"),
])
def test_a_bad_value_names_its_variable(name, value, problem):
    with pytest.raises(ValueError, match=f"{name}='{value}': .*{problem}"):
        ServerSettings.from_env({name: value})


def test_the_kubernetes_container_reads_back_what_the_spec_asks():
    spec = DeploymentSpec(name="ml-app", model="runs/food11-lite1-int8.onnx", threads=2)
    deployment = next(obj for obj in render_manifests(spec) if obj["kind"] == "Deployment")
    env = {item["name"]: item["value"] for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = ServerSettings.from_env(env)
    assert (settings.model_path, settings.threads) == ("/models/food11-lite1-int8.onnx", 2)
