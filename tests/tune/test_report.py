"""What the tune report says about the bounds the verification judged by."""

from servetune.tune.constraints import Constraints, baseline_bounds
from servetune.tune.report import verification_bounds
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
