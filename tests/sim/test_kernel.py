"""The event kernel on hand-computed cases."""

from __future__ import annotations

from servetune.sim.kernel import Event, Kernel, Repeat


class Note(Event):
    def __init__(self, log: list, name: str, order: int = 0) -> None:
        self.log, self.name, self.order = log, name, order

    def fire(self, now: float) -> None:
        self.log.append((now, self.name))


def test_events_fire_in_time_order_then_by_order_then_as_scheduled() -> None:
    kernel, log = Kernel(), []
    kernel.at(2.0, Note(log, "late"))
    kernel.at(1.0, Note(log, "second", order=1))
    kernel.at(1.0, Note(log, "first", order=0))
    kernel.at(1.0, Note(log, "third", order=1))
    kernel.run_until()
    assert log == [(1.0, "first"), (1.0, "second"), (1.0, "third"), (2.0, "late")]
    assert kernel.now == 2.0


def test_an_event_queued_with_an_earlier_ticket_fires_where_that_ticket_was_taken() -> None:
    kernel, log = Kernel(), []
    ticket = kernel.ticket()
    kernel.at(1.0, Note(log, "queued first, ticket later"))
    kernel.at(1.0, Note(log, "queued later, ticket first"), ticket)
    kernel.run_until()
    assert [name for _, name in log] == ["queued later, ticket first", "queued first, ticket later"]


def test_run_until_stops_at_its_time_and_step_fires_one() -> None:
    kernel, log = Kernel(), []
    for time in (1.0, 2.0, 3.0):
        kernel.at(time, Note(log, str(time)))
    kernel.run_until(2.0)
    assert [name for _, name in log] == ["1.0", "2.0"]
    assert kernel.step() is True and log[-1] == (3.0, "3.0")
    assert kernel.step() is False


def test_a_repeat_fires_every_period_until_its_end() -> None:
    kernel, times = Kernel(), []
    kernel.at(0.5, Repeat(kernel, 2.0, 6.0, times.append, order=0))
    kernel.run_until()
    assert times == [0.5, 2.5, 4.5]  # 6.5 is past the end
