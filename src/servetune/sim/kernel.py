"""The event kernel: a clock and a heap of typed events, stepped in time order (SimPy-like, without processes).

An event is an object with an `order` (at equal times the lower goes first: a pod is ready before a request
picks one) and a `fire(now)` that changes the world and may schedule more events. The kernel knows nothing
of pods, load or CPU: sim/ builds the domain on it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import ClassVar


class Event:
    """Something that happens at a time; subclasses say what in `fire`."""

    __slots__ = ()
    order: ClassVar[int] = 0

    def fire(self, now: float) -> None:
        raise NotImplementedError


class Repeat(Event):
    """Calls `action(now)` every `period` seconds from its first time until (not including) `end`."""

    def __init__(self, kernel: Kernel, period: float, end: float, action: Callable[[float], None],
                 order: int) -> None:
        self.kernel, self.period, self.end, self.action = kernel, period, end, action
        self.order = order  # type: ignore[misc]  # this instance's place among events at equal times

    def fire(self, now: float) -> None:
        if now < self.end:
            self.action(now)
            self.kernel.at(now + self.period, self)


class Kernel:
    """The simulated clock and the events still to come."""

    def __init__(self) -> None:
        self.now = 0.0
        # a heap of (time, order, ticket, event); sim/cpu.py's hottest path pushes onto it as `at` does
        self.queue: list[tuple[float, int, int, Event]] = []
        self.tickets = 0  # tickets given: ties broken by scheduling order, so the kernel is deterministic

    def at(self, time: float, event: Event, ticket: int | None = None) -> None:
        """Queue `event` at `time`; `ticket` (from `ticket()`): its place among equal times, taken earlier."""
        if ticket is None:
            self.tickets += 1
            ticket = self.tickets
        heapq.heappush(self.queue, (time, event.order, ticket, event))

    def ticket(self) -> int:
        """A place among the events at equal times, taken now for an event queued later: it fires as if
        queued now (a CPU group's next change is queued once, however often it is moved later before then)."""
        self.tickets += 1
        return self.tickets

    def step(self) -> bool:
        """Fire the next event; False when none is left."""
        if not self.queue:
            return False
        time, _, _, event = heapq.heappop(self.queue)
        self.now = time
        event.fire(time)
        return True

    def run_until(self, end: float = math.inf) -> None:
        """Fire every event due at or before `end`, in time order."""
        heap = self.queue
        pop = heapq.heappop
        if end == math.inf:  # the whole run: no time to check (an event's cost matters here)
            while heap:
                time, _, _, event = pop(heap)
                self.now = time
                event.fire(time)
            return
        while heap and heap[0][0] <= end:
            time, _, _, event = pop(heap)
            self.now = time
            event.fire(time)
