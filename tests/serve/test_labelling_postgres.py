"""Held-out labels with two `servetune serve` replicas writing to one real PostgreSQL server, which is
stopped mid-run: predictions go on, labels get 503, and nothing is lost once it is back."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from PIL import Image

from postgres_server import PASSWORD, PostgresServer, postgres_server
from servers import running_server


def jpeg_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (shade, 100, 50)).save(buffer, "JPEG")
    return buffer.getvalue()


def upload(url: str, shade: int = 90) -> dict:
    answer = httpx.post(f"{url}/predict", files={"file": ("dish.jpg", jpeg_bytes(shade), "image/jpeg")}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def label(url: str, token: str, name: str = "Soup") -> httpx.Response:
    return httpx.post(f"{url}/labels", json={"id": token, "label": name}, timeout=10)


def wait_for(condition, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def store_up(url: str) -> bool:
    return "servetune_labels_store_up 1.0" in httpx.get(f"{url}/metrics", timeout=5).text


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(tiny_model: Path, postgres: PostgresServer) -> Iterator[tuple[list[str], list]]:
    database = postgres.database("serve")
    args = ["--model", str(tiny_model), "--threads", "1", "--holdout-fraction", "1", "--labels-db", database]
    with running_server(*args) as (first, url_a), running_server(*args) as (second, url_b):
        wait_for(lambda: store_up(url_a) and store_up(url_b))
        yield [url_a, url_b], [first, second]


def rows(postgres: PostgresServer, sql: str) -> list[tuple]:
    with psycopg.connect(postgres.url.rsplit("/", 1)[0] + "/serve") as connection:
        return connection.execute(sql).fetchall()


def test_a_label_may_reach_another_replica_than_its_upload(replicas, postgres: PostgresServer) -> None:
    (url_a, url_b), _ = replicas
    held_a, held_b = upload(url_a), upload(url_b)
    assert held_a["holdout"] and held_b["holdout"]
    assert label(url_b, held_a["id"], "Soup").status_code == 200
    assert label(url_a, held_b["id"], "Egg").status_code == 200
    assert label(url_a, held_a["id"], "Egg").status_code == 409  # used, whichever replica is asked
    stored = rows(postgres, "SELECT replica, label FROM uploads WHERE label IS NOT NULL ORDER BY label")
    assert [name for _, name in stored] == ["Egg", "Soup"]
    assert len({replica for replica, _ in stored}) == 2  # each row names the replica that classified it


def test_the_store_stopped_mid_run(replicas, postgres: PostgresServer) -> None:
    (url_a, url_b), processes = replicas
    before = [upload(url_a, shade)["id"] for shade in (10, 20, 30)]
    labelled_before = label(url_a, before[0])
    assert labelled_before.status_code == 200
    postgres.stop()
    try:
        # Replica B has not met the dead store yet: it holds this upload out and keeps the row in memory.
        held_during = upload(url_b, 35)
        assert held_during["holdout"]
        # The first call to meet the dead connection is refused with 503, and so is every label after it.
        wait_for(lambda: label(url_a, before[1]).status_code == 503 and not store_up(url_a))
        started = time.monotonic()
        during = [upload(url_a, shade) for shade in range(40, 60)]
        assert all("prediction" in body for body in during)  # predictions go on, shown: nothing to label
        assert time.monotonic() - started < 10
        refused = label(url_a, before[1])
        assert refused.status_code == 503 and "unavailable" in refused.json()["error"]
        metrics = httpx.get(f"{url_a}/metrics", timeout=5).text
        assert 'servetune_holdout_skipped_total{reason="store_down"} 20.0' in metrics
    finally:
        postgres.start()
    wait_for(lambda: store_up(url_a) or label(url_a, before[1]).status_code == 200, timeout_s=30)
    # Held out before the stop, labelled after it: nothing stored was lost.
    for token in before[1:]:
        assert label(url_a, token).status_code in (200, 409)
    assert label(url_a, before[0]).status_code == 409
    wait_for(lambda: label(url_a, held_during["id"]).status_code == 200)  # written once the store was back
    assert rows(postgres, "SELECT COUNT(*) FROM uploads WHERE label IS NOT NULL")[0][0] >= 3
    # The replicas' logs name the store without its password.
    for process in processes:
        process.send_signal(15)
        output, _ = process.communicate(timeout=30)
        assert PASSWORD not in output
        assert "labels store" in output
