"""`--time-scale` on a real cluster: what of the autoscaler can be compressed, and what cannot.

The one-machine cluster multiplies every time constant of the HPA rule by the time scale (deploy/hpa.py).
A real cluster's controller and metrics-server run on their own clocks; what an HPA object itself holds,
its autoscaling/v2 `behavior` (the stabilisation windows and the policies' periods), can be compressed: the
HPA is rendered with each of them written out, Kubernetes' defaults included (the controller's 300 s
scale-down window is a flag, but an explicit window overrides it), multiplied by the time scale and rounded
to the whole seconds the API takes. Everything else keeps its real length, and `NOT_COMPRESSED` says so. A
run on Kubernetes and the simulator of one (sim/) both take the spec from `compressed_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servetune.config import DeploymentSpec, ScalingBehavior, ScalingPolicy, ScalingRules
from servetune.deploy.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, DOWNSCALE_STABILIZATION_S

NOT_COMPRESSED = [
    "the HPA controller's 15 s sync period (a kube-controller-manager flag)",
    "metrics-server's 15 s resolution: the HPA reads CPU averaged over 15 s, new pods after their second scrape",
    "the controller's 300 s CPU initialization period and 30 s initial readiness delay",
    "pod scheduling, image pulls, start-up, probes and restart back-off",
]
MAX_WINDOW_S, MIN_PERIOD_S, MAX_PERIOD_S = 3600, 1, 1800  # autoscaling/v2's bounds


@dataclass
class Compression:
    """What a time scale changed on the cluster's HPA (`compressed`, one line each) and what it could not."""

    time_scale: float
    compressed: list[str] = field(default_factory=list)
    not_compressed: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """run.json's `time_scale_on_cluster`."""
        return {"time_scale": self.time_scale, "compressed": self.compressed, "not_compressed": self.not_compressed}

    def warning(self) -> str:
        done = "; ".join(self.compressed) or "nothing (fixed replicas)"
        return (f"--time-scale {self.time_scale:g} on a real cluster compresses the load, the monitor and the "
                f"HPA's behavior ({done}), not {'; '.join(self.not_compressed)}: autoscaling reacts more slowly, "
                "relative to the load, than in an uncompressed run")


def compressed_spec(spec: DeploymentSpec, time_scale: float) -> tuple[DeploymentSpec, Compression]:
    """The spec whose HPA has its behavior's time constants x time_scale, and what was (not) compressed."""
    compression = Compression(time_scale)
    if time_scale == 1.0:
        return spec, compression
    compression.not_compressed = list(NOT_COMPRESSED)
    if spec.autoscaling is None:
        return spec, compression
    behavior = spec.autoscaling.behavior or ScalingBehavior()
    scale_up = compressed_rules("scale-up", behavior.scale_up, DEFAULT_SCALE_UP, time_scale, compression)
    scale_down = compressed_rules("scale-down", behavior.scale_down, DEFAULT_SCALE_DOWN, time_scale, compression)
    autoscaling = spec.autoscaling.model_copy(
        update={"behavior": ScalingBehavior(scale_up=scale_up, scale_down=scale_down)})
    return spec.model_copy(update={"autoscaling": autoscaling}), compression


def compressed_rules(direction: str, rules: ScalingRules | None, default: ScalingRules, time_scale: float,
                     compression: Compression) -> ScalingRules:
    """One direction written out as the API server and controller would fill it in, then compressed."""
    rules = rules or default
    window = rules.stabilization_window_seconds
    if window is None:
        window = default.stabilization_window_seconds
    if window is None:
        window = int(DOWNSCALE_STABILIZATION_S)
    new_window = min(MAX_WINDOW_S, round(window * time_scale))
    if window:
        compression.compressed.append(f"{direction} stabilisation window {window} s -> {new_window} s"
                                      + rounded(window * time_scale, new_window))
    policies = []
    for policy in rules.policies or default.policies:
        period = min(MAX_PERIOD_S, max(MIN_PERIOD_S, round(policy.period_seconds * time_scale)))
        policies.append(ScalingPolicy(type=policy.type, value=policy.value, period_seconds=period))
        compression.compressed.append(
            f"{direction} policy {policy.value}{' %' if policy.type == 'Percent' else ' pods'} per "
            f"{policy.period_seconds} s -> per {period} s" + rounded(policy.period_seconds * time_scale, period))
    return ScalingRules(stabilization_window_seconds=new_window, select_policy=rules.select_policy,
                        policies=policies)


def rounded(exact: float, whole: int) -> str:
    return "" if exact == whole else f" ({exact:g} s in whole seconds)"
