"""Processor sharing: the node's cores time-shared among the runnable requests, each pod under its CFS quota.

Between two changes every runnable task runs at a constant rate, so the model is exact and event-driven:
- a task wants `solo` cores when it is its group's only task (a request alone with all its inference
  threads), else `shared` cores (one thread); a group never gets more than its `cap` of cores at once;
- the node's cores are shared in proportion to what the groups want when they want more than it has
  (Linux's fair scheduler over runnable threads, at the granularity of a fluid model);
- a group with a quota (a pod's CPU limit) may use `quota` CPU seconds per 100 ms period; once spent, its
  tasks stop until the next period begins, and the others get the cores it leaves (CFS throttling).
The changes are: a task starts, a task ends, a group spends its quota, a period ends (only while a group
with a quota runs). Periods are counted from time 0 for every group.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from servetune.sim.kernel import Event, Kernel

CFS_PERIOD_S = 0.1
DONE_S = 1e-9  # a task with less CPU than this left is done (float rounding)


class Task:
    """One request's CPU work; `done(now)` is called when it has had all of it."""

    __slots__ = ("done", "rate", "work")

    def __init__(self, work: float, done: Callable[[float], None]) -> None:
        self.work = work  # CPU seconds left
        self.rate = 0.0  # cores it gets now
        self.done = done


class Group:
    """A cgroup: a pod's (or the load driver's) tasks, what they may use, what they used."""

    __slots__ = ("cap", "cpu", "quota", "rate", "shared", "solo", "tasks", "used")

    def __init__(self, quota: float | None, solo: float, shared: float, cap: float = math.inf) -> None:
        self.quota = quota  # CPU seconds per period, None without a limit
        self.solo, self.shared, self.cap = solo, shared, cap
        self.tasks: list[Task] = []
        self.used = 0.0  # CPU seconds used in the current period
        self.cpu = 0.0  # CPU seconds used since it was made
        self.rate = 0.0

    def throttled(self) -> bool:
        return self.quota is not None and self.used >= self.quota - DONE_S


class _Change(Event):
    __slots__ = ("processor", "version")
    order = 2

    def __init__(self, processor: Processor, version: int) -> None:
        self.processor, self.version = processor, version

    def fire(self, now: float) -> None:
        if self.version == self.processor.version:
            self.processor.update(now)


class Processor:
    """The node's `cores` (inf: each group is bound by its own cap and quota only)."""

    def __init__(self, kernel: Kernel, cores: float | None) -> None:
        self.kernel = kernel
        self.cores = math.inf if cores is None else cores
        self.groups: list[Group] = []
        self.now = 0.0
        self.period_end = CFS_PERIOD_S
        self.version = 0  # bumps at each reschedule: older _Change events are stale

    def start(self, group: Group, task: Task, now: float) -> None:
        self.advance(now)
        group.tasks.append(task)
        self._reschedule()

    def read(self, group: Group, now: float) -> float:
        """The group's CPU seconds used up to `now`."""
        self.advance(now)
        return group.cpu

    def advance(self, now: float) -> None:
        """Run every task at its rate up to `now` (rates do not change before the next _Change)."""
        step = now - self.now
        if step > 0:
            for group in self.groups:
                if group.rate:
                    for task in group.tasks:
                        task.work -= task.rate * step
                    spent = group.rate * step
                    group.used += spent
                    group.cpu += spent
            self.now = now
        if now >= self.period_end - DONE_S:
            self.period_end += math.floor((now - self.period_end) / CFS_PERIOD_S + 1 + DONE_S) * CFS_PERIOD_S
            for group in self.groups:
                group.used = 0.0

    def update(self, now: float) -> None:
        self.advance(now)
        finished = []
        for group in self.groups:
            if any(task.work <= DONE_S for task in group.tasks):
                finished += [task for task in group.tasks if task.work <= DONE_S]
                group.tasks = [task for task in group.tasks if task.work > DONE_S]
        self._reschedule()
        for task in finished:
            task.done(now)

    def _share(self) -> None:
        wanted = {}
        for group in self.groups:
            tasks = group.tasks
            if not tasks or group.throttled():
                wanted[id(group)] = 0.0
                continue
            each = group.solo if len(tasks) == 1 else group.shared
            wanted[id(group)] = min(group.cap, each * len(tasks))
        total = sum(wanted.values())
        factor = 1.0 if total <= self.cores else self.cores / total
        for group in self.groups:
            group.rate = wanted[id(group)] * factor
            each = group.rate / len(group.tasks) if group.tasks else 0.0
            for task in group.tasks:
                task.rate = each

    def _reschedule(self) -> None:
        self._share()
        self.version += 1
        nearest = math.inf
        period_bound = False
        for group in self.groups:
            if not group.tasks:
                continue
            if group.quota is not None:
                period_bound = True
                if group.rate:
                    nearest = min(nearest, self.now + (group.quota - group.used) / group.rate)
            for task in group.tasks:
                if task.rate:
                    nearest = min(nearest, self.now + max(task.work, 0.0) / task.rate)
        if period_bound:
            nearest = min(nearest, self.period_end)
        if nearest < math.inf:
            self.kernel.at(max(nearest, self.now), _Change(self, self.version))
