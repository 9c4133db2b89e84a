"""A calibration checked against a real run of its model (tests/data/recorded-hpa50): more than 15 % apart warns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from servetune.analyze.stats import summarize
from servetune.tune.calibration import Calibration, load_calibration
from servetune.tune.calibration_check import DISAGREEMENT, check_calibrations, check_run, disagreements
from servetune.tune.evaluate import ModelCalibrations
from servetune.tune.measure import quantile_mean

RUN = Path(__file__).parents[1] / "data" / "recorded-hpa50"


def scaled(calibration: Calibration, mean_ms: float) -> Calibration:
    """The calibration with its GET /test CPU per request scaled to a mean of `mean_ms`."""
    values = calibration.cpu_ms_quantiles["GET /test"]
    factor = mean_ms / quantile_mean(values)
    return calibration.model_copy(update={"cpu_ms_quantiles": {
        **calibration.cpu_ms_quantiles, "GET /test": [v * factor for v in values]}})


def test_a_run_is_compared_on_the_cpu_it_used_per_request() -> None:
    calibration = load_calibration(RUN / "calibration.json")  # of the run's own model file
    check = check_run(RUN, calibration)
    assert check is not None and check.target == "GET /test"
    real = summarize(RUN)
    # the monitor's CPU over the run (each sample standing for its 2.5 s) over its requests, less the idle
    expected = 1000 * real.cpu_used_core * real.replica_seconds / real.mean_replicas / real.requests
    assert check.run_ms == pytest.approx(expected, rel=0.15)
    assert check.calibrated_ms == pytest.approx(quantile_mean(calibration.cpu_ms_quantiles["GET /test"]), abs=1e-3)


@pytest.mark.parametrize(("apart", "warns"), [(0.16, True), (0.14, False), (-0.16, True), (-0.14, False)])
def test_a_calibration_more_than_15_percent_from_the_run_warns(apart: float, warns: bool) -> None:
    base = load_calibration(RUN / "calibration.json")
    run_ms = check_run(RUN, base).run_ms
    calibration = scaled(base, run_ms / (1 + apart))  # the run used `apart` more (less) than it says
    check = check_run(RUN, calibration)
    assert check.relative == pytest.approx(apart, abs=1e-3)
    assert check.disagrees is warns and DISAGREEMENT == 0.15
    file = Path("calibrations/m/calibration.json")
    warnings = disagreements([RUN], [(calibration, file)])
    assert len(warnings) == warns
    if warns:
        assert f"{file} ({calibration.model}) says {run_ms / (1 + apart):.1f} ms of CPU per GET /test" in warnings[0]
        assert f"used {run_ms:.1f} ms ({apart:+.0%}" in warnings[0]
        assert f"servetune tune calibrate --from-run {RUN} --calibration {file}" in warnings[0]


def test_only_completed_real_runs_of_the_same_model_and_backend_are_compared(tmp_path) -> None:
    far_off = scaled(load_calibration(RUN / "calibration.json"), 100.0)
    assert check_run(RUN, far_off).disagrees
    assert check_run(RUN, far_off.model_copy(update={"model_sha256": "0" * 64})) is None  # another model file
    assert check_run(RUN, far_off.model_copy(update={"backend": "kubernetes"})) is None  # another backend's CPUs
    info = json.loads((RUN / "run.json").read_text())
    for name, change in (("failed", {"status": "failed"}), ("simulated", {"simulated": True})):
        run = tmp_path / name
        shutil.copytree(RUN, run)
        (run / "run.json").write_text(json.dumps({**info, **change}))
        assert check_run(run, far_off) is None
    assert check_run(tmp_path / "missing", far_off) is None


def test_a_tunes_calibrations_are_checked_once_each_with_their_file(tmp_path) -> None:
    far_off = scaled(load_calibration(RUN / "calibration.json"), 100.0)
    file = tmp_path / "calibration.json"
    calibrations = ModelCalibrations({file: far_off}, {"default": far_off, "same file again": far_off})
    warnings = check_calibrations(calibrations, [RUN])
    assert len(warnings) == 1 and f"--calibration {file}" in warnings[0] and "says 100.0 ms" in warnings[0]
    packaged = ModelCalibrations({}, {"default": far_off})
    assert "the packaged calibration" in check_calibrations(packaged, [RUN])[0]
