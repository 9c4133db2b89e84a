"""Every command's --help at 80 columns shows each option's full name and cites nothing missing."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from servetune.cli import app


def commands(group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group of subcommands
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


ALL = list(commands(typer.main.get_command(app)))


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(path) for path, _ in ALL])
def test_help_at_80_columns_keeps_option_names_whole(path, command):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})

    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for parameter in command.params:
        for name in parameter.opts + parameter.secondary_opts:
            if name.startswith("--"):
                assert name in result.output, (path, name)
    assert "ARCHITECTURE.md" not in result.output


def test_model_import_help_names_both_formats():
    result = CliRunner().invoke(app, ["model", "import", "--help"], env={"COLUMNS": "80"})
    assert ".keras" in result.output and ".onnx" in result.output and "--int8-max-loss" in result.output
