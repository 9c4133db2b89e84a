"""The `servetune simulate` command and the `servetune tune` group's `calibrate`: thin calls into tune/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

tune_app = typer.Typer(help="Calibrate models, simulate and search deployments for a load profile.")

CALIBRATION_OPTION = typer.Option(
    "--calibration", help="calibration.json (or its folder) [default: the packaged model's, measured with it]")


def simulate(
    spec: Annotated[str, typer.Option("--spec", "-c", help="deployment spec YAML, or bundled: default, fixed-1, "
                                      "demo")],
    profile: Annotated[str, typer.Option(help="reference, quick, or a profile YAML file")] = "reference",
    time_scale: Annotated[float, typer.Option(min=0.01, max=1.0, help="compress the profile like "
                                              "`servetune run --time-scale`")] = 1.0,
    calibration: Annotated[Path | None, CALIBRATION_OPTION] = None,
    capacity: Annotated[str | None, typer.Option(help="the cluster's allocatable resources, e.g. "
                                                 "'cpu=2,memory=8Gi' [default: every pod fits; local: this "
                                                 "machine's]")] = None,
    backend: Annotated[str, typer.Option(help="kubernetes (metrics-server, HPA at Kubernetes' pace) or local "
                                         "(the one-machine cluster, as `servetune run --backend local`)")] = "kubernetes",
    node_cpu: Annotated[float | None, typer.Option(min=0.01, help="cores the pods really get on their node "
                                                   "(a shared machine) [default: no limit beyond quotas; local: "
                                                   "the capacity's]")] = None,
    mode: Annotated[str, typer.Option(help="closed (siege's users) or open (Poisson arrivals)")] = "closed",
    seed: Annotated[int, typer.Option(help="random seed (think times, request sizes, pod choice)")] = 0,
    out: Annotated[Path | None, typer.Option(help="write a run folder (resource_usage.csv, load_output.csv, "
                                             "run.json with simulated: true) for `servetune report`/`compare`")] = None,
    record: Annotated[bool, typer.Option(help="also write requests.csv (every request) into --out")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print the statistics as JSON")] = False,
) -> None:
    """Predict a deployment's statistics under a load profile in well under a second: a discrete-event
    simulation of the load, the Service, the pods under their CPU quota, the HPA and the monitor."""
    from servetune.cli import fail  # here, not at the top: cli.py imports this module
    from servetune.deploy.spec import SpecError, load_deployment_spec
    from servetune.load.profile import ProfileError, load_profile
    from servetune.tune.calibration import CalibrationError, default_calibration, load_calibration
    from servetune.tune.simulator import CapacityError, MetricsTiming, parse_capacity
    from servetune.tune.simulator import simulate as run_simulation

    if backend not in ("kubernetes", "local"):
        fail(f"--backend must be kubernetes or local, not {backend!r}")
    if mode not in ("closed", "open"):
        fail(f"--mode must be closed or open, not {mode!r}")
    if out is not None and (out / "run.json").exists():
        fail(f"{out}: already holds a run (run.json); choose another --out")
    try:
        deployment = load_deployment_spec(spec)
        load = load_profile(profile, time_scale)
        figures = load_calibration(calibration) if calibration else default_calibration()
        cluster = parse_capacity(capacity) if capacity else None
    except (SpecError, ProfileError, CalibrationError, CapacityError) as error:
        fail(str(error))
    if backend == "local":
        from servetune.deploy.cgroups import allocatable
        from servetune.tune.simulator import Capacity

        # the one-machine cluster: this machine's cores hold the pods and the load driver
        cluster = cluster or Capacity(*allocatable())
        node_cpu = node_cpu or cluster.cpu_cores
    if mode == "open":
        for index, phase in enumerate(load.phases):
            if phase.delay <= 0 and phase.rate is None:
                fail(f"{profile}: phase {index + 1}: open-loop mode needs `rate` when delay is 0")
    if cluster is not None and cluster.pods_that_fit(deployment) < 1:
        typer.secho(f"warning: one pod requests {deployment.requests.cpu:g} CPU and {deployment.requests.memory_mb} "
                    f"MiB, more than the capacity ({cluster.cpu_cores:g} CPU, {cluster.memory_bytes // 2**20} MiB): "
                    "every pod stays Pending and every request fails", err=True)
    simulation = run_simulation(
        deployment, load, figures, capacity=cluster, seed=seed, record=record and out is not None,
        metrics=MetricsTiming(backend=backend), node_cpu=node_cpu, open_loop=mode == "open",  # type: ignore[arg-type]
    )
    if out is not None:
        simulation.write(out)
    statistics = simulation.statistics
    if json_output:
        typer.echo(json.dumps(statistics.model_dump(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from servetune.analyze.report import statistics_rows

    table = Table("statistic", "value", title=f"{deployment.name} simulated: {load.name} profile, "
                  f"calibration {figures.model} ({figures.date[:10]})")
    for name, value in statistics_rows(statistics):
        table.add_row(name, value)
    Console(width=120).print(table)
    for line in simulation.events:
        typer.echo(line)
    if out is not None:
        typer.echo(f"run folder: {out} (run.json: simulated)")


@tune_app.command()
def calibrate(
    model: Annotated[list[Path] | None, typer.Option(help="model artifact(s) [default: the packaged model]")] = None,
    out: Annotated[Path, typer.Option(help="folder: <model name>/calibration.json per model (--from-run: "
                                      "<model name>-<run name>/)")] = Path("calibrations"),
    from_run: Annotated[Path | None, typer.Option(help="recalibrate from a completed run folder instead of "
                                                  "measuring")] = None,
    calibration: Annotated[Path | None, typer.Option(help="with --from-run: the calibration to update "
                                                     "[default: the packaged model's]")] = None,
    seconds: Annotated[float, typer.Option(min=1, max=120, help="seconds of load per CPU limit and "
                                           "endpoint")] = 6.0,
) -> None:
    """Measure what a replica of each model costs on this machine's one-machine cluster (service time per
    request at CPU limits 0.25, 0.5, 1, 2 cores, CPU per request, memory, start-up) into calibration.json;
    or recalibrate from a completed run folder."""
    from servetune.cli import fail  # here, not at the top: cli.py imports this module
    from servetune.model.artifact import ArtifactError, default_model_path, read_spec
    from servetune.tune.calibration import (
        CalibrationError,
        default_calibration,
        load_calibration,
        save_calibration,
    )

    if from_run is not None:
        from servetune.tune.from_run import calibration_from_run

        try:
            base = load_calibration(calibration) if calibration else default_calibration()
            result = calibration_from_run(from_run, base)
        except CalibrationError as error:
            fail(str(error))
        path = save_calibration(result, out / f"{result.model}-{from_run.resolve().name}")
        typer.echo(f"{path}: {result.model}, {result.cpu_ms_quantiles and _cpu_text(result)}, "
                   f"memory {result.rss_loaded_bytes / 2**20:.0f} MiB per worker (from {from_run})")
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from servetune.tune.measure import CPU_LIMITS, TARGETS, calibrate_model

    models = model or [default_model_path()]
    for path in models:
        if not path.is_file():
            fail(f"{path}: no such model file")
        try:
            read_spec(path)
        except ArtifactError as error:
            fail(str(error))
    steps_per_model = len(CPU_LIMITS) * (1 + len(TARGETS)) + 1  # + the added replica
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn()) as progress:
        task = progress.add_task("calibrate", total=steps_per_model * len(models))

        def step(text: str) -> None:
            progress.update(task, advance=1, description=text)

        results = []
        for path in models:
            result = calibrate_model(path, seconds=seconds, progress=step)
            results.append((save_calibration(result, out / result.model), result))
    for saved, result in results:
        typer.echo(f"{saved}: {result.model}, {_cpu_text(result)}, memory {result.rss_loaded_bytes / 2**20:.0f} "
                   f"MiB per worker, ready in {result.start_to_ready_s:.1f} s")


def _cpu_text(calibration) -> str:
    from servetune.tune.measure import quantile_mean

    parts = [f"{target} {quantile_mean(q):.1f} ms CPU" for target, q in calibration.cpu_ms_quantiles.items()]
    return ", ".join(parts)
