"""Load driver capacity: servetune's built-in driver side by side with `siege -b` against a trivial endpoint.

Both send GET /test as fast as they can (no think time) with the same number of users for the same time to a
loopback server that answers a fixed 43-byte JSON body (uvloop, one process), with `Connection: close`
(siege's default) and with keep-alive. Reported per run: requests per second (transactions / run length)
and the client's CPU time per 1000 requests (the driver's thread for ours, siege's process for siege), the
figure that says whether the client could become the bottleneck. Median of several runs.

    .venv/bin/python benchmarks/driver.py [--runs 5] [--seconds 5] [--users 20]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from servetune.config import LoadPhase, LoadProfile
from servetune.host.cpu import cpu_model
from servetune.load.driver import LoadOptions, run_load_test
from servetune.load.siege import read_siege_log, siege_command, write_siegerc

BODY = b'{"prediction": "Bread", "probability": 0.9}'


class TrivialHttp(asyncio.Protocol):
    """Answers every request head with the same 200 response; closes when the client asked to."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            close = b"connection: close" in head.lower()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Served-By: bench:1\r\n"
                b"Content-Length: %d\r\nConnection: %s\r\n\r\n%s"
                % (len(BODY), b"close" if close else b"keep-alive", BODY)
            )
            if close:
                self.transport.close()
                return


def serve(sock: socket.socket) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(TrivialHttp, sock=sock, backlog=4096)
        await server.serve_forever()

    uvloop.run(main())


def builtin_run(url: str, users: int, seconds: float, keep_alive: bool, out: Path) -> tuple[int, float]:
    profile = LoadProfile(name="bench", phases=[LoadPhase(users=users, delay=0, duration_s=seconds)])
    result: dict[str, float] = {}

    def work() -> None:
        began = time.thread_time()
        rows = run_load_test(profile, url, out, LoadOptions(keep_alive=keep_alive, progress=False))
        result["cpu"] = time.thread_time() - began
        result["trans"] = rows[0].trans

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return int(result["trans"]), result["cpu"]


def siege_run(url: str, users: int, seconds: float, keep_alive: bool, out: Path) -> tuple[int, float]:
    out.mkdir(parents=True, exist_ok=True)
    log = out / "siege.log"
    log.unlink(missing_ok=True)
    siegerc = out / "siegerc"
    write_siegerc(siegerc, keep_alive, users)
    command = siege_command(shutil.which("siege"), siegerc, users, 0, int(seconds), log, url + "/test")
    command.insert(1, "-b")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HOME": str(out)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return read_siege_log(log)[0].trans, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    if shutil.which("siege") is None:
        raise SystemExit("benchmarks/driver.py needs the `siege` command (apt-get install siege)")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = multiprocessing.get_context("fork").Process(target=serve, args=(sock,), daemon=True)
    server.start()
    time.sleep(0.5)

    drivers = {"servetune builtin": builtin_run, "siege -b": siege_run}
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for run in range(args.runs):
                for keep_alive in (False, True):
                    for name, driver in drivers.items():  # interleaved, so drift hits both alike
                        trans, cpu = driver(
                            url, args.users, args.seconds, keep_alive, Path(scratch) / f"{run}"
                        )
                        rate = trans / args.seconds
                        cpu_per_1000 = 1_000_000 * cpu / trans if trans else float("nan")  # ms
                        results.setdefault((name, keep_alive), []).append((rate, cpu_per_1000))
    finally:
        server.kill()

    table = Table(
        title=f"Load driver capacity: {args.users} users, no think time, {args.seconds:g} s runs, median of "
        f"{args.runs} | {cpu_model()}, {os.cpu_count()} CPUs | Python {platform.python_version()} | "
        f"{datetime.date.today()}"
    )
    for column in (
        "connection",
        "driver",
        "req/s",
        "client CPU ms / 1000 req",
        "req/s vs siege",
        "CPU vs siege",
    ):
        table.add_column(column, justify="right")
    for keep_alive in (False, True):
        medians = {
            name: (
                statistics.median(r for r, _ in results[(name, keep_alive)]),
                statistics.median(c for _, c in results[(name, keep_alive)]),
            )
            for name in drivers
        }
        siege_rate, siege_cpu = medians["siege -b"]
        for name, (rate, cpu) in medians.items():
            table.add_row(
                "keep-alive" if keep_alive else "close",
                name,
                f"{rate:,.0f}",
                f"{cpu:.0f}",
                f"{rate / siege_rate:.2f}x",
                f"{cpu / siege_cpu:.2f}x",
            )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
