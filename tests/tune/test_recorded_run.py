"""A real run (`servetune run --backend local`, quick profile at --time-scale 0.5, HPA 1-3 at 50 % on
0.5 CPU requested, on the 2-core build machine while other work ran) reproduced by the simulator, and
recalibrated from."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from servetune.analyze.stats import summarize
from servetune.deploy.capacity import Capacity
from servetune.deploy.spec import load_deployment_spec
from servetune.load.profile import parse_profile
from servetune.sim.simulate import MetricsTiming, simulate
from servetune.tune.calibration import CalibrationError, default_calibration, load_calibration
from servetune.tune.from_run import busiest_cores, calibration_from_run, recorded_node
from servetune.tune.measure import quantile_mean

RUN = Path(__file__).parents[1] / "data" / "recorded-hpa50"


def test_the_simulation_reproduces_the_recorded_run_within_the_fidelity_bounds() -> None:
    real = summarize(RUN)
    # the calibration of the run's own time and model file (the packaged one has moved on since)
    calibration = load_calibration(RUN / "calibration.json")
    assert calibration.model_sha256 == json.loads((RUN / "run.json").read_text())["model_file"]["sha256"]
    # the run predates run.json's host_cpu: the node is what its busiest phase got
    node, others = recorded_node(real, calibration, 2.0)
    assert (node, others) == (busiest_cores(real, calibration), 0.0)
    assert 0.1 < node < 1.0  # the machine was shared: the servers got far less than its 2 cores
    runs = simulated(calibration, node, others)

    def mean(field: str) -> float:
        return statistics.fmean(getattr(run, field) for run in runs)

    assert mean("memory_requested_KB") == pytest.approx(real.memory_requested_KB, rel=0.10)
    assert mean("cpu_requested_core") == pytest.approx(real.cpu_requested_core, rel=0.10)
    assert mean("transaction_rate") == pytest.approx(real.transaction_rate, rel=0.10)
    assert mean("response_time_s") == pytest.approx(real.response_time_s, rel=0.30)
    assert statistics.median(run.max_replicas for run in runs) == real.max_replicas


def simulated(calibration, node: float, others: float) -> list:
    spec, profile = load_deployment_spec(RUN / "spec.yaml"), parse_profile(RUN / "load_profile.yaml")
    return [
        simulate(spec, profile, calibration, seed=seed, capacity=Capacity(2.0, 24 * 2**30),
                 metrics=MetricsTiming(backend="local"), node_cpu=node, others_cores=others).statistics
        for seed in range(3)
    ]


def test_a_run_that_recorded_host_cpu_is_simulated_with_the_others_cores_taken_from_the_machine(tmp_path) -> None:
    # The same run as if it had recorded host_cpu: others took 2 - 0.35 = 1.65 of the 2 cores, so the pods and
    # the load driver share 0.35 cores, exactly as a node of 0.35 cores without others.
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    info = json.loads((RUN / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "host_cpu": {"cores": 2, "others_cores": 1.65}}))
    calibration = load_calibration(RUN / "calibration.json")
    node, others = recorded_node(summarize(run), calibration, 2.0)
    assert (node, others) == (2.0, 1.65)
    taken, bounded = simulated(calibration, node, others), simulated(calibration, 0.35, 0.0)
    for field in ("transaction_rate", "response_time_s", "cpu_used_core"):
        assert [getattr(s, field) for s in taken] == pytest.approx([getattr(s, field) for s in bounded], rel=1e-6)
    # and the others' cores matter: on the whole machine the same load is answered far faster
    whole = simulated(calibration, 2.0, 0.0)
    assert statistics.fmean(s.response_time_s for s in whole) < 0.5 * statistics.fmean(
        s.response_time_s for s in taken)


def test_recalibrating_from_the_run_takes_its_cpu_and_memory(tmp_path) -> None:
    base = default_calibration()
    recalibrated = calibration_from_run(RUN, base)
    real = summarize(RUN)
    # CPU per request: the monitor's CPU over the run (5 s x 0.5 samples) over the requests answered
    expected_ms = 1000 * real.cpu_used_core * real.replica_seconds / real.mean_replicas / real.requests
    mean_ms = quantile_mean(recalibrated.cpu_ms_quantiles["GET /test"])
    assert mean_ms == pytest.approx(expected_ms, rel=0.15)
    assert recalibrated.cpu_ms_quantiles["POST /predict"] == base.cpu_ms_quantiles["POST /predict"]
    assert 40 * 2**20 < recalibrated.rss_loaded_bytes < 200 * 2**20
    assert recalibrated.source == f"run folder {RUN}"
    # where it was measured: the run's backend (a Kubernetes run's calibration simulates that cluster)
    run_info = json.loads((RUN / "run.json").read_text())
    assert recalibrated.backend == run_info["backend"]
    on_a_cluster = tmp_path / "k8s-run"
    shutil.copytree(RUN, on_a_cluster)
    (on_a_cluster / "run.json").write_text(json.dumps({**run_info, "backend": "kubernetes"}))
    assert calibration_from_run(on_a_cluster, base).backend == "kubernetes"
    # the run's model, not the base calibration's: tune matches calibrations to models by this hash
    model_file = json.loads((RUN / "run.json").read_text())["model_file"]
    assert (recalibrated.model_sha256, recalibrated.model_file) == (model_file["sha256"], "food11-lite0-int8.onnx")
    assert recalibrated.service[-1].requests == real.okay
    assert recalibrated.service[-1].cpu_limit == 1.0 and recalibrated.service[-1].workers == 1  # local: one

    without_requests = tmp_path / "run"
    shutil.copytree(RUN, without_requests)
    (without_requests / "requests.csv").unlink()
    with pytest.raises(CalibrationError, match="requests.csv: missing or empty"):
        calibration_from_run(without_requests, base)
