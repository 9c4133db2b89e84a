"""The kubelet's restart back-off (CrashLoopBackOff) as a pure step.

After a container exits the kubelet waits before starting it again: 10 s, then twice the previous wait
each time it exits again, at most 5 minutes; a container that has not exited for twice the cap (10 min)
starts over at 10 s (pkg/kubelet: `flowcontrol.NewBackOff(10s, 300s)`, entries expire after 2 x max).
While it waits the pod shows the reason `CrashLoopBackOff` and the last exit's reason (`OOMKilled`, ...).

Here every replica's exit goes through `after_exit`, which returns the new back-off state; the delay is
multiplied by `time_scale` like the autoscaler's constants, so a compressed run crash-loops at the same
pace relative to its length.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_S = 10.0
CAP_S = 300.0


@dataclass(frozen=True)
class BackoffTimings:
    time_scale: float = 1.0
    initial_s: float = INITIAL_S
    cap_s: float = CAP_S

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")

    @property
    def reset_after_s(self) -> float:
        return 2 * self.cap_s * self.time_scale


@dataclass(frozen=True)
class Backoff:
    """The wait before the next restart (0: none yet) and when the last exit happened."""

    delay_s: float = 0.0
    last_exit_at: float | None = None

    def restart_at(self) -> float:
        """When the replica that replaces the last one to exit may start."""
        return (self.last_exit_at or 0.0) + self.delay_s


def after_exit(backoff: Backoff, now: float, timings: BackoffTimings) -> Backoff:
    """The back-off once a replica has exited at `now`."""
    fresh = backoff.last_exit_at is None or now - backoff.last_exit_at > timings.reset_after_s
    if fresh or backoff.delay_s == 0:
        delay = timings.initial_s * timings.time_scale
    else:
        delay = min(backoff.delay_s * 2, timings.cap_s * timings.time_scale)
    return Backoff(delay_s=delay, last_exit_at=now)
