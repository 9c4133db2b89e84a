"""`servetune tune` (search model + deployment by simulation, verify the best for real) and `servetune tune
calibrate`: thin calls into tune/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servetune.backend.protocol import BackendName
from servetune.cli import options as flags
from servetune.cli.errors import OptionError
from servetune.cli.options import Context, Kubeconfig, choice, comma_list, time_scale_option

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
    labelling_users: flags.LabellingUsers = 0,
    labelling_photos: flags.LabellingPhotos = None,
    labelling_think: flags.LabellingThink = 3.0,
    holdout_fraction: flags.HoldoutFraction = None,
    model: Annotated[Path | None, typer.Option(help="YOUR model (Keras .keras/.h5, plain .onnx with the flags "
                                               "below, or a servetune artifact): import it, build and measure "
                                               "its variants, calibrate them and tune them against your "
                                               "--deployment (needs --deployment and --data)")] = None,
    deployment: Annotated[Path | None, typer.Option(help="with --model: your Kubernetes manifest (Deployment "
                                                    "[+ Service] [+ HPA]); your pair is the baseline and the "
                                                    "default --better-than, and the pick is written back into "
                                                    "it")] = None,
    data: Annotated[Path | None, typer.Option(help="with --model: a Food-11 folder (accuracy on evaluation/, "
                                              "INT8 calibration on training/)")] = None,
    input_sizes: Annotated[str, typer.Option(help="with --model: input sides to try below your model's own "
                                             "(comma-separated; networks with global pooling)")] = "224,192,160,128",
    int8: Annotated[bool, typer.Option(help="with --model: also try the INT8 twin of each size")] = True,
    int8_max_loss: flags.Int8MaxLoss = 1.0,
    int8_min_agreement: flags.Int8MinAgreement = 97.0,
    max_accuracy_loss: Annotated[float, typer.Option(min=0, max=100, help="with --model: accuracy at most this "
                                                     "many percentage points below your model's")] = 1.0,
    calibration_seconds: Annotated[float | None, typer.Option(min=1, max=120, help="with --model: seconds of load "
                                                              "per CPU limit and endpoint when calibrating a "
                                                              "variant [default: 6; on a cluster: 30]")] = None,
    calibration_limits: Annotated[str, typer.Option(help="with --model: the CPU limits (cores) each variant is "
                                                    "calibrated at, comma-separated")] = "0.25,0.5,1,2",
    calibrate_on: Annotated[str | None, typer.Option(help="with --model: where the variants are calibrated: local "
                                                     "(this machine) or kubernetes (your cluster, one pod at a "
                                                     "time) [default: --backend]")] = None,
    image: Annotated[str | None, typer.Option(help="with --model and a cluster: the image holding your variants "
                                              "in /models/ (without it, OUT/variants-image/ is written to build "
                                              "it)")] = None,
    cache: Annotated[Path | None, typer.Option(help="with --model: where variants and calibrations are kept by "
                                               "sha256 (a re-run skips finished work) [default: "
                                               "$XDG_CACHE_HOME/servetune or ~/.cache/servetune]")] = None,
    train_budget: Annotated[str | None, typer.Option(help="with --model: also train servetune's backbones "
                                                     "(EfficientNet-Lite0 and Lite2 at 112 and 160 px) on "
                                                     "--data within this much training time (90s, 20m, 2h, "
                                                     "1h30m), as more variants (needs the train extra)")] = None,
    distill: Annotated[bool, typer.Option(help="with --train-budget: the trained backbones also learn from your "
                                          "model's predictions (knowledge distillation)")] = False,
    name: Annotated[str | None, typer.Option(help="with --model: model name [default: the file's stem]")] = None,
    classes: flags.Classes = None,
    mean: flags.Mean = "0,0,0",
    std: flags.Std = "1,1,1",
    layout: flags.Layout = None,
    resize_filter: flags.ResizeFilter = "bilinear",
    softmax: flags.Softmax = False,
) -> None:
    """Search the space by simulation (NSGA-II), keep the Pareto front, verify the best K with `servetune
    run`, and write frontier.csv/json, candidates.csv, recommended.yaml and report.html into --out. With
    --model, --deployment and --data: your own model and its variants through the whole loop, and your
    manifest with the chosen numbers in OUT/chosen/."""
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
        real=RealRun(backend, profile, time_scale, kubeconfig, context, repeats=verify_repeats,
                     labelling=flags.labelling_plan(labelling_users, labelling_photos, labelling_think),
                     holdout_fraction=holdout_fraction),
        baselines=baseline or ([] if model else ["default"]),
        no_slower_than=no_slower_than or [], better_than=better_than or [], headroom=headroom,
    )
    if model is None:
        from servetune.cli.tune_output import run_with_progress, show_result

        if deployment is not None or data is not None:
            raise OptionError("--deployment and --data go with --model (your model file)")
        if train_budget is not None or distill:
            raise OptionError("--train-budget and --distill go with --model (your model file)")
        show_result(run_with_progress(options))  # an empty front (EmptyFrontier) exits 1, bad input 2
        return
    from servetune.cli.model import import_settings
    from servetune.cli.tune_model import tune_own_model
    from servetune.model.variants import VariantSettings
    from servetune.tune.measure_kubernetes import Place
    from servetune.tune.own_model import OwnModel

    if deployment is None or data is None:
        raise OptionError("--model needs --deployment (your manifest) and --data (a Food-11 folder)")
    if space is not None:
        raise OptionError("--space and --model: with --model the space is made from your model's variants")
    try:
        sizes = tuple(int(size) for size in comma_list(input_sizes))
    except ValueError:
        raise OptionError(f"--input-sizes {input_sizes!r}: give whole numbers separated by commas") from None
    try:
        limits = tuple(float(limit) for limit in comma_list(calibration_limits))
    except ValueError:
        limits = ()
    if not limits or min(limits) <= 0:
        raise OptionError(f"--calibration-limits {calibration_limits!r}: give CPU limits > 0 separated by commas")
    on_cluster = choice(calibrate_on or backend, [BackendName.LOCAL, BackendName.KUBERNETES],
                        "--calibrate-on") == BackendName.KUBERNETES
    own = OwnModel(model, deployment, data, cache or default_cache(),
                   import_settings(name, classes, None, mean, std, layout, resize_filter, softmax),
                   VariantSettings(sizes, int8, int8_max_loss / 100, int8_min_agreement / 100),
                   max_accuracy_loss / 100, calibration_seconds, limits,
                   Place(kubeconfig, context, image=image or "") if on_cluster else None,
                   training_settings(train_budget, distill, data))
    tune_own_model(own, options)


def training_settings(budget: str | None, distill: bool, data: Path):
    """--train-budget and --distill, checked before any work (the train extra, DATA's training and validation
    splits), as model.trained_variants.TrainingSettings; None without a budget."""
    if budget is None:
        if distill:
            raise OptionError("--distill goes with --train-budget (the trained backbones learn from your model)")
        return None
    from servetune.model.trained_variants import (
        TrainingSettings,
        check_training_data,
        parse_budget,
        require_train_extra,
    )

    settings = TrainingSettings(parse_budget(budget), distill)
    require_train_extra()
    check_training_data(data)
    return settings


def default_cache() -> Path:
    """$XDG_CACHE_HOME/servetune, else ~/.cache/servetune."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "servetune"


@tune_app.command()
def calibrate(
    model: Annotated[list[Path] | None, typer.Option(help="model artifact(s) [default: the packaged model]")] = None,
    out: Annotated[Path, typer.Option(help="folder: <model name>/calibration.json per model (--from-run: "
                                      "<model name>-<run name>/)")] = Path("calibrations"),
    from_run: Annotated[Path | None, typer.Option(help="recalibrate from a completed run folder instead of "
                                                  "measuring")] = None,
    calibration: Annotated[Path | None, typer.Option(help="with --from-run: the calibration to update "
                                                     "[default: the packaged model's]")] = None,
    seconds: Annotated[float | None, typer.Option(min=1, max=300, help="seconds of load per CPU limit and "
                                                  "endpoint [default: 6; kubernetes: 30]")] = None,
    repeats: Annotated[int, typer.Option(min=1, max=20, help="local: loads per endpoint that measure CPU per "
                                         "request (their spread is kept)")] = 3,
    backend: Annotated[str, typer.Option(help="local (this machine's one-machine cluster) or kubernetes (one "
                                         "pod at a time on your cluster)")] = "local",
    image: Annotated[str, typer.Option(help="kubernetes: the image holding the model (make image MODEL=...)")]
    = "servetune:0.1.0",
    namespace: Annotated[str, typer.Option(help="kubernetes: where the calibration pod runs")] = "default",
    node_port: Annotated[int, typer.Option(min=30000, max=32767, help="kubernetes: the calibration Service's "
                                           "NodePort")] = 32099,
    url: Annotated[str | None, typer.Option(help="kubernetes: the calibration Service's URL [default: a node's "
                                            "address and --node-port]")] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    ready_timeout: Annotated[float, typer.Option(min=1, help="kubernetes: seconds a pod may take to be "
                                                 "ready")] = 300.0,
) -> None:
    """Measure what a replica of each model costs (service time per request at CPU limits 0.25, 0.5, 1, 2
    cores, CPU per request, memory, start-up) into calibration.json: on this machine's one-machine cluster, or
    with --backend kubernetes on your cluster (one pod at a time, deleted after); or recalibrate from a
    completed run folder."""
    from servetune.model.artifact import default_model_path, existing_model_path, read_spec
    from servetune.tune.calibration import default_calibration, load_calibration, save_calibration

    if from_run is not None:
        from servetune.tune.from_run import calibration_from_run

        base = load_calibration(calibration) if calibration else default_calibration()
        result = calibration_from_run(from_run, base)
        path = save_calibration(result, out / f"{result.model}-{from_run.resolve().name}")
        typer.echo(f"{path}: {result.model}, {result.cpu_ms_quantiles and _cpu_text(result)}, "
                   f"memory {result.rss_loaded_bytes / 2**20:.0f} MiB per worker (from {from_run}; the "
                   f"calibration it updates: {_cpu_text(base)})")
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from servetune.tune.measure import CPU_LIMITS, TARGETS, calibrate_model

    on_cluster = choice(backend, [BackendName.LOCAL, BackendName.KUBERNETES], "--backend") == BackendName.KUBERNETES
    models = model or [default_model_path()]
    for path in models:
        read_spec(existing_model_path(path))  # a clear error before anything is measured
    steps_per_model = len(CPU_LIMITS) * (1 + len(TARGETS)) + (0 if on_cluster else 1)  # + the added replica
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn()) as progress:
        task = progress.add_task("calibrate", total=steps_per_model * len(models))

        def step(text: str) -> None:
            progress.update(task, advance=1, description=text)

        if on_cluster:
            from servetune.tune.measure_kubernetes import SECONDS, Place, calibrate_on_cluster

            place = Place(kubeconfig, context, namespace, image, node_port, url, ready_timeout)

            def measure(path: Path):
                return calibrate_on_cluster(path, place, seconds=seconds or SECONDS, progress=step,
                                            on_event=progress.console.print)
        else:
            def measure(path: Path):
                return calibrate_model(path, seconds=seconds or 6.0, repeats=repeats, progress=step)

        results = []
        for path in models:
            result = measure(path)
            results.append((save_calibration(result, out / result.model), result))
    from servetune.tune.cpu_cost import spread_text

    for saved, result in results:
        typer.echo(f"{saved}: {result.model}, {_cpu_text(result)}, memory {result.rss_loaded_bytes / 2**20:.0f} "
                   f"MiB per worker, ready in {result.start_to_ready_s:.1f} s, measured on {result.machine}")
        for figure in result.cpu_per_request:
            typer.echo(f"  CPU per request: {spread_text(figure)}")
        for note in result.notes:
            typer.secho(f"warning: {saved}: {note}", err=True, fg="yellow")


def _cpu_text(calibration) -> str:
    from servetune.tune.measure import quantile_mean

    parts = [f"{target} {quantile_mean(q):.1f} ms CPU" for target, q in calibration.cpu_ms_quantiles.items()]
    return ", ".join(parts)
