"""Calibrating a real replica on the one-machine cluster (real gunicorn worker, real load driver)."""

from __future__ import annotations

import statistics

import pytest

from servetune.model.artifact import default_model_path
from servetune.tune.cpu_cost import busy_note
from servetune.tune.measure import calibrate_model, quantile_mean


@pytest.mark.slow
def test_calibrating_the_packaged_model_measures_a_real_replica() -> None:
    steps: list[str] = []
    calibration = calibrate_model(default_model_path(), seconds=1.5, limits=(1.0,), repeats=2,
                                  progress=steps.append)
    assert calibration.model == "food11-lite0-112-int8" and calibration.source == "measured"
    assert [(s.target, s.cpu_limit) for s in calibration.service] == [("GET /test", 1.0), ("POST /predict", 1.0)]
    for setting in calibration.service:
        assert setting.requests >= 2
        assert 1 < setting.cpu_ms_per_request < 200
        assert setting.latency_ms_quantiles == sorted(setting.latency_ms_quantiles)
        assert setting.saturated_per_s and setting.saturated_per_s > 0
    cpu_ms = statistics.fmean(calibration.cpu_ms_quantiles["GET /test"])
    assert 1 < cpu_ms < 200
    assert 20 * 2**20 < calibration.rss_idle_bytes <= calibration.rss_peak_bytes < 1024 * 2**20
    assert calibration.start_to_ready_s > 0 and calibration.start_cpu_s > 0
    assert calibration.load_generator_cpu_ms_per_request and calibration.load_generator_cpu_ms_per_request > 0
    assert calibration.overhead_ms == calibration.load_generator_cpu_ms_per_request
    assert any("second replica" in step for step in steps)
    # CPU per request from 2 run-like loads per endpoint: the worker's own CPU, the others' cores beside it
    assert [c.target for c in calibration.cpu_per_request] == ["GET /test", "POST /predict"]
    for cost in calibration.cpu_per_request:
        assert len(cost.repeats) == 2 and 1 <= cost.used <= 2 and cost.cpu_limit == 1.0
        assert all(r.requests >= 2 and r.others_cores is not None and r.others_cores >= 0 for r in cost.repeats)
        assert 1 < cost.low_ms <= cost.ms <= cost.high_ms < 200
        assert quantile_mean(calibration.cpu_ms_quantiles[cost.target]) == pytest.approx(cost.ms, rel=0.01)
    assert calibration.notes == ([note] if (note := busy_note(calibration.cpu_per_request)) else [])
