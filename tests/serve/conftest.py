"""Fixtures for the server tests: a tiny real ONNX artifact and an in-process client."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from environment import require_tool
from onnx_models import tiny_artifact

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette prefers httpx2 for its TestClient; httpx is what is pinned
    from fastapi.testclient import TestClient

from servetune.serve.app import create_app
from servetune.serve.settings import ServerSettings

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_artifact(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def client(tiny_model: Path) -> Iterator[TestClient]:
    """One warmed-up app shared by the read-only tests (starting one takes about a second)."""
    settings = ServerSettings(model_path=str(tiny_model), threads=1, max_upload_bytes=2 * 1024 * 1024)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's) driven by Playwright."""
    chromium = require_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
