"""`servetune tune` (search model + deployment by simulation, verify the best for real) and `servetune tune
calibrate`: thin calls into tune/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servetune.backend.protocol import BackendName
from servetune.cli.errors import OptionError
from servetune.cli.options import Context, Kubeconfig, choice, time_scale_option

tune_app = typer.Typer(
    help="Find the best model + deployment for a load profile: simulate thousands of candidates, verify the best "
    "for real (`servetune tune --out tunes/NAME`); `servetune tune calibrate` measures what the simulator needs.",
    invoke_without_command=True,
    rich_markup_mode=None,
)

@tune_app.callback()
def tune(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="tune folder to create (tunes/NAME)")] = None,
    profile: Annotated[str, typer.Option(help="reference, quick, or a profile YAML file")] = "reference",
    max_response_ms: Annotated[float | None, typer.Option(min=0.001, help="response time at most this "
                                                          "(OKAY-weighted mean, ms)")] = None,
    max_memory_requested_mib: Annotated[float | None, typer.Option(min=0.001, help="memory requested at most "
                                                                   "this (mean over the run, MiB)")] = None,
    max_cpu_requested: Annotated[float | None, typer.Option(min=0.001, help="CPU requested at most this (mean "
                                                            "over the run, cores)")] = None,
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
    verify_repeats: Annotated[int, typer.Option(min=1, help="run each verified candidate and each "
                                                "--better-than/--no-slower-than spec N times for real; judge "
                                                "each statistic's mean against the spec's mean plus half its "
                                                "range (N x the verification time)")] = 1,
    backend: Annotated[str, typer.Option(help="where verification runs: local or kubernetes")] = "local",
    time_scale: Annotated[float, time_scale_option("compress the verification runs (the search always "
                                                   "simulates the full profile)")] = 1.0,
    space: Annotated[Path | None, typer.Option(help="search space YAML [default: the bundled one]")] = None,
    calibration: Annotated[list[Path] | None, typer.Option(help="a model's calibration.json (repeat for each "
                                                           "model) [default: the packaged model's]")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="spec to compare against (repeatable) "
                                                       "[default: default]")] = None,
    no_slower_than: Annotated[list[str] | None, typer.Option(help="a spec (repeatable) whose response time "
                                                             "bounds the candidates': its simulated one in the "
                                                             "search, its measured one (run for real first) in "
                                                             "the verification")] = None,
    better_than: Annotated[list[str] | None, typer.Option(help="a spec (repeatable) the candidates must be no "
                                                          "worse than on memory requested, CPU requested and "
                                                          "response time: its simulated statistics in the "
                                                          "search, its measured ones (run for real first) in "
                                                          "the verification")] = None,
    headroom: Annotated[float, typer.Option(min=0, max=0.5, help="in the search, the bounds taken from "
                                            "--better-than and --no-slower-than specs are this fraction below "
                                            "their simulated figures, so a candidate keeps an edge over the "
                                            "spread between real runs; the verification uses the measured "
                                            "figures as they are")] = 0.0,
    budget: Annotated[int, typer.Option(min=1, help="candidates to simulate")] = 2000,
    population: Annotated[int, typer.Option(min=4, help="candidates per generation")] = 64,
    seed: Annotated[int, typer.Option(help="seed of the search and the simulations")] = 0,
    jobs: Annotated[int | None, typer.Option(min=1, help="simulation processes [default: every core]")] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Search the space by simulation (NSGA-II), keep the Pareto front, verify the best K with `servetune
    run`, and write frontier.csv/json, candidates.csv, recommended.yaml and report.html into --out."""
    if ctx.invoked_subcommand is not None:
        return
    from servetune.deploy.capacity import CapacityError, parse_capacity
    from servetune.tune.constraints import Constraints
    from servetune.tune.pipeline import TuneOptions
    from servetune.tune.verify import RealRun

    if out is None:
        raise OptionError("--out is required (the tune folder to create, e.g. tunes/NAME)")
    backend = choice(backend, [BackendName.LOCAL, BackendName.KUBERNETES], "--backend")
    try:
        cluster = parse_capacity(capacity) if capacity else None
    except CapacityError as error:
        raise OptionError(f"--capacity: {error}") from None
    options = TuneOptions(
        out=out, profile=profile, space=space, calibrations=calibration or [],
        constraints=Constraints(max_response_ms=max_response_ms, max_failure_rate=max_failure_rate,
                                min_accuracy=min_accuracy, max_limit_ratio=max_limit_ratio,
                                memory_margin=memory_margin, capacity=cluster,
                                max_memory_requested_mib=max_memory_requested_mib,
                                max_cpu_requested=max_cpu_requested),
        budget=budget, population=population, seed=seed, jobs=jobs, verify=verify,
        real=RealRun(backend, profile, time_scale, kubeconfig, context, repeats=verify_repeats),
        baselines=baseline or ["default"],
        no_slower_than=no_slower_than or [], better_than=better_than or [], headroom=headroom,
    )
    show_result(run_with_progress(options))  # an empty front (EmptyFrontier) exits 1, bad input 2


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

    from servetune.tune.constraints import BOUNDED, RESPONSE_TIME

    table = Table("spec", "mem req MiB", "CPU req", "resp. ms", "failures", "replicas mean/max",
                  title="recommended against the baselines (simulated, full profile)")
    for name, s in [("recommended", result.recommended.statistics), *result.baselines.items()]:
        response = "n/a" if s.response_time_s is None else f"{s.response_time_s * 1000:.1f}"
        table.add_row(name, f"{s.memory_requested_KB / 1024:,.0f}", f"{s.cpu_requested_core:.3f}", response,
                      f"{s.failure_rate:.2%}", f"{s.mean_replicas:.2f} / {s.max_replicas}")
    Console(width=120).print(table)
    for item in [*result.baseline_runs, *result.verifications]:
        typer.echo(f"verify {item.label}: {item.verdict()}{measured_text(item.measured)}")
    accuracy = result.recommended.accuracy
    accuracy_text = "not measured (cannot be ranked on accuracy)" if accuracy is None else f"{accuracy:.2%}"
    typer.echo(f"recommended: {result.recommended.candidate.label()} (accuracy {accuracy_text}) -> "
               f"{result.out / 'recommended.yaml'}")
    size = len(result.front)
    typer.echo(f"front: {size} candidate{'s' if size != 1 else ''} of {len(result.evaluations):,} evaluated "
               f"in {result.seconds:.1f} s -> {result.out / 'frontier.csv'}")
    verified = bool(result.verifications or result.baseline_runs)
    for statistic in BOUNDED:
        search, verification = result.constraints, result.verified_against
        if statistic is RESPONSE_TIME or search.bound(statistic) is not None:
            text = f"{statistic.name} bound: {search.bound_text(statistic)}"
            if verified and verification.bound_text(statistic) != search.bound_text(statistic):
                text += f"; in the verification: {verification.bound_text(statistic)}"
            typer.echo(text)
    typer.echo(f"report: {result.report}")


def measured_text(measured) -> str:
    """': measured 224 MiB, 0.933 CPU, 39.5 ms, failures 0.00%', over several runs each figure's mean with
    its min-max range."""
    from servetune.tune.repeats import spread

    if not measured:
        return ""

    def figure(read, fmt: str) -> str:
        return spread([read(s) for s in measured]).text(fmt)

    runs = f" (mean (min-max) of {len(measured)} runs)" if len(measured) > 1 else ""
    return (f": measured{runs} {figure(lambda s: s.memory_requested_KB / 1024, ',.0f')} MiB, "
            f"{figure(lambda s: s.cpu_requested_core, '.3f')} CPU, "
            f"{figure(lambda s: (s.response_time_s or 0) * 1000, '.1f')} ms, "
            f"failures {figure(lambda s: s.failure_rate, '.2%')}")


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
    from servetune.model.artifact import default_model_path, existing_model_path, read_spec
    from servetune.tune.calibration import default_calibration, load_calibration, save_calibration

    if from_run is not None:
        from servetune.tune.from_run import calibration_from_run

        base = load_calibration(calibration) if calibration else default_calibration()
        result = calibration_from_run(from_run, base)
        path = save_calibration(result, out / f"{result.model}-{from_run.resolve().name}")
        typer.echo(f"{path}: {result.model}, {result.cpu_ms_quantiles and _cpu_text(result)}, "
                   f"memory {result.rss_loaded_bytes / 2**20:.0f} MiB per worker (from {from_run})")
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from servetune.tune.measure import CPU_LIMITS, TARGETS, calibrate_model

    models = model or [default_model_path()]
    for path in models:
        read_spec(existing_model_path(path))  # a clear error before anything is measured
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
