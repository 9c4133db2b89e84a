"""A statistic over repeated real runs: its mean and range, and the bar it sets for "no worse than"."""

import pytest

from servetune.tune.repeats import spread


def test_the_mean_and_min_max_range_of_the_runs():
    runs = spread([39.0, 41.8, 40.4])
    assert (runs.mean, runs.low, runs.high, runs.runs) == (pytest.approx(40.4), 39.0, 41.8, 3)
    assert runs.text(".1f") == "40.4 (39.0-41.8)"
    assert spread([0.0, 0.0125]).text(".2%") == "0.62% (0.00%-1.25%)"


def test_one_run_is_its_own_figure_with_no_range():
    one = spread([39.0])
    assert (one.mean, one.low, one.high, one.bar) == (39.0, 39.0, 39.0, 39.0)
    assert one.text(".1f") == "39.0" and spread([3]).text("g") == "3"


def test_the_bar_is_the_mean_plus_half_the_range():
    assert spread([38.0, 40.0]).bar == 40.0  # mean 39 + (40 - 38) / 2
    assert spread([10.0, 11.0, 15.0]).bar == pytest.approx(12 + 2.5)


def test_no_runs_is_an_error():
    with pytest.raises(ValueError, match="at least one run"):
        spread([])
