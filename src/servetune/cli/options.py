"""Options that several commands share, and the parsing of choices and lists given as text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from typer.models import OptionInfo

from servetune.cli.errors import OptionError
from servetune.config import TIME_SCALE_MAX, TIME_SCALE_MIN

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
