"""Read a `DeploymentSpec` from YAML, with errors that name the file, the field and what it accepts."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import annotated_types
import yaml
from pydantic import BaseModel, ValidationError

from servetune.config import DeploymentSpec
from servetune.deploy.k8s_import import ManifestError, is_manifest, translate
from servetune.errors import ServetuneError
from servetune.yaml_unique import safe_load_all_unique_keys

SPECS_DIR = Path(__file__).parent / "specs"
DEFAULT_MODEL = "default"  # a spec's `model` that means the packaged model


class SpecError(ServetuneError, ValueError):
    """A deployment spec file that cannot be used; the message names the file and the problem."""


def load_deployment_spec(path: str | Path) -> DeploymentSpec:
    """The spec in a YAML file, or a bundled one by name (`default`, `fixed-1`), or translated from a
    Kubernetes manifest (see read_deployment).

    A relative `model` path is taken relative to the spec file, like paths in other YAML configs.
    """
    return read_deployment(path)[0]


def read_deployment(path: str | Path, model: str | None = None) -> tuple[DeploymentSpec, list[str]]:
    """The spec and what could not be carried over: empty for a spec file, the translation's notes for a
    Kubernetes manifest (Deployment + optional Service and HPA). `model` overrides the spec's model."""
    path = resolve_spec_path(path)
    return spec_from_documents(read_documents(path), path, model)


def read_documents(path: Path) -> list:
    """The YAML documents of a spec file or a manifest (none empty); SpecError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        bundled = ", ".join(sorted(spec.stem for spec in SPECS_DIR.glob("*.yaml")))
        raise SpecError(f"{path}: no such spec file (bundled specs: {bundled})") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    try:
        documents = [doc for doc in safe_load_all_unique_keys(text) if doc is not None]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(f"{path.name}: invalid YAML: {where}{error.problem or error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path.name}: invalid YAML: {error}") from None
    if not documents:
        raise SpecError(f"{path.name}: the file is empty; expected a mapping of deployment fields")
    return documents


def spec_from_documents(documents: list, path: Path, model: str | None = None) -> tuple[DeploymentSpec, list[str]]:
    """read_deployment's spec and notes from the documents read from `path` (which names it in errors and
    anchors a relative model path)."""
    notes: list[str] = []
    if is_manifest(documents):
        try:
            translation = translate(documents)
        except ManifestError as error:
            raise SpecError(f"{path.name}: Kubernetes manifest: {error}") from None
        data, notes = translation.fields, translation.notes
    elif len(documents) > 1:
        raise SpecError(f"{path.name}: {len(documents)} YAML documents and no Kubernetes objects; expected one spec")
    else:
        data = documents[0]
    if not isinstance(data, dict):
        raise SpecError(f"{path.name}: expected a mapping of deployment fields, got {type(data).__name__}")
    if model is not None:
        data = {**data, "model": model}
    try:
        spec = DeploymentSpec.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(describe_error(item) for item in error.errors())
        raise SpecError(f"{path.name}: {problems}") from None
    if spec.model != DEFAULT_MODEL and not Path(spec.model).is_absolute():
        base = Path.cwd() if model is not None else path.parent
        spec.model = str((base / spec.model).resolve())
    return spec, notes


def spec_yaml(spec: DeploymentSpec, *, every_field: bool = False) -> str:
    """The spec as YAML that `servetune deploy apply|render` and `servetune run -c` read back, in the model's
    order: the fields that were given, or with `every_field` each one that holds a value (a spec that pins
    every setting, as the optimizer writes them; `limits: null` or `liveness_probe: null` stays, since none is
    not the default there)."""
    if not every_field:
        return yaml.safe_dump(spec.model_dump(mode="json", exclude_unset=True), sort_keys=False)
    data = {name: value for name, value in spec.model_dump(mode="json").items()
            if value is not None or DeploymentSpec.model_fields[name].default is not None}
    return yaml.safe_dump(data, sort_keys=False)


def spec_model_path(model: str) -> Path:
    """The model file a spec's `model` (or a search space's model entry) names; `default` is the packaged model."""
    from servetune.model.artifact import default_model_path

    return default_model_path() if model == DEFAULT_MODEL else Path(model)


def resolve_spec_path(path: str | Path) -> Path:
    """A path as given, or the bundled spec of that name when no such file exists."""
    candidate = Path(path)
    if candidate.exists() or candidate.suffix:
        return candidate
    bundled = SPECS_DIR / f"{candidate.name}.yaml"
    return bundled if bundled.exists() else candidate


def describe_error(error: dict) -> str:
    """One pydantic error as `field.path: reason (allowed range)`."""
    loc = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = allowed_fields(error["loc"][:-1])
        message = "unknown field" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    elif kind.startswith(("greater_than", "less_than")):
        bounds = field_bounds(error["loc"])
        if bounds:
            message += f" (allowed range: {bounds})"
    return f"{loc}: {message}" if loc else message


def field_bounds(loc: tuple) -> str:
    """The numeric range a field accepts, e.g. `1..100` or `>= 0`; empty when unknown."""
    info = field_info(loc)
    if info is None:
        return ""
    whole = info.annotation is int  # for whole numbers `> 0` is `>= 1`, which reads as a range
    low = high = None  # inclusive bounds
    phrases = []
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Gt):
            if whole:
                low = item.gt + 1
            else:
                phrases.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            high = item.le
        elif isinstance(item, annotated_types.Lt):
            if whole:
                high = item.lt - 1
            else:
                phrases.append(f"< {item.lt}")
    if low is not None and high is not None:
        return f"{low}..{high}"
    if low is not None:
        phrases.insert(0, f">= {low}")
    if high is not None:
        phrases.append(f"<= {high}")
    return " and ".join(phrases)


def allowed_fields(loc: tuple) -> list[str]:
    model = model_at(loc)
    return list(model.model_fields) if model else []


def field_info(loc: tuple):
    model = model_at(loc[:-1])
    if model is None or not loc or loc[-1] not in model.model_fields:
        return None
    return model.model_fields[loc[-1]]


def model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that a location inside a DeploymentSpec document points into."""
    model: type[BaseModel] | None = DeploymentSpec
    for part in loc:
        if isinstance(part, int):
            continue  # an index into a list: the element type was found with the list's field
        if model is None or part not in model.model_fields:
            return None
        model = model_in(model.model_fields[part].annotation)
    return model


def model_in(annotation) -> type[BaseModel] | None:
    """The model class inside `Model`, `Model | None` or `list[Model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list):
        for argument in typing.get_args(annotation):
            found = model_in(argument)
            if found is not None:
                return found
    return None
