"""A loopback HTTP server that records when each request arrived and on which connection."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import pytest


@dataclass
class Arrival:
    at: float  # time.perf_counter() when the request line arrived
    connection: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """Answers GET/POST on 127.0.0.1: `/status/N` answers N, `/slow/S` waits S seconds, anything else 200.
    `responses` overrides the status of other paths by arrival order (cycled)."""

    port: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    connections: int = 0
    responses: list[int] = field(default_factory=list)
    delay_s: float = 0.0  # every answer waits this long
    body: bytes = b'{"prediction": "Bread", "probability": 0.9}'
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.perf_counter()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if x)}
                length = int(headers.get("content-length", 0))
                body = await reader.readexactly(length) if length else b""
                self.arrivals.append(Arrival(arrived, connection, method, path, headers, body))
                status = 200
                if path.startswith("/status/"):
                    status = int(path.rsplit("/", 1)[1])
                elif path.startswith("/slow/"):
                    await asyncio.sleep(float(path.rsplit("/", 1)[1]))
                elif self.responses:
                    status = self.responses[(len(self.arrivals) - 1) % len(self.responses)]
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                close = headers.get("connection", "").lower() == "close"
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(self.body)}\r\nContent-Type: application/json\r\n"
                    f"X-Served-By: testhost:{connection % 3}\r\nConnection: {'close' if close else 'keep-alive'}"
                    "\r\n\r\n".encode()
                    + self.body
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
def recording_server():
    server = RecordingServer()
    started = threading.Event()
    stopping: list[asyncio.Event] = []

    async def serve() -> None:
        server.loop = asyncio.get_running_loop()
        stopping.append(asyncio.Event())
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=1024)
        server.port = listener.sockets[0].getsockname()[1]
        started.set()
        async with listener:
            await stopping[0].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield server
    server.loop.call_soon_threadsafe(stopping[0].set)
    thread.join(5)
