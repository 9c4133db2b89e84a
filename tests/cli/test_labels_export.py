"""Live labels back into the model loop: uploads through the real app (held out, review queue, photos kept),
`servetune labels export` to a Food-11 folder that `model eval` reads, and to Label Studio and back."""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import pytest
from PIL import Image

from command import servetune
from onnx_models import tiny_artifact
from servetune.config import FOOD11_CLASSES
from servetune.model.data import read_split
from servetune.serve.app import create_app
from servetune.serve.settings import ServerSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LABELS = ["Soup", "Noodles/Pasta", "Soup", "Egg"]


def jpeg_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (shade, 255 - shade, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def serve_uploads(model: Path, db: Path, photos: Path, shades: range, **features) -> list[dict]:
    settings = ServerSettings(model_path=str(model), threads=1, warmup_runs=0, labels_db=str(db),
                              keep_photos=str(photos), **features)
    with TestClient(create_app(settings)) as client:
        writer = client.app.state.server.labelling.writer
        while not writer.up:
            time.sleep(0.01)
        answers = [client.post("/predict", files={"file": ("p.jpg", jpeg_bytes(s), "image/jpeg")}).json()
                   for s in shades]
        if features.get("holdout_fraction"):
            for answer, label in zip(answers, LABELS, strict=True):
                assert client.post("/labels", json={"id": answer["id"], "label": label}).status_code == 200
    return answers


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("served")
    model, db, photos = tiny_artifact(folder / "tiny.onnx"), folder / "labels.db", folder / "photos"
    serve_uploads(model, db, photos, range(10, 50, 10), holdout_fraction=1.0)  # 4 held out, labelled
    serve_uploads(model, db, photos, range(100, 130, 10), review_below=1.0)  # 3 queued for review
    return model, db, photos


def test_export_writes_a_food11_folder_that_model_eval_reads(served, tmp_path: Path) -> None:
    model, db, photos = served
    out = tmp_path / "live"
    result = servetune("labels", "export", "--labels-db", str(db), "--photos", str(photos), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote 4 photos" in result.stdout
    split = read_split(out, "evaluation", require_all_classes=False)
    assert split.layout == "class_name"
    assert sorted(split.class_names[s.label] for s in split.samples) == sorted(LABELS)
    evaluated = servetune("model", "eval", str(model), "--data", str(out), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["count"] == 4
    again = servetune("labels", "export", "--labels-db", str(db), "--photos", str(photos), "--out", str(out))
    assert again.returncode == 2 and "already holds files" in again.stderr


def test_the_review_queue_goes_to_label_studio_and_its_labels_come_back(served, tmp_path: Path) -> None:
    _, db, photos = served
    out = tmp_path / "studio"
    result = servetune("labels", "export", "--labels-db", str(db), "--photos", str(photos), "--out", str(out),
                       "--format", "label-studio")
    assert result.returncode == 0, result.stderr
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == 3
    first = tasks[0]
    assert first["data"]["image"].startswith("/data/local-files/?d=photos/")
    assert (out / first["data"]["image"].split("?d=", 1)[1]).is_file()
    assert first["predictions"][0]["result"][0]["value"]["choices"][0] in FOOD11_CLASSES
    assert '<Choice value="Noodles/Pasta"/>' in (out / "label_config.xml").read_text()
    # Label Studio's JSON export: the tasks with annotations (one cancelled, one task left unlabelled).
    exported = []
    for number, item in enumerate(tasks):
        annotations = [
            {"was_cancelled": True, "updated_at": "2026-12-07T10:00:00Z",
             "result": [{"type": "choices", "value": {"choices": ["Egg"]}}]},
            {"was_cancelled": False, "updated_at": "2026-12-07T09:00:00Z",
             "result": [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["Rice"]}}]},
        ] if number < 2 else []
        exported.append({**item, "id": number + 1, "annotations": annotations})
    export_file = tmp_path / "project-1.json"
    export_file.write_text(json.dumps(exported))
    imported = servetune("labels", "import", str(export_file), "--labels-db", str(db))
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 review labels; 1 tasks had no annotation" in imported.stdout
    stats = json.loads(servetune("labels", "stats", "--labels-db", str(db), "--json").stdout)
    assert stats[0]["review"]["reviewed"]["n"] == 2 and stats[0]["live_accuracy"]["n"] == 4


@pytest.mark.parametrize(
    ("tasks", "reason"),
    [
        ({"not": "a list"}, "expected a JSON list"),
        ([{"data": {"image": "x"}}], "task 1: no data.servetune_key"),
        ([{"data": {"servetune_key": "f" * 64},
           "annotations": [{"result": [{"type": "choices", "value": {"choices": ["Pizza"]}}]}]}], "'Pizza' is not"),
        ([{"data": {"servetune_key": "f" * 64},
           "annotations": [{"result": [{"type": "choices", "value": {"choices": ["Egg"]}}]}]}],
         "1 tasks name uploads this store does not have"),
    ],
)
def test_a_bad_import_is_refused_whole(served, tmp_path: Path, tasks, reason: str) -> None:
    _, db, _ = served
    export_file = tmp_path / "bad.json"
    export_file.write_text(json.dumps(tasks))
    result = servetune("labels", "import", str(export_file), "--labels-db", str(db))
    assert result.returncode != 0 and reason in result.stderr and "Traceback" not in result.stderr
