"""The `servetune` command line: one Typer app; each command is a thin call into a stage.

Commands print clear one-line errors and exit non-zero on bad input; they never show a traceback for a
user's mistake (see `fail`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

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


@app.command()
def serve(
    model: Annotated[Path | None, typer.Option(help="model artifact (.onnx) [default: the packaged model]")] = None,
    port: Annotated[int, typer.Option(min=0, max=65535)] = 5000,
    host: Annotated[str, typer.Option(help="address to listen on")] = "0.0.0.0",
    workers: Annotated[int, typer.Option(min=1, max=64, help="server processes (>1: gunicorn)")] = 1,
    threads: Annotated[
        int | None, typer.Option(min=1, max=256, help="inference threads per process [default: CPU quota]")
    ] = None,
    sample_image: Annotated[
        Path | None, typer.Option(help="image for GET /test [default: a generated 1280x1280 JPEG]")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="largest accepted upload in MB")] = 10.0,
    backlog: Annotated[int, typer.Option(min=0, help="images that may wait for inference before a 503")] = 64,
    ready_dir: Annotated[
        Path | None, typer.Option(help="write READY_DIR/<pid> once each process is ready")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Serve the model over HTTP (the API in ARCHITECTURE.md)."""
    from servetune.config import ServerSettings
    from servetune.model.artifact import ArtifactError, default_model_path, read_spec
    from servetune.model.preprocess import ImageError, decode_image
    from servetune.serve.cpu_quota import inference_threads
    from servetune.serve.launch import serve_gunicorn, serve_uvicorn

    model_path = model or default_model_path()
    if not model_path.is_file():
        hint = "" if model else " (the packaged default model is missing: pass --model PATH)"
        fail(f"{model_path}: no such model file{hint}")
    try:
        spec = read_spec(model_path)
    except ArtifactError as err:
        fail(str(err))
    if sample_image is not None:
        if not sample_image.is_file():
            fail(f"{sample_image}: no such sample image")
        try:
            decode_image(sample_image.read_bytes(), spec)
        except ImageError as err:
            fail(f"{sample_image}: unusable sample image: {err}")
    if threads is None and workers > 1:
        threads = max(1, inference_threads() // workers)  # the workers share the CPUs
    settings = ServerSettings(
        model_path=str(model_path.resolve()),
        sample_image=str(sample_image.resolve()) if sample_image else None,
        threads=threads,
        ready_dir=str(ready_dir) if ready_dir else None,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        backlog=backlog,
    )
    if workers == 1:
        serve_uvicorn(settings, host, port, access_log)
    else:
        serve_gunicorn(settings, host, port, workers, access_log)


# --- model -------------------------------------------------------------------------------------------


@model_app.command("import")
def model_import(
    source: Annotated[Path, typer.Argument(help="the Keras model file (.keras, or legacy .h5)")],
    out: Annotated[Path | None, typer.Option(help="artifact path [default: SOURCE with .onnx]")] = None,
    name: Annotated[str | None, typer.Option(help="model name [default: the file's stem]")] = None,
    classes: Annotated[
        str | None,
        typer.Option(help="class names in output order: comma-separated, or a text file, one per line"),
    ] = None,
    input_size: Annotated[
        int | None,
        typer.Option(min=16, help="input side for models whose input size is not fixed [default: 224]"),
    ] = None,
    int8_data: Annotated[
        Path | None, typer.Option(help="also write the INT8 twin (-int8.onnx), calibrated on DATA/training")
    ] = None,
) -> None:
    """Convert a Keras image classifier (input HxWx3, pixels x/255, softmax) into a servetune artifact."""
    from servetune.model.keras_import import KerasImportError, import_keras_model

    class_names = None
    if classes is not None:
        text = Path(classes).read_text() if Path(classes).is_file() else classes.replace(",", "\n")
        class_names = [line.strip() for line in text.splitlines() if line.strip()]
        if len(class_names) < 2:
            fail(f"--classes {classes!r}: give at least two class names")
    try:
        path, spec = import_keras_model(source, out, name, class_names, input_size)
    except KerasImportError as err:
        fail(str(err))
    typer.echo(
        f"wrote {path}: {spec.layout} {spec.input_size}x{spec.input_size}, {len(spec.class_names)} classes, "
        f"output {spec.output}, backbone {spec.backbone}, {path.stat().st_size / 1e6:.1f} MB"
    )
    if int8_data is not None:
        from servetune.model.artifact import ArtifactError
        from servetune.model.data import DataError
        from servetune.model.export import int8_path
        from servetune.model.quantize import calibration_images, quantize_int8

        try:
            quantized = quantize_int8(path, int8_path(path), calibration_images(int8_data, spec))
        except (DataError, ArtifactError) as err:
            fail(str(err))
        typer.echo(f"wrote {quantized}: INT8, {quantized.stat().st_size / 1e6:.1f} MB")


@model_app.command("train")
def model_train(
    data: Annotated[Path, typer.Option(help="Food-11 folder with training/ and validation/ (any layout)")],
    out: Annotated[Path, typer.Option(help="folder for checkpoint.pt, model.pt and train_summary.json")],
    backbone: Annotated[str, typer.Option(help="lite0, lite1 or lite2")] = "lite0",
    input_size: Annotated[int, typer.Option(min=32, max=512, help="network input side in pixels")] = 160,
    views: Annotated[int, typer.Option(min=1, help="augmented copies of each training image")] = 3,
    augment_every_epoch: Annotated[
        bool, typer.Option(help="stage 2 makes a fresh augmented view of each image every epoch (slower, less overfitting)")
    ] = False,
    finetune_blocks: Annotated[int, typer.Option(min=1, help="top blocks fine-tuned in stage 2")] = 3,
    head_epochs: Annotated[int, typer.Option(min=1)] = 30,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="0: train the head only")] = 6,
    patience: Annotated[int, typer.Option(min=1, help="epochs without validation gain before stopping")] = 3,
    head_lr: Annotated[float, typer.Option(min=1e-6, max=1.0, help="stage 1 learning rate (AdamW, cosine)")] = 2e-3,
    finetune_lr: Annotated[float, typer.Option(min=1e-6, max=1.0, help="stage 2 learning rate (AdamW, cosine)")] = 3e-4,
    mixup: Annotated[float, typer.Option(min=0.0, max=10.0, help="stage 2 mixup alpha (0: off; 0.2-0.4 typical)")] = 0.0,
    per_class: Annotated[int | None, typer.Option(min=1, help="use only N images per class")] = None,
    seed: int = 0,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads [default: all cores]")] = None,
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoint.pt")] = False,
    data_description: Annotated[str, typer.Option(help="what the data is, stored in the model card")] = "",
) -> None:
    """Fine-tune EfficientNet-Lite on Food-11 (head on cached features, then the top blocks)."""
    from servetune.model.data import DataError
    from servetune.model.train import TrainConfig, TrainError, train

    config = TrainConfig(
        data=data, out=out, backbone=backbone, input_size=input_size, views=views, augment_every_epoch=augment_every_epoch,
        finetune_blocks=finetune_blocks,
        head_epochs=head_epochs, finetune_epochs=finetune_epochs, patience=patience, head_lr=head_lr,
        finetune_lr=finetune_lr, mixup=mixup, per_class=per_class,
        seed=seed, threads=threads, resume=resume, data_description=data_description,
    )
    try:
        path = train(config)
    except (DataError, TrainError) as err:
        fail(str(err))
    typer.echo(f"wrote {path} (next: servetune model export {path} --data {data})")


@model_app.command("export")
def model_export(
    trained: Annotated[Path, typer.Argument(help="model.pt written by `servetune model train`")],
    out: Annotated[Path, typer.Option(help="fp32 artifact path (.onnx); the INT8 twin gets -int8.onnx")],
    data: Annotated[Path | None, typer.Option(help="Food-11 folder: calibration (training) and evaluation")] = None,
    int8: Annotated[bool, typer.Option(help="also write the INT8 (QDQ, per-channel) artifact")] = True,
    calibration_images: Annotated[int, typer.Option(min=1)] = 256,
    per_class: Annotated[int | None, typer.Option(min=1, help="evaluate on N images per class only")] = None,
) -> None:
    """Export to ONNX (fp32, opset 17) and INT8; with --data, measure both on the evaluation split."""
    from servetune.model.artifact import ArtifactError
    from servetune.model.data import DataError
    from servetune.model.export import ExportError, export_and_quantize
    from servetune.model.train import TrainError

    if int8 and data is None:
        fail("INT8 calibration needs training images: pass --data FOLDER (or --no-int8)")
    try:
        results = export_and_quantize(trained, out, data, int8, calibration_images, per_class)
    except (DataError, TrainError, ArtifactError, ExportError) as err:
        fail(str(err))
    for path, accuracy in results.items():
        measured = f", evaluation accuracy {accuracy:.2%}" if accuracy is not None else ""
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB{measured})")
    if len(results) == 2 and None not in results.values():
        fp32, quantized = results.values()
        typer.echo(f"INT8 vs fp32: {100 * (quantized - fp32):+.2f} pp")


@model_app.command("eval")
def model_eval(
    model: Annotated[Path | None, typer.Argument(help="artifact (.onnx) [default: the packaged model]")] = None,
    data: Annotated[Path, typer.Option(help="Food-11 folder (any layout)")] = Path("Food-11"),
    split: Annotated[str, typer.Option(help="training, validation or evaluation")] = "evaluation",
    per_class: Annotated[int | None, typer.Option(min=1, help="only the first N images of each class")] = None,
    out: Annotated[Path | None, typer.Option(help="write metrics.json, confusion.csv, confusion.png here")] = None,
    via_http: Annotated[str | None, typer.Option(help="evaluate through a running server's POST /predict")] = None,
    threads: Annotated[int | None, typer.Option(min=1)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print a machine-readable summary")] = False,
) -> None:
    """Accuracy, top-3, per-class accuracy, confusion matrix and calibration error on one split."""
    import json

    from rich.progress import Progress

    from servetune.model.artifact import ArtifactError, default_model_path
    from servetune.model.data import DataError
    from servetune.model.evaluate import EvaluationError, evaluate, write_outputs

    model_path = None if via_http else (model or default_model_path())
    if model_path is not None and not model_path.is_file():
        fail(f"{model_path}: no such model file")
    try:
        with Progress(transient=True, disable=json_output) as progress:
            result = evaluate(model_path, data, split, per_class, via_http, threads, progress)
    except (DataError, ArtifactError, EvaluationError) as err:
        fail(str(err))
    if out is not None:
        write_outputs(result, out)
    if json_output:
        summary = result.summary()
        summary.pop("skipped")
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{result.model} on {split}: {result.count} images, accuracy {result.accuracy:.2%}, "
               f"top-3 {result.top3_accuracy:.2%}, calibration error {result.calibration_error:.3f}")
    for name, accuracy in result.per_class_accuracy.items():
        typer.echo(f"  {name:<16} {accuracy:.2%}")
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} unreadable images, e.g. {result.skipped[0][0]}: {result.skipped[0][1]}")


@model_app.command("profile")
def model_profile(
    data: Annotated[Path, typer.Option(help="Food-11 folder: quick training and the accuracy column")],
    out: Annotated[Path, typer.Option(help="folder for variants.csv, variants.json and the models")],
    backbones: Annotated[str, typer.Option(help="comma-separated: lite0,lite1,lite2")] = "lite0",
    sizes: Annotated[str, typer.Option(help="comma-separated input sides")] = "128,160",
    precisions: Annotated[str, typer.Option(help="fp32,int8")] = "fp32,int8",
    artifact: Annotated[list[Path] | None, typer.Option(help="also profile this artifact as it is (repeatable)")] = None,
    train_per_class: Annotated[int, typer.Option(min=1, help="images per class for the quick variants")] = 200,
    eval_per_class: Annotated[int, typer.Option(min=1, help="evaluation images per class (speed)")] = 40,
    runs: Annotated[int, typer.Option(min=5, help="timed inferences per thread count")] = 40,
) -> None:
    """Variant table: backbone x input size x precision -> accuracy, size, latency (1 and 2 threads), RSS."""
    from servetune.model.artifact import ArtifactError
    from servetune.model.data import DataError
    from servetune.model.profile import ProfileError, profile_variants

    def split_list(text: str) -> list[str]:
        return [item.strip() for item in text.split(",") if item.strip()]

    try:
        rows = profile_variants(
            data, out, split_list(backbones), [int(s) for s in split_list(sizes)], split_list(precisions),
            list(artifact or []), train_per_class, eval_per_class, runs,
        )
    except ValueError as err:
        fail(f"--sizes {sizes!r}: {err}")
    except (DataError, ArtifactError, ProfileError) as err:
        fail(str(err))
    typer.echo(f"wrote {out / 'variants.csv'} and {out / 'variants.json'} ({len(rows)} variants)")


# --- data --------------------------------------------------------------------------------------------


@data_app.command("download")
def data_download(
    dest: Annotated[Path, typer.Option(help="folder to unpack into")] = Path("Food-11"),
    url: Annotated[str | None, typer.Option(help="where the Food-11 zip is [default: the public copy]")] = None,
    sha256: Annotated[str | None, typer.Option(help="expected SHA-256 of the zip (64 hex digits)")] = None,
    keep_zip: Annotated[bool, typer.Option(help="keep the zip next to the unpacked folders")] = False,
) -> None:
    """Download Food-11 (resumes a partial download), verify it, unpack it and show what it holds."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from servetune.model.download import FOOD11_URL, DownloadError, download_food11

    url = url or FOOD11_URL
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("Food-11.zip", total=None)
        try:
            result = download_food11(
                dest, url, sha256, keep_zip, lambda done, total: progress.update(task, completed=done, total=total)
            )
        except DownloadError as err:
            progress.stop()
            fail(str(err))
    typer.echo(f"downloaded {url}\nSHA-256 {result.sha256}" + ("" if sha256 else " (pass --sha256 to pin it)"))
    if result.data_root is None:
        fail(f"{dest}: unpacked {len(result.created)} entries but found no training/ validation/ evaluation/ folder")
    typer.echo(f"Food-11 data in {result.data_root}:")
    for line in result.splits:
        typer.echo(f"  {line}")


# --- load test, monitor, analyze, report, compare ----------------------------------------------------


@app.command()
def loadtest(
    url: Annotated[str, typer.Argument(help="base URL of the service, e.g. http://127.0.0.1:5000")],
    profile: Annotated[str, typer.Option(help="reference, quick, or a profile YAML file")] = "reference",
    time_scale: Annotated[
        float,
        typer.Option(min=0.0001, help="multiply every run's duration (0.1: ten times shorter; users, delays stay)"),
    ] = 1.0,
    driver: Annotated[str, typer.Option(help="builtin (asyncio, siege semantics) or siege (the binary)")] = "builtin",
    mode: Annotated[str, typer.Option(help="closed (siege's users) or open (Poisson arrivals)")] = "closed",
    out: Annotated[Path, typer.Option(help="folder for load_output.csv and requests.csv")] = Path("loadtest-out"),
    keep_alive: Annotated[bool, typer.Option(help="reuse connections (siege's default: close)")] = False,
    target: Annotated[str | None, typer.Option(help="test (GET /test) or predict (POST /predict)")] = None,
    images: Annotated[Path | None, typer.Option(help="image folder for --target predict")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed for think times and arrivals")] = None,
) -> None:
    """Load-test a service with a profile; writes siege's --log rows and a per-request log. Ctrl-C stops
    cleanly and keeps what was measured."""
    from servetune.load.driver import LoadOptions, run_load_test
    from servetune.load.profile import ProfileError, load_profile
    from servetune.load.siege import SiegeRunError, run_siege
    from servetune.load.target import TargetError

    if driver not in ("builtin", "siege"):
        fail(f"--driver must be builtin or siege, not {driver!r}")
    if mode not in ("closed", "open"):
        fail(f"--mode must be closed or open, not {mode!r}")
    if driver == "siege" and mode == "open":
        fail("--mode open needs --driver builtin (siege has closed-loop users only)")
    targets = {"test": "GET /test", "predict": "POST /predict"}
    if target is not None and target not in targets:
        fail(f"--target must be test or predict, not {target!r}")
    if images is not None and not images.is_dir():
        fail(f"{images}: no such image folder")
    try:
        chosen = load_profile(profile, time_scale)
        if target is not None:
            chosen.phases = [phase.model_copy(update={"target": targets[target]}) for phase in chosen.phases]
        typer.echo(
            f"load test {url}: profile {chosen.name}, {len(chosen.runs())} runs, "
            f"{chosen.total_seconds() / 60:.1f} min, driver {driver}, {mode} loop -> {out}",
            err=True,
        )
        if driver == "siege":
            rows = run_siege(chosen, url, out, keep_alive=keep_alive)
        else:
            options = LoadOptions(mode=mode, keep_alive=keep_alive, images=images, seed=seed)  # type: ignore[arg-type]
            rows = run_load_test(chosen, url, out, options)
    except (ProfileError, TargetError, SiegeRunError) as err:
        fail(str(err))
    okay = sum(row.okay for row in rows)
    failed = sum(row.failed for row in rows)
    typer.echo(f"{len(rows)} runs, {okay} OKAY, {failed} failed: {out / 'load_output.csv'}")


@app.command()
def monitor(
    out: Annotated[Path, typer.Option(help="CSV to write (the reference monitor's columns)")] = Path(
        "resource_usage.csv"
    ),
    backend: Annotated[str, typer.Option(help="kubernetes or local (the one-machine cluster)")] = "kubernetes",
    interval: Annotated[float, typer.Option(min=0.05, help="seconds between samples")] = 5.0,
    duration: Annotated[float | None, typer.Option(min=0.0, help="seconds to run [default: until Ctrl-C]")] = None,
    namespace: Annotated[str | None, typer.Option(help="kubernetes: [default: the kubeconfig context's]")] = None,
    selector: Annotated[str | None, typer.Option(help="kubernetes: label selector, e.g. app=ml-app")] = None,
    usage_all_pods: Annotated[
        bool, typer.Option(help="kubernetes: sum usage of every pod in the namespace (the reference's behaviour)")
    ] = False,
    kubeconfig: Annotated[Path | None, typer.Option(help="kubernetes: [default: $KUBECONFIG, ~/.kube/config]")] = None,
    context: Annotated[str | None, typer.Option(help="kubernetes: kubeconfig context")] = None,
    state: Annotated[Path | None, typer.Option(help="local: the cluster's state JSON file")] = None,
) -> None:
    """Sample replicas, CPU and memory requested/limit/used every --interval seconds into a CSV."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")

    def show(sample) -> None:
        typer.echo(f"{sample.time}  replicas {sample.n_replica}  CPU {sample.cpu_use_core:.3f}/"
                   f"{sample.cpu_req_core:.3f} cores  memory {sample.mem_use_KB / 1024:.0f}/"
                   f"{sample.mem_req_KB / 1024:.0f} MiB (used/requested)", err=True)

    try:
        if backend == "kubernetes":
            from servetune.monitor.kubernetes import KubernetesMonitorError, monitor_kubernetes

            try:
                rows = monitor_kubernetes(out, namespace=namespace, selector=selector, interval_s=interval,
                                          duration_s=duration, usage_all_pods=usage_all_pods,
                                          kubeconfig=kubeconfig, context=context, on_sample=show)
            except KubernetesMonitorError as err:
                fail(str(err))
        elif backend == "local":
            rows = monitor_local_or_fail(out, state, interval, duration, show)
        else:
            fail(f"--backend must be kubernetes or local, not {backend!r}")
    except KeyboardInterrupt:
        typer.echo(f"stopped; the rows measured so far are in {out}", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"{rows} samples: {out}")


def monitor_local_or_fail(out: Path, state: Path | None, interval: float, duration: float | None, show) -> int:
    try:
        from servetune.monitor.local import monitor_local
    except ImportError:
        fail("the local backend is unavailable: this installation has no servetune.monitor.local")
    if state is None:
        fail("--backend local needs --state, the one-machine cluster's state JSON file")
    try:
        return monitor_local(state, out, interval_s=interval, duration_s=duration, on_sample=show)
    except (OSError, ValueError) as err:
        fail(str(err))


def run_summary_or_fail(run_dir: Path):
    from servetune.analyze.stats import AnalysisError, summarize

    try:
        return summarize(run_dir)
    except AnalysisError as err:
        fail(str(err))


@app.command()
def analyze(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (resource_usage.csv, load_output.csv, ...)")],
    json_output: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """The four reference statistics of a run, with CPU, replica-seconds, percentiles and phases."""
    from rich.console import Console
    from rich.table import Table

    from servetune.analyze.report import PHASE_COLUMNS, phase_rows, statistics_rows

    summary = run_summary_or_fail(run_dir)
    if json_output:
        typer.echo(summary.model_dump_json(indent=2))
        return
    statistics = Table("statistic", "value", title=f"run {summary.name}")
    for name, value in statistics_rows(summary):
        statistics.add_row(name, value)
    phases = Table(*PHASE_COLUMNS, title="phases")
    for row in phase_rows(summary.phases):
        phases.add_row(*row)
    console = Console(width=160)
    console.print(statistics, phases)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """Write report.html (self-contained), report.md, the plots and summary.json into the run folder."""
    from servetune.analyze.report import write_report
    from servetune.analyze.stats import AnalysisError

    try:
        page = write_report(run_dir)
    except AnalysisError as err:
        fail(str(err))
    typer.echo(f"report: {page} (and {page.with_suffix('.md').name}, plots, summary.json)")


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders to put side by side")],
    out: Annotated[Path, typer.Option(help="folder for comparison.md/.html/.png")] = Path("comparison"),
) -> None:
    """Runs side by side; marks the Pareto-optimal ones (accuracy, memory and CPU requested, response time)."""
    from rich.console import Console
    from rich.table import Table

    from servetune.analyze.compare import COLUMNS, comparison_rows, write_comparison
    from servetune.analyze.stats import AnalysisError

    try:
        summaries, optimal, page = write_comparison(run_dirs, out)
    except AnalysisError as err:
        fail(str(err))
    table = Table(*COLUMNS, title="runs compared (Pareto: not dominated on accuracy, resources, response time)")
    for i, row in enumerate(comparison_rows(summaries, optimal)):
        table.add_row(*row, style="bold green" if i in optimal else None)
    Console(width=200).print(table)
    typer.echo(f"comparison: {page}")


# --- deploy ------------------------------------------------------------------------------------------


KUBECONFIG_OPTION = typer.Option(None, "--kubeconfig", help="kubeconfig file [default: $KUBECONFIG, ~/.kube/config]")
CONTEXT_OPTION = typer.Option(None, "--context", help="kubeconfig context [default: its current context]")


def deployment_spec_or_fail(path: str):
    from servetune.deploy.spec import SpecError, load_deployment_spec

    try:
        return load_deployment_spec(path)
    except SpecError as err:
        fail(str(err))


def kubernetes_cluster_or_fail(kubeconfig: Path | None, context: str | None):
    from servetune.deploy.kubernetes import KubernetesCluster, KubernetesError

    try:
        return KubernetesCluster(kubeconfig, context)
    except KubernetesError as err:
        fail(str(err))


@contextmanager
def exit_on_cluster_error() -> Iterator[None]:
    """The cluster answered but refused or failed a request: one line and exit code 1."""
    from servetune.deploy.kubernetes import KubernetesError

    try:
        yield
    except KubernetesError as err:
        fail(str(err), code=1)


@deploy_app.command("render")
def deploy_render(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="deployment spec YAML, or bundled: default, fixed-1"),
    out: str | None = typer.Option(None, "--out", help="a .yaml file, or a folder/ for NAME.yaml [default: stdout]"),
    warmup: bool = typer.Option(False, "--warmup", help="render the 5-replica warm-up Deployment instead"),
) -> None:
    """Write the Kubernetes objects of a deployment spec as YAML (for kubectl apply -f)."""
    from servetune.deploy.manifests import render_manifests, render_warmup, to_yaml, warmup_name

    spec = deployment_spec_or_fail(spec_path)
    text = to_yaml(render_warmup(spec) if warmup else render_manifests(spec))
    if out is None:
        typer.echo(text, nl=False)
        return
    path = Path(out)
    if path.is_dir() or out.endswith(("/", "\\")):
        path = path / f"{warmup_name(spec) if warmup else spec.name}.yaml"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        fail(f"{path}: cannot write: {err.strerror or err}")
    typer.echo(f"wrote {path}")


@deploy_app.command("apply")
def deploy_apply(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="deployment spec YAML, or a bundled one"),
    timeout: float = typer.Option(300, "--timeout", min=1, help="seconds to wait until every replica is ready"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until every replica is ready"),
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
) -> None:
    """Create or update the Deployment, Service and HPA on a cluster, then wait until ready."""
    spec = deployment_spec_or_fail(spec_path)
    cluster = kubernetes_cluster_or_fail(kubeconfig, context)
    with exit_on_cluster_error():
        if spec.autoscaling is not None and (warning := cluster.metrics_api_warning()):
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
        for action in cluster.apply(spec):
            typer.echo(action)
        if wait:
            status = cluster.wait_ready(spec, timeout)
            typer.echo(f"deployment/{spec.name}: {status.ready}/{status.desired} replicas ready")


@deploy_app.command("status")
def deploy_status(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="deployment spec YAML, or a bundled one"),
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
) -> None:
    """Show the rollout, the autoscaler and each pod of a deployment on a cluster."""
    from rich.console import Console

    from servetune.deploy.kubernetes import status_report

    spec = deployment_spec_or_fail(spec_path)
    cluster = kubernetes_cluster_or_fail(kubeconfig, context)
    with exit_on_cluster_error():
        report = status_report(cluster.status(spec))
    console = Console(width=160)
    for part in report:
        console.print(part, highlight=False, markup=False)


@deploy_app.command("delete")
def deploy_delete(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="deployment spec YAML, or a bundled one"),
    timeout: float = typer.Option(300, "--timeout", min=1, help="seconds to wait until the pods are gone"),
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
) -> None:
    """Delete the HPA, Service and Deployment of a spec and wait until their pods are gone."""
    spec = deployment_spec_or_fail(spec_path)
    cluster = kubernetes_cluster_or_fail(kubeconfig, context)
    with exit_on_cluster_error():
        actions = cluster.delete(spec, timeout)
    for action in actions or [f"nothing to delete for {spec.name} in namespace {spec.namespace}"]:
        typer.echo(action)


@deploy_app.command("local")
def deploy_local(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="deployment spec YAML, or a bundled one"),
    port: int = typer.Option(5000, "--port", min=0, max=65535, help="port on 127.0.0.1 (0: any free one)"),
    workdir: Annotated[Path, typer.Option(help="state.json, gunicorn.log, ready/")] = Path("local-cluster"),
    time_scale: float = typer.Option(1.0, "--time-scale", min=0.01, max=1.0,
                                     help="multiply the autoscaler's time constants (0.1: 1.5 s sync)"),
    model: Annotated[Path | None, typer.Option(help="model artifact [default: the spec's model]")] = None,
) -> None:
    """Run a deployment on this machine until Ctrl-C: gunicorn workers as replicas, scaled by the HPA rule."""
    import signal
    import threading

    from servetune.deploy.local import LocalCluster, LocalClusterError
    from servetune.model.artifact import default_model_path

    spec = deployment_spec_or_fail(spec_path)
    model_path = model or (default_model_path() if spec.model == "default" else Path(spec.model))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster = LocalCluster(spec, model_path, port=port, workdir=workdir, time_scale=time_scale,
                               on_event=typer.echo)
        with cluster:
            cluster.wait_ready(300)
            typer.echo(f"serving on http://127.0.0.1:{cluster.port} ({spec.replicas} replicas ready); "
                       f"state: {cluster.state_path}; Ctrl-C stops")
            while not stop.wait(0.5):
                if cluster.error:
                    break
        if cluster.error:
            fail(cluster.error, code=1)
    except LocalClusterError as err:
        fail(str(err), code=1)
    except KeyboardInterrupt:
        typer.echo("stopped: every replica has exited", err=True)
        raise typer.Exit(130) from None


# --- run and demo ------------------------------------------------------------------------------------


def evaluate_or_fail(options) -> None:
    """Run the protocol, print the headline statistics and where the report is; exit 1 if it failed."""
    from rich.console import Console
    from rich.table import Table

    from servetune.analyze.stats import AnalysisError, summarize
    from servetune.demo import headline_rows
    from servetune.run import RunError, evaluate

    try:
        result = evaluate(options)
    except RunError as err:
        fail(str(err))
    record = result.record
    if result.report is not None:
        try:
            summary = summarize(result.run_dir)
        except AnalysisError:
            summary = None
        if summary is not None:
            table = Table("statistic", "value", title=f"run {summary.name} ({record['status']})")
            for name, value in headline_rows(summary):
                table.add_row(name, value)
            Console(width=120).print(table)
        typer.echo(f"report: {result.report}")
    typer.echo(f"run folder: {result.run_dir} (run.json: {record['status']})")
    if result.status == "failed":
        fail(f"{record['failed_step']} step failed: {record['error']}", code=1)
    if result.status == "interrupted":
        typer.secho(f"interrupted during the {record['failed_step']} step; kept what was measured", err=True)
        raise typer.Exit(130)


@app.command()
def run(
    spec: Annotated[str, typer.Option("--spec", "-c", help="deployment spec YAML, or bundled: default, fixed-1, "
                                      "demo")],
    out: Annotated[Path, typer.Option(help="run folder to create (runs/NAME)")],
    backend: Annotated[str, typer.Option(help="local (the one-machine cluster) or kubernetes")] = "local",
    profile: Annotated[str, typer.Option(help="reference, quick, or a profile YAML file")] = "reference",
    time_scale: Annotated[float, typer.Option(min=0.01, max=1.0, help="multiply the profile's run lengths, "
                                              "the monitor interval and the local autoscaler's time constants")] = 1.0,
    driver: Annotated[str, typer.Option(help="builtin or siege")] = "builtin",
    model_copy: Annotated[bool, typer.Option(help="copy the model artifact into the run folder")] = True,
    port: Annotated[int, typer.Option(min=0, max=65535, help="local: port on 127.0.0.1 (0: any free one)")] = 0,
    url: Annotated[str | None, typer.Option(help="kubernetes: the service's URL [default: a node's address "
                                            "and the NodePort]")] = None,
    ready_timeout: Annotated[float, typer.Option(min=1, help="seconds to wait until replicas are ready")] = 300,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
) -> None:
    """The evaluation protocol: warm up, apply, load test + monitor together, tear down, analyse; everything
    lands in the run folder (run.json says what happened). Ctrl-C tears down and keeps what was measured."""
    from servetune.run import RunOptions

    if backend not in ("local", "kubernetes"):
        fail(f"--backend must be local or kubernetes, not {backend!r}")
    if driver not in ("builtin", "siege"):
        fail(f"--driver must be builtin or siege, not {driver!r}")
    evaluate_or_fail(RunOptions(
        spec=spec, out=out, backend=backend, profile=profile, time_scale=time_scale,  # type: ignore[arg-type]
        driver=driver, copy_model=model_copy, port=port, kubeconfig=kubeconfig,  # type: ignore[arg-type]
        context=context, url=url, ready_timeout_s=ready_timeout,
    ))


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="run folder [default: runs/demo-DATE-TIME]")] = None,
    time_scale: Annotated[float | None, typer.Option(min=0.05, max=1.0, help="compress the quick profile "
                                                     "[default: about 4 minutes in all]")] = None,
) -> None:
    """The main job: the default model on the one-machine cluster under the quick profile; replicas scale up
    and back down; prints the four statistics, accuracy and the report's path."""
    import time

    from servetune.demo import DEMO_TIME_SCALE, demo_options

    out = out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    evaluate_or_fail(demo_options(out, time_scale or DEMO_TIME_SCALE))


from servetune.cli_tune import simulate, tune_app

app.command()(simulate), app.add_typer(tune_app, name="tune")

if __name__ == "__main__":
    app()
