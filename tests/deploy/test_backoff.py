"""The kubelet's restart back-off as a pure step."""

from __future__ import annotations

import pytest

from servetune.deploy.backoff import Backoff, BackoffTimings, after_exit


def test_doubles_from_10_s_to_the_5_minute_cap():
    timings = BackoffTimings()
    backoff, now, delays = Backoff(), 1000.0, []
    for _ in range(8):
        backoff = after_exit(backoff, now, timings)
        delays.append(backoff.delay_s)
        now = backoff.restart_at() + 1  # it starts, then crashes a second later
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_starts_over_after_ten_quiet_minutes():
    timings = BackoffTimings()
    backoff = after_exit(after_exit(Backoff(), 0.0, timings), 20.0, timings)
    assert backoff.delay_s == 20
    assert after_exit(backoff, 20.0 + 600.0, timings).delay_s == 20 * 2  # not quiet for long enough yet
    assert after_exit(backoff, 20.0 + 601.0, timings).delay_s == 10


def test_time_scale_shortens_every_duration():
    timings = BackoffTimings(time_scale=0.1)
    backoff = Backoff()
    delays = []
    for now in (0.0, 2.0, 5.0, 10.0, 18.0, 34.0, 66.0):
        backoff = after_exit(backoff, now, timings)
        delays.append(round(backoff.delay_s, 6))
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert after_exit(backoff, 66.0 + 61.0, timings).delay_s == 1  # 10 quiet minutes x 0.1
    assert backoff.restart_at() == 66.0 + 30
    with pytest.raises(ValueError, match="time_scale"):
        BackoffTimings(time_scale=0)
