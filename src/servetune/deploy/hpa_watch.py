"""The HorizontalPodAutoscaler's decisions on a real cluster, as the one-machine cluster reports its own.

Each poll reads the HPA's status (desired replicas, the conditions AbleToScale, ScalingActive and
ScalingLimited) and its events (SuccessfulRescale, FailedGetResourceMetric, ...) and returns a line for each
change since the last poll: a new desired count, a condition whose status or reason changed, an event not
seen before (an event seen again counts up its `count`). A read that fails is skipped, so the caller's
cadence never stalls; a user who may not list events gets the status lines only.
"""

from __future__ import annotations

from servetune.deploy.kubernetes import KubernetesCluster
from servetune.deploy.kubernetes_client import AccessRefused, KubernetesError

TIMEOUT = (2, 3)  # seconds to connect, to read: a slow answer is skipped, not waited for by the monitor


class AutoscalerWatch:
    def __init__(self, cluster: KubernetesCluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.desired: int | None = None
        self.conditions: dict[str, tuple[str, str]] = {}  # type -> (status, reason)
        self.events: set[tuple[str, int]] = set()  # (event name, count)
        self.read_events = True

    def poll(self) -> list[str]:
        try:
            hpa = self.cluster.hpa_status(self.namespace, self.name, TIMEOUT)
        except KubernetesError:
            return []
        lines = [] if hpa is None else self.status_lines(hpa)
        return lines + self.event_lines()

    def status_lines(self, hpa: dict) -> list[str]:
        lines = []
        desired = hpa["desired"]
        if desired and desired != self.desired:  # 0 or None: not computed yet
            cpu = "unknown" if hpa["cpu_utilization"] is None else f"{hpa['cpu_utilization']}%"
            lines.append(f"autoscaler: {desired} replica(s) desired (current {hpa['current']}, CPU {cpu} of "
                         f"target {hpa['cpu_target']}%)")
            self.desired = desired
        for kind, status, reason, message in hpa["conditions"]:
            if self.conditions.get(kind) != (status, reason):
                self.conditions[kind] = (status, reason)
                lines.append(f"autoscaler condition {kind}={status} ({reason}: {message})")
        return lines

    def event_lines(self) -> list[str]:
        if not self.read_events:
            return []
        try:
            events = self.cluster.hpa_events(self.namespace, self.name, TIMEOUT)
        except AccessRefused:
            self.read_events = False
            return []
        except KubernetesError:
            return []
        lines = []
        order = sorted(events, key=lambda e: str(e.last_timestamp or e.event_time or e.first_timestamp or ""))
        for event in order:
            key = (event.metadata.name, event.count or 1)
            if key not in self.events:
                self.events.add(key)
                lines.append(f"autoscaler event {event.type} {event.reason}: {event.message}")
        return lines
