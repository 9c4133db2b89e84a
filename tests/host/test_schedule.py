from __future__ import annotations

import threading
import time

import pytest

from servetune.host.schedule import every


def test_ticks_stay_on_the_grid_despite_work_in_the_loop():
    stop = threading.Event()
    start = time.monotonic()
    due_times = []
    for due in every(0.05, stop):
        due_times.append(due)
        time.sleep(0.02)  # work shorter than the interval must not shift later ticks
        if len(due_times) == 8:
            break
    first = due_times[0]
    assert first - start < 0.01
    offsets = [due - first - k * 0.05 for k, due in enumerate(due_times)]
    assert max(abs(o) for o in offsets) < 1e-9
    # 7 intervals elapsed, not 7 * (interval + work).
    assert time.monotonic() - start < 7 * 0.05 + 0.04


def test_late_ticks_are_skipped_not_bunched():
    seen = []
    for due in every(0.05):
        seen.append((due, time.monotonic()))
        if len(seen) == 1:
            time.sleep(0.13)  # misses the ticks at 0.05 and 0.10
        if len(seen) == 3:
            break
    (t0, _), (t1, fired1), (t2, fired2) = seen
    assert round((t1 - t0) / 0.05) == 3 and round((t2 - t0) / 0.05) == 4
    assert fired2 - fired1 > 0.03  # not fired back to back


def test_stop_event_ends_a_wait_promptly():
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    start = time.monotonic()
    ticks = list(every(10.0, stop))
    assert len(ticks) == 1
    assert time.monotonic() - start < 1.0


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        next(every(0))
