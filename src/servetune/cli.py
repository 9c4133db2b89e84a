"""The `servetune` command line: one Typer app; each command is a thin call into a stage.

Commands print clear one-line errors and exit non-zero on bad input; they never show a traceback for a
user's mistake (see `fail`).
"""

from __future__ import annotations

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
    from servetune.serve.cpu_quota import inference_threads
    from servetune.serve.launch import serve_gunicorn, serve_uvicorn

    model_path = model or default_model_path()
    if not model_path.is_file():
        hint = "" if model else " (the packaged default model is missing: pass --model PATH)"
        fail(f"{model_path}: no such model file{hint}")
    try:
        read_spec(model_path)
    except ArtifactError as err:
        fail(str(err))
    if sample_image is not None and not sample_image.is_file():
        fail(f"{sample_image}: no such sample image")
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


# --- data --------------------------------------------------------------------------------------------


# --- load test, monitor, analyze, report, compare ----------------------------------------------------


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
    from servetune.deploy.kubernetes import KubernetesError

    spec = deployment_spec_or_fail(spec_path)
    cluster = kubernetes_cluster_or_fail(kubeconfig, context)
    try:
        if spec.autoscaling is not None and (warning := cluster.metrics_api_warning()):
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
        for action in cluster.apply(spec):
            typer.echo(action)
        if wait:
            status = cluster.wait_ready(spec, timeout)
            typer.echo(f"deployment/{spec.name}: {status.ready}/{status.desired} replicas ready")
    except KubernetesError as err:
        fail(str(err), code=1)


@deploy_app.command("status")
def deploy_status(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="deployment spec YAML, or a bundled one"),
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
) -> None:
    """Show the rollout, the autoscaler and each pod of a deployment on a cluster."""
    from rich.console import Console

    from servetune.deploy.kubernetes import KubernetesError, status_table

    spec = deployment_spec_or_fail(spec_path)
    cluster = kubernetes_cluster_or_fail(kubeconfig, context)
    try:
        Console(width=160).print(status_table(cluster.status(spec)))
    except KubernetesError as err:
        fail(str(err), code=1)


@deploy_app.command("delete")
def deploy_delete(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="deployment spec YAML, or a bundled one"),
    timeout: float = typer.Option(300, "--timeout", min=1, help="seconds to wait until the pods are gone"),
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
) -> None:
    """Delete the HPA, Service and Deployment of a spec and wait until their pods are gone."""
    from servetune.deploy.kubernetes import KubernetesError

    spec = deployment_spec_or_fail(spec_path)
    cluster = kubernetes_cluster_or_fail(kubeconfig, context)
    try:
        actions = cluster.delete(spec, timeout)
    except KubernetesError as err:
        fail(str(err), code=1)
    for action in actions or [f"nothing to delete for {spec.name} in namespace {spec.namespace}"]:
        typer.echo(action)


# --- run and demo ------------------------------------------------------------------------------------
