"""The user's own model through the whole loop: `servetune tune --model FILE --deployment deployment.yaml
--data DIR --out OUT`.

1. their model imported and measured, its variants built (`model/variants.py`: input sizes, INT8; with a
   training budget also servetune's backbones trained on their data, `model/trained_variants.py`);
2. each variant within `--max-accuracy-loss` of their model calibrated where the tune will run (this
   machine, or their cluster: `tune/own_calibration.py`), cached by the file's sha256, the backend and the
   cluster, so a re-run measures nothing twice;
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
from servetune.deploy.spec import read_documents, spec_from_documents, spec_yaml
from servetune.errors import ServetuneError
from servetune.model.trained_variants import TrainingSettings, train_variants
from servetune.model.variants import ImportSettings, Variant, VariantSettings, build_variants, chance_level
from servetune.tune.calibration import Calibration
from servetune.tune.measure import CPU_LIMITS, quantile_mean
from servetune.tune.measure_kubernetes import Place
from servetune.tune.own_calibration import cached, calibrated, calibration_site, image_needed
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
    calibration_seconds: float | None = None  # per load [default: 6 s on this machine, 30 s on a cluster]
    calibration_limits: tuple[float, ...] = CPU_LIMITS
    cluster: Place | None = None  # calibrate there (its namespace: their manifest's), else on this machine
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
    calibrated_on: str  # "this machine", "the cluster at HOST"


def their_deployment(path: Path) -> tuple[list, DeploymentSpec]:
    """Their manifest's documents and its spec; OwnModelError when it is not a Kubernetes manifest."""
    from servetune.deploy.k8s_import import is_manifest
    from servetune.deploy.spec import SpecError

    if not path.is_file():
        raise OwnModelError(f"--deployment {path}: no such manifest file")
    try:
        documents = read_documents(path)  # read once: the spec and the written manifest both come from them
        if not is_manifest(documents):
            raise OwnModelError(f"--deployment {path}: not a Kubernetes manifest (a Deployment, with its Service "
                                "and HorizontalPodAutoscaler if any)")
        spec, _ = spec_from_documents(documents, path)
    except SpecError as error:
        raise OwnModelError(f"--deployment {error}") from None
    return documents, spec


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


def accuracy_floor(accuracy: float | None, max_loss: float) -> float | None:
    """The least accuracy a variant may have: theirs less the allowed loss, never below 0 (a model near 0 %)."""
    return None if accuracy is None else max(0.0, accuracy - max_loss)


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
    bound = accuracy_floor(original.accuracy, own.max_accuracy_loss)
    rows = [VariantRow(variant) for variant in variants.variants]
    for row in rows:
        if row.variant.path is None:
            row.status = f"refused: {row.variant.refused}"
        elif bound is not None and row.variant.accuracy is not None and row.variant.accuracy < bound - 1e-9:
            row.status = f"not tuned: below {bound:.2%}"  # the accuracy bound, printed under the table
        else:
            row.status = "searched"
    searched = [row for row in rows if row.status == "searched"]
    cluster = own.cluster and replace(own.cluster, namespace=theirs.namespace)
    site = calibration_site(own.calibration_limits, own.calibration_seconds, cluster)
    if cluster is not None and not cluster.image and any(cached(own.cache, r.variant, site) is None for r in searched):
        raise image_needed(out, [row.variant for row in searched], site)
    for row in searched:
        row.calibration, row.calibration_file = calibrated(own.cache, row.variant, site, progress, step)
    out.mkdir(parents=True, exist_ok=True)
    yours = out / YOURS
    their_pair = theirs.model_copy(update={"model": str(original.path.resolve()),
                                           **({"image": cluster.image} if cluster and cluster.image else {})})
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
        constraints = replace(constraints, min_accuracy=bound)
    tune_options = replace(
        options, space=space, calibrations=[r.calibration_file for r in rows if r.calibration_file is not None],
        constraints=constraints, baselines=[str(yours), *options.baselines],
        better_than=options.better_than if bounded else [str(yours)],
        report_sections=[variant_section(rows, variants.notes)])
    return Prepared(tune_options, rows, variants.notes, yours, documents, bound, site.text())


def chance_note(original: Variant) -> str | None:
    """Said where the user's model is at chance level (None where it is above it, or not measured)."""
    if original.accuracy is None or chance_level(original.accuracy, original.classes, original.images) is None:
        return None
    return (f"your model is at chance level ({original.accuracy:.2%} on {original.images:,} photos): its accuracy "
            "could not be told apart from guessing; the figures above are about its cost only")


def variant_section(rows: list[VariantRow], notes: list[str]) -> str:
    """The report's variant table (HTML)."""
    import html

    return "\n".join(["<h2>Your model's variants</h2>", html_table(VARIANT_HEADER, [row.cells() for row in rows]),
                      *[f"<p class=note>{html.escape(note)}</p>" for note in notes]])
