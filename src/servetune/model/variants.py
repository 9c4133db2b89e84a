"""A user's model and its variants, each measured on Food-11's evaluation split: what a tune chooses among.

From one source (a Keras file, a plain ONNX model with its preprocessing given, or a servetune artifact):

- fp32: the model imported as it is, its accuracy measured on DATA/evaluation and stored in the artifact;
- input sizes: the same weights at each smaller side asked for (`model/resize.py`), each measured; a
  network that cannot be resized (no global pooling) gets one note saying why, and no size variants;
- INT8: the twin of each fp32 variant, kept only when it passes both gates of `quantize_checked`
  (accuracy change, top-1 agreement with its fp32 model); a refused twin is listed with the reason.

A model at chance level gets a note and no variants: its accuracy cannot rank them.

Every step's result is kept in the cache folder (`variants.json`, written after each step) under a key made
of the source file's sha256, the import settings and the data folder, so a re-run, or one after Ctrl-C,
skips what is done: a file is reused when its sha256 still matches the one recorded. What later steps need
of a file is carried on its Variant, so nothing is read or hashed twice: its sha256, its class count, and
its top-1 answers on the evaluation split (the INT8 gate compares the twin's with them instead of running
the fp32 model again).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from servetune.errors import ServetuneError, first_line
from servetune.model.artifact import ArtifactError, file_sha256, read_spec, record_accuracy
from servetune.model.data import read_split

DEFAULT_SIZES = (224, 192, 160, 128)
CHANCE_SIGMAS = 3.0  # an accuracy within this many standard errors of chance is chance
CACHE_FORMAT = 2  # in the cache key: a cache written with other Variant fields is not read


class VariantError(ServetuneError, ValueError):
    """A source model or data folder the variants cannot be built from; the message says which and why."""


@dataclass(frozen=True)
class ImportSettings:
    """How the source is read: everything `servetune model import` takes besides the file."""

    name: str | None = None
    class_names: list[str] | None = None
    input_size: int | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str | None = None
    interpolation: str = "bilinear"
    output: str = "logits"


@dataclass(frozen=True)
class VariantSettings:
    sizes: tuple[int, ...] = DEFAULT_SIZES  # input sides to try, those below the model's own are made
    int8: bool = True
    int8_max_loss: float = 0.01
    int8_min_agreement: float = 0.97


@dataclass
class Variant:
    name: str
    input_size: int
    precision: str
    path: Path | None  # None: refused (see `refused`)
    accuracy: float | None = None  # on DATA/evaluation
    images: int = 0
    size_mb: float = 0.0
    refused: str = ""
    sha256: str = ""  # of the file at `path`
    classes: int = 0
    predicted: list[int] = field(default_factory=list, repr=False)  # Evaluation.predicted on DATA/evaluation


@dataclass
class Variants:
    variants: list[Variant]
    notes: list[str] = field(default_factory=list)
    cache: Path | None = None

    @property
    def original(self) -> Variant:
        return self.variants[0]

    def written(self) -> list[Variant]:
        return [v for v in self.variants if v.path is not None]


def chance_level(accuracy: float, classes: int, images: int) -> float | None:
    """The accuracy below which a model is at chance (None: it is above it): chance plus CHANCE_SIGMAS
    binomial standard errors over `images`."""
    chance = 1 / classes
    bar = chance + CHANCE_SIGMAS * math.sqrt(chance * (1 - chance) / max(1, images))
    return bar if accuracy <= bar else None


class StepCache:
    """The finished steps of one source in `folder/variants.json`, each a Variant as a dict."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = folder / "variants.json"
        self.steps: dict[str, dict] = json.loads(self.file.read_text()) if self.file.is_file() else {}

    def get(self, step: str) -> Variant | None:
        entry = self.steps.get(step)
        if entry is None:
            return None
        variant = Variant(**{**entry, "path": Path(entry["path"]) if entry["path"] else None})
        if variant.path is not None and (not variant.path.is_file() or file_sha256(variant.path) != variant.sha256):
            return None  # the file changed or is gone: do the step again
        return variant

    def put(self, step: str, variant: Variant) -> Variant:
        if variant.path is not None:
            variant.sha256 = file_sha256(variant.path)
            variant.size_mb = round(variant.path.stat().st_size / 1e6, 1)
        self.steps[step] = {**asdict(variant), "path": str(variant.path) if variant.path else None}
        partial = self.file.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.steps, indent=2) + "\n", encoding="utf-8")
        partial.replace(self.file)  # a step is recorded whole or not at all
        return variant


def cache_folder(cache: Path, source: Path, settings: ImportSettings, data: Path) -> Path:
    """Where one source's variants live: keyed by its sha256, how it is imported and the data measured on."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{file_sha256(source)}".encode())
    digest.update(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
    digest.update(str(data.resolve()).encode())
    return cache / "models" / f"{source.stem}-{digest.hexdigest()[:12]}"


def import_source(source: Path, out: Path, settings: ImportSettings) -> Path:
    """The source as a servetune artifact at `out`: a Keras file imported, an artifact copied, a plain ONNX
    model imported with the settings' preprocessing."""
    if source.suffix.lower() != ".onnx":
        from servetune.model.keras_import import import_keras_model

        return import_keras_model(source, out, settings.name, settings.class_names, settings.input_size)[0]
    try:
        read_spec(source)
    except ArtifactError as error:
        if "no servetune metadata" not in str(error):
            raise
        from servetune.model.onnx_import import import_onnx_model

        return import_onnx_model(source, out, name=settings.name, class_names=settings.class_names,
                                 input_size=settings.input_size, mean=settings.mean, std=settings.std,
                                 layout=settings.layout, interpolation=settings.interpolation,
                                 output=settings.output)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out)
    return out


def build_variants(source: Path, data: Path, cache: Path, settings: VariantSettings = VariantSettings(),
                   imported: ImportSettings = ImportSettings(), progress=None,
                   step: Callable[[str], None] = lambda text: None) -> Variants:
    """Import `source`, measure it and build its variants (see the module docstring); `progress` (a rich
    Progress) shows each long step, `step` hears one line as each begins."""
    if not source.is_file():
        raise VariantError(f"{source}: no such model file")
    for split in ("evaluation", *(["training"] if settings.int8 else [])):
        read_split(data, split, require_all_classes=split == "training")  # a clear DataError before any work
    folder = cache_folder(cache, source, imported, data)
    folder.mkdir(parents=True, exist_ok=True)
    steps = StepCache(folder)
    stem = imported.name or source.stem
    original = steps.get("fp32")
    if original is None:
        step(f"import {source.name}")
        path = import_source(source, folder / f"{stem}.onnx", imported)
        original = steps.put("fp32", measured(path, data, progress))
    result = Variants([original], cache=folder)
    below = chance_level(original.accuracy or 0.0, original.classes, original.images)
    if below is not None:
        result.notes.append(
            f"{original.name}: accuracy {original.accuracy:.2%} on {original.images} evaluation images is at chance "
            f"level (at most {below:.2%} for {original.classes} classes): no variants are built, their "
            "accuracy could not be told apart; check the class order (--classes) and the preprocessing")
        return result
    fp32 = [original]  # the model as given and its sizes (INT8 twins are made of these)
    for size in sorted({s for s in settings.sizes if s < original.input_size}, reverse=True):
        resized = steps.get(f"size-{size}")
        if resized is None:
            step(f"input size {size}")
            from servetune.model.resize import ResizeError, resize_artifact

            try:
                path, _ = resize_artifact(original.path, size, folder / f"{stem}-{size}.onnx")
            except ResizeError as error:
                result.notes.append(str(error))
                break
            resized = steps.put(f"size-{size}", measured(path, data, progress))
        fp32.append(resized)
    result.variants = list(fp32)
    if settings.int8 and original.precision == "int8":
        result.notes.append(f"{original.name} is already INT8: no INT8 twins are made")
    elif settings.int8:
        for base in fp32:
            result.variants.append(int8_variant(base, data, settings, steps, progress, step))
    return result


def measured(path: Path, data: Path, progress) -> Variant:
    """A variant file with its accuracy on DATA/evaluation, measured and stored in the artifact, and its
    answers kept."""
    from servetune.model.evaluate import evaluate

    spec = read_spec(path)
    result = evaluate(path, data, "evaluation", progress=progress, description=f"accuracy of {path.stem}")
    record_accuracy(path, "evaluation", round(result.accuracy, 4))
    return Variant(path.stem, spec.input_size, spec.precision, path, round(result.accuracy, 4), result.count,
                   classes=len(spec.class_names), predicted=result.predicted)


def int8_variant(base: Variant, data: Path, settings: VariantSettings, steps: StepCache, progress,
                 step: Callable[[str], None]) -> Variant:
    """The INT8 twin of an fp32 variant, or the variant refused with the gate's reason."""
    from servetune.model.export import int8_path
    from servetune.model.quantize import Int8LossError, quantize_checked

    key = f"int8-{base.input_size}-loss{settings.int8_max_loss:g}-agreement{settings.int8_min_agreement:g}"
    done = steps.get(key)
    if done is not None:
        return done
    step(f"INT8 of {base.name}")
    out = int8_path(base.path)
    try:
        path, check = quantize_checked(base.path, out, data, settings.int8_max_loss, settings.int8_min_agreement,
                                       progress=progress, fp32_predicted=base.predicted)
    except Int8LossError as error:
        reason = str(error).split(": not written: ", 1)[-1]
        return steps.put(key, Variant(out.stem, base.input_size, "int8", None, refused=reason))
    except Exception as error:  # noqa: BLE001 - ONNX Runtime's quantizer raises many types; the twin is optional
        return steps.put(key, Variant(out.stem, base.input_size, "int8", None,
                                      refused=f"INT8 quantization failed: {first_line(error)}"))
    return steps.put(key, Variant(path.stem, base.input_size, "int8", path, round(check.int8_accuracy, 4),
                                  check.images, classes=base.classes))
