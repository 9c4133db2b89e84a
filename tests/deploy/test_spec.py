"""Deployment specs from YAML: the bundled examples load, and every bad input gets a readable error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from servetune.cli import app
from servetune.config import DeploymentSpec
from servetune.deploy.spec import SPECS_DIR, SpecError, load_deployment_spec


def write(tmp_path: Path, text: str, name: str = "fixed.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bundled_specs_load():
    default = load_deployment_spec("default")
    assert default.autoscaling is not None
    assert (default.autoscaling.min_replicas, default.autoscaling.max_replicas) == (1, 3)
    assert default.replicas == 1
    fixed = load_deployment_spec("fixed-1")
    assert fixed.autoscaling is None and fixed.replicas == 1
    assert fixed.requests.cpu == 1.0 and fixed.limits is not None and fixed.limits.cpu == 1.0


def test_example_documents_every_field():
    text = (SPECS_DIR / "example.yaml").read_text()
    spec = load_deployment_spec(SPECS_DIR / "example.yaml")
    top_level = {line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()}
    assert top_level == set(DeploymentSpec.model_fields)
    assert spec.autoscaling is not None and spec.autoscaling.behavior is not None
    assert spec.autoscaling.behavior.scale_down is not None
    assert spec.autoscaling.behavior.scale_down.stabilization_window_seconds == 300


def test_autoscaled_replicas_default_to_min(tmp_path):
    spec = load_deployment_spec(write(tmp_path, "autoscaling: {min_replicas: 2, max_replicas: 5}\n"))
    assert spec.replicas == 2


def test_relative_model_path_is_taken_from_the_spec_folder(tmp_path):
    spec = load_deployment_spec(write(tmp_path, "model: models/m.onnx\n"))
    assert spec.model == str((tmp_path / "models" / "m.onnx").resolve())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "autoscaling: {min_replicas: 2, max_replicas: 1}\n",
            "fixed.yaml: autoscaling.max_replicas: must be >= min_replicas (2)",
        ),
        ("workers: 0\n", "fixed.yaml: workers: Input should be greater than or equal to 1 (allowed range: 1..64)"),
        ("node_port: 80\n", "node_port: Input should be greater than or equal to 30000 (allowed range: 30000..32767)"),
        ("requests: {cpu: 0, memory_mb: 64}\n", "requests.cpu: Input should be greater than or equal to 0.001"),
        ("requests: {cpu: 2, memory_mb: 64}\n", "limits.cpu (1) must be >= requests.cpu (2)"),
        (
            "requests: {cpu: 0.5, memory_mb: 900}\nlimits: {cpu: 1, memory_mb: 512}\n",
            "limits.memory_mb (512) must be >= requests.memory_mb (900)",
        ),
        (
            "replicas: 7\nautoscaling: {min_replicas: 1, max_replicas: 3}\n",
            "replicas (7) must be within autoscaling.min_replicas..max_replicas (1..3)",
        ),
        ("pre_stop_seconds: 30\ntermination_grace_period_seconds: 10\n", "termination_grace_period_seconds"),
        ("autoscaling: {maxReplicas: 3}\n", "autoscaling.maxReplicas: unknown field (allowed: min_replicas, max_replicas"),
        (
            "autoscaling:\n  behavior:\n    scale_up:\n      policies: [{type: Pods, value: 2, period_seconds: 4000}]\n",
            "policies.0.period_seconds: Input should be less than or equal to 1800 (allowed range: 1..1800)",
        ),
        ("autoscaling: {behavior: {scale_down: {select_policy: Fastest}}}\n", "select_policy: Input should be"),
        ("name: ML_App\n", "name: String should match pattern"),
        ("workers: many\n", "workers: Input should be a valid integer"),
        (
            "autoscaling: {behavior: {scale_up: {policies: [{type: Pods, value: 0, period_seconds: 15}]}}}\n",
            "policies.0.value: Input should be greater than 0 (allowed range: >= 1)",
        ),
    ],
)
def test_bad_fields_are_named_with_their_range(tmp_path, text, expected):
    with pytest.raises(SpecError) as caught:
        load_deployment_spec(write(tmp_path, text))
    assert expected in str(caught.value)
    assert str(caught.value).startswith("fixed.yaml: ")


def test_bad_yaml_gives_line_and_column(tmp_path):
    with pytest.raises(SpecError, match=r"fixed.yaml: invalid YAML: line 3, column 11: mapping values are not allowed"):
        load_deployment_spec(write(tmp_path, "name: ml-app\nrequests:\n  cpu: 0.5: 1\n"))


def test_a_spec_that_is_not_utf8_text_is_refused_with_the_byte(tmp_path):
    path = tmp_path / "fixed.yaml"
    path.write_bytes(b"\xff\xfename: ml-app\n")
    with pytest.raises(SpecError, match=r"fixed.yaml: not UTF-8 text \(byte 0: invalid start byte\)"):
        load_deployment_spec(path)


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    with pytest.raises(SpecError, match=r"fixed.yaml: invalid YAML: line 3, column 1: duplicate key 'replicas' \(first given on line 2\)"):
        load_deployment_spec(write(tmp_path, "name: ml-app\nreplicas: 1\nreplicas: 5\n"))
    with pytest.raises(SpecError, match=r"line 4, column 3: duplicate key 'cpu' \(first given on line 3\)"):
        load_deployment_spec(write(tmp_path, "name: ml-app\nrequests:\n  cpu: 0.5\n  cpu: 2\n"))


@pytest.mark.parametrize(("text", "expected"), [("", "is empty"), ("- 1\n- 2\n", "expected a mapping")])
def test_empty_or_non_mapping_file(tmp_path, text, expected):
    with pytest.raises(SpecError, match=expected):
        load_deployment_spec(write(tmp_path, text))


def test_missing_file_lists_the_bundled_specs(tmp_path):
    with pytest.raises(SpecError, match=r"absent.yaml: no such spec file \(bundled specs: (.+)\)") as raised:
        load_deployment_spec(tmp_path / "absent.yaml")
    listed = raised.value.args[0].rsplit("bundled specs: ", 1)[1].rstrip(")").split(", ")
    assert {"default", "fixed-1", "demo"} <= set(listed)
    assert listed == sorted(listed)


def test_validators_apply_to_models_built_in_code():
    with pytest.raises(ValidationError, match="must be >= min_replicas"):
        DeploymentSpec.model_validate({"autoscaling": {"min_replicas": 3, "max_replicas": 2}})


def test_cli_reports_spec_errors_without_traceback(tmp_path):
    path = write(tmp_path, "autoscaling: {min_replicas: 4, max_replicas: 2}\n")
    result = CliRunner().invoke(app, ["deploy", "render", str(path)])
    assert result.exit_code == 2
    assert "error: fixed.yaml: autoscaling.max_replicas: must be >= min_replicas (4)" in result.stderr
    assert "Traceback" not in result.output
