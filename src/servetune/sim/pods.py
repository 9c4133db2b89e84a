"""The pods and the Service: pods created, scheduled (or Pending), ready, deleted and drained; requests
spread over ready pods at random (kube-proxy in iptables mode), queued in front of the pod's workers and
served on the node's CPU (sim/cpu.py)."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from servetune.config import DeploymentSpec
from servetune.deploy.capacity import MIB, Capacity
from servetune.sim.costs import Costs
from servetune.sim.cpu import CFS_PERIOD_S, Group, Processor
from servetune.sim.kernel import Event, Kernel

BACKLOG_PER_WORKER = 64  # the server's default --backlog

Request = tuple[float, int, int, str]  # sent at, load run, user (-1: open loop), target
Answer = Callable[[float, Request, int, "Pod | None"], None]  # (time, request, status, pod)


@dataclass(frozen=True)
class PodShape:
    """What every pod of the spec is, resolved once from the spec and the calibration."""

    workers: int
    slots: int  # requests a pod serves at once: its workers, or a one-worker pod's inference threads
    quota: float | None  # CPU seconds per CFS period, None without a limit
    solo: float  # cores a request alone in its pod keeps busy
    overhead_s: float
    start_to_ready_s: float
    oom: bool  # the memory limit is under the calibrated peak: killed for memory, never ready
    fits: int | None  # pods the capacity holds (None: all)
    drain_s: float


def pod_shape(spec: DeploymentSpec, costs: Costs, capacity: Capacity | None, local: bool) -> PodShape:
    workers = 1 if local else spec.workers  # the one-machine cluster runs one worker per replica
    limit = spec.limits.cpu if spec.limits else None
    threads = spec.threads or (max(1, math.floor(limit)) if limit else 2)
    return PodShape(
        workers=workers,
        slots=threads if workers == 1 else workers,
        quota=None if limit is None else limit * CFS_PERIOD_S,
        solo=1.0 if threads == 1 else min(float(threads), costs.parallelism),
        overhead_s=costs.overhead_ms / 1000,
        start_to_ready_s=max(costs.start_to_ready_s, costs.start_cpu_s / (limit or math.inf)),
        oom=spec.limits is not None and spec.limits.memory_mb * MIB < costs.rss_peak_bytes * workers,
        fits=None if capacity is None else capacity.pods_that_fit(spec),
        drain_s=1.0 if local else float(spec.pre_stop_seconds),
    )


class Pod:
    __slots__ = ("created", "deleted_at", "gone", "group", "in_service", "monitor_prev", "name", "queue",
                 "ready_at", "scrape_prev", "scrapes", "served", "started", "sync_prev")

    def __init__(self, name: str, created: float, group: Group) -> None:
        self.name, self.created, self.group = name, created, group
        self.started: float | None = None  # None while Pending
        self.ready_at: float | None = None
        self.deleted_at: float | None = None
        self.gone = False
        self.queue: deque[Request] = deque()
        self.in_service = 0
        self.served = 0
        self.scrapes: list[tuple[float, float]] = []  # metrics-server samples (scrape time, cores)
        self.scrape_prev: tuple[float, float] | None = None  # (time, cpu) at the previous scrape
        self.sync_prev: tuple[float, float] | None = None  # local: (time, cpu) at the previous HPA sync
        self.monitor_prev: tuple[float, float] | None = None  # local monitor: (time, cpu) at its last sample

    def holding(self) -> int:
        return self.in_service + len(self.queue)


class _PodEvent(Event):
    __slots__ = ("action", "pod")

    def __init__(self, action: Callable[[float, Pod], None], pod: Pod) -> None:
        self.action, self.pod = action, pod

    def fire(self, now: float) -> None:
        self.action(now, self.pod)


class _Ready(_PodEvent):
    __slots__ = ()
    order = 0  # a pod is ready before a request at the same time picks one


class _Gone(_PodEvent):
    __slots__ = ()
    order = 1


class Cluster:
    """The Deployment's pods on one node (or a cluster of `capacity`), and the Service in front of them."""

    def __init__(self, kernel: Kernel, cpu: Processor, spec: DeploymentSpec, shape: PodShape,
                 rng: random.Random, work: Callable[[str], float], answer: Answer) -> None:
        self.kernel, self.cpu, self.spec, self.shape, self.rng = kernel, cpu, spec, shape, rng
        self.work, self.answer = work, answer
        self.pods: list[Pod] = []  # every pod not gone yet
        self.endpoints: list[Pod] = []  # ready pods not being deleted
        self.desired = spec.replicas
        self.count = 0
        self.events: list[str] = []

    # --- requests ------------------------------------------------------------------------------------

    def send(self, now: float, request: Request, refused_s: float) -> None:
        if not self.endpoints:
            self.answer(now + refused_s, request, 0, None)
            return
        pod = self.endpoints[int(self.rng.random() * len(self.endpoints))]
        shape = self.shape
        if pod.in_service + len(pod.queue) > BACKLOG_PER_WORKER * shape.workers + shape.slots:  # pod.holding()
            self.answer(now + shape.overhead_s, request, 503, pod)
            return
        if pod.in_service < shape.slots:
            self._serve(now, pod, request)
        else:
            pod.queue.append(request)

    def _serve(self, now: float, pod: Pod, request: Request) -> None:
        pod.in_service += 1

        def done(finished: float) -> None:
            pod.in_service -= 1
            pod.served += 1
            self.answer(finished + self.shape.overhead_s, request, 200, pod)
            if pod.queue:
                self._serve(finished, pod, pod.queue.popleft())
            elif pod.deleted_at is not None and not pod.holding():
                self.kernel.at(max(finished, pod.deleted_at + self.shape.drain_s), _Gone(self._gone, pod))

        self.cpu.start(pod.group, self.work(request[3]), done, now)

    # --- pods: create, schedule, ready, delete -------------------------------------------------------

    def start(self) -> None:
        """The pods `servetune run` applied and waited for before the load: ready at t=0."""
        ready_at = -1.0
        for _ in range(self.spec.replicas):
            pod = self._new_pod(ready_at - self.shape.start_to_ready_s)
            if self._schedule(pod, pod.created, at_start=True):
                pod.monitor_prev = (pod.started, 0.0)
                pod.sync_prev = (ready_at, 0.0)

    def _new_pod(self, now: float) -> Pod:
        self.count += 1
        shape = self.shape
        # a one-worker pod's request among others has one inference thread; each worker of a pod has its own
        shared = shape.solo if shape.workers > 1 else 1.0
        group = Group(shape.quota, solo=shape.solo, shared=shared, cap=max(shape.solo, shape.slots * shared))
        pod = Pod(f"{self.spec.name}-{self.count}", now, group)
        self.pods.append(pod)
        return pod

    def _schedule(self, pod: Pod, now: float, at_start: bool = False) -> bool:
        """Start `pod` if the capacity has room for it; False: it stays Pending."""
        fits = self.shape.fits
        if fits is not None and sum(1 for p in self.pods if p.started is not None) >= fits:
            return False
        pod.started = now
        pod.monitor_prev = (now, 0.0)
        self.cpu.groups.append(pod.group)
        if self.shape.oom:
            self.events.append(f"{now:9.1f} {pod.name} OOMKilled: memory limit under the calibrated peak RSS")
        elif at_start:
            self._ready(now, pod)
            pod.ready_at = -1.0
        else:
            probe = self.spec.readiness_probe.period_seconds
            self.kernel.at(now + self.shape.start_to_ready_s + self.rng.random() * probe, _Ready(self._ready, pod))
        return True

    def _ready(self, now: float, pod: Pod) -> None:
        if pod.deleted_at is None and not pod.gone:
            pod.ready_at = now
            self.endpoints.append(pod)

    def scale_to(self, now: float, replicas: int, local: bool) -> None:
        active = [p for p in self.pods if p.deleted_at is None]
        self.desired = replicas
        for _ in range(replicas - len(active)):
            self._schedule(self._new_pod(now), now)
        if replicas >= len(active):
            return

        # A ReplicaSet deletes Pending, then unready, then the newest pods; gunicorn stops its oldest worker.
        def rank(pod: Pod) -> tuple:
            return (pod.started is not None, pod.ready_at is not None, pod.created if local else -pod.created)

        for pod in sorted(active, key=rank)[: len(active) - replicas]:
            self._delete(now, pod)

    def _delete(self, now: float, pod: Pod) -> None:
        pod.deleted_at = now
        if pod in self.endpoints:
            self.endpoints.remove(pod)
        if pod.started is None:
            self._gone(now, pod)
        elif not pod.holding():
            self.kernel.at(now + self.shape.drain_s, _Gone(self._gone, pod))
        # else: its last answer schedules _Gone

    def _gone(self, now: float, pod: Pod) -> None:
        if pod.gone or pod.holding():
            return
        pod.gone = True
        self.pods.remove(pod)
        if pod.group in self.cpu.groups:
            self.cpu.remove(pod.group)
        for waiting in [p for p in self.pods if p.started is None]:
            if not self._schedule(waiting, now):
                break
