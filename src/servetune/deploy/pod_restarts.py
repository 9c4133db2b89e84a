"""Restarts of the serving containers on a real cluster, counted from the pods the API lists.

The kubelet restarts a container that exits (killed at its memory limit, crashed, or killed by its liveness
probe) and counts it in the pod's `status.containerStatuses[].restartCount`, with why it ended in
`lastState.terminated` (reason, exit code). Each listing is compared with the one before: a pod's count
that grew is that many restarts, with the reason its container last ended (when a count grows by more than
one between two listings, only the last reason is known, and it is given to each). Restarts a pod had
before counting began (`baseline`) are not this run's; a pod first seen later counts from 0, since its
pod was created during the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servetune.deploy.kubernetes import PodStatus


@dataclass
class PodRestarts:
    seen: dict[str, int] = field(default_factory=dict)  # pod uid -> restartCount already counted
    reasons: dict[str, int] = field(default_factory=dict)  # "OOMKilled", "Error (exit code 1)" -> restarts

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def baseline(self, pods: list[PodStatus]) -> None:
        """Pods that exist before counting starts: their restarts so far are not counted."""
        for pod in pods:
            self.seen[pod.uid or pod.name] = pod.restarts

    def observe(self, pods: list[PodStatus]) -> list[str]:
        """Count the restarts since the last listing; one line for each pod that restarted."""
        lines = []
        for pod in pods:
            key = pod.uid or pod.name
            new = pod.restarts - self.seen.get(key, 0)
            self.seen[key] = max(pod.restarts, self.seen.get(key, 0))
            if new <= 0:
                continue
            reason = pod.last_exit or "unknown reason"
            self.reasons[reason] = self.reasons.get(reason, 0) + new
            times = f" {new} times" if new > 1 else ""
            lines.append(f"replica {pod.name} restarted{times} ({reason}): restart #{self.total}")
        return lines

    def record(self) -> dict:
        """run.json's `restarts` and `restart_reasons`, as the one-machine cluster records them."""
        return {"restarts": self.total, "restart_reasons": dict(self.reasons)}
