"""SIGTERM handled like Ctrl-C: `timeout`, `kill` and container runtimes stop a command as cleanly as a user.

Every long command already stops cleanly on Ctrl-C (KeyboardInterrupt, or the SIGINT handler a step
installs, like the load driver's "finish this run first"). SIGTERM's default action would kill the process
at once, leaving replicas, half-written run folders and no report; instead it runs whatever SIGINT would.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOPS = {signal.SIGINT, signal.SIGTERM}


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job) or left to the system: stop anyway
        raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def leave_signals_to_the_parent() -> None:
    """In a forked pool's worker: Ctrl-C is the parent's to handle, and the SIGTERM that ends the pool ends the
    worker at once. The parent's handlers, inherited by the fork, would print a traceback or, where the
    parent's SIGINT handler only sets a flag (the load driver's), leave a terminated worker waiting forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)  # held since the fork (`stops_held`): now they may come


@contextmanager
def stops_held() -> Iterator[None]:
    """SIGINT and SIGTERM held (blocked) in this thread, and in the processes and threads it starts, until the
    block ends here (or `leave_signals_to_the_parent` ends it in a forked worker): one arriving before a worker
    has set its own handlers then waits for them, instead of running the parent's handler in the worker."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
