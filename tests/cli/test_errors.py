"""One place turns the stages' errors into one line and an exit status; a bug still shows its traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from servetune.cli import app
from servetune.cli.errors import CommandGroup
from servetune.cli.options import choice
from servetune.errors import FailedError, ServetuneError
from servetune.load.runner import LoadDriver


def little_app() -> typer.Typer:
    demo = typer.Typer(cls=CommandGroup)
    group = typer.Typer()
    demo.add_typer(group, name="group")

    @demo.command()
    def bad_input() -> None:
        raise ServetuneError("spec.yaml: replicas: must be >= 1")

    @group.command()
    def cluster() -> None:  # a command one group down is handled by the same top-level group
        raise FailedError("create deployment/app: forbidden")

    @demo.command()
    def bug() -> None:
        raise KeyError("oops")

    return demo


def test_a_servetune_error_is_one_line_and_its_exit_status():
    runner = CliRunner()
    bad = runner.invoke(little_app(), ["bad-input"])
    assert bad.exit_code == 2 and bad.stderr == "error: spec.yaml: replicas: must be >= 1\n"
    failed = runner.invoke(little_app(), ["group", "cluster"])
    assert failed.exit_code == 1 and failed.stderr == "error: create deployment/app: forbidden\n"


def test_a_bug_is_not_hidden():
    result = CliRunner().invoke(little_app(), ["bug"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


def test_choices_name_the_option_and_what_it_accepts():
    assert choice("siege", list(LoadDriver), "--driver") is LoadDriver.SIEGE
    with pytest.raises(ServetuneError, match="--driver must be builtin or siege, not 'ab'"):
        choice("ab", list(LoadDriver), "--driver")


@pytest.mark.parametrize("command", [["run", "-c", "default", "--out", "never"], ["demo"],
                                     ["deploy", "local", "default"], ["loadtest", "http://127.0.0.1:9"]])
def test_every_time_scale_has_the_same_range(command, tmp_path):
    for value in ("0.0005", "1.5"):
        result = CliRunner().invoke(app, [*command, "--time-scale", value])
        assert result.exit_code == 2 and "--time-scale" in result.output
    assert not (tmp_path / "never").exists()
