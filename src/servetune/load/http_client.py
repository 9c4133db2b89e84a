"""A minimal HTTP/1.1 client on asyncio transports with the httptools (llhttp) response parser.

The driver must never be the bottleneck of a load test, so one request costs a connect, one write and the
parser's callbacks: no per-request objects beyond the result. One `HttpConnection` is one socket; with
`Connection: close` (siege's default) it serves one exchange, with keep-alive it is reused while the server
keeps it open.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import httptools

from servetune.load.target import Endpoint

REPLICA_HEADER = b"x-served-by"


@dataclass(slots=True)
class HttpResponse:
    status: int
    body_bytes: int
    replica: str
    keep_alive: bool


class HttpConnection(asyncio.Protocol):
    """One client socket; `exchange(request)` sends raw request bytes and returns the parsed response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[HttpResponse] | None = None
        self.closed = False
        self.expect_response()

    @classmethod
    async def open(cls, endpoint: Endpoint, ssl_context: ssl.SSLContext | None = None) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            cls, endpoint.host, endpoint.port, ssl=ssl_context if endpoint.scheme == "https" else None
        )
        return connection

    def exchange(self, request: bytes) -> asyncio.Future[HttpResponse]:
        if self.closed or self.transport is None:
            raise ConnectionResetError("connection is closed")
        self.expect_response()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.fail(ConnectionError(f"malformed HTTP response: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        # A response without Content-Length or chunking ends when the server closes the connection.
        if self.headers_done and exc is None and self.content_length is None and not self.chunked:
            waiter.set_result(self.response(keep_alive=False))
        else:
            self.fail(exc or ConnectionResetError("server closed the connection before a full response"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == REPLICA_HEADER:
            self.replica = value.decode("latin-1")
        elif name == b"content-length":
            self.content_length = int(value) if value.strip().isdigit() else None
        elif name == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.response(keep_alive=self.parser.should_keep_alive()))

    # helpers

    def expect_response(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers_done = False
        self.content_length: int | None = None
        self.chunked = False
        self.body_bytes = 0
        self.replica = ""

    def response(self, keep_alive: bool) -> HttpResponse:
        return HttpResponse(self.parser.get_status_code(), self.body_bytes, self.replica, keep_alive)

    def fail(self, error: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
