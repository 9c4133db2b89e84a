"""Slow clients against a real uvicorn server (in a thread) with the server's app and short time limits."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from servetune.serve.app import create_app
from servetune.serve.connections import TimedHttpProtocol, server_config
from servetune.serve.drain import DrainingServer
from servetune.serve.settings import ServerSettings


class QuickLimits(TimedHttpProtocol):
    header_timeout_s = 0.6
    body_timeout_s = 0.6
    body_min_rate = 1000


@pytest.fixture(scope="module")
def port(tiny_model) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(ServerSettings(model_path=str(tiny_model), threads=1)), host="127.0.0.1", port=port,
        log_level="warning", **{**server_config(QuickLimits), "timeout_keep_alive": 1, "limit_concurrency": 4},
    )
    server = DrainingServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def trickle(port: int, head: bytes, then: bytes, every_s: float = 0.1, limit_s: float = 10) -> tuple[bytes, float]:
    """Send `head`, then `then` one byte at a time; return what the server answered and when it hung up."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(every_s)
    started = time.monotonic()
    answer = b""
    with connection:
        connection.sendall(head)
        for byte in then:
            try:
                connection.sendall(bytes([byte]))
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset: the server has closed
                break
            if not chunk:
                break
            answer += chunk
            if time.monotonic() - started > limit_s:
                break
    return answer, time.monotonic() - started


def test_headers_sent_a_byte_at_a_time_are_cut_off(port):
    answer, seconds = trickle(port, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request headers not received within 0.6 s" in answer
    assert 0.5 < seconds < 2.5


def test_a_connection_that_sends_nothing_is_cut_off(port):
    connection = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    with connection:
        connection.settimeout(5)
        answer = connection.recv(65536)
        assert connection.recv(65536) == b""  # closed
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.5 < time.monotonic() - started < 2.5


def test_a_stalled_upload_body_is_cut_off(port):
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 5000\r\n\r\n")
    answer, seconds = trickle(port, head, b"--b\r\n" + b"a" * 200)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body not received within 0.6 s" in answer
    assert 0.5 < seconds < 2.5


def test_a_slow_but_steady_upload_gets_its_answer(port):
    """Every 1000 bytes received (the minimum rate here) earn one more second: a steady link passes."""
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n" + b"x" * 3000
    body += b"\r\n--b--\r\n"
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head)
        for start in range(0, len(body), 300):  # 1.5 s in all, at 2000 bytes per second
            connection.sendall(body[start:start + 300])
            time.sleep(0.15)
        connection.settimeout(10)
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 415 "), answer[:200]  # read whole, then judged: not an image


def test_an_idle_kept_alive_connection_is_closed(port):
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.settimeout(5)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert connection.recv(65536) == b""
    assert 0.8 < time.monotonic() - started < 3


def test_connections_beyond_the_cap_get_503(port):
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            connection.settimeout(5)
            assert connection.recv(65536).startswith(b"HTTP/1.1 503 ")
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        connection.settimeout(5)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")
