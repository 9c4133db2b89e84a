"""The review queue out to Label Studio and its labels back.

Export: Label Studio's task-import JSON (`tasks.json`), one task per queued upload with its kept photo,
the model's answer as a pre-annotation (`predictions`), and the labelling interface (`label_config.xml`)
with one choice per class. Import: Label Studio's JSON export of those tasks; each task's latest
annotation that was not cancelled becomes the upload's review label. Tasks carry the upload's key in
`data.servetune_key`, the only way back to the store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from servetune.config import FOOD11_CLASSES
from servetune.labels.export import ExportError, ExportResult, copy_photo
from servetune.labels.records import Upload

FROM_NAME, TO_NAME = "label", "image"
KEY = re.compile(r"^[0-9a-f]{64}$")
MAX_IMPORT_BYTES = 256 * 1024 * 1024


class ImportError_(ExportError):
    """A Label Studio export that cannot be read back; the message names the file and the task."""


def classes_of(uploads: list[Upload]) -> list[str]:
    """The classes to offer: Food-11's when every class seen is one of them, else every class seen."""
    seen = {name for upload in uploads for name, _ in upload.top_k} | {upload.predicted for upload in uploads}
    return list(FOOD11_CLASSES) if seen <= set(FOOD11_CLASSES) else sorted(seen)


def label_config(classes: list[str]) -> str:
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in classes)
    return (
        f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def task(upload: Upload, image_url: str) -> dict:
    return {
        "data": {"image": image_url, "servetune_key": upload.key, "model": upload.model_name},
        "predictions": [{
            "model_version": f"{upload.model_name} {upload.model_sha256[:12]}",
            "score": upload.probability,
            "result": [{
                "from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                "value": {"choices": [upload.predicted]},
            }],
        }],
    }


def export_label_studio(uploads: list[Upload], photos: Path, out: Path, url_prefix: str) -> ExportResult:
    """tasks.json, label_config.xml and photos/ in `out`; `url_prefix` + photos/<file> is each image's URL."""
    if not photos.is_dir():
        raise ExportError(f"{photos}: no such photos folder (the server's --keep-photos)")
    if (out / "tasks.json").exists():
        raise ExportError(f"{out / 'tasks.json'}: already exists; export into a new folder")
    result = ExportResult()
    tasks = []
    for upload in uploads:
        if upload.photo_file is None:
            result.without_photo += 1
            continue
        relative = f"photos/{Path(upload.photo_file).name}"
        if copy_photo(photos, upload, out / relative, result):
            tasks.append(task(upload, url_prefix + relative))
            result.written[upload.predicted] += 1
    out.mkdir(parents=True, exist_ok=True)
    (out / "tasks.json").write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    (out / "label_config.xml").write_text(label_config(classes_of(uploads)), encoding="utf-8")
    return result


@dataclass(frozen=True)
class ReviewLabel:
    key: str
    label: str


def read_label_studio_export(path: Path, classes: set[str] | None = None) -> tuple[list[ReviewLabel], int]:
    """The review labels in a Label Studio JSON export, and how many tasks had no usable annotation."""
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise ImportError_(f"{path}: larger than {MAX_IMPORT_BYTES // 2**20} MiB")
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportError_(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ImportError_(f"{path}: not a Label Studio JSON export ({error})") from None
    if not isinstance(tasks, list):
        raise ImportError_(f"{path}: expected a JSON list of tasks (Label Studio's JSON export)")
    labels, unlabelled = [], 0
    for number, item in enumerate(tasks, 1):
        where = f"{path}: task {number}"
        data = item.get("data") if isinstance(item, dict) else None
        key = data.get("servetune_key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not KEY.match(key):
            raise ImportError_(f"{where}: no data.servetune_key (was it exported by servetune labels export?)")
        label = latest_choice(item.get("annotations") or [], where)
        if label is None:
            unlabelled += 1
            continue
        if classes is not None and label not in classes:
            raise ImportError_(f"{where}: {label!r} is not one of the classes ({', '.join(sorted(classes))})")
        labels.append(ReviewLabel(key, label))
    return labels, unlabelled


def latest_choice(annotations: list, where: str) -> str | None:
    """The single choice of the newest annotation that was not cancelled (None: nothing usable)."""
    usable = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    usable.sort(key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
    for annotation in reversed(usable):
        for result in annotation.get("result") or []:
            if not isinstance(result, dict) or result.get("type") != "choices":
                continue
            choices = (result.get("value") or {}).get("choices") or []
            if len(choices) != 1 or not isinstance(choices[0], str):
                raise ImportError_(f"{where}: an annotation must choose exactly one class, got {choices!r}")
            return choices[0]
    return None
