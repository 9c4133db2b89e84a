"""The search space: which values each deployment setting may take, read from YAML.

A candidate picks one value per setting. Limits are given as ratios of the requests (a limit of 2 x the
request), so every candidate satisfies `limits >= requests` and the limit/request constraint reads directly.
A candidate is either fixed (`replicas`) or autoscaled (`autoscaling`: min, max, target, scale-down
stabilisation, scale-up policy); the space may hold both kinds. An autoscaler whose max is not above its
min can never scale: such a candidate is the fixed count it is (no HorizontalPodAutoscaler, labelled
`fixedN`). The bundled default space is
`tune/spaces/default.yaml`; `servetune tune --space FILE` reads another. `spec_genome` maps a spec the user
already has to the nearest candidate, so the search can start from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from servetune.config import (
    AutoscalingSpec,
    DeploymentSpec,
    ResourceAmounts,
    ScalingBehavior,
    ScalingPolicy,
    ScalingRules,
)
from servetune.deploy.hpa import DOWNSCALE_STABILIZATION_S
from servetune.deploy.spec import DEFAULT_MODEL, SpecError, load_deployment_spec
from servetune.errors import ServetuneError
from servetune.yaml_unique import safe_load_unique_keys

DEFAULT_SPACE = Path(__file__).parent / "spaces" / "default.yaml"


class SpaceError(ServetuneError, ValueError):
    """A search space that cannot be used; the message names the file and the problem."""


class OutsideSpace(ValueError):
    """A spec with no nearest candidate in the space: its model or its kind of scaling is not there."""


class ScaleUpStep(BaseModel):
    """A scale-up policy: add at most `pods` replicas per `period_seconds`."""

    model_config = ConfigDict(extra="forbid")

    pods: int = Field(ge=1, le=100)
    period_seconds: int = Field(ge=1, le=1800)


def in_range(low: float, high: float) -> AfterValidator:
    """Every value of a list within low..high; None (a default chosen elsewhere) passes."""

    def check(values: list) -> list:
        bad = [value for value in values if value is not None and not low <= value <= high]
        if bad:
            raise ValueError(f"{', '.join(map(str, bad))} outside the allowed range {low:g}..{high:g}")
        return values

    return AfterValidator(check)


ScaleUp = Literal["kubernetes"] | ScaleUpStep  # "kubernetes": the API server's default (4 pods or 100 %/15 s)


class AutoscalingChoices(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_replicas: Annotated[list[int], in_range(1, 100)] = Field(default=[1], min_length=1)
    max_replicas: Annotated[list[int], in_range(1, 100)] = Field(default=[2, 3, 4], min_length=1)
    target_cpu_utilization: Annotated[list[int], in_range(1, 1000)] = Field(default=[50, 70, 90], min_length=1)
    scale_down_stabilization_s: Annotated[list[int], in_range(0, 3600)] = Field(default=[300], min_length=1)
    scale_up: list[ScaleUp] = Field(default=["kubernetes"], min_length=1)

    @model_validator(mode="after")
    def _some_pair_fits(self) -> AutoscalingChoices:
        if max(self.max_replicas) < min(self.min_replicas):
            raise ValueError("every max_replicas is below every min_replicas")
        return self


class SearchSpace(BaseModel):
    """Each field lists the values a candidate may take."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(default="default", description="spec whose other fields (image, probes…) candidates keep")
    models: list[str] = Field(default=[DEFAULT_MODEL], min_length=1, description="artifact paths, or 'default'")
    cpu_request: Annotated[list[float], in_range(0.001, 256)] = Field(min_length=1, description="cores")
    cpu_limit_ratio: Annotated[list[float], in_range(1.0, 100)] = Field(
        default=[1.0, 1.5, 2.0], min_length=1, description="limit / request")
    memory_request_mb: Annotated[list[int], in_range(1, 1_048_576)] = Field(min_length=1, description="MiB")
    memory_limit_ratio: Annotated[list[float], in_range(1.0, 100)] = Field(
        default=[1.0, 1.5, 2.0], min_length=1, description="limit / request")
    workers: Annotated[list[int], in_range(1, 64)] = Field(default=[1], min_length=1)
    threads: Annotated[list[int | None], in_range(1, 256)] = Field(
        default=[None], min_length=1, description="null: from the CPU quota")
    replicas: Annotated[list[int], in_range(1, 100)] = Field(
        default=[], description="fixed replica counts; empty: autoscaled only")
    autoscaling: AutoscalingChoices | None = Field(default_factory=AutoscalingChoices)

    @model_validator(mode="after")
    def _some_scaling(self) -> SearchSpace:
        if not self.replicas and self.autoscaling is None:
            raise ValueError("no scaling choice: give `replicas` (fixed) or `autoscaling`, or both")
        return self

    def genes(self) -> list[tuple[str, list]]:
        """Every setting and its choices, in a fixed order: a candidate is one index per gene."""
        hpa = self.autoscaling
        scaling = (["fixed"] if self.replicas else []) + (["autoscaled"] if hpa else [])
        return [
            ("model", self.models),
            ("cpu_request", sorted(self.cpu_request)),
            ("cpu_limit_ratio", sorted(self.cpu_limit_ratio)),
            ("memory_request_mb", sorted(self.memory_request_mb)),
            ("memory_limit_ratio", sorted(self.memory_limit_ratio)),
            ("workers", sorted(self.workers)),
            ("threads", self.threads),
            ("scaling", scaling),
            ("replicas", sorted(self.replicas) or [1]),
            ("min_replicas", sorted(hpa.min_replicas) if hpa else [1]),
            ("max_replicas", sorted(hpa.max_replicas) if hpa else [1]),
            ("target_cpu_utilization", sorted(hpa.target_cpu_utilization) if hpa else [70]),
            ("scale_down_stabilization_s", sorted(hpa.scale_down_stabilization_s) if hpa else [300]),
            ("scale_up", hpa.scale_up if hpa else ["kubernetes"]),
        ]

    def size(self) -> int:
        """Distinct candidates (fixed and autoscaled counted apart)."""
        shared = 1
        for name in ("model", "cpu_request", "cpu_limit_ratio", "memory_request_mb", "memory_limit_ratio",
                     "workers", "threads"):
            shared *= len(dict(self.genes())[name])
        hpa = self.autoscaling
        autoscaled, fixed = 0, set(self.replicas)
        if hpa is not None:
            pairs = sum(1 for low in hpa.min_replicas for high in hpa.max_replicas if high > low)
            autoscaled = (pairs * len(hpa.target_cpu_utilization) * len(hpa.scale_down_stabilization_s)
                          * len(hpa.scale_up))
            # a pair whose max is not above its min is a fixed count (`candidate_from_genes`)
            fixed |= {low for low in hpa.min_replicas if min(hpa.max_replicas) <= low}
        return shared * (len(fixed) + autoscaled)


@dataclass(frozen=True)
class Candidate:
    """One point of the space, with the settings that do not apply to its kind of scaling left out."""

    model: str
    cpu_request: float
    cpu_limit: float
    memory_request_mb: int
    memory_limit_mb: int
    workers: int
    threads: int | None
    replicas: int | None  # fixed replicas; None when autoscaled
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_cpu_utilization: int | None = None
    scale_down_stabilization_s: int | None = None
    scale_up: str = "kubernetes"  # "kubernetes" or "PODS/PERIODs", e.g. "1/60s"

    @property
    def autoscaled(self) -> bool:
        return self.replicas is None

    def label(self) -> str:
        """A short readable name, e.g. `0.2cpu/0.4 128Mi/256Mi w1 hpa1-3@60% down120s up1/60s`; the scale-up
        policy is left out when it is Kubernetes' default (`... down300s`)."""
        threads = "" if self.threads is None else f"t{self.threads}"
        head = (f"{self.cpu_request:g}cpu/{self.cpu_limit:g} {self.memory_request_mb}Mi/{self.memory_limit_mb}Mi "
                f"w{self.workers}{threads}")
        if self.model != DEFAULT_MODEL:
            head = f"{Path(self.model).stem} {head}"
        if not self.autoscaled:
            return f"{head} fixed{self.replicas}"
        up = "" if self.scale_up == "kubernetes" else f" up{self.scale_up}"
        return (f"{head} hpa{self.min_replicas}-{self.max_replicas}@{self.target_cpu_utilization}% "
                f"down{self.scale_down_stabilization_s}s{up}")


def candidate_from_genes(space: SearchSpace, genome: tuple[int, ...]) -> Candidate:
    values = {name: choices[index] for (name, choices), index in zip(space.genes(), genome, strict=True)}
    cpu = values["cpu_request"]
    memory = values["memory_request_mb"]
    common = {
        "model": values["model"], "cpu_request": cpu, "cpu_limit": round(cpu * values["cpu_limit_ratio"], 3),
        "memory_request_mb": memory, "memory_limit_mb": round(memory * values["memory_limit_ratio"]),
        "workers": values["workers"], "threads": values["threads"],
    }
    if values["scaling"] == "fixed":
        return Candidate(**common, replicas=values["replicas"])
    if values["max_replicas"] <= values["min_replicas"]:  # an autoscaler that can never scale: a fixed count
        return Candidate(**common, replicas=values["min_replicas"])
    return Candidate(
        **common, replicas=None, min_replicas=values["min_replicas"], max_replicas=values["max_replicas"],
        target_cpu_utilization=values["target_cpu_utilization"],
        scale_down_stabilization_s=values["scale_down_stabilization_s"],
        scale_up=scale_up_text(values["scale_up"]),
    )


def scale_up_text(choice: ScaleUp) -> str:
    return choice if isinstance(choice, str) else f"{choice.pods}/{choice.period_seconds}s"


def nearest(choices: Sequence[float], value: float) -> int:
    """The index of the choice closest to `value` (the smaller one on a tie: choices are sorted)."""
    return min(range(len(choices)), key=lambda i: (abs(choices[i] - value), i))


def spec_genome(space: SearchSpace, spec: DeploymentSpec) -> tuple[int, ...]:
    """The genome of the candidate nearest to `spec`: each setting snapped to the nearest value the space
    allows, limits as ratios of the spec's requests (no limits: the largest ratio); an autoscaled spec sets
    the autoscaler's settings, a fixed one the replicas. OutsideSpace when the spec's model or its kind of
    scaling is not in the space."""
    genes = space.genes()
    choices = dict(genes)
    if spec.model not in choices["model"]:
        raise OutsideSpace(f"its model {spec.model} is not among the search space's models")
    kind = "fixed" if spec.autoscaling is None else "autoscaled"
    if kind not in choices["scaling"]:
        raise OutsideSpace(f"it is {kind} and the search space holds no {kind} candidates")
    requests, limits = spec.requests, spec.limits
    cpu_ratios, memory_ratios = choices["cpu_limit_ratio"], choices["memory_limit_ratio"]
    values = {name: 0 for name, _ in genes}  # settings that do not apply to the spec's kind of scaling
    values.update(
        model=choices["model"].index(spec.model),
        cpu_request=nearest(choices["cpu_request"], requests.cpu),
        cpu_limit_ratio=nearest(cpu_ratios, limits.cpu / requests.cpu) if limits else len(cpu_ratios) - 1,
        memory_request_mb=nearest(choices["memory_request_mb"], requests.memory_mb),
        memory_limit_ratio=(nearest(memory_ratios, limits.memory_mb / requests.memory_mb) if limits
                            else len(memory_ratios) - 1),
        workers=nearest(choices["workers"], spec.workers),
        threads=nearest_threads(choices["threads"], spec.threads),
        scaling=choices["scaling"].index(kind),
    )
    hpa = spec.autoscaling
    if hpa is None:
        values["replicas"] = nearest(choices["replicas"], spec.replicas)
    else:
        behavior = hpa.behavior or ScalingBehavior()
        down = behavior.scale_down.stabilization_window_seconds if behavior.scale_down else None
        up = behavior.scale_up.policies if behavior.scale_up else []
        up_text = f"{up[0].value}/{up[0].period_seconds}s" if len(up) == 1 and up[0].type == "Pods" else "kubernetes"
        texts = [scale_up_text(choice) for choice in choices["scale_up"]]
        if up_text not in texts:  # a policy the space does not list: the Kubernetes default where it has it
            up_text = "kubernetes" if "kubernetes" in texts else texts[0]
        values.update(
            min_replicas=nearest(choices["min_replicas"], hpa.min_replicas),
            max_replicas=nearest(choices["max_replicas"], hpa.max_replicas),
            target_cpu_utilization=nearest(choices["target_cpu_utilization"], hpa.target_cpu_utilization),
            scale_down_stabilization_s=nearest(choices["scale_down_stabilization_s"],
                                               DOWNSCALE_STABILIZATION_S if down is None else down),
            scale_up=texts.index(up_text),
        )
    return tuple(values[name] for name, _ in genes)


def nearest_threads(choices: Sequence[int | None], threads: int | None) -> int:
    """None (from the CPU quota) where the space allows it, else the nearest number; a number likewise."""
    numbers = [i for i, choice in enumerate(choices) if choice is not None]
    if threads is None or not numbers:
        return choices.index(None) if None in choices else 0
    return min(numbers, key=lambda i: (abs(choices[i] - threads), i))


def candidate_spec(candidate: Candidate, base: DeploymentSpec) -> DeploymentSpec:
    """The deployment spec of a candidate; fields the space does not set come from `base`."""
    autoscaling = None
    replicas = candidate.replicas
    if candidate.autoscaled:
        up = None
        if candidate.scale_up != "kubernetes":
            pods, period = candidate.scale_up.removesuffix("s").split("/")
            up = ScalingRules(policies=[ScalingPolicy(type="Pods", value=int(pods), period_seconds=int(period))])
        down = ScalingRules(stabilization_window_seconds=candidate.scale_down_stabilization_s)
        autoscaling = AutoscalingSpec(
            min_replicas=candidate.min_replicas, max_replicas=candidate.max_replicas,
            target_cpu_utilization=candidate.target_cpu_utilization,
            behavior=ScalingBehavior(scale_up=up, scale_down=down),
        )
        replicas = candidate.min_replicas
    fields = base.model_dump(exclude={"autoscaling", "requests", "limits", "replicas"})
    fields.update(
        model=candidate.model, workers=candidate.workers, threads=candidate.threads, replicas=replicas,
        requests=ResourceAmounts(cpu=candidate.cpu_request, memory_mb=candidate.memory_request_mb),
        limits=ResourceAmounts(cpu=candidate.cpu_limit, memory_mb=candidate.memory_limit_mb),
        autoscaling=autoscaling,
    )
    return DeploymentSpec.model_validate(fields)


def load_space(path: str | Path | None = None) -> SearchSpace:
    """The space in a YAML file (the bundled default when None); SpaceError names the file and problem."""
    path = Path(path) if path is not None else DEFAULT_SPACE
    try:
        data = safe_load_unique_keys(path.read_text(encoding="utf-8"))  # a key given twice is refused
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such search space file") from None
    except OSError as error:
        raise SpaceError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise SpaceError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SpaceError(f"{path}: invalid YAML: {where}{getattr(error, 'problem', None) or error}") from None
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: expected a mapping of settings to lists of values")
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as error:
        raise SpaceError(f"{path}: {'; '.join(describe(item) for item in error.errors())}") from None
    models = [m if m == DEFAULT_MODEL or Path(m).is_absolute() else str((path.parent / m).resolve())
              for m in space.models]
    try:
        load_deployment_spec(space.base)
    except SpecError as error:
        raise SpaceError(f"{path}: base: {error}") from None
    return space.model_copy(update={"models": models})


def describe(error: dict) -> str:
    """One validation error as `field: reason`, naming the allowed fields for an unknown one."""
    loc = [str(part) for part in error["loc"] if not str(part).startswith(("function-after", "literal"))]
    where = ".".join(loc)
    if error["type"] == "extra_forbidden":
        owner = AutoscalingChoices if loc[:1] == ["autoscaling"] else SearchSpace
        if len(loc) > 1 and loc[-2].isdigit() or "scale_up" in loc:
            owner = ScaleUpStep
        return f"{where}: unknown field (allowed: {', '.join(owner.model_fields)})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
