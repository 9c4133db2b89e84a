"""`servetune tune`: search model + deployment by simulation, verify the best for real, hand back the front."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

tune_app = typer.Typer(
    help="Find the best model + deployment for a load profile: simulate thousands, verify the best for real.",
    invoke_without_command=True,
)


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@tune_app.callback()
def tune(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="tune folder to create (tunes/NAME)")] = None,
    profile: Annotated[str, typer.Option(help="reference, quick, or a profile YAML file")] = "reference",
    max_response_ms: Annotated[float | None, typer.Option(min=0.001, help="response time at most this "
                                                          "(OKAY-weighted mean, ms)")] = None,
    max_failure_rate: Annotated[float, typer.Option(min=0, max=1, help="failed / all requests at most this")] = 0.0,
    min_accuracy: Annotated[float | None, typer.Option(min=0, max=1, help="model accuracy at least this "
                                                       "(0..1; variants without a measured accuracy are "
                                                       "excluded)")] = None,
    capacity: Annotated[str | None, typer.Option(help="the cluster's allocatable resources, e.g. "
                                                 "cpu=2,memory=8Gi (pods beyond it stay Pending)")] = None,
    max_limit_ratio: Annotated[float, typer.Option(min=1, help="limits at most this multiple of the "
                                                   "requests, CPU and memory")] = 2.0,
    memory_margin: Annotated[float, typer.Option(min=0, help="memory request at least workers x calibrated peak "
                                                 "RSS x (1 + this)")] = 0.15,
    verify: Annotated[int, typer.Option(min=0, help="run the best K candidates for real")] = 3,
    backend: Annotated[str, typer.Option(help="where verification runs: local or kubernetes")] = "local",
    time_scale: Annotated[float, typer.Option(min=0.01, max=1.0, help="compress the verification runs "
                                              "(the search always simulates the full profile)")] = 1.0,
    space: Annotated[Path | None, typer.Option(help="search space YAML [default: the bundled one]")] = None,
    calibration: Annotated[list[Path] | None, typer.Option(help="a model's calibration.json (repeat for each "
                                                           "model) [default: the packaged model's]")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="spec to compare against (repeatable) "
                                                       "[default: default]")] = None,
    no_slower_than: Annotated[list[str] | None, typer.Option(help="a spec (repeatable) whose response time "
                                                             "bounds the candidates': its simulated one in the "
                                                             "search, its measured one (run for real first) in "
                                                             "the verification")] = None,
    budget: Annotated[int, typer.Option(min=1, help="candidates to simulate")] = 2000,
    population: Annotated[int, typer.Option(min=4, help="candidates per generation")] = 64,
    seed: Annotated[int, typer.Option(help="seed of the search and the simulations")] = 0,
    jobs: Annotated[int | None, typer.Option(min=1, help="simulation processes [default: every core]")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="kubernetes: kubeconfig file")] = None,
    context: Annotated[str | None, typer.Option(help="kubernetes: kubeconfig context")] = None,
) -> None:
    """Search the space by simulation (NSGA-II), keep the Pareto front, verify the best K with `servetune
    run`, and write frontier.csv/json, candidates.csv, recommended.yaml and report.html into --out."""
    if ctx.invoked_subcommand is not None:
        return
    from servetune.tune.capacity import CapacityError, parse_capacity
    from servetune.tune.constraints import Constraints
    from servetune.tune.frontier import EmptyFrontier
    from servetune.tune.pipeline import TuneError, TuneOptions
    from servetune.tune.verify import RealRun

    if out is None:
        fail("--out is required (the tune folder to create, e.g. tunes/NAME)")
    try:
        cluster = parse_capacity(capacity) if capacity else None
    except CapacityError as error:
        fail(f"--capacity: {error}")
    options = TuneOptions(
        out=out, profile=profile, space=space, calibrations=calibration or [],
        constraints=Constraints(max_response_ms, max_failure_rate, min_accuracy, max_limit_ratio, memory_margin,
                                cluster),
        budget=budget, population=population, seed=seed, jobs=jobs, verify=verify,
        real=RealRun(backend, profile, time_scale, kubeconfig, context), baselines=baseline or ["default"],
        no_slower_than=no_slower_than or [],
    )
    try:
        result = run_with_progress(options)
    except (TuneError, EmptyFrontier) as error:
        fail(str(error), code=1 if isinstance(error, EmptyFrontier) else 2)
    show_result(result)


def run_with_progress(options):
    """The tune with a progress bar of simulated candidates and the best so far by the recommendation rule."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from servetune.tune.frontier import recommend
    from servetune.tune.pipeline import tune

    console = Console(stderr=True)
    columns = [TextColumn("search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[best]}")]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("search", total=options.budget, best="")

        def on_batch(evaluations) -> None:
            feasible = [e for e in evaluations if e.feasible and e.statistics is not None]
            best = ""
            if feasible:
                s = recommend(feasible).statistics
                best = (f"best: {s.memory_requested_KB / 1024:.0f} MiB, {s.cpu_requested_core:.2f} CPU, "
                        f"{s.response_time_s * 1000:.1f} ms ({len(feasible):,} feasible)")
            progress.update(task, completed=sum(1 for e in evaluations if e.statistics is not None), best=best)

        return tune(options, console, on_batch)


def show_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("spec", "mem req MiB", "CPU req", "resp. ms", "failures", "replicas mean/max",
                  title="recommended against the baselines (simulated, full profile)")
    for name, s in [("recommended", result.recommended.statistics), *result.baselines.items()]:
        response = "n/a" if s.response_time_s is None else f"{s.response_time_s * 1000:.1f}"
        table.add_row(name, f"{s.memory_requested_KB / 1024:,.0f}", f"{s.cpu_requested_core:.3f}", response,
                      f"{s.failure_rate:.2%}", f"{s.mean_replicas:.2f} / {s.max_replicas}")
    Console(width=120).print(table)
    for item in [*result.baseline_runs, *result.verifications]:
        measured = item.measured
        figures = "" if measured is None else (
            f": measured {measured.memory_requested_KB / 1024:,.0f} MiB, {measured.cpu_requested_core:.3f} CPU, "
            f"{(measured.response_time_s or 0) * 1000:.1f} ms, failures {measured.failure_rate:.2%}")
        typer.echo(f"verify {item.label}: {item.verdict()}{figures}")
    accuracy = result.recommended.accuracy
    accuracy_text = "not measured (cannot be ranked on accuracy)" if accuracy is None else f"{accuracy:.2%}"
    typer.echo(f"recommended: {result.recommended.candidate.label()} (accuracy {accuracy_text}) -> "
               f"{result.out / 'recommended.yaml'}")
    typer.echo(f"front: {len(result.front)} candidates of {len(result.evaluations):,} evaluated "
               f"in {result.seconds:.1f} s -> {result.out / 'frontier.csv'}")
    typer.echo(f"response time bound: {dict(result.constraints.describe())['--max-response-ms']}")
    typer.echo(f"report: {result.report}")
