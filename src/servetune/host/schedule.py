"""A drift-free ticker on the monotonic clock.

The reference monitor sleeps 5 s after each sample, so its period is 5 s plus the time the API calls
take, and the samples drift. Here tick k is due at start + k * interval: work inside the loop does not
shift later ticks, and a tick that is already past when the work finishes is skipped (not fired late in a
burst), so the samples stay on the grid.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator


def every(interval_s: float, stop_event: threading.Event | None = None) -> Iterator[float]:
    """Yield the monotonic time each tick was due: the first at once, then every `interval_s` seconds.

    Stops (returns) as soon as `stop_event` is set, even in the middle of a wait.
    """
    if not interval_s > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval_s}")
    stop_event = stop_event or threading.Event()
    start = time.monotonic()
    tick = 0
    while not stop_event.is_set():
        due = start + tick * interval_s
        while (remaining := due - time.monotonic()) > 0:
            if stop_event.wait(remaining):
                return
        yield due
        # The next tick still in the future: ticks missed while the caller worked are skipped.
        elapsed_ticks = math.floor((time.monotonic() - start) / interval_s)
        tick = max(tick + 1, elapsed_ticks + 1)
