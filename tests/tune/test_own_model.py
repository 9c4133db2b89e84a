"""`servetune tune --model --deployment --data`: the user's own model through the whole loop, as they run it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from command import servetune
from food11_folders import write_food11
from onnx_models import centroid_artifact
from servetune.config import AutoscalingSpec, DeploymentSpec, ResourceAmounts
from servetune.deploy.manifests import KUBERNETES_VERSION
from servetune.deploy.spec import load_deployment_spec
from servetune.model.variants import Variant
from servetune.tune.calibration import default_calibration
from servetune.tune.chosen import dockerfile_text, image_name
from servetune.tune.own_model import VariantRow, accuracy_floor, chance_note, own_space

COURSE_HPA = Path(__file__).parents[1] / "data" / "course_manifests" / "deployment_hpa.yaml"


def test_the_whole_loop_writes_your_manifest_with_the_chosen_numbers_and_a_rerun_measures_nothing_again(tmp_path):
    data = write_food11(tmp_path / "food", per_class=2, splits=("training", "evaluation"))
    model = centroid_artifact(tmp_path / "mine.onnx", data, input_size=32, crop="none", resize=32)
    deployment = tmp_path / "deployment.yaml"
    shutil.copyfile(COURSE_HPA, deployment)
    quick = ["--model", str(model), "--deployment", str(deployment), "--data", str(data), "--cache",
             str(tmp_path / "cache"), "--profile", "quick", "--input-sizes", "24", "--no-int8",
             "--calibration-seconds", "1", "--calibration-limits", "1", "--budget", "16", "--population", "8",
             "--verify", "0", "--jobs", "1"]
    first = servetune("tune", "--out", str(tmp_path / "a"), *quick, timeout=400)
    assert first.returncode == 0, first.stderr
    assert "calibrate mine on this machine" in first.stderr and "calibrate mine-24 on this machine" in first.stderr
    out = first.stdout
    assert "your model's variants" in out and "│ mine-24 " in out and "searched" in out
    assert "accuracy bound: at least 99.00% (your model's less --max-accuracy-loss)" in out
    yours = tmp_path / "a" / "yours.yaml"
    assert f"your pair (your deployment with your model) -> {yours}, 'yours' below" in out  # its path, once
    assert out.count(str(yours)) == 1 and "│ yours " in out  # in the table, by its label
    assert "of yours, --better-than" in out  # your pair bounds the search by default
    assert "NOT verified (--verify 0, or stopped before)" in out
    chosen = tmp_path / "a" / "chosen"
    manifest = list(yaml.safe_load_all((chosen / "deployment.yaml").read_text()))
    for obj in manifest:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    recommended = load_deployment_spec(tmp_path / "a" / "recommended.yaml")
    (deployment_obj,) = [obj for obj in manifest if obj["kind"] == "Deployment"]
    container = deployment_obj["spec"]["template"]["spec"]["containers"][0]
    assert deployment_obj["metadata"]["name"] == "ml-app-hpa"  # their names and probe, as they were
    assert container["readinessProbe"]["httpGet"]["path"] == "/test"
    assert container["image"] == f"node-0:5000/ml-app:servetune-{Path(recommended.model).stem}"
    assert container["resources"]["requests"]["memory"] == f"{recommended.requests.memory_mb}Mi"
    assert (chosen / Path(recommended.model).name).read_bytes() == Path(recommended.model).read_bytes()
    assert f"COPY {Path(recommended.model).name} /models/" in (chosen / "Dockerfile").read_text()
    assert "+        image: node-0:5000/ml-app:servetune-" in out and (chosen / "deployment.diff").is_file()
    assert f"docker build -t {container['image']} {chosen}" in out
    assert f"your deployment with the chosen numbers and image (not verified: by simulation only) -> {chosen}" in out
    assert "chance level" not in out
    assert out.splitlines()[-1].startswith("the pick: NOT verified (--verify 0, or stopped before)")
    report = (tmp_path / "a" / "report.html").read_text()
    assert "Your model&#x27;s variants" in report or "Your model's variants" in report
    # every variant is in the cache: another tune of the same model measures nothing again
    again = servetune("tune", "--out", str(tmp_path / "b"), *quick, timeout=400)
    assert again.returncode == 0, again.stderr
    assert "calibrate" not in again.stderr and "import mine.onnx" not in again.stderr
    done = servetune("tune", "--out", str(tmp_path / "b"), *quick)
    assert done.returncode == 2 and "already holds a tune" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "m.onnx"], "--model needs --deployment (your manifest) and --data"),
    (["--deployment", "d.yaml"], "--deployment and --data go with --model"),
    (["--model", "m.onnx", "--deployment", "d.yaml", "--data", "x", "--input-sizes", "big"], "--input-sizes 'big'"),
    (["--model", "m.onnx", "--deployment", "d.yaml", "--data", "x", "--calibration-limits", "0"],
     "--calibration-limits '0'"),
    (["--model", "nothing.onnx", "--deployment", str(COURSE_HPA), "--data", "."], "nothing.onnx: no such model file"),
    (["--model", "m.onnx", "--deployment", "none.yaml", "--data", "."], "--deployment none.yaml: no such manifest"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, args, message):
    result = servetune("tune", "--out", str(tmp_path / "t"), "--cache", str(tmp_path / "cache"), *args,
                       cwd=str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_v1_autoscaler_keeps_to_what_v1_can_express_and_memory_is_offered_from_each_variants_peak(tmp_path):
    calibration = default_calibration()
    row = VariantRow(Variant("mine", 224, "fp32", tmp_path / "mine.onnx"), calibration)
    yours = DeploymentSpec(requests=ResourceAmounts(cpu=1.0, memory_mb=2048), limits=None, autoscaling=AutoscalingSpec(
        min_replicas=1, max_replicas=5, target_cpu_utilization=40))
    space = own_space([row], yours, tmp_path / "yours.yaml", 0.15, v1_autoscaler=True)
    assert space["autoscaling"]["scale_down_stabilization_s"] == [300]
    assert space["autoscaling"]["scale_up"] == ["kubernetes"]
    assert 5 in space["autoscaling"]["max_replicas"] and 40 in space["autoscaling"]["target_cpu_utilization"]
    least = -(-calibration.rss_peak_bytes * 1.15 // 2**20)
    assert 2048 in space["memory_request_mb"] and any(least <= m < least + 16 for m in space["memory_request_mb"])
    assert space["models"] == [str((tmp_path / "mine.onnx").resolve())]
    v2 = own_space([row], yours, tmp_path / "yours.yaml", 0.15, v1_autoscaler=False)
    assert len(v2["autoscaling"]["scale_down_stabilization_s"]) > 1


def test_the_image_is_named_after_theirs_and_the_dockerfile_sets_what_the_manifest_does_not():
    assert image_name("node-0:5000/ml-app:0.0.1", Path("x/mine-160-int8.onnx")) == (
        "node-0:5000/ml-app:servetune-mine-160-int8")
    assert image_name("ml-app", Path("m.onnx")) == "ml-app:servetune-m"
    assert image_name(None, Path("m.onnx")) == "servetune-model:servetune-m"
    plain = DeploymentSpec(requests=ResourceAmounts(cpu=0.5, memory_mb=96))
    text = dockerfile_text(plain, "m.onnx", "ml-app:servetune-m")
    assert "COPY m.onnx /models/\nENV SERVETUNE_MODEL=/models/m.onnx\n" in text and "CMD" not in text
    busy = plain.model_copy(update={"workers": 2, "threads": 1, "container_port": 8000})
    text = dockerfile_text(busy, "m.onnx", "ml-app:servetune-m")
    assert "SERVETUNE_THREADS=1" in text and '"--port", "8000", "--workers", "2"]' in text


def test_their_manifest_is_read_once_for_the_spec_and_the_written_manifest(tmp_path, monkeypatch):
    from servetune.tune.own_model import their_deployment

    deployment = tmp_path / "deployment.yaml"
    shutil.copyfile(COURSE_HPA, deployment)
    reads = []
    read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or read_text(self, *a, **k))
    documents, spec = their_deployment(deployment)
    assert reads == [deployment]
    assert sorted(doc["kind"] for doc in documents) == ["Deployment", "HorizontalPodAutoscaler", "Service"]
    assert spec.autoscaling is not None and spec.autoscaling.max_replicas == 5


def test_a_model_at_chance_level_is_said_to_be_so_in_the_closing_lines():
    at_chance = Variant("vgg16-avg-224", 224, "fp32", Path("m.onnx"), accuracy=150 / 1650, images=1650, classes=11)
    assert chance_note(at_chance) == (
        "your model is at chance level (9.09% on 1,650 photos): its accuracy could not be told apart from guessing; "
        "the figures above are about its cost only")
    assert chance_note(replace(at_chance, accuracy=0.6)) is None
    assert chance_note(replace(at_chance, accuracy=None)) is None  # not measured: nothing to say


def test_the_accuracy_floor_is_theirs_less_the_allowed_loss_and_never_below_zero():
    assert accuracy_floor(0.5, 0.01) == pytest.approx(0.49)
    assert accuracy_floor(0.004, 0.01) == 0.0  # printed as "at least 0.00%", not "-0.60%"
    assert accuracy_floor(None, 0.01) is None
