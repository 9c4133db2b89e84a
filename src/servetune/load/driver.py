"""The built-in load driver: siege's closed loop of virtual users, or an open loop of Poisson arrivals.

Closed loop (siege 4.0.7 semantics): each run starts all its users at t=0; a user sends a request, reads the
whole answer, then sleeps `int(U*d + 0.5)` whole seconds (U uniform in [0,1), so 0..d) when d >= 1, or
`int(U*d*1e6 + 0.0005)` microseconds when 0.001 <= d < 1; the sleep is not part of the response time. When
the run's time is up every user is cancelled, in-flight requests included, and one siege --log row is written.

Open loop: requests arrive as a Poisson process at the phase's rate whatever the server does, each on its
own connection; latency runs from the time a request was *scheduled* to be sent, so a late sender or a full
backlog shows up as latency (no coordinated omission). Requests still in flight at the end of a run are
awaited (each is bounded by the request timeout) and belong to that run.

Both write out_dir/load_output.csv (one siege --log row per run, flushed as each run ends) and
out_dir/requests.csv (every request, flushed twice a second). A stop (threading.Event, Ctrl-C, or
cancelling the task) ends the current run at once, writes its row and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from servetune.config import LoadPhase, LoadProfile, LoadRunRow
from servetune.load.http_client import HttpConnection
from servetune.load.progress import LoadProgress, progress_table
from servetune.load.request_log import RequestLogWriter
from servetune.load.siege import append_siege_row
from servetune.load.tally import RunTally
from servetune.load.target import Endpoint, TargetError, parse_base_url, request_stream
from servetune.runfolder import RunFolder

PROGRESS_INTERVAL_S = 0.5

Mode = Literal["closed", "open"]


@dataclass
class LoadOptions:
    """How requests are sent; the profile says how many and when."""

    mode: Mode = "closed"
    keep_alive: bool = False
    images: Path | None = None
    timeout_s: float = 30.0  # siege's default socket timeout
    max_outstanding: int = 10_000  # open loop: beyond this an arrival fails at once (client limit)
    seed: int | None = None
    progress: bool = True


@dataclass
class RunContext:
    """What the users of one run share."""

    endpoint: Endpoint
    requests: Iterator[bytes]
    phase_index: int
    options: LoadOptions
    tally: RunTally = field(default_factory=RunTally)
    rows: list[tuple[float, float, int, int, int, str]] = field(default_factory=list)

    def record(self, wall_start: float, latency: float, status: int, size: int, replica: str) -> None:
        self.tally.add(status, latency, size)
        self.rows.append((wall_start, latency, status, size, self.phase_index, replica))


async def send(
    context: RunContext, connection: HttpConnection | None
) -> tuple[int, int, str, HttpConnection | None]:
    """One request: (status, body bytes, replica, connection to reuse). Status 0: no HTTP answer."""
    options = context.options
    try:
        async with asyncio.timeout(options.timeout_s):
            if connection is None or connection.closed:
                connection = await HttpConnection.open(context.endpoint)
            response = await connection.exchange(next(context.requests))
    except (OSError, TimeoutError):
        if connection is not None:
            connection.close()
        return 0, 0, "", None
    except asyncio.CancelledError:  # the run ended mid-request: drop it, like siege, and free the socket
        if connection is not None:
            connection.close()
        raise
    if not (options.keep_alive and response.keep_alive):
        connection.close()
        connection = None
    return response.status, response.body_bytes, response.replica, connection


def think_time(rng: random.Random, delay: float) -> float:
    """siege's pause after a response: whole seconds 0..delay for delay >= 1, else microseconds."""
    if delay >= 1:
        return float(int(rng.random() * delay + 0.5))
    if delay >= 0.001:
        return int(rng.random() * delay * 1_000_000 + 0.0005) / 1_000_000
    return 0.0


async def closed_user(context: RunContext, delay: float, rng: random.Random) -> None:
    connection: HttpConnection | None = None
    try:
        while True:
            wall_start = time.time()
            started = time.perf_counter()
            status, size, replica, connection = await send(context, connection)
            context.record(wall_start, time.perf_counter() - started, status, size, replica)
            pause = think_time(rng, delay)
            await asyncio.sleep(pause)
    finally:
        if connection is not None:
            connection.close()


async def open_request(context: RunContext, scheduled: float, wall_scheduled: float) -> None:
    status, size, replica, _ = await send(context, None)
    context.record(wall_scheduled, time.perf_counter() - scheduled, status, size, replica)


async def wait_or_halt(halt: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless halted first; True when halted."""
    if halt.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(halt.wait(), timeout=max(0.0, seconds))
    return halt.is_set()


async def nap(halt: asyncio.Event, seconds: float) -> bool:
    """Like wait_or_halt but cheap enough to call before every open-loop arrival; True when halted."""
    while seconds > 0 and not halt.is_set():
        await asyncio.sleep(min(seconds, 0.1))
        seconds -= 0.1
    if seconds <= 0:
        await asyncio.sleep(0)
    return halt.is_set()


async def closed_run(context: RunContext, phase: LoadPhase, halt: asyncio.Event, rng: random.Random) -> None:
    users = [
        asyncio.create_task(closed_user(context, phase.delay, random.Random(rng.getrandbits(64))))
        for _ in range(phase.users)
    ]
    try:
        await wait_or_halt(halt, phase.duration_s)
    finally:
        for user in users:
            user.cancel()
        await asyncio.gather(*users, return_exceptions=True)


async def open_run(context: RunContext, phase: LoadPhase, halt: asyncio.Event, rng: random.Random) -> None:
    rate = phase.open_loop_rate()
    began = context.tally.started
    wall_began = time.time() - (time.perf_counter() - began)
    in_flight: set[asyncio.Task] = set()
    offset = rng.expovariate(rate)
    try:
        while offset < phase.duration_s:
            if await nap(halt, began + offset - time.perf_counter()):
                break
            if len(in_flight) >= context.options.max_outstanding:
                context.record(wall_began + offset, 0.0, 0, 0, "")
            else:
                task = asyncio.create_task(open_request(context, began + offset, wall_began + offset))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            offset += rng.expovariate(rate)
        await wait_or_halt(halt, began + phase.duration_s - time.perf_counter())
        if in_flight and not halt.is_set():
            await asyncio.wait(in_flight)
    finally:
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)


async def watch_stop(stop: threading.Event, halt: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.05)
    halt.set()


async def report_progress(
    context: RunContext,
    writer: RequestLogWriter,
    view: LoadProgress,
    run: int,
    runs: int,
    phase: LoadPhase,
    mode: Mode,
) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        flush_requests(context, writer)
        view.show(
            progress_table(run, runs, context.phase_index, phase, mode, context.tally, phase.duration_s)
        )


def flush_requests(context: RunContext, writer: RequestLogWriter) -> None:
    if context.rows:
        rows, context.rows = context.rows, []
        writer.write_rows(rows)


def check_profile(profile: LoadProfile, options: LoadOptions) -> None:
    if options.mode == "open" and (problem := profile.open_loop_problem()) is not None:
        raise TargetError(problem)


async def run_load(
    profile: LoadProfile,
    base_url: str,
    out_dir: Path,
    options: LoadOptions | None = None,
    stop: threading.Event | None = None,
) -> list[LoadRunRow]:
    """Run every phase of the profile against base_url; returns the log rows (also in out_dir)."""
    options = options or LoadOptions()
    endpoint = parse_base_url(base_url)
    check_profile(profile, options)
    images = options.images or (Path(profile.images) if profile.images else None)
    streams = {
        t: request_stream(endpoint, t, options.keep_alive, images) for t in {p.target for p in profile.phases}
    }
    folder = RunFolder(out_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    load_log = folder.load_log
    load_log.unlink(missing_ok=True)
    folder.keep_profile(profile)

    halt = asyncio.Event()
    watcher = asyncio.create_task(watch_stop(stop, halt)) if stop is not None else None
    rng = random.Random(options.seed)
    runs = profile.runs()
    rows: list[LoadRunRow] = []
    try:
        with RequestLogWriter(folder.request_log) as writer, LoadProgress(options.progress) as view:
            for run, (phase_index, phase) in enumerate(runs):
                if halt.is_set():
                    break
                context = RunContext(endpoint, streams[phase.target], phase_index, options)
                ticker = asyncio.create_task(
                    report_progress(context, writer, view, run, len(runs), phase, options.mode)
                )
                try:
                    if options.mode == "open":
                        await open_run(context, phase, halt, rng)
                    else:
                        await closed_run(context, phase, halt, rng)
                finally:
                    # Also on cancellation: the interrupted run keeps its row, like siege on SIGINT.
                    ticker.cancel()
                    row = context.tally.to_row(context.tally.elapsed())
                    append_siege_row(load_log, row)
                    flush_requests(context, writer)
                    rows.append(row)
    finally:
        if watcher is not None:
            watcher.cancel()
    return rows


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (about twice the requests per CPU second), else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_load_test(
    profile: LoadProfile,
    base_url: str,
    out_dir: Path,
    options: LoadOptions | None = None,
    stop: threading.Event | None = None,
) -> list[LoadRunRow]:
    """Synchronous run_load on its own event loop; works in any thread. In the main thread the first Ctrl-C
    stops the test cleanly (rows so far are kept) and a second one interrupts at once."""
    stop = stop or threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = None
    if in_main_thread:

        def on_interrupt(signum: int, frame: object) -> None:
            stop.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(run_load(profile, base_url, out_dir, options, stop))
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
