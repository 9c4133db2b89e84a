"""Options that several commands share, and the parsing of choices and lists given as text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from typer.models import OptionInfo

from servetune.cli.errors import OptionError
from servetune.config import TIME_SCALE_MAX, TIME_SCALE_MIN

if TYPE_CHECKING:
    from servetune.load.labelling_users import LabellingPlan

Choice = TypeVar("Choice", bound=str)  # a plain string or a StrEnum member


def choice(text: str, choices: Sequence[Choice], option: str) -> Choice:
    """The choice that `text` names; OptionError listing them (in the given order) otherwise."""
    for chosen in choices:
        if text == chosen:
            return chosen
    raise OptionError(f"{option} must be {' or '.join(str(c) for c in choices)}, not {text!r}")


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def time_scale_option(help_text: str) -> OptionInfo:
    """--time-scale, one range for every command (config.TIME_SCALE_MIN..TIME_SCALE_MAX)."""
    return typer.Option(
        "--time-scale", min=TIME_SCALE_MIN, max=TIME_SCALE_MAX,
        help=f"{help_text} ({TIME_SCALE_MIN:g} to {TIME_SCALE_MAX:g})",
    )


Kubeconfig = Annotated[
    Path | None, typer.Option("--kubeconfig", help="kubeconfig file [default: $KUBECONFIG, ~/.kube/config]")
]
Context = Annotated[str | None, typer.Option("--context", help="kubeconfig context [default: its current context]")]
Spec = Annotated[str, typer.Argument(metavar="SPEC", help="deployment spec YAML, or bundled: default, fixed-1, demo")]

# How a plain ONNX model is fed (`model import`, `tune --model`).
Classes = Annotated[str | None, typer.Option(
    help="class names in output order: comma-separated, or a text file, one per line")]
Mean = Annotated[str, typer.Option(help=".onnx: per-channel mean on the 0..1 scale, e.g. 0.485,0.456,0.406")]
Std = Annotated[str, typer.Option(help=".onnx: per-channel std on the 0..1 scale, e.g. 0.229,0.224,0.225")]
Layout = Annotated[str | None, typer.Option(help=".onnx: nchw or nhwc [default: from the input shape]")]
ResizeFilter = Annotated[str, typer.Option(help=".onnx: bilinear or bicubic")]
Softmax = Annotated[bool, typer.Option("--softmax/--logits", help=".onnx: the output is probabilities (softmax) "
                                       "or logits")]
Int8MaxLoss = Annotated[float, typer.Option(
    min=0, max=100, help="refuse an INT8 twin losing more top-1 accuracy (percentage points)")]
Int8MinAgreement = Annotated[float, typer.Option(
    min=0, max=100, help="refuse an INT8 twin naming the fp32 model's class on fewer evaluation photos (percent)")]

# Labelling users beside a real run's load (`run`, and each of `tune`'s verification runs): live accuracy.
LabellingUsers = Annotated[int, typer.Option(
    min=0, max=100, help="users who upload photos of --labelling-photos through the held-out flow and answer "
    "with the true class: each real run's live accuracy")]
LabellingPhotos = Annotated[Path | None, typer.Option(
    help="a Food-11-shaped split folder (e.g. food11-proxy/evaluation) the labelling users upload")]
LabellingThink = Annotated[float, typer.Option(
    min=0, max=600, help="a labelling user's think time bound, seconds (before a label, and between uploads)")]
HoldoutFraction = Annotated[float | None, typer.Option(
    min=0, max=1, help="the share of uploads held out [default: the spec's labels.holdout_fraction]")]


def labelling_plan(users: int, photos: Path | None, think_s: float) -> LabellingPlan | None:
    """The labelling users' plan: the photos of a Food-11-shaped folder with their classes."""
    if users == 0:
        if photos is not None:
            raise OptionError("--labelling-photos needs --labelling-users N (N > 0)")
        return None
    if photos is None:
        raise OptionError("--labelling-users needs --labelling-photos (a Food-11-shaped folder)")
    from servetune.load.labelling_users import LabellingPlan
    from servetune.model.data import read_folder

    split = read_folder(photos, photos.name, require_all_classes=False)
    return LabellingPlan(
        users, tuple((sample.path, split.class_names[sample.label]) for sample in split.samples), think_s,
        source=str(photos),
    )


def steps_progress():
    """A progress display on stderr for a command's long steps (bars that vanish when done)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)
