"""Time limits for slow clients, on top of uvicorn's HTTP protocol (httptools).

uvicorn closes an idle keep-alive connection, but a connection that never finishes its request line and
headers (slowloris), or a body that stalls, is held for ever: each one costs a socket and, with enough of
them, the server. These limits cut them off, like nginx's client_header_timeout and Apache's
mod_reqtimeout:

- headers: from a connection's first instant (or a kept-alive connection's next request) the request line
  and headers must be complete within `header_timeout_s`;
- body: within `body_timeout_s` after the headers, extended by one second for every `body_min_rate` bytes
  received (a large upload on a slow but steady link passes; a trickle does not);
- on either, the client gets `408 Request Timeout` (unless its answer has started) and the connection is
  closed.

Idle kept-alive connections are closed by uvicorn's own keep-alive timeout, and the number of open
connections is capped by uvicorn's `limit_concurrency` (503 beyond it); see `server_config`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 20.0
BODY_MIN_RATE = 50_000  # bytes per second that extend the body's time by one second
KEEP_ALIVE_TIMEOUT_S = 5
MAX_CONNECTIONS = 512  # per process; beyond it uvicorn answers 503

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
    b"connection: close\r\n\r\n%s"
)


def timeout_response(reason: str) -> bytes:
    body = b'{"error": "%s"}' % reason.encode()
    return TIMEOUT_RESPONSE % (len(body), body)


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body time limits (class attributes, in seconds)."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    body_min_rate: float = BODY_MIN_RATE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_timer: asyncio.TimerHandle | None = None
        self.body_deadline: float | None = None

    def arm(self, seconds: float, callback) -> None:
        self.disarm()
        self.limit_timer = self.loop.call_later(seconds, callback)

    def disarm(self) -> None:
        if self.limit_timer is not None:
            self.limit_timer.cancel()
            self.limit_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm(self.header_timeout_s, self.headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.limit_timer is None:  # the next request on a kept-alive connection
            self.arm(self.header_timeout_s, self.headers_too_slow)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.body_deadline = self.loop.time() + self.body_timeout_s
        self.arm(self.body_timeout_s, self.body_check)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self.body_deadline is not None:
            self.body_deadline += len(body) / self.body_min_rate

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.body_deadline = None
        self.disarm()

    def headers_too_slow(self) -> None:
        self.limit_timer = None
        self.cut_off(f"request headers not received within {self.header_timeout_s:g} s", answer=True)

    def body_check(self) -> None:
        self.limit_timer = None
        if self.body_deadline is None:
            return
        remaining = self.body_deadline - self.loop.time()
        if remaining > 0:  # the body arrived fast enough to have earned more time
            self.arm(remaining, self.body_check)
            return
        answered = self.cycle is not None and self.cycle.response_started
        self.cut_off(f"request body not received within {self.body_timeout_s:g} s", answer=not answered)

    def cut_off(self, reason: str, answer: bool) -> None:
        if self.transport.is_closing():
            return
        if answer:
            self.transport.write(timeout_response(reason))
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "client"
        self.logger.info("%s: %s; connection closed", client, reason)
        self.transport.close()


def server_config(protocol: type[TimedHttpProtocol] = TimedHttpProtocol) -> dict[str, Any]:
    """uvicorn Config arguments for these limits (also used by the gunicorn worker, serve/worker.py)."""
    return {
        "http": protocol,
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT_S,
        "limit_concurrency": MAX_CONNECTIONS,
    }
