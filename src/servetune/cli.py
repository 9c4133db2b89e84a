"""The `servetune` command line: one Typer app; each command is a thin call into a stage.

Commands print clear one-line errors and exit non-zero on bad input; they never show a traceback for a
user's mistake (see `fail`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from servetune import __version__

app = typer.Typer(
    help="Build, serve, deploy, load-test and tune an image-classification web service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
model_app = typer.Typer(help="Train, evaluate, export, quantize and profile models.", no_args_is_help=True)
data_app = typer.Typer(help="Food-11 data.", no_args_is_help=True)
deploy_app = typer.Typer(help="Render, apply, inspect and delete deployments.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(data_app, name="data")
app.add_typer(deploy_app, name="deploy")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print servetune's version."""
    typer.echo(__version__)


# --- serve -------------------------------------------------------------------------------------------


# --- model -------------------------------------------------------------------------------------------


# --- data --------------------------------------------------------------------------------------------


# --- load test, monitor, analyze, report, compare ----------------------------------------------------


# --- deploy ------------------------------------------------------------------------------------------


# --- run and demo ------------------------------------------------------------------------------------
