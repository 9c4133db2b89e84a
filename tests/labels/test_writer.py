"""The writer thread on a real SQLite store: never blocks its caller, keeps uploads while the store is down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from label_uploads import make_upload
from servetune.labels.records import Outcome
from servetune.labels.store import StoreUnavailable, open_store
from servetune.labels.writer import StoreWriter


class Switch:
    """Opens the real store, or fails like an unreachable database while `down`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.down = False
        self.opened = []

    def __call__(self):
        if self.down:
            raise StoreUnavailable("labels store: connection refused")
        self.opened.append(open_store(str(self.path)))
        return self.opened[-1]

    def break_connections(self) -> None:
        self.down = True
        for store in self.opened:
            store.connection.close()  # its next statement fails as a lost connection does


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def switch(tmp_path: Path) -> Switch:
    return Switch(tmp_path / "labels.db")


def test_a_label_call_finds_an_upload_queued_just_before_it(switch: Switch) -> None:
    writer = StoreWriter(switch)
    writer.start()
    wait_for(lambda: writer.up)
    _, upload = make_upload()
    assert writer.add(upload)
    answer = writer.call(lambda store: store.answer("label", upload.key, "Egg", time.time())).result(5)
    assert answer.outcome is Outcome.ACCEPTED
    assert writer.stop() == 0


def test_uploads_wait_while_the_store_is_down_and_are_written_when_it_returns(switch: Switch) -> None:
    changes = []
    writer = StoreWriter(switch, retry_s=0.05, on_change=changes.append)
    writer.start()
    wait_for(lambda: writer.up)
    first = make_upload()[1]
    writer.add(first)
    wait_for(lambda: writer.written == 1)
    switch.break_connections()
    held = [make_upload()[1] for _ in range(5)]
    for upload in held:
        assert writer.add(upload)  # never waits on the store
    wait_for(lambda: not writer.up)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        writer.call(lambda store: store.uploads()).result(5)
    assert time.monotonic() - started < 0.5  # refused at once, not after a timeout
    switch.down = False
    wait_for(lambda: writer.written == 6)
    assert changes == [True, False, True]
    keys = [u.key for u in writer.call(lambda store: store.uploads()).result(5)]
    assert keys == [u.key for u in [first, *held]]
    writer.stop()


def test_a_full_queue_refuses_at_once_and_counts(switch: Switch) -> None:
    switch.down = True
    writer = StoreWriter(switch, capacity=3, retry_s=10)
    writer.start()
    results = [writer.add(make_upload()[1]) for _ in range(10)]
    # The thread may have taken some into memory before its first sleep: at most 2 x capacity are held.
    assert results.count(True) <= 6 and results[-1] is False
    assert writer.dropped == results.count(False)
    writer.stop(timeout_s=0.2)
