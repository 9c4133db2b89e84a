"""One place where errors become what the user reads: `error: MESSAGE` on stderr and an exit status.

Every command raises instead of printing and exiting: a ServetuneError (servetune.errors) exits with its
`exit_code` (2 for bad input, 1 when what it drove failed); anything else is a bug and shows its traceback.
"""

from __future__ import annotations

from typing import Any

import click
import typer
from typer.core import TyperGroup

from servetune.errors import FailedError, ServetuneError


class OptionError(ServetuneError):
    """A command-line option or argument that cannot be used; the message names it."""


class CommandFailed(FailedError):
    """The command started, and what it drove failed (a run, a local cluster); the message says where."""


def exit_code_of(error: Exception) -> int | None:
    """The exit status for an error the user can act on, or None for a bug."""
    if isinstance(error, ServetuneError):
        return error.exit_code
    return None


class CommandGroup(TyperGroup):
    """The `servetune` group: any subcommand's ServetuneError, at any depth, becomes one line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: usage errors, exit statuses, aborts
        except Exception as error:
            code = exit_code_of(error)
            if code is None:
                raise
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code) from None
