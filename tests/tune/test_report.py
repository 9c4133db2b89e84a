"""What the tune report says about the bounds the verification judged by."""

from pathlib import Path

from servetune.labels.stats import wilson_interval
from servetune.tune.constraints import Constraints, baseline_bounds
from servetune.tune.report import (
    SIDE_BY_SIDE,
    live_accuracy_section,
    measured_header,
    side_by_side,
    verification_bounds,
)
from servetune.tune.verify import Repeat, Verification
from tune.synthetic import summary


def test_the_measured_bounds_are_listed_where_they_differ_from_the_search():
    simulated, measured = summary(400 * 1024, 0.9, 0.02), summary(380 * 1024, 0.75, 0.25)
    search = baseline_bounds(Constraints(), {"default": simulated}, "simulated", better_than=["default"])
    bar = baseline_bounds(Constraints(), {"default": measured}, "measured", better_than=["default"])
    text = "".join(verification_bounds(search, bar))
    for row in ("380 MiB (the measured memory requested of default, --better-than)",
                "0.750 CPU (the measured CPU requested of default, --better-than)",
                "250.0 ms (the measured response time of default, --better-than)"):
        assert row in text
    assert verification_bounds(search, search) == []


def test_the_side_by_side_shows_the_mean_of_several_runs_with_its_range():
    simulated = summary(400 * 1024, 0.9, 0.020)
    runs = [summary(380 * 1024, 0.75, 0.024, replicas=2.0), summary(380 * 1024, 0.85, 0.026, replicas=3.0)]
    rows = {row[0]: row[1:] for row in side_by_side(simulated, runs)}
    assert rows["response time (ms)"] == ["20.0", "25.0 (24.0-26.0)", "+25%"]
    assert rows["CPU requested (cores)"] == ["0.900", "0.800 (0.750-0.850)", "-11%"]
    assert rows["replicas max"] == ["2", "3 (2-4)", "+50%"]  # max replicas 2 and 4
    assert measured_header(2)[2] == "measured: mean (min-max) of 2 runs"
    one = {row[0]: row[1:] for row in side_by_side(simulated, runs[:1])}
    assert one["response time (ms)"] == ["20.0", "24.0", "+20%"] and measured_header(1) == SIDE_BY_SIDE
    assert side_by_side(simulated, [])[2] == ["response time (ms)", "20.0", "n/a", ""]


def live_runs(*counts: tuple[int, int]):
    """Real runs whose labelling users gave `n` held-out labels, `correct` of them the model's class."""
    return [summary(380 * 1024, 0.8, 0.025).model_copy(update={
        "accuracy": 0.69, "live_accuracy": correct / n, "live_accuracy_n": n,
        "live_accuracy_interval": wilson_interval(correct, n)}) for correct, n in counts]


def verification(label: str, runs) -> Verification:
    return Verification(label, Path(f"{label}.yaml"), summary(400 * 1024, 0.9, 0.02),
                        [Repeat(Path(label), "completed", None, run) for run in runs])


def test_the_live_accuracy_of_each_spec_run_for_real_is_pooled_over_its_runs_and_compared():
    mine = verification("baseline-mine mine.yaml", live_runs((90, 100)))
    variant = verification("c0003 int8", live_runs((30, 50), (36, 50)))  # pooled: 66 of 100
    plain = verification("c0004 fp32-160", [])  # nothing measured: left out
    assert variant.live.n == 100 and variant.live.value == 0.66
    assert variant.live.interval == wilson_interval(66, 100)
    assert variant.accuracy_text() == (f"live accuracy {variant.live.text()} from held-out labels during the "
                                       "runs; offline 69.00% (the model's, on a fixed data set)")
    assert plain.live is None and plain.accuracy_text() == ""
    html = "".join(live_accuracy_section([mine, variant, plain]))
    assert "<td>baseline-mine mine.yaml</td><td>69.00%</td><td>90.00% (95 % Wilson" in html
    assert ("live accuracy of baseline-mine mine.yaml and c0003 int8: the 95 % intervals do not overlap: "
            "baseline-mine mine.yaml (90.00%") in html
    assert "c0004" not in html
    assert live_accuracy_section([plain]) == []
