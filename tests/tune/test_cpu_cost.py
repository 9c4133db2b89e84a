"""CPU per request from repeated loads, on hand-computed numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from servetune.host.machine_cpu import QUIET_OTHERS_CORES
from servetune.tune.cpu_cost import busy_note, cpu_per_request, repeat_figures, spread_text
from servetune.tune.measure import Setting, build_calibration, quantile_mean

MODEL = Path(__file__).parents[2] / "src" / "servetune" / "model" / "default" / "food11-lite0-int8.onnx"


def repeat(ms: float, others: float | None):
    return repeat_figures(ms / 10, 0.0, 10.0, 100, others)  # 100 requests: ms / 10 CPU seconds


def test_a_repeat_is_the_workers_cpu_less_its_idle_cpu_per_request() -> None:
    # 1.2 s of worker CPU over 10 s, of which 0.02 cores x 10 s = 0.2 s idle (probes, timers): 1.0 s for 100
    # requests = 10 ms each; the others' cores are kept as measured
    figures = repeat_figures(cpu_s=1.2, idle_cores=0.02, seconds=10.0, requests=100, others_cores=0.1234)
    assert (figures.cpu_ms_per_request, figures.others_cores, figures.requests) == (10.0, 0.123, 100)
    assert repeat_figures(0.1, 0.05, 10.0, 100, None).cpu_ms_per_request == 0.0  # never below nothing


def test_the_figure_comes_from_the_repeats_least_disturbed_by_other_processes() -> None:
    # others 0.05, 0.2 and 1.0 cores: the quietest is 0.05, so 0.05 and 0.2 (within 0.25 of it) are used:
    # median of 9 and 10 ms = 9.5, spread 9-10, others mean 0.125; the 14 ms beside a busy machine is kept
    # in the file but left out
    repeats = [repeat(9.0, 0.05), repeat(14.0, 1.0), repeat(10.0, 0.2)]
    figure = cpu_per_request("GET /test", 1.0, repeats)
    assert (figure.ms, figure.low_ms, figure.high_ms, figure.used) == (9.5, 9.0, 10.0, 2)
    assert figure.others_cores == pytest.approx(0.125)
    assert [r.cpu_ms_per_request for r in figure.repeats] == [9.0, 14.0, 10.0]
    assert busy_note([figure]) is None
    assert spread_text(figure) == "GET /test 9.5 ms CPU (9.0-10.0 over 2 of 3 repeats, others 0.12 cores)"


def test_a_calibration_on_a_busy_machine_warns() -> None:
    figure = cpu_per_request("GET /test", 1.0, [repeat(12.0, 0.9), repeat(11.0, 0.8), repeat(15.0, 1.3)])
    assert (figure.ms, figure.used) == (11.5, 2)  # 0.8 and 0.9: within 0.25 of the quietest
    note = busy_note([figure])
    assert note is not None and "0.80 cores" in note and f"above {QUIET_OTHERS_CORES} cores" in note and "--from-run" in note
    unknown = cpu_per_request("GET /test", 1.0, [repeat(12.0, None), repeat(10.0, None), repeat(11.0, None)])
    assert (unknown.ms, unknown.used, unknown.others_cores) == (11.0, 3, None)
    assert "unknown" in (busy_note([unknown]) or "")
    assert busy_note([]) is None


def test_the_calibrations_mean_is_the_measured_cpu_per_request_and_keeps_its_spread() -> None:
    # one user at 1 CPU measured latencies 10..30 ms with 2 ms of driver overhead; the repeats say 9.5 ms:
    # the simulator's distribution keeps the latencies' shape, scaled to a mean of 9.5 ms
    settings = [Setting(target, 1.0, [10.0 + i for i in range(21)], 20.0, 2.0, 50.0, 16.0)
                for target in ("GET /test", "POST /predict")]
    cost = cpu_per_request("GET /test", 1.0, [repeat(9.0, 0.05), repeat(10.0, 0.2)])
    calibration = build_calibration(MODEL, "m", {}, settings, [2.0], [1.0], [1], [1], 1, [0.01], [cost])
    assert quantile_mean(calibration.cpu_ms_quantiles["GET /test"]) == pytest.approx(9.5, rel=1e-3)
    low, high = calibration.cpu_ms_quantiles["GET /test"][0], calibration.cpu_ms_quantiles["GET /test"][-1]
    assert high / low == pytest.approx(28 / 8, rel=1e-3)  # (30 - 2) / (10 - 2): the shape kept
    # an endpoint without repeats (a cluster's calibration) keeps the 20-user figure: max(20, 16) ms
    assert quantile_mean(calibration.cpu_ms_quantiles["POST /predict"]) == pytest.approx(20.0, rel=1e-3)
    assert calibration.cpu_per_request == [cost] and calibration.notes == []
