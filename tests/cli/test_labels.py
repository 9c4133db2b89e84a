"""`servetune labels stats` on a real SQLite store, as a user runs it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from command import servetune
from label_uploads import make_upload
from servetune.cli.labels import parse_since
from servetune.labels.store import open_store


@pytest.fixture
def filled_db(tmp_path: Path) -> Path:
    db = tmp_path / "labels.db"
    store = open_store(str(db))
    now = time.time()
    old = make_upload(predicted="Egg", created_at=now - 7200, ttl_s=86400)[1]
    uploads = [old] + [make_upload(predicted="Egg")[1] for _ in range(4)]
    store.add(uploads)
    for upload, label in zip(uploads, ["Soup", "Egg", "Egg", "Egg", "Soup"], strict=True):
        store.answer("label", upload.key, label, now)
    store.close()
    return db


def test_stats_print_live_accuracy_with_its_interval(filled_db: Path) -> None:
    result = servetune("labels", "stats", "--labels-db", str(filled_db))
    assert result.returncode == 0, result.stderr
    assert "held-out labels" in result.stdout and "60.0 %" in result.stdout  # 3 of 5
    recent = servetune("labels", "stats", "--labels-db", str(filled_db), "--since", "1h", "--json")
    [model] = json.loads(recent.stdout)
    assert model["live_accuracy"]["n"] == 4 and model["live_accuracy"]["correct"] == 3
    assert model["live_accuracy"]["wilson_95"][0] < 0.75 < model["live_accuracy"]["wilson_95"][1]


def test_a_missing_store_and_a_bad_since_are_clear_errors(tmp_path: Path, filled_db: Path) -> None:
    missing = servetune("labels", "stats", "--labels-db", str(tmp_path / "none.db"))
    assert missing.returncode != 0 and "none.db: no such file" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "none.db").exists()
    bad = servetune("labels", "stats", "--labels-db", str(filled_db), "--since", "yesterday")
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr


def test_since_takes_ages_and_dates() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("1.5d", now=200_000.0) == 200_000.0 - 1.5 * 86400
    assert parse_since(None) is None
    assert parse_since("2026-12-01T10:00+00:00") == 1796119200.0
