"""The `servetune` command line: one Typer app; each command is a thin call into a stage.

One module per command group. Commands raise the stages' errors (servetune.errors.ServetuneError); the app's
CommandGroup (cli/errors.py) turns them into one line and an exit status, never a traceback for a user's
mistake. docs/architecture.md says which stage each command calls.
"""

from __future__ import annotations

import typer

from servetune import __version__
from servetune.cli import analyze, measure, run, serve, simulate
from servetune.cli.data import data_app
from servetune.cli.deploy import deploy_app
from servetune.cli.errors import CommandGroup
from servetune.cli.labels import labels_app
from servetune.cli.model import model_app
from servetune.cli.tune import tune_app

app = typer.Typer(
    help="Build, serve, deploy, load-test and tune an image-classification web service "
    "(stages and data flow: docs/architecture.md).",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain Click help: Rich's table cuts long option names at 80 columns
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=CommandGroup,
)


@app.callback()
def stop_on_sigterm() -> None:
    """SIGTERM stops every command the way Ctrl-C does (each one cleans up and keeps what it measured)."""
    from servetune.stop_signals import sigterm_as_interrupt

    sigterm_as_interrupt()


@app.command()
def version() -> None:
    """Print servetune's version."""
    typer.echo(__version__)


app.command()(serve.serve)
app.add_typer(model_app, name="model")
app.add_typer(data_app, name="data")
app.command()(measure.loadtest)
app.command()(measure.monitor)
app.command()(analyze.analyze)
app.command()(analyze.report)
app.command()(analyze.compare)
app.add_typer(deploy_app, name="deploy")
app.command()(run.run)
app.command()(run.demo)
app.command()(simulate.simulate)
app.add_typer(tune_app, name="tune")
app.add_typer(labels_app, name="labels")
