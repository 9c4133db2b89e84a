"""The HorizontalPodAutoscaler rule (autoscaling/v2, CPU utilisation target) as a pure function.

It follows kube-controller-manager's pkg/controller/podautoscaler line by line:
- replica_calculator.go `GetResourceReplicas` and `groupPods`: utilisation = int(100 * sum(usage) /
  sum(request)) in millicores over the pods with a usable sample; missing samples count as 0 % on a
  scale-up and 100 % (or the target when it is above 100 %) on a scale-down; unready pods count as 0 %
  on a scale-up and are left out otherwise; a new ratio that flips direction keeps the current size.
- horizontal.go `reconcileAutoscaler`: out-of-range sizes are pulled to min/max first; otherwise the
  metric's proposal goes through `normalizeDesiredReplicas` (no `behavior`: scale-down stabilisation over
  the last 300 s, then at most max(2 * current, 4) on a scale-up) or `normalizeDesiredReplicasWithBehaviors`
  (per-direction stabilisation windows, then policy limits from the scale events of each policy's period).

The controller keeps its recommendations and scale events in memory between syncs; here they are an
`HpaMemory` value handed in and returned, so a step depends only on its arguments and a simulator can
replay the rule. Every duration (sync period, initialisation period, readiness delay, stabilisation windows,
policy periods) is multiplied by `HpaTimings.time_scale`, so short runs keep the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from servetune.config import AutoscalingSpec, ScalingPolicy, ScalingRules

SYNC_PERIOD_S = 15.0  # --horizontal-pod-autoscaler-sync-period
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
CPU_INITIALIZATION_PERIOD_S = 300.0  # --horizontal-pod-autoscaler-cpu-initialization-period
INITIAL_READINESS_DELAY_S = 30.0  # --horizontal-pod-autoscaler-initial-readiness-delay
DOWNSCALE_STABILIZATION_S = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization
SCALE_UP_LIMIT_FACTOR = 2.0  # horizontal.go scaleUpLimitFactor (no `behavior`)
SCALE_UP_LIMIT_MINIMUM = 4.0  # horizontal.go scaleUpLimitMinimum (no `behavior`)

# The API server's defaults for a `behavior` block that leaves a direction or field out
# (pkg/apis/autoscaling/v2/defaults.go).
DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_seconds=0,
    select_policy="Max",
    policies=[
        ScalingPolicy(type="Pods", value=4, period_seconds=15),
        ScalingPolicy(type="Percent", value=100, period_seconds=15),
    ],
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_seconds=None,  # the controller's --horizontal-pod-autoscaler-downscale-stabilization
    select_policy="Max",
    policies=[ScalingPolicy(type="Percent", value=100, period_seconds=15)],
)


@dataclass(frozen=True)
class HpaTimings:
    """The controller's flags; every duration is multiplied by `time_scale` (1.0 = Kubernetes defaults)."""

    time_scale: float = 1.0
    tolerance: float = TOLERANCE
    sync_period_s: float = SYNC_PERIOD_S
    cpu_initialization_period_s: float = CPU_INITIALIZATION_PERIOD_S
    initial_readiness_delay_s: float = INITIAL_READINESS_DELAY_S
    downscale_stabilization_s: float = DOWNSCALE_STABILIZATION_S

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")

    def seconds(self, kubernetes_seconds: float) -> float:
        """A duration as it runs here."""
        return kubernetes_seconds * self.time_scale

    @property
    def sync_period(self) -> float:
        return self.seconds(self.sync_period_s)


@dataclass(frozen=True)
class PodObservation:
    """What the controller sees of one pod at a sync: its status and its metrics-server sample."""

    name: str
    cpu_request_milli: int
    phase: Literal["Pending", "Running", "Failed", "Succeeded"] = "Running"
    deleting: bool = False  # deletionTimestamp set (Terminating)
    start_time: float | None = None  # status.startTime (unix s); None before the kubelet starts it
    ready: bool | None = None  # status of the Ready condition; None when the pod has no such condition
    ready_transition_time: float = 0.0  # lastTransitionTime of the Ready condition
    cpu_usage_milli: int | None = None  # metrics-server sample; None when it has none (a missing pod)
    metric_timestamp: float = 0.0  # the sample's timestamp
    metric_window_s: float = 0.0  # the sample's window


@dataclass(frozen=True)
class HpaMemory:
    """What the controller remembers between syncs: (time, replicas) recommendations and scale events."""

    recommendations: tuple[tuple[float, int], ...] = ()
    scale_up_events: tuple[tuple[float, int], ...] = ()
    scale_down_events: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class HpaDecision:
    desired_replicas: int
    rescale: bool
    reason: str
    utilization: int | None = None  # current CPU utilisation in percent of the request, as `kubectl get hpa`
    memory: HpaMemory = field(default_factory=HpaMemory)


class MetricsUnavailable(Exception):
    """No usable CPU samples: the controller records FailedComputeMetricsReplicas and keeps the size."""


@dataclass(frozen=True)
class _Rules:
    window_s: float
    select_policy: Literal["Max", "Min", "Disabled"]
    policies: tuple[tuple[Literal["Pods", "Percent"], int, float], ...]  # (type, value, period seconds)


def _utilization_ratio(
    usage: dict[str, int], requests: dict[str, int], target: int
) -> tuple[float, int]:
    """metricsclient.GetResourceUtilizationRatio: (ratio to target, utilisation in whole percent)."""
    usage_total = sum(value for name, value in usage.items() if name in requests)
    request_total = sum(requests[name] for name in usage if name in requests)
    if request_total == 0:
        raise MetricsUnavailable("no metrics returned matched known pods")
    utilization = (usage_total * 100) // request_total
    return utilization / target, utilization


def _group_pods(
    pods: Sequence[PodObservation], now: float, timings: HpaTimings
) -> tuple[int, set[str], set[str], set[str]]:
    """replica_calculator.go groupPods: (ready count, unready, missing, ignored)."""
    ready_count = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    initialization = timings.seconds(timings.cpu_initialization_period_s)
    readiness_delay = timings.seconds(timings.initial_readiness_delay_s)
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        if pod.cpu_usage_milli is None:
            missing.add(pod.name)
            continue
        if pod.ready is None or pod.start_time is None:
            is_unready = True
        elif pod.start_time + initialization > now:
            # Still initialising: ignore the sample if the pod is unready or the sample's window started
            # before the pod's last readiness change.
            is_unready = (not pod.ready) or (
                pod.metric_timestamp < pod.ready_transition_time + pod.metric_window_s
            )
        else:
            # Ignore the sample if the pod is unready and has never been ready.
            is_unready = (not pod.ready) and (pod.start_time + readiness_delay > pod.ready_transition_time)
        if is_unready:
            unready.add(pod.name)
            continue
        ready_count += 1
    return ready_count, unready, missing, ignored


def cpu_replicas(
    current_replicas: int,
    target_utilization: int,
    pods: Sequence[PodObservation],
    now: float,
    timings: HpaTimings = HpaTimings(),
) -> tuple[int, int]:
    """replica_calculator.go GetResourceReplicas: (proposed replicas, utilisation %).

    Raises MetricsUnavailable when there are no pods or no usable samples.
    """
    if not pods:
        raise MetricsUnavailable("no pods returned by selector while calculating replica count")
    ready_count, unready, missing, ignored = _group_pods(pods, now, timings)
    requests = {pod.name: pod.cpu_request_milli for pod in pods}
    usage = {
        pod.name: pod.cpu_usage_milli
        for pod in pods
        if pod.cpu_usage_milli is not None and pod.name not in ignored and pod.name not in unready
    }
    if not usage:
        raise MetricsUnavailable("did not receive metrics for targeted pods (pods might be unready)")
    ratio, utilization = _utilization_ratio(usage, requests, target_utilization)

    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - ratio) <= timings.tolerance:
            return current_replicas, utilization
        return math.ceil(ratio * ready_count), utilization

    if missing:
        if ratio < 1.0:
            fallback = max(100, target_utilization)
            for name in missing:
                usage[name] = requests[name] * fallback // 100
        elif ratio > 1.0:
            for name in missing:
                usage[name] = 0
    if scale_up_with_unready:
        for name in unready:
            usage[name] = 0

    new_ratio, _ = _utilization_ratio(usage, requests, target_utilization)
    if (
        abs(1.0 - new_ratio) <= timings.tolerance
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current_replicas, utilization
    new_replicas = math.ceil(new_ratio * len(usage))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (
        new_ratio > 1.0 and new_replicas < current_replicas
    ):
        return current_replicas, utilization
    return new_replicas, utilization


def _rules(rules: ScalingRules | None, default: ScalingRules, timings: HpaTimings) -> _Rules:
    """The API server's defaulting of one direction, then the controller's default scale-down window."""
    rules = rules or default
    window = rules.stabilization_window_seconds
    if window is None:
        window = default.stabilization_window_seconds
    window_s = timings.downscale_stabilization_s if window is None else float(window)
    policies = rules.policies or default.policies
    return _Rules(
        window_s=timings.seconds(window_s),
        select_policy=rules.select_policy,
        policies=tuple((p.type, p.value, timings.seconds(p.period_seconds)) for p in policies),
    )


def _stabilize(
    recommendations: tuple[tuple[float, int], ...], desired: int, now: float, window_s: float
) -> tuple[int, tuple[tuple[float, int], ...]]:
    """horizontal.go stabilizeRecommendation (no `behavior`): the highest proposal of the window."""
    cutoff = now - window_s
    highest = desired
    for timestamp, recommendation in recommendations:
        if not timestamp < cutoff and recommendation > highest:
            highest = recommendation
    # Samples older than the window never count again (the clock only moves forward): drop them.
    kept = tuple(rec for rec in recommendations if not rec[0] < cutoff)
    return highest, kept + ((now, desired),)


def _stabilize_with_behavior(
    recommendations: tuple[tuple[float, int], ...],
    current: int,
    desired: int,
    now: float,
    up: _Rules,
    down: _Rules,
) -> tuple[int, tuple[tuple[float, int], ...]]:
    """horizontal.go stabilizeRecommendationWithBehaviors."""
    up_cutoff = now - up.window_s
    down_cutoff = now - down.window_s
    up_recommendation = desired
    down_recommendation = desired
    for timestamp, recommendation in recommendations:
        if timestamp > up_cutoff:
            up_recommendation = min(recommendation, up_recommendation)
        if timestamp > down_cutoff:
            down_recommendation = max(recommendation, down_recommendation)
    recommendation = max(current, up_recommendation)
    recommendation = min(recommendation, down_recommendation)
    kept = tuple(
        rec for rec in recommendations if not (rec[0] < up_cutoff and rec[0] < down_cutoff)
    )
    return recommendation, kept + ((now, desired),)


def _change_in_period(events: tuple[tuple[float, int], ...], period_s: float, now: float) -> int:
    """horizontal.go getReplicasChangePerPeriod."""
    cutoff = now - period_s
    return sum(change for timestamp, change in events if timestamp > cutoff)


def _scale_up_limit(current: int, memory: HpaMemory, rules: _Rules, now: float) -> int:
    """horizontal.go calculateScaleUpLimitWithScalingRules."""
    if rules.select_policy == "Disabled":
        return current
    choose = min if rules.select_policy == "Min" else max
    result: int | None = None
    for kind, value, period_s in rules.policies:
        added = _change_in_period(memory.scale_up_events, period_s, now)
        deleted = _change_in_period(memory.scale_down_events, period_s, now)
        period_start = current - added + deleted
        if kind == "Pods":
            proposed = period_start + value
        else:
            proposed = math.ceil(period_start * (1 + value / 100))
        result = proposed if result is None else choose(result, proposed)
    return current if result is None else result


def _scale_down_limit(current: int, memory: HpaMemory, rules: _Rules, now: float) -> int:
    """horizontal.go calculateScaleDownLimitWithBehaviors."""
    if rules.select_policy == "Disabled":
        return current
    choose = max if rules.select_policy == "Min" else min
    result: int | None = None
    for kind, value, period_s in rules.policies:
        added = _change_in_period(memory.scale_up_events, period_s, now)
        deleted = _change_in_period(memory.scale_down_events, period_s, now)
        period_start = current - added + deleted
        if kind == "Pods":
            proposed = period_start - value
        else:
            proposed = int(period_start * (1 - value / 100))
        result = proposed if result is None else choose(result, proposed)
    return current if result is None else result


def _store_scale_event(
    memory: HpaMemory, up: _Rules, down: _Rules, previous: int, new: int, now: float
) -> HpaMemory:
    """horizontal.go storeScaleEvent: events older than the direction's longest policy period go."""
    if new > previous:
        longest = max((period for _, _, period in up.policies), default=0.0)
        kept = tuple(event for event in memory.scale_up_events if not event[0] < now - longest)
        return replace(memory, scale_up_events=kept + ((now, new - previous),))
    longest = max((period for _, _, period in down.policies), default=0.0)
    kept = tuple(event for event in memory.scale_down_events if not event[0] < now - longest)
    return replace(memory, scale_down_events=kept + ((now, previous - new),))


def hpa_step(
    autoscaling: AutoscalingSpec,
    current_replicas: int,
    pods: Sequence[PodObservation],
    memory: HpaMemory,
    now: float,
    timings: HpaTimings = HpaTimings(),
) -> HpaDecision:
    """One sync of the controller for a CPU-utilisation HPA (horizontal.go reconcileAutoscaler).

    `current_replicas` is the scale target's spec.replicas (what was last asked for, Pending pods
    included); `pods` are the pods its selector matches. Returns the size to set and the new memory.
    """
    minimum = autoscaling.min_replicas
    maximum = autoscaling.max_replicas
    behavior = autoscaling.behavior
    if current_replicas == 0 and minimum != 0:
        return HpaDecision(0, False, "ScalingDisabled", memory=memory)
    up = _rules(behavior.scale_up if behavior else None, DEFAULT_SCALE_UP, timings)
    down = _rules(behavior.scale_down if behavior else None, DEFAULT_SCALE_DOWN, timings)

    utilization: int | None = None
    if current_replicas > maximum:
        desired, reason = maximum, "Current number of replicas above Spec.MaxReplicas"
    elif current_replicas < minimum:
        desired, reason = minimum, "Current number of replicas below Spec.MinReplicas"
    else:
        try:
            proposal, utilization = cpu_replicas(
                current_replicas, autoscaling.target_cpu_utilization, pods, now, timings
            )
        except MetricsUnavailable as error:
            return HpaDecision(current_replicas, False, f"FailedGetResourceMetric: {error}", memory=memory)
        proposal = max(proposal, 0)
        if behavior is None:
            stabilized, recommendations = _stabilize(
                memory.recommendations, proposal, now, timings.seconds(timings.downscale_stabilization_s)
            )
            desired, reason = _limit_without_behavior(current_replicas, stabilized, minimum, maximum)
        else:
            stabilized, recommendations = _stabilize_with_behavior(
                memory.recommendations, current_replicas, proposal, now, up, down
            )
            desired, reason = _limit_with_behavior(
                current_replicas, stabilized, minimum, maximum, memory, up, down, now
            )
        if stabilized != proposal:
            reason = ("ScaleUpStabilized" if stabilized < proposal else "ScaleDownStabilized") + f"; {reason}"
        memory = replace(memory, recommendations=recommendations)

    rescale = desired != current_replicas
    if rescale and behavior is not None:
        memory = _store_scale_event(memory, up, down, current_replicas, desired, now)
    return HpaDecision(desired, rescale, reason, utilization, memory)


def _limit_without_behavior(current: int, desired: int, minimum: int, maximum: int) -> tuple[int, str]:
    """horizontal.go convertDesiredReplicasWithRules."""
    scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if maximum > scale_up_limit:
        allowed_max, limiting = scale_up_limit, "ScaleUpLimit"
    else:
        allowed_max, limiting = maximum, "TooManyReplicas"
    if desired < minimum:
        return minimum, "TooFewReplicas"
    if desired > allowed_max:
        return allowed_max, limiting
    return desired, "DesiredWithinRange"


def _limit_with_behavior(
    current: int,
    desired: int,
    minimum: int,
    maximum: int,
    memory: HpaMemory,
    up: _Rules,
    down: _Rules,
    now: float,
) -> tuple[int, str]:
    """horizontal.go convertDesiredReplicasWithBehaviorRate."""
    if desired > current:
        scale_up_limit = max(_scale_up_limit(current, memory, up, now), current)
        if maximum > scale_up_limit:
            allowed_max, limiting = scale_up_limit, "ScaleUpLimit"
        else:
            allowed_max, limiting = maximum, "TooManyReplicas"
        if desired > allowed_max:
            return allowed_max, limiting
    elif desired < current:
        scale_down_limit = min(_scale_down_limit(current, memory, down, now), current)
        if minimum < scale_down_limit:
            allowed_min, limiting = scale_down_limit, "ScaleDownLimit"
        else:
            allowed_min, limiting = minimum, "TooFewReplicas"
        if desired < allowed_min:
            return allowed_min, limiting
    return desired, "DesiredWithinRange"
