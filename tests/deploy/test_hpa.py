"""The HPA rule against hand-computed cases, one per branch of the upstream controller."""

from __future__ import annotations

import pytest

from servetune.config import AutoscalingSpec, ScalingBehavior, ScalingPolicy, ScalingRules
from servetune.deploy.hpa import (
    HpaMemory,
    HpaTimings,
    MetricsUnavailable,
    PodObservation,
    cpu_replicas,
    hpa_step,
)

NOW = 10_000.0


def pod(name: str, usage: int | None, request: int = 100, **status) -> PodObservation:
    """A pod started long ago (past the CPU initialisation period), ready, with a fresh sample."""
    fields = {
        "start_time": NOW - 1000, "ready": True, "ready_transition_time": NOW - 990,
        "metric_timestamp": NOW, "metric_window_s": 15.0,
    }
    fields.update(status)
    return PodObservation(name=name, cpu_request_milli=request, cpu_usage_milli=usage, **fields)


def spec(minimum: int = 1, maximum: int = 10, target: int = 50, behavior=None) -> AutoscalingSpec:
    return AutoscalingSpec(
        min_replicas=minimum, max_replicas=maximum, target_cpu_utilization=target, behavior=behavior
    )


# --- replica calculator -------------------------------------------------------------------------------


def test_all_ready_utilisation_is_integer_percent_of_summed_requests():
    # 2 pods, 400m of 500m each: 80 % against a 50 % target -> ratio 1.6 -> ceil(1.6 * 2) = 4.
    pods = [pod("a", 400, 500), pod("b", 400, 500)]
    assert cpu_replicas(2, 50, pods, NOW) == (4, 80)


def test_utilisation_is_truncated_like_the_controller():
    # 100m of 300m = 33.3 % -> 33 (integer division) -> ratio 0.66 -> ceil(0.66 * 3) = 2 (not 0.6667).
    pods = [pod("a", 100), pod("b", 0), pod("c", 0)]
    assert cpu_replicas(3, 50, pods, NOW) == (2, 33)


def test_within_tolerance_keeps_current():
    # 54 % against 50 %: |1 - 1.08| <= 0.1 -> keep 3 (the ready count is 2).
    assert cpu_replicas(3, 50, [pod("a", 54), pod("b", 54)], NOW) == (3, 54)
    # 56 %: 1.12 is outside the tolerance -> ceil(1.12 * 2) = 3.
    assert cpu_replicas(2, 50, [pod("a", 56), pod("b", 56)], NOW) == (3, 56)


def test_missing_pod_counts_as_full_request_on_scale_down():
    # 3 pods at 40 % and one without a sample, target 50: ratio 0.8; the missing pod at 100 % gives
    # (120 + 100) / 400 = 55 % -> 1.1, inside the tolerance -> keep 4. Without it: ceil(0.8 * 3) = 3.
    ready = [pod("a", 40), pod("b", 40), pod("c", 40)]
    assert cpu_replicas(4, 50, ready + [pod("d", None)], NOW) == (4, 40)
    assert cpu_replicas(3, 50, ready, NOW) == (3, 40)


def test_missing_pod_uses_target_when_target_above_100():
    # target 200 %: 3 pods at 100 % -> ratio 0.5; the missing one counts as 200 % -> 500/4 = 125 %
    # -> 0.625 -> ceil(0.625 * 4) = 3.
    pods = [pod("a", 100), pod("b", 100), pod("c", 100), pod("d", None)]
    assert cpu_replicas(4, 200, pods, NOW) == (3, 100)


def test_missing_pod_counts_as_zero_on_scale_up():
    # 2 pods at 200 %, one missing, target 50: 400*100//300 = 133 % -> 2.66 -> ceil(2.66 * 3) = 8.
    pods = [pod("a", 200), pod("b", 200), pod("c", None)]
    assert cpu_replicas(3, 50, pods, NOW) == (8, 200)


def test_unready_pod_counts_as_zero_on_scale_up():
    # One ready pod at 260m of 100m, one unready pod requesting 300m, target 50: 5.2 alone; with the
    # unready pod at 0 %: 260*100//400 = 65 % -> 1.3 -> ceil(1.3 * 2) = 3 (not ceil(5.2) = 6).
    pods = [pod("a", 260), pod("b", 500, 300, ready=False)]
    assert cpu_replicas(2, 50, pods, NOW) == (3, 260)


def test_unready_pod_is_left_out_on_scale_down():
    # One ready pod at 10 %, an unready one: scale-down counts the ready pod only -> ceil(0.2) = 1.
    pods = [pod("a", 10), pod("b", 90, ready=False)]
    assert cpu_replicas(2, 50, pods, NOW) == (1, 10)


def test_pending_pod_is_unready_and_deleting_or_failed_pods_are_ignored():
    # Pending counts as 0 % on a scale-up: 200 % over 2 requests -> 100 % -> 2.0 -> ceil(2 * 2) = 4.
    pending = PodObservation(name="p", cpu_request_milli=100, phase="Pending")
    assert cpu_replicas(2, 50, [pod("a", 200), pending], NOW) == (4, 200)
    # A Terminating or Failed pod is neither counted nor filled in: 200 % alone -> ceil(4 * 1) = 4.
    gone = [pod("t", 0, deleting=True), pod("f", 0, phase="Failed")]
    assert cpu_replicas(3, 50, [pod("a", 200)] + gone, NOW) == (4, 200)


def test_direction_flip_after_filling_in_keeps_current():
    # Ratio 1.2 from the ready pod; a missing pod at 0 % gives 60/200 = 30 % -> 0.6 < 1: a flip -> keep.
    assert cpu_replicas(2, 50, [pod("a", 60), pod("b", None)], NOW) == (2, 60)


def test_new_count_against_direction_keeps_current():
    # 5 pods listed, current 7: ratio 0.3 with one missing (100 %) -> (4*15+100)//500 = 32 % -> 0.64
    # -> ceil(0.64 * 5) = 4 < 7 is a scale-down, kept; but with current 3, 4 > 3 is against the
    # direction -> keep 3.
    pods = [pod(n, 15) for n in "abcd"] + [pod("e", None)]
    assert cpu_replicas(7, 50, pods, NOW) == (4, 15)
    assert cpu_replicas(3, 50, pods, NOW) == (3, 15)


def test_cpu_initialisation_period_ignores_samples_from_before_readiness():
    # Started 60 s ago (inside the 300 s initialisation period), ready 5 s ago: a 15 s window sample
    # taken now began before readiness -> unready -> 0 % on a scale-up: 200 % of 200m -> 100 % ->
    # ceil(2 * 2) = 4 (without the rule: 100 % over two ready pods = ceil(2 * 2)... use distinct usage).
    young = pod("b", 1000, start_time=NOW - 60, ready_transition_time=NOW - 5)
    assert cpu_replicas(2, 50, [pod("a", 200), young], NOW) == (4, 200)
    # Ready 20 s ago: the whole window is after readiness -> counted: (200+1000)//200 = 600 % -> 24.
    settled = pod("b", 1000, start_time=NOW - 60, ready_transition_time=NOW - 20)
    assert cpu_replicas(2, 50, [pod("a", 200), settled], NOW) == (24, 600)


def test_after_initialisation_only_never_ready_pods_are_unready():
    # Unready now, last transition 10 s after start (< 30 s readiness delay): never became ready -> unready.
    never = pod("b", 1000, ready=False, start_time=NOW - 1000, ready_transition_time=NOW - 990)
    assert cpu_replicas(2, 50, [pod("a", 200), never], NOW) == (4, 200)
    # Unready now, but the transition came 100 s after start: it had been ready -> its sample counts.
    lapsed = pod("b", 1000, ready=False, start_time=NOW - 1000, ready_transition_time=NOW - 900)
    assert cpu_replicas(2, 50, [pod("a", 200), lapsed], NOW) == (24, 600)


def test_time_scale_shrinks_initialisation_period():
    # time_scale 0.1: the initialisation period is 30 s, so a pod started 60 s ago is past it.
    young = pod("b", 1000, start_time=NOW - 60, ready_transition_time=NOW - 5)
    assert cpu_replicas(2, 50, [pod("a", 200), young], NOW, HpaTimings(time_scale=0.1)) == (24, 600)


def test_no_usable_samples_is_an_error():
    with pytest.raises(MetricsUnavailable):
        cpu_replicas(1, 50, [], NOW)
    with pytest.raises(MetricsUnavailable):
        cpu_replicas(1, 50, [PodObservation(name="p", cpu_request_milli=100, phase="Pending")], NOW)


# --- controller without behavior ----------------------------------------------------------------------


def test_scale_up_limit_without_behavior_is_max_of_double_and_four():
    # 1000 % against 50 %: the proposal is 20; from 1 replica at most max(2, 4) = 4, from 3 at most 6.
    decision = hpa_step(spec(maximum=50), 1, [pod("a", 1000)], HpaMemory(), NOW)
    assert (decision.desired_replicas, decision.rescale, decision.utilization) == (4, True, 1000)
    assert decision.reason == "ScaleUpLimit"
    pods = [pod(n, 1000) for n in "abc"]
    assert hpa_step(spec(maximum=50), 3, pods, HpaMemory(), NOW).desired_replicas == 6


def test_max_replicas_clamp():
    decision = hpa_step(spec(maximum=3), 1, [pod("a", 1000)], HpaMemory(), NOW)
    assert (decision.desired_replicas, decision.reason) == (3, "TooManyReplicas")


def test_min_replicas_clamp():
    decision = hpa_step(spec(minimum=2), 3, [pod(n, 1) for n in "abc"], HpaMemory(), NOW)
    assert (decision.desired_replicas, decision.reason) == (2, "TooFewReplicas")


def test_out_of_range_current_is_pulled_in_without_metrics():
    assert hpa_step(spec(maximum=3), 5, [], HpaMemory(), NOW).desired_replicas == 3
    assert hpa_step(spec(minimum=2), 1, [], HpaMemory(), NOW).desired_replicas == 2
    disabled = hpa_step(spec(), 0, [], HpaMemory(), NOW)
    assert (disabled.desired_replicas, disabled.rescale) == (0, False)


def test_missing_metrics_keep_size_and_memory():
    memory = HpaMemory(recommendations=((NOW - 10, 3),))
    decision = hpa_step(spec(), 2, [PodObservation(name="p", cpu_request_milli=1, phase="Pending")], memory, NOW)
    assert (decision.desired_replicas, decision.rescale) == (2, False)
    assert decision.reason.startswith("FailedGetResourceMetric")
    assert decision.memory == memory


def test_scale_down_stabilisation_takes_max_of_window():
    pods = [pod(n, 10) for n in "abcde"]  # 10 % of target 50 -> proposal ceil(0.2 * 5) = 1
    recent = HpaMemory(recommendations=((NOW - 100, 5), (NOW - 200, 4)))
    decision = hpa_step(spec(), 5, pods, recent, NOW)
    assert (decision.desired_replicas, decision.rescale) == (5, False)
    assert decision.reason.startswith("ScaleDownStabilized")
    # The proposal is remembered for later syncs.
    assert (NOW, 1) in decision.memory.recommendations
    # A recommendation exactly at the window's edge still counts (upstream: "not before cutoff").
    edge = HpaMemory(recommendations=((NOW - 300, 4),))
    assert hpa_step(spec(), 5, pods, edge, NOW).desired_replicas == 4
    # Older than 300 s: gone, and dropped from memory.
    old = HpaMemory(recommendations=((NOW - 301, 5),))
    decision = hpa_step(spec(), 5, pods, old, NOW)
    assert decision.desired_replicas == 1
    assert decision.memory.recommendations == ((NOW, 1),)


def test_time_scale_shrinks_stabilisation_window():
    pods = [pod(n, 10) for n in "abcde"]
    timings = HpaTimings(time_scale=0.1)  # window 30 s
    assert hpa_step(spec(), 5, pods, HpaMemory(((NOW - 29, 5),)), NOW, timings).desired_replicas == 5
    assert hpa_step(spec(), 5, pods, HpaMemory(((NOW - 31, 5),)), NOW, timings).desired_replicas == 1
    assert timings.sync_period == pytest.approx(1.5)


def test_no_scale_events_are_kept_without_behavior():
    decision = hpa_step(spec(), 1, [pod("a", 1000)], HpaMemory(), NOW)
    assert decision.memory.scale_up_events == () and decision.memory.scale_down_events == ()


# --- controller with behavior -------------------------------------------------------------------------


def rules(*policies: tuple[str, int, int], window: int | None = 0, select: str = "Max") -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=window,
        select_policy=select,
        policies=[ScalingPolicy(type=t, value=v, period_seconds=p) for t, v, p in policies],
    )


def test_default_scale_up_policies_select_max_or_min():
    # Defaults: 4 pods or 100 % per 15 s. From 10 replicas: Max -> 20, Min -> 14.
    pods = [pod(str(i), 1000) for i in range(10)]
    up_max = ScalingBehavior(scale_up=rules(("Pods", 4, 15), ("Percent", 100, 15)))
    up_min = ScalingBehavior(scale_up=rules(("Pods", 4, 15), ("Percent", 100, 15), select="Min"))
    assert hpa_step(spec(maximum=100, behavior=up_max), 10, pods, HpaMemory(), NOW).desired_replicas == 20
    assert hpa_step(spec(maximum=100, behavior=up_min), 10, pods, HpaMemory(), NOW).desired_replicas == 14
    # Fields left out take the API server's defaults (window 0, Max, the same two policies).
    defaults = ScalingBehavior(scale_up=ScalingRules())
    assert hpa_step(spec(maximum=100, behavior=defaults), 10, pods, HpaMemory(), NOW).desired_replicas == 20


def test_scale_up_policy_period_counts_recent_events():
    behavior = ScalingBehavior(scale_up=rules(("Pods", 1, 60)))
    pods = [pod("a", 1000), pod("b", 1000)]
    first = hpa_step(spec(behavior=behavior), 2, pods, HpaMemory(), NOW)
    assert (first.desired_replicas, first.reason) == (3, "ScaleUpLimit")
    assert first.memory.scale_up_events == ((NOW, 1),)
    # 30 s later one replica was already added in the 60 s period: the period started at 2 -> limit 3.
    pods3 = pods + [pod("c", 1000)]
    second = hpa_step(spec(behavior=behavior), 3, pods3, first.memory, NOW + 30)
    assert (second.desired_replicas, second.rescale) == (3, False)
    # 61 s later the event is outside the period: one more.
    third = hpa_step(spec(behavior=behavior), 3, pods3, first.memory, NOW + 61)
    assert third.desired_replicas == 4


def test_scale_up_disabled():
    behavior = ScalingBehavior(scale_up=rules(("Pods", 4, 15), select="Disabled"))
    decision = hpa_step(spec(behavior=behavior), 2, [pod("a", 1000), pod("b", 1000)], HpaMemory(), NOW)
    assert (decision.desired_replicas, decision.rescale) == (2, False)


def test_scale_down_policies_and_selection():
    pods = [pod(str(i), 5) for i in range(10)]  # 5 % -> proposal 1
    both = [("Percent", 50, 60), ("Pods", 2, 60)]
    biggest = ScalingBehavior(scale_down=rules(*both))  # Max change: min(10*0.5=5, 10-2=8) = 5
    smallest = ScalingBehavior(scale_down=rules(*both, select="Min"))  # max(5, 8) = 8
    decision = hpa_step(spec(behavior=biggest), 10, pods, HpaMemory(), NOW)
    assert (decision.desired_replicas, decision.reason) == (5, "ScaleDownLimit")
    assert decision.memory.scale_down_events == ((NOW, 5),)
    assert hpa_step(spec(behavior=smallest), 10, pods, HpaMemory(), NOW).desired_replicas == 8
    # Percent rounds down: int(5 * 0.5) = 2, from a period that started at 5 (5 deleted 10 s ago at 10).
    later = hpa_step(spec(behavior=biggest), 5, pods[:5], decision.memory, NOW + 10)
    assert later.desired_replicas == 5  # the period began at 10: limit 5 already reached
    assert hpa_step(spec(behavior=biggest), 5, pods[:5], decision.memory, NOW + 61).desired_replicas == 2


def test_scale_down_default_window_is_controller_flag():
    # A behavior with only scaleUp: scaleDown gets the defaults, window = the controller's 300 s.
    behavior = ScalingBehavior(scale_up=rules(("Pods", 4, 15)))
    pods = [pod(n, 10) for n in "abcde"]
    memory = HpaMemory(recommendations=((NOW - 100, 5),))
    assert hpa_step(spec(behavior=behavior), 5, pods, memory, NOW).desired_replicas == 5
    # Explicit window 0: no stabilisation; the default policy allows 100 % per 15 s -> straight to 1.
    no_window = ScalingBehavior(scale_down=rules(("Percent", 100, 15), window=0))
    assert hpa_step(spec(behavior=no_window), 5, pods, memory, NOW).desired_replicas == 1


def test_scale_up_stabilisation_window_takes_min_of_window():
    behavior = ScalingBehavior(scale_up=rules(("Pods", 10, 15), window=60))
    pods = [pod("a", 1000), pod("b", 1000)]
    memory = HpaMemory(recommendations=((NOW - 30, 2),))
    decision = hpa_step(spec(behavior=behavior), 2, pods, memory, NOW)
    assert (decision.desired_replicas, decision.rescale) == (2, False)
    assert decision.reason.startswith("ScaleUpStabilized")
    # Behavior windows exclude a sample exactly at the edge (upstream: "after cutoff").
    edge = HpaMemory(recommendations=((NOW - 60, 2),))
    assert hpa_step(spec(behavior=behavior), 2, pods, edge, NOW).desired_replicas == 10


def test_behavior_periods_follow_time_scale():
    behavior = ScalingBehavior(scale_up=rules(("Pods", 1, 60)))
    timings = HpaTimings(time_scale=0.1)  # period 6 s
    pods = [pod("a", 1000), pod("b", 1000), pod("c", 1000)]
    memory = HpaMemory(scale_up_events=((NOW - 5, 1),))
    assert hpa_step(spec(behavior=behavior), 3, pods, memory, NOW, timings).desired_replicas == 3
    memory = HpaMemory(scale_up_events=((NOW - 7, 1),))
    assert hpa_step(spec(behavior=behavior), 3, pods, memory, NOW, timings).desired_replicas == 4


def test_bad_time_scale():
    with pytest.raises(ValueError, match="time_scale"):
        HpaTimings(time_scale=0)
