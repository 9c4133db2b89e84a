"""The server's one path to the label store: a background thread that owns the connection.

Serving never waits on the store: `add` puts an upload in a bounded queue and returns at once (False when
the queue is full), and a label's lookup (`call`) is a Future that fails at once while the store is down.
The thread writes uploads in batches, in the order they came, and runs a call only after every upload
queued before it is written, so a label for an upload of the same process always finds it. When the store
fails, uploads wait in memory (up to `capacity`) and the thread reconnects every `retry_s`; nothing it
had written is lost, and what it holds is written once the store is back.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from servetune.labels.records import Upload
from servetune.labels.store import LabelStore, StoreUnavailable

BATCH = 200
log = logging.getLogger("servetune.labels")


@dataclass
class _Insert:
    upload: Upload
    photo: bytes
    keep: bool


@dataclass
class _Call:
    run: Callable[[LabelStore], Any]
    future: Future


class _Stop:
    pass


class StoreWriter:
    def __init__(
        self,
        open_store: Callable[[], LabelStore],
        capacity: int = 2000,
        photo_bytes: int = 64 * 1024 * 1024,  # bound on the photos' bytes waiting in the queue
        retry_s: float = 1.0,
        keep_photo: Callable[[Upload, bytes], Upload] | None = None,  # e.g. PhotoKeeper.keep
        on_change: Callable[[bool], None] | None = None,
        refresh: Callable[[LabelStore], None] | None = None,
        refresh_s: float = 15.0,
    ) -> None:
        self.open_store = open_store
        self.capacity = capacity
        self.retry_s = retry_s
        self.keep_photo = keep_photo
        self.on_change = on_change
        self.refresh = refresh
        self.refresh_s = refresh_s
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.photo_bytes = photo_bytes
        self.queued_photo_bytes = 0
        self.lock = threading.Lock()
        self.pending: list[Upload] = []  # taken from the queue, not written yet
        self.store: LabelStore | None = None
        self.up = False
        self.dropped = 0
        self.written = 0
        self.last_error = ""
        self.thread = threading.Thread(target=self.loop, name="label-store", daemon=True)
        self.next_refresh = 0.0
        self.stopping_by = 0.0
        self.stop_requested = threading.Event()  # wakes the thread from its wait between reconnections

    def start(self) -> None:
        self.thread.start()

    def add(self, upload: Upload, photo: bytes = b"", keep: bool = False) -> bool:
        """Queue an upload to be written (its photo_sha256 is computed here, off the serving path, from
        `photo`, which is kept when `keep`); False, and nothing queued, when the queue is full."""
        with self.lock:
            if self.queued_photo_bytes + len(photo) > self.photo_bytes:
                self.dropped += 1
                return False
            try:
                self.queue.put_nowait(_Insert(upload, photo, keep))
            except queue.Full:
                self.dropped += 1
                return False
            self.queued_photo_bytes += len(photo)
            return True

    def call(self, run: Callable[[LabelStore], Any]) -> Future:
        """Run `run(store)` on the thread after the uploads queued before it; fails at once while down."""
        future: Future = Future()
        if not self.up:
            future.set_exception(StoreUnavailable(f"labels store unavailable: {self.last_error or 'connecting'}"))
            return future
        try:
            self.queue.put_nowait(_Call(run, future))
        except queue.Full:
            future.set_exception(StoreUnavailable("labels store busy: its queue is full"))
        return future

    def refresh_soon(self) -> None:
        """Run `refresh` at the thread's next turn (within a second), e.g. after a new label."""
        self.next_refresh = 0.0

    def stop(self, timeout_s: float = 5.0) -> int:
        """Write what is queued (for at most timeout_s) and stop; the number of uploads not written."""
        if not self.thread.is_alive():
            return 0
        self.stopping_by = time.monotonic() + timeout_s
        self.stop_requested.set()
        try:
            self.queue.put_nowait(_Stop())
        except queue.Full:
            pass  # the thread sees stop_requested once it has emptied the queue
        self.thread.join(timeout_s + 1)
        lost = len(self.pending) + self.queue.qsize()
        if lost:
            log.warning("labels store: %d uploads not written at shutdown (%s)", lost, self.last_error)
        return lost

    # --- the thread -------------------------------------------------------------------------------------

    def loop(self) -> None:
        stopping = False
        while True:
            if self.store is None:
                self.connect()
            items = self.take(block=not self.pending and self.store is not None)
            for item in items:
                if isinstance(item, _Insert):
                    self.pending.append(self.with_photo(item))
                elif isinstance(item, _Call):
                    self.run_call(item)
                else:
                    stopping = True
            self.flush()
            self.maybe_refresh()
            stopping = stopping or (self.stop_requested.is_set() and self.queue.empty())
            if stopping and (not self.pending or self.store is None or time.monotonic() > self.stopping_by):
                break
            if self.store is None:
                self.stop_requested.wait(self.retry_s)
        if self.store is not None:
            self.store.close()

    def take(self, block: bool) -> list:
        items = []
        try:
            items.append(self.queue.get(timeout=min(self.refresh_s, 1.0)) if block else self.queue.get_nowait())
            while len(items) < BATCH:
                items.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def with_photo(self, item: _Insert) -> Upload:
        with self.lock:
            self.queued_photo_bytes -= len(item.photo)
        upload = item.upload
        if item.photo:
            upload = replace(upload, photo_sha256=hashlib.sha256(item.photo).hexdigest())
        if not item.keep or self.keep_photo is None:
            return upload
        try:
            return self.keep_photo(upload, item.photo)
        except OSError as error:
            log.warning("labels: photo not kept: %s", error)
            return upload

    def run_call(self, item: _Call) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        self.flush()  # the call may be about an upload that is still pending
        if self.store is None:
            item.future.set_exception(StoreUnavailable(f"labels store unavailable: {self.last_error}"))
            return
        try:
            item.future.set_result(item.run(self.store))
        except StoreUnavailable as error:
            self.failed(error)
            item.future.set_exception(error)
        except Exception as error:  # noqa: BLE001 - a bug in the call: its caller sees it, the thread goes on
            item.future.set_exception(error)

    def flush(self) -> None:
        if not self.pending or self.store is None:
            self.trim()
            return
        try:
            self.store.add(self.pending)
        except StoreUnavailable as error:
            self.failed(error)
            self.trim()
            return
        self.written += len(self.pending)
        self.pending.clear()

    def trim(self) -> None:
        """While the store is down, hold at most `capacity` uploads: the newest beyond it are dropped."""
        if len(self.pending) > self.capacity:
            self.dropped += len(self.pending) - self.capacity
            del self.pending[self.capacity:]

    def maybe_refresh(self) -> None:
        if self.refresh is None or self.store is None or time.monotonic() < self.next_refresh:
            return
        self.next_refresh = time.monotonic() + self.refresh_s
        try:
            self.refresh(self.store)
        except StoreUnavailable as error:
            self.failed(error)

    def connect(self) -> None:
        try:
            self.store = self.open_store()
        except StoreUnavailable as error:
            self.set_up(False, str(error))
            return
        except Exception as error:  # noqa: BLE001 - e.g. a newer schema: the store stays unusable, serving goes on
            self.set_up(False, str(error))
            return
        self.set_up(True, "")
        log.info("labels store connected: %s", self.store.location.redacted())

    def failed(self, error: StoreUnavailable) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        self.set_up(False, str(error))
        log.warning("labels store down: %s", error)

    def set_up(self, up: bool, error: str) -> None:
        self.last_error = error
        if up != self.up:
            self.up = up
            if self.on_change is not None:
                self.on_change(up)
