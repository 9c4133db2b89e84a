"""The model artifact: one .onnx file whose metadata_props carry the ModelSpec.

Writing needs the `onnx` package (training extra); reading uses only ONNX Runtime, so serving installs
stay small. Each ModelSpec field is stored under the key ``servetune.<field>`` as JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from servetune.config import ModelSpec
from servetune.errors import ServetuneError, first_line

if TYPE_CHECKING:
    import onnx

KEY_PREFIX = "servetune."


class ArtifactError(ServetuneError):
    """The file is not a usable servetune model artifact; the message names the file and the problem."""


def spec_to_metadata(spec: ModelSpec) -> dict[str, str]:
    return {KEY_PREFIX + key: json.dumps(value) for key, value in spec.model_dump(mode="json").items()}


def spec_from_metadata(metadata: dict[str, str], source: str = "<metadata>") -> ModelSpec:
    fields = {}
    for key, value in metadata.items():
        if key.startswith(KEY_PREFIX):
            try:
                fields[key[len(KEY_PREFIX) :]] = json.loads(value)
            except json.JSONDecodeError as err:
                raise ArtifactError(f"{source}: metadata key {key!r} is not valid JSON: {err}") from None
    if not fields:
        raise ArtifactError(
            f"{source}: no servetune metadata in the ONNX file (metadata_props has no '{KEY_PREFIX}*' keys); "
            "export it with `servetune model export` or `servetune model import`"
        )
    # Artifacts written before `decode` was recorded were all evaluated through the reduced JPEG decode.
    fields.setdefault("decode", "reduced")
    try:
        return ModelSpec(**fields)
    except ValidationError as err:
        raise ArtifactError(f"{source}: invalid servetune metadata: {err}") from None


def attach_spec(model: onnx.ModelProto, spec: ModelSpec) -> onnx.ModelProto:
    """Replace any servetune metadata in `model` by `spec` (in place) and return the model."""
    keep = [p for p in model.metadata_props if not p.key.startswith(KEY_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in spec_to_metadata(spec).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model


def save_artifact(model: onnx.ModelProto, spec: ModelSpec, path: str | Path) -> Path:
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    attach_spec(model, spec)
    onnx.save_model(model, str(path))
    return path


def record_accuracy(path: str | Path, name: str, accuracy: float) -> None:
    """Store a measured accuracy under `name` in the artifact's metadata (ModelSpec.accuracy), keeping the
    others; the file is rewritten in place, unless it already holds that figure (its sha256 stays)."""
    if read_spec(path).accuracy.get(name) == accuracy:
        return
    update_spec(path, lambda spec: {"accuracy": {**spec.accuracy, name: accuracy}})


def record_profile(path: str | Path, profile: dict[str, float | str]) -> None:
    """Store measured latency and memory in the artifact's metadata (ModelSpec.profile), replacing any
    earlier profile; the file is rewritten in place."""
    update_spec(path, lambda spec: {"profile": profile})


def update_spec(path: str | Path, changes: Callable[[ModelSpec], dict]) -> None:
    import onnx

    model = onnx.load(str(path))
    spec = spec_from_metadata({prop.key: prop.value for prop in model.metadata_props}, str(path))
    save_artifact(model, spec.model_copy(update=changes(spec)), path)


def read_spec(path: str | Path) -> ModelSpec:
    """Read the ModelSpec of an artifact without building a full inference session."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ORT raises several private exception types for unreadable files
        raise ArtifactError(f"{path}: not a loadable ONNX model: {first_line(err)}") from None
    return spec_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_path() -> Path:
    """The model shipped inside the package (see MODEL_CARD.md)."""
    return Path(__file__).parent / "default" / "food11-lite0-int8.onnx"


def existing_model_path(path: Path | None) -> Path:
    """`path`, or the packaged model when None; ArtifactError when the file is not there."""
    model_path = path or default_model_path()
    if not model_path.is_file():
        hint = "" if path else " (the packaged default model is missing: pass --model PATH)"
        raise ArtifactError(f"{model_path}: no such model file{hint}")
    return model_path


def parse_class_names(text: str) -> list[str]:
    """Class names in output order: comma-separated, or the name of a text file with one per line."""
    source = Path(text).read_text() if Path(text).is_file() else text.replace(",", "\n")
    names = [line.strip() for line in source.splitlines() if line.strip()]
    if len(names) < 2:
        raise ArtifactError(f"--classes {text!r}: give at least two class names")
    return names
