"""The load as load/driver.py runs it: closed loop (every run starts all its users together, think time
from the driver's own `think_time`, one connection per request, requests still in flight when a run ends
dropped) or open loop (Poisson arrivals at the phase's rate, all awaited)."""

from __future__ import annotations

import random

from servetune.config import LoadProfile
from servetune.load.driver import think_time
from servetune.sim.cpu import Group, Processor
from servetune.sim.kernel import Event, Kernel
from servetune.sim.pods import Cluster, Pod, Request
from servetune.sim.simulation import RawRun

REFUSED_S = 0.001  # a connection to a Service without ready endpoints fails about this fast


class _Send(Event):
    __slots__ = ("load", "run", "user")
    order = 3

    def __init__(self, load: Load, run: int, user: int) -> None:
        self.load, self.run, self.user = load, run, user

    def fire(self, now: float) -> None:
        self.load.send(now, self.run, self.user)


class _RunStarts(Event):
    """A closed-loop run's users start: queued when the run begins, not all at time 0, so the kernel's heap
    holds the users of one run, not of every run (each of its steps costs the log of its size). They fire
    in the place the run's start had among equal times, before any user sends again."""

    __slots__ = ("load", "run")
    order = _Send.order

    def __init__(self, load: Load, run: int) -> None:
        self.load, self.run = load, run

    def fire(self, now: float) -> None:
        for user in range(self.load.phases[self.run].users):
            self.load.kernel.at(now, _Send(self.load, self.run, user))


class Load:
    """The profile's runs, one after the other, and their users (the load driver's counters in `raw`)."""

    def __init__(self, kernel: Kernel, profile: LoadProfile, rng: random.Random, open_loop: bool,
                 record: bool) -> None:
        self.kernel, self.profile, self.rng, self.open_loop = kernel, profile, rng, open_loop
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.phase_of: list[int] = []
        start = 0.0
        for phase_index, phase in profile.runs():
            self.starts.append(start)
            start += phase.duration_s
            self.ends.append(start)
            self.phase_of.append(phase_index)
        self.end = start
        self.phases = [profile.phases[index] for index in self.phase_of]
        self.raw = RawRun(len(self.starts), len(profile.phases))
        self.requests: list[tuple] | None = [] if record else None
        self.cluster: Cluster | None = None
        self.driver: tuple[Processor, Group, float] | None = None  # the driver's CPU on the node, per request

    def start(self, cluster: Cluster) -> None:
        self.cluster = cluster
        for run, start in enumerate(self.starts):
            phase = self.phases[run]
            if self.open_loop:
                self.kernel.at(start + self.rng.expovariate(phase.open_loop_rate()), _Send(self, run, -1))
            else:
                self.kernel.at(start, _RunStarts(self, run))

    def send(self, now: float, run: int, user: int) -> None:
        end = self.ends[run]
        if now >= end:
            return
        phase = self.phases[run]
        if user < 0:  # open loop: the next arrival
            following = now + self.rng.expovariate(phase.open_loop_rate())
            if following < end:
                self.kernel.at(following, _Send(self, run, -1))
        assert self.cluster is not None
        if self.driver is None:
            self.cluster.send(now, (now, run, user, phase.target), REFUSED_S)
            return
        # the driver's task and the pod's start at the same instant: one change of the node's CPU
        cpu, group, cost = self.driver
        cpu.add(group, cost, _nothing, now)
        self.cluster.send(now, (now, run, user, phase.target), REFUSED_S)
        cpu.settle(now)

    def answer(self, now: float, request: Request, status: int, pod: Pod | None) -> None:
        """The client has the answer at `now`: count it (unless its run is over) and think."""
        sent, run, user, _ = request
        end = self.ends[run]
        if now > end and user >= 0:
            return  # siege cancels a request still in flight when its run ends
        latency = now - sent
        self.raw.add(run, self.phase_of[run], status, latency)
        if self.requests is not None:
            self.requests.append((sent, latency, status, run, pod.name if pod else ""))
        if user >= 0:
            following = now + think_time(self.rng, self.phases[run].delay)
            if following < end:
                self.kernel.at(following, _Send(self, run, user))


def _nothing(now: float) -> None:
    """The load driver's CPU for a request is spent: nothing waits on it."""
