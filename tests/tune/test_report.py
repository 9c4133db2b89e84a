"""What the tune report says about the bounds the verification judged by."""

from servetune.tune.constraints import Constraints, baseline_bounds
from servetune.tune.report import SIDE_BY_SIDE, measured_header, side_by_side, verification_bounds
from tune.synthetic import summary


def test_the_measured_bounds_are_listed_where_they_differ_from_the_search():
    simulated, measured = summary(400 * 1024, 0.9, 0.02), summary(380 * 1024, 0.75, 0.25)
    search = baseline_bounds(Constraints(), {"default": simulated}, "simulated", better_than=["default"])
    bar = baseline_bounds(Constraints(), {"default": measured}, "measured", better_than=["default"])
    text = "".join(verification_bounds(search, bar))
    for row in ("380 MiB (the measured memory requested of default, --better-than)",
                "0.75 CPU (the measured CPU requested of default, --better-than)",
                "250 ms (the measured response time of default, --better-than)"):
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
