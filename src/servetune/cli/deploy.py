"""`servetune deploy ...`: render a spec's Kubernetes objects, apply, inspect and delete them on a cluster, or
run the spec on this machine (the one-machine cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servetune.cli.errors import CommandFailed, OptionError
from servetune.cli.options import Context, Kubeconfig, Spec, time_scale_option

deploy_app = typer.Typer(help="Import, render, apply, inspect and delete deployments.", no_args_is_help=True,
                         rich_markup_mode=None)


def read_deployment_spec(path: str, model: str | None = None):
    """The spec; for a Kubernetes manifest, what could not be carried over is printed as notes."""
    from servetune.deploy.spec import read_deployment

    spec, notes = read_deployment(path, model)
    for note in notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    return spec


@deploy_app.command("import")
def deploy_import(
    source: Annotated[Path, typer.Argument(help="Kubernetes manifest: Deployment [+ Service] [+ HPA]")],
    out: Annotated[Path, typer.Option(help="the deployment spec to write (YAML)")],
    model: Annotated[str | None, typer.Option(help="model artifact (.onnx) [default: the packaged model]")] = None,
) -> None:
    """Translate a Kubernetes manifest (e.g. the course's deployment.yaml) into a deployment spec, keeping
    its numbers; prints what could not be carried over."""
    from servetune.deploy.spec import spec_yaml

    if not source.is_file():
        raise OptionError(f"{source}: no such manifest file")
    spec = read_deployment_spec(str(source), model)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(spec_yaml(spec), encoding="utf-8")
    except OSError as err:
        raise OptionError(f"{out}: cannot write: {err.strerror or err}") from None
    hpa = spec.autoscaling
    scaling = (f"autoscaled {hpa.min_replicas}-{hpa.max_replicas} at {hpa.target_cpu_utilization}% CPU"
               if hpa else f"{spec.replicas} replicas")
    limits = f", limits {spec.limits.cpu:g} CPU / {spec.limits.memory_mb} MiB" if spec.limits else ""
    typer.echo(f"wrote {out}: {spec.name}, {scaling}, requests {spec.requests.cpu:g} CPU / "
               f"{spec.requests.memory_mb} MiB{limits}, {spec.service_type} port {spec.node_port}")


@deploy_app.command("render")
def deploy_render(
    spec_path: Spec,
    out: Annotated[str | None, typer.Option(help="a .yaml file, or a folder/ for NAME.yaml [default: stdout]")] = None,
    warmup: Annotated[bool, typer.Option("--warmup", help="render the 5-replica warm-up Deployment instead")] = False,
) -> None:
    """Write the Kubernetes objects of a deployment spec as YAML (for kubectl apply -f)."""
    from servetune.deploy.manifests import render_manifests, render_warmup, to_yaml, warmup_name

    spec = read_deployment_spec(spec_path)
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
        raise OptionError(f"{path}: cannot write: {err.strerror or err}") from None
    typer.echo(f"wrote {path}")


@deploy_app.command("apply")
def deploy_apply(
    spec_path: Spec,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait until every replica is ready")] = 300,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until every replica is ready")] = True,
    cleanup_on_failure: Annotated[bool, typer.Option("--cleanup-on-failure", help="when the apply or the wait "
                                                     "fails, delete the spec's objects again")] = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Create or update the Deployment, Service and HPA on a cluster, then wait until ready."""
    from servetune.deploy.kubernetes import KubernetesCluster, KubernetesError

    spec = read_deployment_spec(spec_path)
    cluster = KubernetesCluster(kubeconfig, context)
    if spec.autoscaling is not None and (warning := cluster.metrics_api_warning()):
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    try:
        for action in cluster.apply(spec):
            typer.echo(action)
        if wait:
            status = cluster.wait_ready(spec, timeout)
            typer.echo(f"deployment/{spec.name}: {status.ready}/{status.desired} replicas ready")
    except KubernetesError as error:
        if not cluster.applied:  # refused at the dry run: nothing changed
            raise
        if cleanup_on_failure:
            try:
                deleted = cluster.delete(spec, timeout)
            except KubernetesError as cleanup_error:
                raise CommandFailed(f"{error}; --cleanup-on-failure failed: {cleanup_error}") from None
            raise CommandFailed(f"{error}; --cleanup-on-failure: {', '.join(deleted) or 'nothing left to delete'}"
                                ) from None
        options = "".join(f" --{name} {value}" for name, value in (("kubeconfig", kubeconfig), ("context", context))
                          if value is not None)
        raise CommandFailed(
            f"{error}\n{', '.join(cluster.applied)} stay on the cluster in namespace {spec.namespace}; delete them "
            f"with: servetune deploy delete {spec_path}{options} (or apply with --cleanup-on-failure)") from None


@deploy_app.command("status")
def deploy_status(spec_path: Spec, kubeconfig: Kubeconfig = None, context: Context = None) -> None:
    """Show the rollout, the autoscaler and each pod of a deployment on a cluster."""
    from rich.console import Console

    from servetune.deploy.kubernetes import KubernetesCluster, status_report

    spec = read_deployment_spec(spec_path)
    report = status_report(KubernetesCluster(kubeconfig, context).status(spec))
    console = Console(width=160)
    for part in report:
        console.print(part, highlight=False, markup=False)


@deploy_app.command("delete")
def deploy_delete(
    spec_path: Spec,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait until the pods are gone")] = 300,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Delete the HPA, Service and Deployment of a spec and wait until their pods are gone."""
    from servetune.deploy.kubernetes import KubernetesCluster

    spec = read_deployment_spec(spec_path)
    actions = KubernetesCluster(kubeconfig, context).delete(spec, timeout)
    for action in actions or [f"nothing to delete for {spec.name} in namespace {spec.namespace}"]:
        typer.echo(action)


@deploy_app.command("local")
def deploy_local(
    spec_path: Spec,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port on 127.0.0.1 (0: any free one)")] = 5000,
    workdir: Annotated[Path, typer.Option(help="state.json, gunicorn.log, ready/")] = Path("local-cluster"),
    time_scale: Annotated[float, time_scale_option("multiply the autoscaler's time constants (0.1: 1.5 s "
                                                   "sync)")] = 1.0,
    model: Annotated[Path | None, typer.Option(help="model artifact [default: the spec's model]")] = None,
) -> None:
    """Run a deployment on this machine until Ctrl-C: gunicorn workers as replicas, scaled by the HPA rule."""
    import time

    from servetune.backend.local import LocalBackend
    from servetune.deploy.spec import spec_model_path

    spec = read_deployment_spec(spec_path)
    backend = LocalBackend(spec, model or spec_model_path(spec.model), workdir, port=port, time_scale=time_scale,
                           on_event=typer.echo)
    try:
        backend.warm_up()
        backend.apply()
        try:
            backend.wait_ready()
            typer.echo(f"serving on {backend.url} ({spec.replicas} replicas ready); "
                       f"state: {backend.state_path}; Ctrl-C stops")
            while backend.failure() is None:  # until Ctrl-C or SIGTERM (cli/__init__.py)
                time.sleep(0.5)
        finally:
            backend.tear_down()
    except KeyboardInterrupt:
        typer.echo("stopped: every replica has exited", err=True)
        raise typer.Exit(130) from None
    if (failure := backend.failure()) is not None:
        raise CommandFailed(failure)
