"""The held-out flow and "wrong?" feedback on the upload page, in a real Chromium against `servetune serve`."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from servers import running_server
from servetune.config import FOOD11_CLASSES


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (160, 120), (120, 160, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def labels_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Every upload held out."""
    db = tmp_path_factory.mktemp("labels") / "labels.db"
    with running_server("--model", str(tiny_model), "--holdout-fraction", "1", "--labels-db", str(db)) as (_, url):
        yield url, db


@pytest.fixture(scope="module")
def feedback_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    db = tmp_path_factory.mktemp("feedback") / "labels.db"
    with running_server("--model", str(tiny_model), "--feedback", "--labels-db", str(db)) as (_, url):
        yield url, db


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.set_default_timeout(20_000)
    page.goto(url + "/")
    page.set_input_files("#file-input", files=[{"name": "dish.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes()}])
    page.click("#submit")
    return page


def test_a_held_out_photo_asks_for_the_class_before_showing_the_prediction(browser, labels_server) -> None:
    from playwright.sync_api import expect

    url, db = labels_server
    page = open_page(browser, url)
    choices = page.locator("#holdout-classes .class-choice")
    expect(choices).to_have_count(len(FOOD11_CLASSES))
    assert choices.all_inner_texts() == FOOD11_CLASSES
    assert page.locator("#result").is_hidden()  # nothing of the prediction shows before the label
    page.locator("#holdout-classes .class-choice", has_text="Soup").click()
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#verdict")).to_contain_text("You said Soup")
    assert page.locator("#holdout").is_hidden()
    prediction = page.locator("#prediction").inner_text()
    assert prediction in FOOD11_CLASSES
    page.screenshot(path="/tmp/servetune-page-holdout.png", full_page=True)
    page.close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT label, predicted FROM uploads").fetchall() == [("Soup", prediction)]


def test_wrong_on_a_shown_prediction_records_the_users_class(browser, feedback_server) -> None:
    from playwright.sync_api import expect

    url, db = feedback_server
    page = open_page(browser, url)
    expect(page.locator("#top-k .bar-row")).to_have_count(3)
    page.click("#wrong")
    expect(page.locator("#feedback-classes .class-choice")).to_have_count(len(FOOD11_CLASSES) + 1)
    page.locator("#feedback-classes .class-choice", has_text="Rice").click()
    expect(page.locator("#verdict")).to_contain_text("feedback was recorded")
    page.close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT kind, feedback_label FROM uploads").fetchall() == [("shown", "Rice")]
