"""Processor sharing: the node's cores time-shared among the runnable requests, each pod under its CFS quota.

Between two changes every runnable task runs at a constant rate, so the model is exact and event-driven:
- a task wants `solo` cores when it is its group's only task (a request alone with all its inference
  threads), else `shared` cores (one thread); a group never gets more than its `cap` of cores at once;
- the node's cores are shared in proportion to what the groups want when they want more than it has
  (Linux's fair scheduler over runnable threads, at the granularity of a fluid model);
- a group with a quota (a pod's CPU limit) may use `quota` CPU seconds per 100 ms period; once spent, its
  tasks stop until the next period begins, and the others get the cores it leaves (CFS throttling).
The changes are: a task starts, a task ends, a group spends its quota, a period ends while a group waits
for it. Periods are counted from time 0 for every group.

What a change costs does not grow with the requests running, nor, while the node has cores to spare, with
the groups: the tasks of a group all run at one rate, so a group keeps the CPU seconds each of its tasks
has had (`served`, a virtual time) and its tasks in a heap by the `served` at which each has had all its
work; each group is brought up to date only when it is read or changes, and has its own next change; the
time a running group spends its quota is computed in closed form (a period's end is a change only for a
throttled group). Only a change in how the node's cores are divided (the groups want more than it has)
touches every group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from heapq import heappop, heappush

from servetune.sim.kernel import Event, Kernel

INF = math.inf  # one global's look-up, not a module's attribute too, on the hot path
CFS_PERIOD_S = 0.1
DONE_S = 1e-9  # a task with less CPU than this left is done (float rounding)
LEAST_CORES = 0.1  # what other work leaves the node's groups at least


class Group:
    """A cgroup: a pod's (or the load driver's) tasks, what they may use, what they used."""

    __slots__ = ("cap", "cpu", "each", "event", "full", "period", "quota", "rate", "served", "shared", "solo",
                 "tasks", "time", "used", "want")

    def __init__(self, quota: float | None, solo: float, shared: float, cap: float = INF) -> None:
        self.quota = quota  # CPU seconds per period, None without a limit
        self.full = INF if quota is None else quota - DONE_S  # throttled once `used` reaches it
        self.solo, self.shared, self.cap = solo, shared, cap
        # its tasks, a heap: (`served` when it is done, start order, what to call when it is done)
        self.tasks: list[tuple[float, int, Callable[[float], None]]] = []
        self.served = 0.0  # CPU seconds each of its tasks has had since the group was made (all run at one rate)
        self.used = 0.0  # CPU seconds used in the current period
        self.cpu = 0.0  # CPU seconds used since it was made
        self.time = 0.0  # when served, used and cpu were last brought up to date
        self.period = 0  # in which of the node's periods (`used` is of that period)
        self.want = 0.0  # cores it would use on a node with cores to spare
        self.rate = 0.0  # cores it gets now, all its tasks together
        self.each = 0.0  # cores each of its tasks gets now
        self.event: _Due | None = None  # its next change; an older one is stale

    def throttled(self) -> bool:
        return self.used >= self.full


class _Due(Event):
    """A group's next change, at `time` in the place `ticket`. Moved later, it stays queued where it was and,
    when that comes, queues itself again at its time and ticket: it fires as if it had been moved."""

    __slots__ = ("group", "processor", "queued", "queued_at", "ticket", "time")
    order = 2

    def __init__(self, processor: Processor, group: Group, time: float, ticket: int) -> None:
        self.processor, self.group, self.time, self.ticket = processor, group, time, ticket
        self.queued: int | None = ticket  # the ticket it is queued with in the kernel; None once fired
        self.queued_at = time  # and the time

    def fire(self, now: float) -> None:
        group = self.group
        if group.event is not self:
            return  # superseded
        if self.queued != self.ticket:
            self.queued, self.queued_at = self.ticket, self.time
            heappush(self.processor.kernel.queue, (self.time, _DUE_ORDER, self.ticket, self))
            return
        self.queued = None
        self.processor.update(group, now)


_DUE_ORDER = _Due.order


class Processor:
    """The node's `cores` (inf: each group is bound by its own cap and quota only) and its groups; `others`:
    cores other work on the node takes all along (a run's recorded `host_cpu`), which its groups never get
    (at least LEAST_CORES are left)."""

    def __init__(self, kernel: Kernel, cores: float | None, others: float = 0.0) -> None:
        self.kernel = kernel
        self.cores = math.inf if cores is None else max(cores - others, min(cores, LEAST_CORES))
        self.groups: list[Group] = []
        self.factor = 1.0  # the share of what it wants each group gets: below 1 when the node is short of cores
        self.period = 0  # periods begun since time 0
        self.period_end = CFS_PERIOD_S
        self.period_begins = CFS_PERIOD_S - DONE_S  # from this time on, the next period has begun
        self._started = 0  # tasks started: at equal `served` the earlier one ends first
        self._added: list[Group] = []  # groups with tasks added since the last change

    def start(self, group: Group, work: float, done: Callable[[float], None], now: float) -> None:
        """Start a task of `work` CPU seconds; `done(time)` is called when it has had all of it."""
        self.add(group, work, done, now)
        added, self._added = self._added, []
        self._changed(added, now)

    def add(self, group: Group, work: float, done: Callable[[float], None], now: float) -> None:
        """Start a task without working out the change yet: `settle(now)` (or a later `start`) does, once for
        every task added at `now` (the load driver's task and the pod's for one request: one change, not two)."""
        if now != group.time or now >= self.period_begins:
            self.advance(group, now)
        self._started += 1
        heappush(group.tasks, (group.served + work, self._started, done))
        if group not in self._added:
            self._added.append(group)

    def settle(self, now: float) -> None:
        """The change the tasks added at `now` make."""
        if self._added:
            added, self._added = self._added, []
            self._changed(added, now)

    def read(self, group: Group, now: float) -> float:
        """The group's CPU seconds used up to `now`."""
        self.advance(group, now)
        return group.cpu

    def advance(self, group: Group, now: float) -> None:
        """Run the group's tasks at their rate up to `now` (it does not change before the group's next change)."""
        if now >= self.period_begins:
            self._begin_periods(now)
        step = now - group.time
        rate = group.rate
        if group.period == self.period:
            if step > 0:
                if rate:
                    group.served += group.each * step
                    spent = rate * step
                    group.used += spent
                    group.cpu += spent
                group.time = now
            return
        # a period began since: what it used in it is its rate since then
        if step > 0:
            if rate:
                group.served += group.each * step
                group.cpu += rate * step
            group.time = now
        group.used = rate * max(now - (self.period_end - CFS_PERIOD_S), 0.0)
        group.period = self.period

    def _begin_periods(self, now: float) -> None:
        """The node's periods begun up to `now`."""
        begun = math.floor((now - self.period_end) / CFS_PERIOD_S + 1 + DONE_S)
        self.period_end += begun * CFS_PERIOD_S
        self.period_begins = self.period_end - DONE_S
        self.period += begun

    def remove(self, group: Group) -> None:
        """A group without tasks leaves the node (its pod is gone)."""
        self.groups.remove(group)

    def update(self, group: Group, now: float) -> None:
        """The group's next change is due: tasks done, quota spent or a new period."""
        self.advance(group, now)
        tasks, served = group.tasks, group.served + DONE_S
        if not tasks or tasks[0][0] > served:  # its quota spent, or a new period
            self._changed((group,), now)
            return
        first = heappop(tasks)
        if not tasks or tasks[0][0] > served:  # one task done (the usual case)
            self._changed((group,), now)
            first[2](now)
            return
        ended = [first]
        while tasks and tasks[0][0] <= served:
            ended.append(heappop(tasks))
        self._changed((group,), now)
        ended.sort(key=lambda entry: entry[1])  # in the order they started
        for entry in ended:
            entry[2](now)

    def _changed(self, changed: list[Group] | tuple[Group], now: float) -> None:
        for group in changed:
            tasks = group.tasks
            if not tasks or group.used >= group.full:
                group.want = 0.0
            else:
                count = len(tasks)
                want = (group.solo if count == 1 else group.shared) * count
                group.want = want if want < group.cap else group.cap  # noqa: FURB136 - no call on the hot path
        cores = self.cores
        factor = 1.0
        if cores < INF:
            total = 0.0
            for other in self.groups:
                total += other.want
            if total > cores:
                factor = cores / total
        if factor == self.factor:
            for group in changed:
                self._schedule(group, now)
            return
        self.factor = factor  # every group's rate changes: each runs at its former rate up to now first
        for other in self.groups:
            if other.tasks or other.rate:  # an idle group has nothing to run (a later advance catches it up)
                if other.time != now or other.period != self.period or now >= self.period_begins:
                    self.advance(other, now)
                self._schedule(other, now)

    def _schedule(self, group: Group, now: float) -> None:
        """The group's rate under the node's factor, and when it next changes (a task done, its quota spent)."""
        rate = group.want * self.factor
        quota = group.quota
        throttled = group.used >= group.full
        if rate and not throttled:
            group.rate = rate
            tasks = group.tasks
            each = group.each = rate / len(tasks)
            left = tasks[0][0] - group.served
            due = now + left / each if left > 0 else now
            if quota is not None:
                spent = now + (quota - group.used) / rate
                if spent >= self.period_end:  # not in this period: in the next, if it runs faster than its quota
                    spent = self.period_end + quota / rate if rate * CFS_PERIOD_S > quota else INF
                if spent < due:  # noqa: PLR1730 - min() is a call: slower on the simulator's hottest path
                    due = spent
        else:
            group.rate = group.each = 0.0
            if not group.tasks or (group.want and not throttled):  # nothing to run, or a node without cores
                _nothing_due(group)
                return
            if throttled and not group.want:
                due = self.period_end  # until the next period
            else:  # what it wants changed since it was last known (brought here by another group's change)
                due = now
        if due == INF:
            _nothing_due(group)
            return
        if due < now:  # noqa: PLR1730 - as above
            due = now
        kernel = self.kernel
        kernel.tickets += 1  # kernel.ticket() and kernel.at() written out: the simulator's hottest path
        ticket = kernel.tickets
        event = group.event
        if event is None or (event.queued is not None and due < event.queued_at):
            # none, or earlier than the one queued (which goes stale): a new one
            event = group.event = _Due(self, group, due, ticket)
        elif event.queued is not None:
            event.time, event.ticket = due, ticket  # later: it fires at its queued time and queues itself again
            return
        else:  # it has fired (it is in no queue): the same object queued again
            event.time = event.queued_at = due
            event.ticket = event.queued = ticket
        heappush(kernel.queue, (due, _DUE_ORDER, ticket, event))


def _nothing_due(group: Group) -> None:
    """The group has no next change: one queued goes stale; one that has fired stays, to be queued again."""
    event = group.event
    if event is not None and event.queued is not None:
        group.event = None
