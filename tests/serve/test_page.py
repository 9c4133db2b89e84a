"""The upload page in a real headless Chromium against a real `servetune serve` process."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from onnx_models import tiny_artifact
from servetune.config import FOOD11_CLASSES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base_url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}: {server.stderr.read()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server at {base_url} not ready after {timeout_s} s")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = tiny_artifact(tmp_path_factory.mktemp("model") / "tiny.onnx")
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("servetune")), "serve", "--model", str(model),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def page(browser, server_url: str):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.set_default_timeout(20_000)
    page.goto(server_url + "/")
    yield page
    page.close()


def jpeg_bytes() -> bytes:
    image = Image.new("RGB", (320, 240), (200, 120, 40))
    image.paste((240, 230, 200), (80, 60, 240, 180))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_page_loads_its_own_assets_without_any_other_host(browser, server_url: str) -> None:
    page = browser.new_page()
    hosts = []
    page.on("request", lambda request: hosts.append(request.url.split("/")[2]))
    page.goto(server_url + "/")
    page.wait_for_load_state("networkidle")
    assert page.title()
    assert page.locator("#submit").is_disabled()
    # The stylesheet applied (the file input is visually hidden by it) and nothing came from a CDN.
    assert page.locator("#file-input").evaluate("e => getComputedStyle(e).opacity") == "0"
    assert set(hosts) == {server_url.split("/")[2]}
    page.close()


def test_uploading_a_jpeg_shows_top_3_classes_as_bars(page) -> None:
    from playwright.sync_api import expect

    page.set_input_files("#file-input", files=[{"name": "food.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes()}])
    expect(page.locator("#preview")).to_be_visible()
    page.click("#submit")
    expect(page.locator("#top-k .bar-row")).to_have_count(3)

    prediction = page.locator("#prediction").inner_text()
    assert prediction in FOOD11_CLASSES
    labels = page.locator("#top-k .bar-label").all_inner_texts()
    assert labels[0] == prediction and all(label in FOOD11_CLASSES for label in labels)
    values = [float(v) for v in page.locator("#top-k .bar").evaluate_all(
        "bars => bars.map(b => b.getAttribute('aria-valuenow'))")]
    assert values == sorted(values, reverse=True) and 0 < values[0] <= 100
    width = page.locator("#top-k .bar-fill").first.evaluate("e => e.getBoundingClientRect().width")
    assert width > 0
    assert page.locator("#inference-ms").inner_text().endswith(" ms")
    assert page.locator("#model-name").inner_text() == "tiny"
    assert page.locator("#error").is_hidden()
    page.screenshot(path=str(Path("/tmp") / "servetune-page.png"), full_page=True)


def test_a_photo_dropped_on_the_page_is_classified(page) -> None:
    from playwright.sync_api import expect

    transfer = page.evaluate_handle(
        """bytes => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"}));
            return transfer;
        }""",
        list(jpeg_bytes()),
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("dropped.jpg")
    page.click("#submit")
    expect(page.locator("#top-k .bar-row")).to_have_count(3)
    assert page.locator("#prediction").inner_text() in FOOD11_CLASSES


def test_uploading_a_text_file_shows_the_servers_reason(page, server_url: str) -> None:
    from playwright.sync_api import expect

    answer = httpx.post(f"{server_url}/predict", files={"file": ("notes.txt", b"not a photo", "text/plain")})
    assert 400 <= answer.status_code < 500
    page.set_input_files("#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}])
    page.click("#submit")
    error = page.locator("#error")
    expect(error).to_be_visible()
    # The server's own reason is shown, not just a status code.
    expect(error).to_contain_text(f"HTTP {answer.status_code}")
    expect(error).to_contain_text(answer.json()["error"])
    assert page.locator("#result").is_hidden()
    page.screenshot(path=str(Path("/tmp") / "servetune-page-error.png"), full_page=True)


def test_page_and_docs_work_under_their_content_security_policy(browser, server_url: str) -> None:
    """The policy blocks nothing the page or Swagger UI needs: no violation, and /docs lists the API."""
    page = browser.new_page()
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    hosts = []
    page.on("request", lambda request: hosts.append(request.url.split("/")[2]))
    response = page.goto(server_url + "/docs")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page.locator(".opblock-summary-path", has_text="/predict").first.wait_for()
    assert page.locator(".opblock-summary-path").count() >= 5
    page.goto(server_url + "/")
    page.wait_for_load_state("networkidle")
    assert violations == []
    assert set(hosts) == {server_url.split("/")[2]}
    page.close()
