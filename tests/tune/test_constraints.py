"""Bounds from baselines (--no-slower-than, --better-than) and the violations they give."""

import pytest

from servetune.tune.constraints import (
    CPU_REQUESTED,
    DEFAULT_HEADROOM,
    MEMORY_REQUESTED,
    RESPONSE_TIME,
    Constraints,
    baseline_bounds,
    measured_violations,
    response_cap,
)
from servetune.tune.frontier import Rule
from servetune.tune.pipeline import TuneOptions
from tune.synthetic import summary

DEFAULT = summary(400 * 1024, 0.8, 0.030)
COURSE = summary(300 * 1024, 0.9, 0.020)


def test_better_than_bounds_each_of_the_three_by_the_least_of_the_baselines_with_its_source():
    bounds = baseline_bounds(Constraints(), {"default": DEFAULT, "course-hpa": COURSE}, "simulated",
                             better_than=["default", "course-hpa"])
    assert bounds.max_memory_requested_mib == 300 and bounds.max_cpu_requested == 0.8
    assert bounds.max_response_ms == pytest.approx(20)
    described = dict(bounds.describe())
    assert described["--max-memory-requested-mib"] == (
        "300 MiB (the simulated memory requested of course-hpa, --better-than)")
    assert described["--max-cpu-requested"] == "0.800 CPU (the simulated CPU requested of default, --better-than)"
    assert described["--max-response-ms"] == "20.0 ms (the simulated response time of course-hpa, --better-than)"


def test_headroom_puts_the_search_bounds_below_the_simulated_baseline_and_leaves_the_measured_bar_alone(tmp_path):
    bounds = baseline_bounds(Constraints(), {"default": DEFAULT}, "simulated", better_than=["default"],
                             headroom=0.05)
    assert bounds.max_memory_requested_mib == pytest.approx(380) and bounds.max_cpu_requested == pytest.approx(0.76)
    assert bounds.max_response_ms == pytest.approx(28.5)
    assert dict(bounds.describe())["--max-cpu-requested"] == (
        "0.760 CPU (the simulated CPU requested of default less 5%, --better-than)")
    # the baseline itself is now 5 % over each bound
    assert {v.constraint: round(v.amount, 4) for v in measured_violations(DEFAULT, bounds)} == {
        "--max-response-ms": 0.0526, "--max-memory-requested-mib": 0.0526, "--max-cpu-requested": 0.0526}
    options = TuneOptions(out=tmp_path, better_than=["default"], headroom=0.05)  # the search's bounds only
    assert options.search_bounds(Constraints(), {"default": DEFAULT}).max_cpu_requested == pytest.approx(0.76)
    assert options.verification_bounds(Constraints(), {"default": DEFAULT}).max_cpu_requested == 0.8
    assert TuneOptions(out=tmp_path).headroom == DEFAULT_HEADROOM == 0.0  # none unless asked for


def test_no_slower_than_bounds_the_response_time_alone_and_shares_the_bound_with_better_than():
    fast, slow = summary(1, 1, 0.020), summary(1, 1, 0.030)
    bounded = baseline_bounds(Constraints(), {"default": fast, "course-hpa": slow}, "simulated",
                              no_slower_than=["default", "course-hpa"])
    assert bounded.max_response_ms == 20.0
    assert bounded.max_memory_requested_mib is None and bounded.max_cpu_requested is None
    assert dict(bounded.describe())["--max-response-ms"] == (
        "20.0 ms (the simulated response time of default, --no-slower-than)")
    mixed = baseline_bounds(Constraints(), {"default": DEFAULT, "course-hpa": COURSE}, "measured",
                            no_slower_than=["course-hpa"], better_than=["default"])
    assert mixed.max_response_ms == pytest.approx(20) and "course-hpa, --no-slower-than" in mixed.response_source
    assert mixed.max_memory_requested_mib == 400 and mixed.memory_source == (
        "the measured memory requested of default, --better-than")


def test_a_flag_keeps_its_bound_where_it_is_tighter_and_a_baseline_without_statistics_bounds_nothing():
    flags = Constraints(max_response_ms=15, max_memory_requested_mib=250, max_cpu_requested=1.0)
    bounds = baseline_bounds(flags, {"default": DEFAULT}, "measured", better_than=["default"])
    assert (bounds.max_response_ms, bounds.max_memory_requested_mib, bounds.max_cpu_requested) == (15, 250, 0.8)
    assert bounds.response_source == bounds.memory_source == ""
    assert dict(bounds.describe())["--max-memory-requested-mib"] == "250 MiB"
    assert baseline_bounds(flags, {}, "measured", better_than=["default"]) == flags  # its run measured nothing


def test_a_candidate_over_the_memory_or_cpu_of_a_better_than_baseline_is_infeasible_by_how_much():
    bounds = baseline_bounds(Constraints(), {"default": DEFAULT}, "simulated", better_than=["default"])
    memory, cpu = measured_violations(summary(410 * 1024, 0.84, 0.025), bounds)
    assert memory.constraint == MEMORY_REQUESTED.flag and cpu.constraint == CPU_REQUESTED.flag
    assert memory.message == ("memory requested 410 MiB > 400 MiB "
                              "(the simulated memory requested of default, --better-than)")
    assert cpu.message == "CPU requested 0.840 CPU > 0.800 CPU (the simulated CPU requested of default, --better-than)"
    assert memory.amount == pytest.approx(0.025) and cpu.amount == pytest.approx(0.05)
    [slower] = measured_violations(summary(300 * 1024, 0.5, 0.033), bounds)
    assert slower.constraint == RESPONSE_TIME.flag and slower.amount == pytest.approx(0.1)


def test_a_candidate_equal_to_the_baseline_on_all_three_is_no_worse():
    bounds = baseline_bounds(Constraints(), {"default": DEFAULT}, "measured", better_than=["default"])
    assert measured_violations(DEFAULT, bounds) == []
    assert measured_violations(summary(399 * 1024, 0.8, 0.029), bounds) == []


def judged(candidate, baseline):
    """The verification's verdict on a candidate's runs against a --better-than baseline's runs."""
    bounds = baseline_bounds(Constraints(), {"default": baseline}, "measured", better_than=["default"])
    return measured_violations(candidate, bounds)


def test_with_one_run_each_no_worse_is_the_strict_comparison():
    assert judged([summary(400 * 1024, 0.8, 0.030)], [DEFAULT]) == []
    [slower] = judged([summary(400 * 1024, 0.8, 0.0301)], [DEFAULT])
    assert slower.message == "response time 30.1 ms > 30.0 ms (the measured response time of default, --better-than)"


def test_a_candidate_within_half_the_baselines_range_is_no_worse():
    # default over 2 runs: 38 and 40 ms, mean 39, range 2: the bar is 39 + 1 = 40 ms
    baseline = [summary(400 * 1024, 0.8, 0.038), summary(400 * 1024, 0.8, 0.040)]
    candidate = [summary(200 * 1024, 0.4, 0.0395), summary(200 * 1024, 0.4, 0.0403)]  # mean 39.9 ms > 39
    assert judged(candidate, baseline) == []
    assert [v.constraint for v in judged(candidate, [summary(400 * 1024, 0.8, 0.039)])] == [RESPONSE_TIME.flag]
    bounds = baseline_bounds(Constraints(), {"default": baseline}, "measured", better_than=["default"])
    assert bounds.max_response_ms == pytest.approx(40)
    assert bounds.response_source == ("the measured response time of default (mean of 2 runs 39.0 ms + half their "
                                      "range 1.0 ms), --better-than")


def test_a_candidate_beyond_half_the_baselines_range_is_worse_by_how_much():
    baseline = [summary(400 * 1024, 0.8, 0.038), summary(400 * 1024, 0.8, 0.040)]
    candidate = [summary(200 * 1024, 0.4, 0.040), summary(200 * 1024, 0.4, 0.0410)]  # mean 40.5 ms > 40
    [slower] = judged(candidate, baseline)
    assert slower.constraint == RESPONSE_TIME.flag and slower.amount == pytest.approx(40.5 / 40 - 1)
    assert slower.message.startswith("response time 40.5 ms (mean of 2 runs) > 40.0 ms (the measured response time")


def test_a_failed_request_in_any_run_fails_even_when_the_mean_is_within_the_bound():
    runs = [summary(200 * 1024, 0.4, 0.030), summary(200 * 1024, 0.4, 0.030, failure_rate=0.02)]
    bounds = Constraints(max_failure_rate=0.015)  # the mean failure rate, 1 %, would meet it
    [failed] = measured_violations(runs, bounds)
    assert failed.constraint == "--max-failure-rate" and failed.message == "failure rate 2.00% (run 2 of 2) > 1.50%"


def test_with_no_response_bound_the_response_time_is_capped_at_twice_the_fastest_baseline():
    capped = response_cap(Constraints(), {"default": DEFAULT, "course-hpa": COURSE})
    assert capped.max_response_ms == pytest.approx(40)
    assert dict(capped.describe())["--max-response-ms"] == (
        "40.0 ms (2 x the simulated response time of course-hpa, the fastest baseline: no response bound was given)")
    bounded = Constraints(max_response_ms=500)
    assert response_cap(bounded, {"default": DEFAULT}) is bounded  # a bound given stays as it is
    assert response_cap(Constraints(), {}) == Constraints()


def test_the_rule_is_the_knee_only_when_nothing_bounds_the_response_time(tmp_path):
    assert TuneOptions(out=tmp_path).rule() is Rule.KNEE
    assert TuneOptions(out=tmp_path, constraints=Constraints(max_response_ms=50)).rule() is Rule.LEAST_MEMORY
    assert TuneOptions(out=tmp_path, better_than=["default"]).rule() is Rule.LEAST_MEMORY
    assert TuneOptions(out=tmp_path, no_slower_than=["default"]).rule() is Rule.LEAST_MEMORY


def test_a_memory_limit_below_the_one_machine_clusters_footprint_is_excluded_before_simulating():
    from servetune.deploy.capacity import MIB
    from servetune.tune.constraints import ModelFacts, static_violations
    from servetune.tune.space import Candidate

    facts = ModelFacts("default", "m", 0.6, "evaluation", 70 * MIB, footprint_bytes=181 * MIB)
    tight = Candidate("default", 0.5, 0.5, 128, 128, 1, None, 1)
    [violation] = static_violations(tight, facts, Constraints())
    assert violation.message == ("memory limit 128 MiB < 181 MiB, the model's footprint as a replica of the "
                                 "one-machine cluster (it would refuse to start it)")
    roomy = Candidate("default", 0.5, 0.5, 128, 256, 1, None, 1)
    assert static_violations(roomy, facts, Constraints()) == []
    elsewhere = ModelFacts("default", "m", 0.6, "evaluation", 70 * MIB)  # verified on Kubernetes: no floor
    assert static_violations(tight, elsewhere, Constraints()) == []


def test_bounds_are_shown_at_the_tables_precision():
    # the figures of a verification of the course's deployment: two runs, 3,961 and 5,964 MiB, 1.934 and 2.912 CPU
    runs = [summary(3960.97 * 1024, 1.93407, 4.2835), summary(5963.96 * 1024, 2.91209, 4.305)]
    bounds = baseline_bounds(Constraints(), {"yours": runs}, "measured", better_than=["yours"])
    described = dict(bounds.describe())
    assert described["--max-memory-requested-mib"] == ("5,964 MiB (the measured memory requested of yours (mean of "
                                                       "2 runs 4,962 MiB + half their range 1,001 MiB), --better-than)")
    assert described["--max-cpu-requested"].startswith("2.912 CPU (the measured CPU requested of yours (mean of 2 "
                                                       "runs 2.423 CPU + half their range 0.489 CPU)")
    assert described["--max-response-ms"].startswith("4305.0 ms (the measured response time of yours (mean of 2 runs "
                                                     "4294.2 ms + half their range 10.8 ms)")
    # a value over its bound by less than the precision shows more digits; a bound below it is no zero
    [cpu] = measured_violations(summary(1, 0.8004, 0.001), Constraints(max_cpu_requested=0.8))
    assert cpu.message == "CPU requested 0.8004 CPU > 0.800 CPU"
    assert dict(Constraints(max_response_ms=0.01).describe())["--max-response-ms"] == "0.01 ms"
