"""Where `tune --model` calibrates its variants: on this machine or on the user's cluster (the loopback API
server of tests/kubernetes_api.py), cached by the file's sha256, the backend and the cluster; the tune warns
when it simulates one backend with another's calibration."""

from __future__ import annotations

import functools
import io
import shutil
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from command import servetune
from food11_folders import write_food11
from onnx_models import centroid_artifact
from servetune.backend.protocol import BackendName
from servetune.deploy.spec import load_deployment_spec
from servetune.model.artifact import default_model_path, file_sha256
from servetune.model.variants import Variant, VariantSettings
from servetune.tune import measure_kubernetes
from servetune.tune.calibration import default_calibration, save_calibration
from servetune.tune.measure_kubernetes import NAME, Place
from servetune.tune.own_calibration import CalibrationSite, cached, cached_file, calibrated, calibration_site
from servetune.tune.own_model import OwnModel, prepare
from servetune.tune.pipeline import TuneOptions, tune
from servetune.tune.verify import RealRun
from tune.calibration_cluster import calibration_cluster

COURSE_HPA = Path(__file__).parents[1] / "data" / "course_manifests" / "deployment_hpa.yaml"
IMAGE = "registry.local/servetune-variants:1"
LIMITS = (0.5, 1.0)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """The cluster, with metrics-server's window and the sampling shortened for the test."""
    with calibration_cluster(tmp_path, monkeypatch) as parts:
        fast = functools.partial(measure_kubernetes.calibrate_on_cluster, metrics_window_s=0, sample_every_s=0.05)
        monkeypatch.setattr(measure_kubernetes, "calibrate_on_cluster", fast)
        yield parts


def variant(tmp_path: Path) -> Variant:
    path = tmp_path / "mine.onnx"
    shutil.copyfile(default_model_path(), path)
    return Variant("mine", 112, "int8", path, sha256=file_sha256(path), classes=11)


def deployments_applied(api) -> list[dict]:
    return [r.body for r in api.requests
            if r.method == "PATCH" and "/deployments/" in r.path and not r.query.get("dryRun")]


def test_a_calibration_is_reused_for_the_same_file_backend_and_cluster_only(tmp_path):
    mine = variant(tmp_path)
    local = CalibrationSite(LIMITS)
    remote = CalibrationSite(LIMITS, cluster=Place(image=IMAGE), host="https://10.0.0.1:6443")
    assert (local.key, remote.key) == ("local", "kubernetes-10.0.0.1-6443")
    calibration = default_calibration().model_copy(update={"model_sha256": mine.sha256})
    file = save_calibration(calibration, cached_file(tmp_path / "cache", mine, local))
    mine.path.write_bytes(b"not hashed again")  # the variant carries the sha256 taken when it was made
    assert cached(tmp_path / "cache", mine, local) == (calibration, file)
    assert cached(tmp_path / "cache", mine, remote) is None  # this machine's CPUs are not the cluster's
    other = CalibrationSite(LIMITS, cluster=Place(image=IMAGE), host="https://10.9.9.9:6443")
    save_calibration(calibration.model_copy(update={"backend": "kubernetes"}),
                     cached_file(tmp_path / "cache", mine, remote))
    assert cached(tmp_path / "cache", mine, remote) is not None and cached(tmp_path / "cache", mine, other) is None


def test_a_variant_is_calibrated_on_their_cluster_from_the_image_and_a_rerun_measures_nothing(tmp_path, cluster):
    api, service, kubeconfig = cluster
    mine = variant(tmp_path)
    site = calibration_site(LIMITS, 0.5, Place(kubeconfig, url=service.url, ready_timeout_s=5, image=IMAGE))
    assert site.host == api.url and site.backend == "kubernetes"
    events: list[str] = []
    calibration, file = calibrated(tmp_path / "cache", mine, site, step=events.append)
    assert calibration.backend == "kubernetes" and calibration.model_sha256 == mine.sha256
    assert calibration.machine.startswith(f"Kubernetes 1.34 at {api.url}, node node-1: 4 CPUs")
    assert file == cached_file(tmp_path / "cache", mine, site) and file.parent.name == site.key
    assert events[0] == f"calibrate mine on the cluster at {api.url}"
    assert events.count(f"deployment/{NAME} created") == events.count(f"deployment/{NAME} deleted") == 2
    containers = [body["spec"]["template"]["spec"]["containers"][0] for body in deployments_applied(api)]
    assert {c["image"] for c in containers} == {IMAGE}
    assert all({"name": "SERVETUNE_MODEL", "value": "/models/mine.onnx"} in c["env"] for c in containers)
    assert not [key for key in api.objects if key[0] in ("deployments", "services")]  # deleted after
    requests = len(api.requests)
    again: list[str] = []
    assert calibrated(tmp_path / "cache", mine, site, step=again.append) == (calibration, file)
    assert again == [] and len(api.requests) == requests  # from the cache: nothing sent to the cluster


def own_model(tmp_path: Path, cluster: Place | None) -> OwnModel:
    data = write_food11(tmp_path / "food", per_class=2, splits=("training", "evaluation"))
    model = centroid_artifact(tmp_path / "mine.onnx", data, input_size=32, crop="none", resize=32)
    return OwnModel(model, COURSE_HPA, data, tmp_path / "cache", variants=VariantSettings(sizes=(), int8=False),
                    calibration_seconds=0.5, calibration_limits=LIMITS, cluster=cluster)


def kubernetes_tune(out: Path, kubeconfig: Path) -> TuneOptions:
    return TuneOptions(out=out, profile="quick", budget=16, population=8, jobs=1, verify=0, baselines=[],
                       real=RealRun(BackendName.KUBERNETES, "quick", 1.0, kubeconfig, None))


def test_the_one_command_for_a_cluster_calibrates_there_and_simulates_it_without_a_warning(tmp_path, cluster):
    api, service, kubeconfig = cluster
    own = own_model(tmp_path, Place(kubeconfig, url=service.url, ready_timeout_s=5, image=IMAGE))
    steps: list[str] = []
    prepared = prepare(own, kubernetes_tune(tmp_path / "t", kubeconfig), step=steps.append)
    assert f"calibrate mine on the cluster at {api.url}" in steps
    assert prepared.calibrated_on == f"the cluster at {api.url}"
    assert [row.calibration.backend for row in prepared.rows] == ["kubernetes"]
    assert load_deployment_spec(prepared.yours).image == IMAGE  # their pair and the candidates run from it
    assert yaml.safe_load((tmp_path / "t" / "space.yaml").read_text())["base"] == str(prepared.yours.resolve())
    shown = io.StringIO()
    result = tune(prepared.options, Console(file=shown, width=200))
    assert "warning" not in shown.getvalue() and result.recommended is not None


def test_a_laptop_calibration_for_a_cluster_tune_is_warned_of(tmp_path, cluster):
    api, _, kubeconfig = cluster
    own = own_model(tmp_path, None)  # --backend kubernetes --calibrate-on local
    digest = file_sha256(own.cache.parent / "mine.onnx")
    site = CalibrationSite(LIMITS)
    mine = Variant("mine", 32, "fp32", own.source, sha256=digest)
    save_calibration(default_calibration().model_copy(update={"model_sha256": digest}),
                     cached_file(own.cache, mine, site))  # measured on this machine before
    prepared = prepare(own, kubernetes_tune(tmp_path / "t", kubeconfig))
    assert prepared.calibrated_on == "this machine"
    shown = io.StringIO()
    tune(prepared.options, Console(file=shown, width=400))
    assert ("its calibration was measured on the local backend and the tune simulates --backend kubernetes"
            in shown.getvalue())
    assert not deployments_applied(api)  # nothing was calibrated on the cluster


def test_without_an_image_the_variants_image_is_written_and_the_user_told_how_to_build_it(tmp_path):
    from kubernetes_api import FakeApiServer

    data = write_food11(tmp_path / "food", per_class=2, splits=("training", "evaluation"))
    model = centroid_artifact(tmp_path / "mine.onnx", data, input_size=32, crop="none", resize=32)
    kubeconfig = FakeApiServer(namespaces={"default"}).kubeconfig(tmp_path / "kubeconfig")  # nothing is sent
    result = servetune("tune", "--out", str(tmp_path / "t"), "--model", str(model), "--deployment", str(COURSE_HPA),
                       "--data", str(data), "--cache", str(tmp_path / "cache"), "--no-int8", "--input-sizes", "24",
                       "--backend", "kubernetes", "--kubeconfig", str(kubeconfig), timeout=120)
    assert result.returncode == 2, result.stderr
    folder = tmp_path / "t" / "variants-image"
    assert "error: --backend kubernetes calibrates your model's variants on the cluster at" in result.stderr
    assert f"build it from {folder}" in result.stderr and "--image REGISTRY/servetune-variants:1" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["Dockerfile", "mine-24.onnx", "mine.onnx"]
    assert "COPY mine.onnx mine-24.onnx /models/\n" in (folder / "Dockerfile").read_text()
