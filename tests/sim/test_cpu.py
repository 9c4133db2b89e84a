"""Processor sharing and CFS quotas on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from servetune.sim.cpu import LEAST_CORES, Group, Processor
from servetune.sim.kernel import Kernel


def run(cores: float | None, groups: list[tuple[Group, list[float]]], at: float = 0.0) -> dict[int, float]:
    """Start every group's tasks (CPU seconds) at `at`; when each task ended, by its index in order."""
    kernel = Kernel()
    cpu = Processor(kernel, cores)
    ends: dict[int, float] = {}
    index = 0
    for group, works in groups:
        cpu.groups.append(group)
        for work in works:
            cpu.start(group, work, lambda now, i=index: ends.__setitem__(i, now), at)
            index += 1
    kernel.run_until()
    return ends


def test_two_requests_on_one_core_share_it_and_end_together() -> None:
    # 10 ms each, together on one core: each gets half of it, both end at 20 ms (not 10 and 20).
    ends = run(1.0, [(Group(None, 1.0, 1.0), [0.010]), (Group(None, 1.0, 1.0), [0.010])])
    assert ends == pytest.approx({0: 0.020, 1: 0.020})


def test_a_shorter_request_leaves_the_core_to_the_other() -> None:
    # 10 and 30 ms on one core: shared until 20 ms (10 ms each), then the second alone: 20 ms more -> 40 ms.
    ends = run(1.0, [(Group(None, 1.0, 1.0), [0.010]), (Group(None, 1.0, 1.0), [0.030])])
    assert ends == pytest.approx({0: 0.020, 1: 0.040})


def test_a_quota_throttles_two_requests_until_the_next_period() -> None:
    # One pod with a 0.5-CPU limit (50 ms per 100 ms period), two requests of 40 ms on 2 cores, one each:
    # together they spend the 50 ms by 25 ms (25 ms done each), wait until 100 ms, then need 15 ms more
    # each at one core each: both end at 115 ms.
    pod = Group(0.05, solo=1.0, shared=1.0)
    ends = run(2.0, [(pod, [0.040, 0.040])])
    assert ends == pytest.approx({0: 0.115, 1: 0.115})
    assert pod.cpu == pytest.approx(0.080)


def test_two_requests_under_a_half_core_quota_on_one_core() -> None:
    # Two requests of 30 ms sharing one core in a pod limited to 0.5 CPU: the 50 ms of quota is spent by
    # 50 ms (25 ms done each), throttled until 100 ms, then 5 ms each left at half a core each: 110 ms.
    ends = run(1.0, [(Group(0.05, solo=1.0, shared=1.0), [0.030, 0.030])])
    assert ends == pytest.approx({0: 0.110, 1: 0.110})


def test_a_throttled_pod_leaves_the_cores_to_the_others() -> None:
    # One core; pod A limited to 0.1 CPU (10 ms per period) with 40 ms of work, pod B unlimited with 30 ms.
    # Shared half and half: A spends its 10 ms by 20 ms (B has 10 ms done), then B runs alone: 20 ms more,
    # ends at 40 ms. A waits for each period: 10 ms more at 100..110, 200..210, 300..310 ms.
    limited, free = Group(0.01, 1.0, 1.0), Group(None, 1.0, 1.0)
    ends = run(1.0, [(limited, [0.040]), (free, [0.030])])
    assert ends == pytest.approx({0: 0.310, 1: 0.040})


def test_a_request_alone_uses_its_threads_and_shares_one_among_others() -> None:
    # solo 1.5 cores, shared 1 core, no node bound: alone 15 ms of CPU takes 10 ms; two take 15 ms each.
    assert run(None, [(Group(None, 1.5, 1.0), [0.015])]) == pytest.approx({0: 0.010})
    assert run(None, [(Group(None, 1.5, 1.0), [0.015, 0.015])]) == pytest.approx({0: 0.015, 1: 0.015})


def test_periods_count_from_time_zero_for_a_late_start() -> None:
    # A 0.5-CPU quota, 60 ms of work starting at 70 ms: 30 ms until the period ends at 100 ms (30 of its
    # 50 ms), then the 30 ms left in the next period: ends at 130 ms.
    ends = run(1.0, [(Group(0.05, 1.0, 1.0), [0.060])], at=0.070)
    assert ends == pytest.approx({0: 0.130})


def test_two_throttled_pods_on_a_shared_core_resume_together_each_period() -> None:
    # One core, two pods limited to 0.1 CPU (10 ms per period), 30 ms of work each: half a core each, both
    # spend their 10 ms by 20 ms; both resume at 100 ms (the node divided between them again) and at 200 ms:
    # both end at 220 ms, each having used its whole quota three times.
    first, second = Group(0.01, 1.0, 1.0), Group(0.01, 1.0, 1.0)
    ends = run(1.0, [(first, [0.030]), (second, [0.030])])
    assert ends == pytest.approx({0: 0.220, 1: 0.220})
    assert (first.cpu, second.cpu) == pytest.approx((0.030, 0.030))


def test_other_work_on_the_machine_takes_its_cores_from_the_pods() -> None:
    # 2 cores of which other processes take 1.5 (a run's host_cpu): two requests of 10 ms in two pods share
    # the 0.5 core left, a quarter core each: both end at 40 ms (on the whole 2 cores: 10 ms).
    kernel = Kernel()
    cpu = Processor(kernel, 2.0, others=1.5)
    assert cpu.cores == pytest.approx(0.5)
    ends: dict[int, float] = {}
    for index in range(2):
        group = Group(None, 1.0, 1.0)
        cpu.groups.append(group)
        cpu.start(group, 0.010, lambda now, i=index: ends.__setitem__(i, now), 0.0)
    kernel.run_until()
    assert ends == pytest.approx({0: 0.040, 1: 0.040})
    # others taking every core still leave the pods LEAST_CORES (a recorded figure, not a stalled node)
    assert Processor(Kernel(), 2.0, others=2.4).cores == pytest.approx(LEAST_CORES)
    assert Processor(Kernel(), None, others=1.0).cores == math.inf  # no node bound: nothing to take from
