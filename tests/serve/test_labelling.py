"""The held-out flow, review queue and "wrong?" feedback through the HTTP API, with a real SQLite store."""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient  # imported quietly by conftest first
from PIL import Image

from servetune.config import FOOD11_CLASSES
from servetune.serve.app import create_app
from servetune.serve.settings import ServerSettings


def jpeg_bytes(color=(180, 90, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buffer, "JPEG")
    return buffer.getvalue()


@contextmanager
def labelling_client(tiny_model: Path, wait_for_store: bool = True, **labels) -> Iterator[TestClient]:
    settings = ServerSettings(model_path=str(tiny_model), threads=1, warmup_runs=0, **labels)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        writer = client.app.state.server.labelling.writer
        deadline = time.monotonic() + 5
        while wait_for_store and not writer.up:
            assert time.monotonic() < deadline, "the label store did not come up"
            time.sleep(0.01)
        yield client


def upload(client: TestClient, data: bytes | None = None):
    return client.post("/predict", files={"file": ("dish.jpg", data or jpeg_bytes(), "image/jpeg")})


def rows(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute("SELECT * FROM uploads ORDER BY created_at").fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "labels.db"


def test_a_held_out_upload_hides_its_prediction_until_the_label_comes(tiny_model: Path, db: Path) -> None:
    with labelling_client(tiny_model, holdout_fraction=1.0, labels_db=str(db)) as client:
        answer = upload(client)
        assert answer.status_code == 200
        held = answer.json()
        assert held["holdout"] is True and held["classes"] == FOOD11_CLASSES
        assert "prediction" not in held and "top_k" not in held and held["expires_in_s"] == 900
        shown = client.get("/test").json()  # the sample image is never held out
        assert "prediction" in shown
        labelled = client.post("/labels", json={"id": held["id"], "label": "Soup"})
        assert labelled.status_code == 200, labelled.text
        body = labelled.json()
        assert body["label"] == "Soup" and body["prediction"] in FOOD11_CLASSES
        assert body["correct"] == (body["prediction"] == "Soup")
        assert body["top_k"][0]["label"] == body["prediction"]
        again = client.post("/labels", json={"id": held["id"], "label": "Egg"})
        assert again.status_code == 409 and "already" in again.json()["error"]
        metrics = client.get("/metrics").text
        assert f'servetune_holdout_labels_total{{correct="{str(body["correct"]).lower()}",label="Soup"' in metrics
        assert 'servetune_label_refusals_total{endpoint="/labels",reason="used"} 1.0' in metrics
        assert "servetune_labels_store_up 1.0" in metrics
        deadline = time.monotonic() + 5
        while f'servetune_live_accuracy{{model_sha256="{client.app.state.server.predictor.sha256}"}} {float(body["correct"])}' not in metrics:
            assert time.monotonic() < deadline, "the store's accuracy never reached /metrics"
            time.sleep(0.05)
            metrics = client.get("/metrics").text
    [row] = rows(db)
    assert row["kind"] == "holdout" and row["label"] == "Soup" and row["predicted"] == body["prediction"]
    assert row["photo_sha256"] and row["photo_file"] is None and row["key"] != held["id"]


def test_bad_labels_get_a_4xx_with_a_reason(tiny_model: Path, db: Path) -> None:
    with labelling_client(tiny_model, holdout_fraction=1.0, labels_db=str(db)) as client:
        token = upload(client).json()["id"]
        cases = [
            ({"id": "x" * 32, "label": "Soup"}, 404, "unknown id"),
            ({"id": token, "label": "Pizza"}, 422, "one of the model's classes"),
            ({"id": token, "label": 3}, 422, "one of the model's classes"),
            ({"id": "../../etc", "label": "Soup"}, 400, "the id that /predict answered"),
            ({"id": token}, 422, "one of the model's classes"),
            ({"id": token, "label": "Soup", "holdout_fraction": 1}, 400, "only"),
            (["not", "an", "object"], 400, "JSON object"),
        ]
        for body, status, reason in cases:
            answer = client.post("/labels", json=body)
            assert answer.status_code == status and reason in answer.json()["error"], (body, answer.text)
        assert client.post("/labels", content=b"{not json").status_code == 400
        assert client.post("/labels", content=b"{" + b" " * 5000 + b"}").status_code == 413
        # A feedback id is not a held-out id, and nothing above used the token up.
        assert client.post("/labels", json={"id": token, "label": "Soup"}).status_code == 200


def test_an_expired_id_is_refused(tiny_model: Path, db: Path) -> None:
    with labelling_client(tiny_model, holdout_fraction=1.0, labels_db=str(db)) as client:
        token = upload(client).json()["id"]
        deadline = time.monotonic() + 5
        while not rows(db):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with sqlite3.connect(db) as connection:  # as if label_ttl_s had passed
            connection.execute("UPDATE uploads SET expires_at = ?", (time.time() - 1,))
        answer = client.post("/labels", json={"id": token, "label": "Soup"})
        assert answer.status_code == 410 and "expired" in answer.json()["error"]


def test_labels_are_rate_limited_per_client(tiny_model: Path, db: Path) -> None:
    with labelling_client(tiny_model, holdout_fraction=1.0, labels_db=str(db), label_rate_per_min=4) as client:
        statuses = [client.post("/labels", json={"id": "x" * 32, "label": "Soup"}).status_code for _ in range(3)]
        assert statuses == [404, 429, 429]  # a burst of a quarter minute's share, then refused


def test_with_every_feature_off_uploads_answer_as_before(client) -> None:
    body = upload(client).json()
    assert set(body) == {"prediction", "probability", "top_k", "inference_ms", "decode_ms", "preprocess_ms",
                         "infer_ms", "model"}
    answer = client.post("/labels", json={"id": "x" * 32, "label": "Soup"})
    assert answer.status_code == 404 and "takes no held-out labels" in answer.json()["error"]


def test_with_the_store_down_uploads_are_shown_and_labels_get_503(tiny_model: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "labels.db"
    with labelling_client(tiny_model, wait_for_store=False, holdout_fraction=1.0, labels_db=str(missing)) as client:
        started = time.monotonic()
        body = upload(client).json()
        assert "prediction" in body and "holdout" not in body
        answer = client.post("/labels", json={"id": "x" * 32, "label": "Soup"})
        assert time.monotonic() - started < 2
        assert answer.status_code == 503 and answer.headers["retry-after"]
        metrics = client.get("/metrics").text
        assert 'servetune_holdout_skipped_total{reason="store_down"} 1.0' in metrics
        assert 'servetune_label_refusals_total{endpoint="/labels",reason="store_down"} 1.0' in metrics
        assert "servetune_labels_store_up 0.0" in metrics


def test_wrong_feedback_is_taken_once_per_shown_prediction(tiny_model: Path, db: Path) -> None:
    with labelling_client(tiny_model, feedback=True, labels_db=str(db)) as client:
        body = upload(client).json()
        assert body["prediction"] in FOOD11_CLASSES
        token = body["feedback_id"]
        assert client.post("/labels", json={"id": token, "label": "Soup"}).status_code == 404
        assert client.post("/feedback", json={"id": token}).json() == {"recorded": True, "label": None}
        assert client.post("/feedback", json={"id": token, "label": "Egg"}).status_code == 409
        assert client.post("/feedback", json={"id": token, "label": "Pizza"}).status_code == 422
        assert "prediction" in client.get("/test").json() and "feedback_id" not in client.get("/test").json()
        assert 'servetune_feedback_total{model_sha256=' in client.get("/metrics").text
    [row] = rows(db)
    assert row["kind"] == "shown" and row["feedback_at"] and row["feedback_label"] is None


def test_unsure_predictions_are_queued_for_review_with_their_photo(tiny_model: Path, db: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    with labelling_client(tiny_model, review_below=1.0, labels_db=str(db), keep_photos=str(photos)) as client:
        data = jpeg_bytes()
        body = upload(client, data).json()
        assert "prediction" in body and "feedback_id" not in body
        assert 'servetune_review_queued_total{model_sha256=' in client.get("/metrics").text
    [row] = rows(db)
    assert row["review"] == 1 and row["kind"] == "shown"
    assert (photos / row["photo_file"]).read_bytes() == data
