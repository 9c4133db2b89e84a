"""`servetune run` and `servetune demo`: the evaluation protocol, and the main job in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servetune.backend.protocol import Backend, BackendName
from servetune.cli.errors import CommandFailed
from servetune.cli.options import (
    Context,
    HoldoutFraction,
    Kubeconfig,
    LabellingPhotos,
    LabellingThink,
    LabellingUsers,
    choice,
    labelling_plan,
    time_scale_option,
)
from servetune.demo import DEMO_TUNE_BUDGET
from servetune.load.runner import LoadDriver
from servetune.run import RunOptions


def evaluate_and_report(options: RunOptions, backend: Backend | None = None) -> None:
    """Run the protocol, print the headline statistics and where the report is; exit 1 if it failed.
    `backend`: one made here rather than by run.py (the simulated one, which needs a calibration)."""
    from rich.console import Console
    from rich.table import Table

    from servetune.analyze.report import headline_rows
    from servetune.run import evaluate

    result = evaluate(options, backend=backend)
    record = result.record
    if result.report is not None and (summary := result.summary) is not None:  # the analysis's own statistics
        table = Table("statistic", "value", title=f"run {summary.name} ({record.status})")
        for name, value in headline_rows(summary, "terminal"):
            table.add_row(name, value)
        Console(width=120).print(table)
        typer.echo(f"report: {result.report}")
    typer.echo(f"run folder: {result.run_dir} (run.json: {record.status})")
    if result.status == "failed":
        raise CommandFailed(f"{record.failed_step} step failed: {record.error}")
    if result.status == "interrupted":
        typer.secho(f"interrupted during the {record.failed_step} step; kept what was measured", err=True)
        raise typer.Exit(130)


def run(
    spec: Annotated[str, typer.Option("--spec", "-c", help="deployment spec YAML, or bundled: default, fixed-1, "
                                      "demo")],
    out: Annotated[Path, typer.Option(help="run folder to create (runs/NAME)")],
    backend: Annotated[str, typer.Option(help="local (the one-machine cluster), kubernetes, or simulated (the "
                                         "simulator with the model's calibration; `servetune simulate` has its "
                                         "options)")] = "local",
    profile: Annotated[str, typer.Option(help="reference, quick, or a profile YAML file")] = "reference",
    time_scale: Annotated[float, time_scale_option("multiply the profile's run lengths, the monitor interval and "
                                                   "the local autoscaler's time constants")] = 1.0,
    driver: Annotated[str, typer.Option(help="builtin or siege")] = "builtin",
    model_copy: Annotated[bool, typer.Option(help="copy the model artifact into the run folder")] = True,
    port: Annotated[int, typer.Option(min=0, max=65535, help="local: port on 127.0.0.1 (0: any free one)")] = 0,
    url: Annotated[str | None, typer.Option(help="kubernetes: the service's URL [default: a node's address "
                                            "and the NodePort]")] = None,
    ready_timeout: Annotated[float, typer.Option(min=1, help="seconds to wait until replicas are ready")] = 300,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    labelling_users: LabellingUsers = 0,
    labelling_photos: LabellingPhotos = None,
    labelling_think: LabellingThink = 3.0,
    holdout_fraction: HoldoutFraction = None,
) -> None:
    """The evaluation protocol: warm up, apply, load test + monitor together, tear down, analyse; everything
    lands in the run folder (run.json says what happened). Ctrl-C tears down and keeps what was measured."""
    chosen = choice(backend, list(BackendName), "--backend")
    evaluate_and_report(RunOptions(
        spec=spec, out=out, backend=chosen, profile=profile,
        time_scale=time_scale, driver=choice(driver, list(LoadDriver), "--driver"), copy_model=model_copy,
        port=port, kubeconfig=kubeconfig, context=context, url=url, ready_timeout_s=ready_timeout,
        labelling=labelling_plan(labelling_users, labelling_photos, labelling_think),
        holdout_fraction=holdout_fraction,
    ), simulated_backend(spec) if chosen == BackendName.SIMULATED else None)


def simulated_backend(spec: str) -> Backend:
    """The simulated backend for `spec`, with the calibration of its model (the packaged one's by default)."""
    from servetune.deploy.spec import read_deployment
    from servetune.sim.backend import SimulatedBackend
    from servetune.tune.evaluate import ModelCalibrations

    deployment, _ = read_deployment(spec)
    return SimulatedBackend(deployment, ModelCalibrations({}).add(deployment.model))


def demo(
    out: Annotated[Path | None, typer.Option(help="run folder [default: runs/demo-DATE-TIME]")] = None,
    time_scale: Annotated[float | None, time_scale_option("compress the quick profile [default: about 4 minutes "
                                                          "in all]")] = None,
    tune_budget: Annotated[int, typer.Option(min=0, help="candidates the short tune after the run simulates "
                                             "(0: no tune)")] = DEMO_TUNE_BUDGET,
) -> None:
    """The main job: the default model on the one-machine cluster under the quick profile; replicas scale up
    and back down; prints the four statistics, accuracy and the report's path. Then a short tune, calibrated
    on this run, recommends a spec for the same profile (simulated; into RUN/tune)."""
    import time

    from servetune.cli.tune_output import run_with_progress, show_result
    from servetune.demo import DEMO_PROFILE, DEMO_TIME_SCALE, demo_options, demo_tune_options

    out = out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    scale = time_scale or DEMO_TIME_SCALE
    evaluate_and_report(demo_options(out, scale))  # exits on a failed or interrupted run
    if tune_budget == 0:
        return
    options = demo_tune_options(out, tune_budget)
    typer.echo(f"tune: the simulator recalibrated from this run ({options.calibrations[0]}); searching "
               f"{tune_budget} candidates for the {DEMO_PROFILE} profile, better than the demo spec")
    show_result(run_with_progress(options))
    typer.echo(f"verify it for real: servetune run -c {options.out / 'recommended.yaml'} --profile "
               f"{DEMO_PROFILE} --time-scale {scale:g} --out {out}-recommended")
