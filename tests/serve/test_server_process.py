"""The real server: `servetune serve` in a subprocess on a free port (uvicorn, and gunicorn workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from servers import SERVE, running_server
from servetune.serve.sample_image import generated_sample_jpeg


def multipart(data: bytes, boundary: str = "servetuneboundary") -> tuple[bytes, str]:
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def raw_request_head(port: int, content_length: int, content_type: str) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {content_length}\r\nConnection: close\r\n\r\n".encode()
    )
    return connection


def read_response(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_serves_answers_bad_input_and_stays_up(tiny_model):
    with running_server("--model", str(tiny_model), "--threads", "1") as (process, url):
        assert httpx.get(f"{url}/test").json()["model"] == "tiny"
        assert httpx.post(f"{url}/predict", files={"file": ("a.txt", b"text", "text/plain")}).status_code == 415
        assert httpx.post(f"{url}/predict", content=b"{}", headers={"content-type": "application/json"}).status_code == 415
        assert httpx.get(f"{url}/nothing").json() == {"error": "Not Found"}
        response = httpx.get(f"{url}/test")
        assert response.status_code == 200
        assert response.headers["x-served-by"].endswith(f":{process.pid}")
        assert "servetune_http_requests_total" in httpx.get(f"{url}/metrics").text


def test_oversize_upload_is_refused_from_content_length_alone(tiny_model):
    with running_server("--model", str(tiny_model), "--threads", "1", "--max-upload-mb", "1") as (_, url):
        port = int(url.rsplit(":", 1)[1])
        connection = raw_request_head(port, 50 * 1024 * 1024, "multipart/form-data; boundary=x")
        with connection:  # no body sent at all: the answer must come from the header
            response = read_response(connection)
        assert response.startswith(b"HTTP/1.1 413")
        assert b'"error":"upload too large' in response
        assert httpx.get(f"{url}/test").status_code == 200


def test_sigterm_finishes_in_flight_requests(tiny_model):
    """Uploads half sent when SIGTERM arrives still complete with 200; then the process exits cleanly."""
    with running_server("--model", str(tiny_model), "--threads", "1") as (process, url):
        port = int(url.rsplit(":", 1)[1])
        body, content_type = multipart(generated_sample_jpeg())
        connections = [raw_request_head(port, len(body), content_type) for _ in range(3)]
        for connection in connections:
            connection.sendall(body[: len(body) // 2])
        # Four /test requests sent on raw sockets (no client to set up: they reach the server at once).
        tests = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(4)]
        for connection in tests:
            connection.sendall(b"GET /test HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)  # the uploads and the tests are now in flight on the server
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert process.poll() is None, "the server quit with requests in flight"
        responses = []
        for connection in connections:
            with connection:
                connection.sendall(body[len(body) // 2 :])
                responses.append(read_response(connection))
        results = []
        for connection in tests:
            with connection:
                results.append(read_response(connection))
        # A clean drain after SIGTERM is a normal end: status 0, as Kubernetes expects of a container.
        assert process.wait(30) == 0
    assert all(response.startswith(b"HTTP/1.1 200") for response in responses), responses
    assert all(result.startswith(b"HTTP/1.1 200") for result in results), results


def test_gunicorn_workers_share_the_port_metrics_and_report_readiness(tiny_model, tmp_path):
    ready_dir = tmp_path / "ready"
    args = ("--model", str(tiny_model), "--workers", "2", "--threads", "1", "--ready-dir", str(ready_dir))
    with running_server(*args) as (process, url):
        deadline = time.monotonic() + 60
        while len(list(ready_dir.glob("*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        worker_pids = {int(path.name) for path in ready_dir.iterdir()}
        assert len(worker_pids) == 2 and process.pid not in worker_pids
        served_by = set()
        for _ in range(20):
            response = httpx.get(f"{url}/test", headers={"connection": "close"})
            assert response.status_code == 200
            served_by.add(int(response.headers["x-served-by"].rsplit(":", 1)[1]))
        assert served_by <= worker_pids
        # Whichever worker answers /metrics reports the requests of both (multiprocess mode).
        text = httpx.get(f"{url}/metrics").text
        line = next(
            line for line in text.splitlines()
            if line.startswith('servetune_http_requests_total{endpoint="/test",method="GET",status="200"}')
        )
        assert float(line.split()[-1]) == 20
        # A worker killed outright is replaced; its ready file goes with it and the new one announces itself.
        victim = min(worker_pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = {int(path.name) for path in ready_dir.iterdir()}
            if victim not in pids and len(pids) == 2:
                break
            time.sleep(0.1)
        assert victim not in pids and len(pids) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert list(ready_dir.iterdir()) == []


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=60, check=False)


def test_missing_model_is_a_clear_error(tmp_path):
    result = run_cli("--model", str(tmp_path / "absent.onnx"))
    assert result.returncode == 2
    assert "absent.onnx: no such model file" in result.stderr and "Traceback" not in result.stderr


def test_not_a_model_and_missing_sample_image(tmp_path, tiny_model):
    not_model = tmp_path / "notes.onnx"
    not_model.write_text("hello")
    result = run_cli("--model", str(not_model))
    assert result.returncode == 2 and "not a loadable ONNX model" in result.stderr
    result = run_cli("--model", str(tiny_model), "--sample-image", str(tmp_path / "none.jpg"))
    assert result.returncode == 2 and "none.jpg" in result.stderr and "Traceback" not in result.stderr
    text = tmp_path / "text.jpg"
    text.write_text("not a photo")
    result = run_cli("--model", str(tiny_model), "--sample-image", str(text))
    assert result.returncode == 2 and "text.jpg: unusable sample image" in result.stderr


@pytest.mark.slow
def test_slowloris_connections_are_cut_off_and_others_still_served(tiny_model):
    """50 connections sending their headers a byte a second: each gets 408 after the header time limit,
    while ordinary requests are answered meanwhile."""
    from servetune.serve.connections import HEADER_TIMEOUT_S

    with running_server("--model", str(tiny_model), "--threads", "1") as (_, url):
        port = int(url.rsplit(":", 1)[1])
        started = time.monotonic()
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        for connection in slow:
            connection.sendall(b"GET /test HTTP/1.1\r\nX-Slow: ")
            connection.setblocking(False)
        closed_after: dict[int, float] = {}
        answers: dict[int, bytes] = {}
        while len(closed_after) < len(slow) and time.monotonic() - started < HEADER_TIMEOUT_S * 3:
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            for index, connection in enumerate(slow):
                if index in closed_after:
                    continue
                try:
                    connection.send(b"a")
                    chunk = connection.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                answers[index] = answers.get(index, b"") + chunk
                if not chunk:
                    closed_after[index] = time.monotonic() - started
            time.sleep(1)
        for connection in slow:
            connection.close()
    assert len(closed_after) == 50
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers.values())
    assert HEADER_TIMEOUT_S - 0.5 < min(closed_after.values()) and max(closed_after.values()) < HEADER_TIMEOUT_S + 5


@pytest.mark.slow
def test_a_burst_of_large_images_stays_bounded_and_memory_is_given_back(tiny_model):
    """10 uploads at once of an 8-megapixel LA PNG (32 MB decoded, about 160 MB through the old
    conversion): the server's RSS rises by about two decodes (two inference threads), and falls back."""
    import io

    import numpy as np
    from PIL import Image

    gradient = np.linspace(0, 255, 3200, dtype=np.float32)[None, :] * np.ones((2500, 1), np.float32)
    image = Image.merge("LA", (Image.fromarray(gradient.astype(np.uint8)), Image.fromarray(gradient[::-1].astype(np.uint8))))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    upload = buffer.getvalue()
    with running_server("--model", str(tiny_model), "--threads", "2") as (process, url):
        status_file = Path(f"/proc/{process.pid}/status")

        def kib(field: str) -> int:
            line = next(line for line in status_file.read_text().splitlines() if line.startswith(field + ":"))
            return int(line.split()[1]) * 1024

        assert httpx.post(f"{url}/predict", files={"file": ("a.png", upload)}, timeout=60).status_code == 200
        time.sleep(1)
        baseline = kib("VmRSS")
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # the kernel's peak RSS starts again from here
        statuses: list[int] = []

        def post() -> None:
            statuses.append(httpx.post(f"{url}/predict", files={"file": ("a.png", upload)}, timeout=120).status_code)

        clients = [threading.Thread(target=post) for _ in range(10)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(180)
        time.sleep(1)
        peak, after = kib("VmHWM"), kib("VmRSS")
    mib = 2**20
    assert statuses == [200] * 10
    assert peak - baseline < 150 * mib, f"peak {(peak - baseline) / mib:.0f} MiB above {baseline / mib:.0f} MiB"
    assert after - baseline < 40 * mib, f"{(after - baseline) / mib:.0f} MiB kept after the burst"
