"""siege's accounting of a run (which statuses are transactions, OKAY or Failed) and its log arithmetic."""

from __future__ import annotations

import math
import random
from collections import Counter

from servetune.load.driver import think_time
from servetune.load.tally import RunTally


def test_statuses_are_counted_like_siege():
    tally = RunTally()
    for status in (200, 201, 301, 401, 404, 410, 500, 503, 408, 510, 0):
        tally.add(status, 0.5, 1000)
    # transactions: all answered statuses except 408 and 500..509; OKAY: < 400 plus 401/407
    assert tally.trans == 7  # 200 201 301 401 404 410 510
    assert tally.okay == 4  # 200 201 301 401
    assert tally.failed == 4  # 500 503 408 and the connection error
    # time of 5xx answers still adds up (siege adds it before deciding the request failed)
    assert tally.total_time == 10 * 0.5
    assert tally.bytes == 10 * 1000


def test_row_arithmetic_matches_siege_log_c():
    tally = RunTally()
    for _ in range(100):
        tally.add(200, 0.2, 30_000)  # 3,000,000 bytes = 2.86 MiB
    row = tally.to_row(60.0, "2024-01-01 00:00:00")
    assert row.trans == 100 and row.okay == 100
    assert row.data_trans == 2  # whole MiB, truncated like siege's int cast
    assert row.throughput == 2 / 60.0
    assert math.isclose(row.resp_time, 0.2)
    assert math.isclose(row.trans_rate, 100 / 60)
    assert math.isclose(row.concurrent, 20 / 60)


def test_empty_runs_divide_by_zero_like_c():
    failed_only = RunTally()
    failed_only.add(503, 1.0, 10)
    assert math.isinf(failed_only.to_row(5.0).resp_time)
    nothing = RunTally()
    nothing.add(0, 1.0, 0)
    assert math.isnan(nothing.to_row(5.0).resp_time)


def test_think_time_is_whole_seconds_0_to_d_with_half_weight_ends():
    rng = random.Random(1)
    draws = Counter(think_time(rng, 2) for _ in range(40_000))
    assert set(draws) == {0.0, 1.0, 2.0}
    # (unsigned)(U*2 + 0.5): 0 for U < .25, 1 for .25..0.75, 2 above
    assert abs(draws[0.0] / 40_000 - 0.25) < 0.02
    assert abs(draws[1.0] / 40_000 - 0.50) < 0.02
    assert think_time(rng, 0) == 0.0
    small = think_time(rng, 0.5)
    assert 0 <= small <= 0.5
