"""The user's own model through the whole loop: `servetune tune --model FILE --deployment deployment.yaml
--data DIR --out OUT`.

1. their model imported and measured, its variants built (`model/variants.py`: input sizes, INT8; with a
   training budget also servetune's backbones trained on their data, `model/trained_variants.py`);
2. each variant within `--max-accuracy-loss` of their model calibrated on this machine, cached by the
   file's sha256 (CACHE/calibrations/<sha256>/), so a re-run measures nothing twice;
3. the search space written for them (OUT/space.yaml: their variants, the bundled settings plus their own
   numbers, and for an autoscaling/v1 HPA only the behavior v1 can express), their pair (their deployment,
   their model) as OUT/yours.yaml: the baseline and, unless they bound the tune otherwise, `--better-than`;
4. the tune itself (`tune/pipeline.py`): search, verification against their pair, report (with the
   variant table);
5. the chosen model and their manifest with the chosen numbers (`tune/chosen.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from servetune.analyze.report import html_table
from servetune.config import DeploymentSpec
from servetune.deploy.capacity import MIB
from servetune.deploy.spec import read_deployment, spec_yaml
from servetune.errors import ServetuneError
from servetune.model.artifact import file_sha256
from servetune.model.trained_variants import TrainingSettings, train_variants
from servetune.model.variants import ImportSettings, Variant, VariantSettings, build_variants
from servetune.tune.calibration import Calibration, load_calibration, save_calibration
from servetune.tune.measure import CPU_LIMITS, TARGETS, calibrate_model, quantile_mean
from servetune.tune.pipeline import TuneOptions
from servetune.tune.space import load_space

YOURS = "yours.yaml"
MEMORY_STEP_MB = 16  # memory requests offered above each variant's least are rounded up to this
MEMORY_FACTORS = (1.0, 1.25, 1.5, 2.0)  # ... and offered at these multiples of it


class OwnModelError(ServetuneError, ValueError):
    """Input the loop cannot start from; the message names the file or flag and the problem."""


@dataclass(frozen=True)
class OwnModel:
    source: Path
    deployment: Path
    data: Path
    cache: Path
    imported: ImportSettings = field(default_factory=ImportSettings)
    variants: VariantSettings = field(default_factory=VariantSettings)
    max_accuracy_loss: float = 0.01  # fraction
    calibration_seconds: float = 6.0
    calibration_limits: tuple[float, ...] = CPU_LIMITS
    training: TrainingSettings | None = None  # --train-budget: also servetune's backbones trained on DATA


@dataclass
class VariantRow:
    """One variant in the table: its measurements and what the tune did with it."""

    variant: Variant
    calibration: Calibration | None = None
    calibration_file: Path | None = None
    status: str = ""

    def cells(self) -> list[str]:
        v, c = self.variant, self.calibration
        cpu = "" if c is None else f"{quantile_mean(c.cpu_ms_quantiles['GET /test']):.1f}"
        return [v.name, str(v.input_size), v.precision, "" if v.accuracy is None else f"{v.accuracy:.2%}",
                f"{v.size_mb:.1f}" if v.path else "", cpu,
                "" if c is None else f"{c.rss_peak_bytes / MIB:.0f}",
                "" if c is None else f"{c.start_to_ready_s:.1f}", self.status]


VARIANT_HEADER = ["variant", "input px", "precision", "accuracy", "size MB", "CPU ms / request", "memory MiB",
                  "start-up s", "status"]


@dataclass
class Prepared:
    """The tune's options for their model, and what the table and the closing lines need."""

    options: TuneOptions
    rows: list[VariantRow]
    notes: list[str]
    yours: Path
    documents: list
    accuracy_bound: float | None


def their_deployment(path: Path) -> tuple[list, DeploymentSpec]:
    """Their manifest's documents and its spec; OwnModelError when it is not a Kubernetes manifest."""
    from servetune.deploy.k8s_import import is_manifest
    from servetune.deploy.spec import SpecError

    if not path.is_file():
        raise OwnModelError(f"--deployment {path}: no such manifest file")
    try:
        spec, _ = read_deployment(path)
        documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    except (SpecError, yaml.YAMLError) as error:
        raise OwnModelError(f"--deployment {error}") from None
    if not is_manifest(documents):
        raise OwnModelError(f"--deployment {path}: not a Kubernetes manifest (a Deployment, with its Service and "
                            "HorizontalPodAutoscaler if any)")
    return documents, spec


def cached_calibration(path: Path, own: OwnModel, progress=None,
                       step: Callable[[str], None] = lambda text: None) -> tuple[Calibration, Path]:
    """The variant's calibration (and its file) from the cache when one of this very file exists, else
    measured (`step` hears it begin, `progress` shows its steps) and kept there."""
    digest = file_sha256(path)
    file = own.cache / "calibrations" / digest[:16] / "calibration.json"
    if file.is_file():
        cached = load_calibration(file)
        if cached.model_sha256 == digest:
            return cached, file
    step(f"calibrate {path.stem} on this machine")
    task = progress.add_task(f"calibrate {path.stem}", total=calibration_steps(own)) if progress else None

    def advance(text: str) -> None:
        if progress is not None:
            progress.update(task, advance=1, description=text)

    calibration = calibrate_model(path, seconds=own.calibration_seconds, limits=own.calibration_limits,
                                  progress=advance)
    return calibration, save_calibration(calibration, file)


def calibration_steps(own: OwnModel) -> int:
    """Progress steps of one calibration (each limit's start and targets, and the added replica)."""
    return len(own.calibration_limits) * (1 + len(TARGETS)) + 1


def own_space(rows: list[VariantRow], yours: DeploymentSpec, base: Path, margin: float, v1_autoscaler: bool) -> dict:
    """The bundled space with their variants as the models, their own numbers among the choices, memory
    offered at each variant's least (calibrated peak + margin) and multiples of it."""
    space = load_space()
    memory = set(space.memory_request_mb) | {yours.requests.memory_mb}
    for row in rows:
        if row.calibration is not None:
            least = math.ceil(row.calibration.rss_peak_bytes * (1 + margin) / MIB)
            memory |= {MEMORY_STEP_MB * math.ceil(least * f / MEMORY_STEP_MB) for f in MEMORY_FACTORS}
    data = space.model_dump(mode="json")
    data.update(base=str(base), models=[str(row.variant.path.resolve()) for row in rows if row.calibration],
                cpu_request=sorted(set(space.cpu_request) | {yours.requests.cpu}),
                memory_request_mb=sorted(memory))
    if yours.autoscaling is None:
        data["replicas"] = sorted(set(space.replicas) | {yours.replicas})
    else:
        hpa = data["autoscaling"]
        for key, value in (("min_replicas", yours.autoscaling.min_replicas),
                           ("max_replicas", yours.autoscaling.max_replicas),
                           ("target_cpu_utilization", yours.autoscaling.target_cpu_utilization)):
            hpa[key] = sorted(set(hpa[key]) | {value})
        if v1_autoscaler:  # autoscaling/v1 has no behavior: only Kubernetes' own is kept in their layout
            hpa.update(scale_down_stabilization_s=[300], scale_up=["kubernetes"])
    return data


def prepare(own: OwnModel, options: TuneOptions, progress=None,
            step: Callable[[str], None] = lambda text: None) -> Prepared:
    """Variants, their calibrations, OUT/space.yaml and OUT/yours.yaml, and the tune's options."""
    out = options.out
    if (out / "frontier.json").exists():
        raise OwnModelError(f"{out}: already holds a tune (frontier.json); choose another --out (the variants and "
                            f"calibrations in {own.cache} are reused)")
    documents, theirs = their_deployment(own.deployment)
    variants = build_variants(own.source, own.data, own.cache, own.variants, own.imported, progress, step)
    original = variants.original
    if own.training is not None:
        trained = train_variants(original, own.data, own.cache, own.training, own.variants, progress, step)
        variants.variants += trained.variants
        variants.notes += trained.notes
    bound = None if original.accuracy is None else original.accuracy - own.max_accuracy_loss
    rows = []
    for variant in variants.variants:
        row = VariantRow(variant)
        if variant.path is None:
            row.status = f"refused: {variant.refused}"
        elif bound is not None and variant.accuracy is not None and variant.accuracy < bound - 1e-9:
            row.status = f"not tuned: below {bound:.2%}"  # the accuracy bound, printed under the table
        else:
            row.calibration, row.calibration_file = cached_calibration(variant.path, own, progress, step)
            row.status = "searched"
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    yours = out / YOURS
    their_pair = theirs.model_copy(update={"model": str(original.path.resolve())})
    yours.write_text(f"# your deployment ({own.deployment}) with your model ({own.source})\n"
                     + spec_yaml(their_pair, every_field=True), encoding="utf-8")
    v1 = any(str(doc.get("apiVersion", "")).endswith("/v1") for doc in documents
             if isinstance(doc, dict) and doc.get("kind") == "HorizontalPodAutoscaler")
    space = out / "space.yaml"
    space.write_text("# the search space of your model's variants (servetune tune --model)\n"
                     + yaml.safe_dump(own_space(rows, their_pair, yours.resolve(), options.constraints.memory_margin, v1),
                                      sort_keys=False), encoding="utf-8")
    bounded = options.bounding() or options.constraints.max_response_ms is not None
    constraints = options.constraints
    if constraints.min_accuracy is None and bound is not None:
        constraints = replace(constraints, min_accuracy=max(0.0, bound))
    tune_options = replace(
        options, space=space, calibrations=[r.calibration_file for r in rows if r.calibration_file is not None],
        constraints=constraints, baselines=[str(yours), *options.baselines],
        better_than=options.better_than if bounded else [str(yours)],
        report_sections=[variant_section(rows, variants.notes)])
    return Prepared(tune_options, rows, variants.notes, yours, documents, bound)


def variant_section(rows: list[VariantRow], notes: list[str]) -> str:
    """The report's variant table (HTML)."""
    import html

    return "\n".join(["<h2>Your model's variants</h2>", html_table(VARIANT_HEADER, [row.cells() for row in rows]),
                      *[f"<p class=note>{html.escape(note)}</p>" for note in notes]])
