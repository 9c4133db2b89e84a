"""`servetune loadtest` and `servetune monitor`: the two measuring stages on their own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servetune.backend.protocol import BackendName
from servetune.cli.errors import OptionError
from servetune.cli.options import choice, time_scale_option
from servetune.load.runner import TARGETS, LoadDriver


def loadtest(
    url: Annotated[str, typer.Argument(help="base URL of the service, e.g. http://127.0.0.1:5000")],
    profile: Annotated[str, typer.Option(help="reference, quick, or a profile YAML file")] = "reference",
    time_scale: Annotated[float, time_scale_option("multiply every run's duration (0.1: ten times shorter; users, "
                                                   "delays stay)")] = 1.0,
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
    from servetune.load.driver import LoadOptions
    from servetune.load.profile import load_profile
    from servetune.load.runner import aim_at, check_driver, run_with_driver

    chosen_driver = choice(driver, list(LoadDriver), "--driver")
    options = LoadOptions(mode=choice(mode, ["closed", "open"], "--mode"), keep_alive=keep_alive,  # type: ignore[arg-type]
                          images=images, seed=seed)
    check_driver(chosen_driver, options)
    chosen = load_profile(profile, time_scale)
    if target is not None:
        chosen = aim_at(chosen, choice(target, list(TARGETS), "--target"))
    typer.echo(
        f"load test {url}: profile {chosen.name}, {len(chosen.runs())} runs, "
        f"{chosen.total_seconds() / 60:.1f} min, driver {chosen_driver}, {mode} loop -> {out}",
        err=True,
    )
    rows = run_with_driver(chosen_driver, chosen, url, out, options)
    okay = sum(row.okay for row in rows)
    failed = sum(row.failed for row in rows)
    typer.echo(f"{len(rows)} runs, {okay} OKAY, {failed} failed: {out / 'load_output.csv'}")


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
    chosen = choice(backend, [BackendName.KUBERNETES, BackendName.LOCAL], "--backend")
    if chosen == BackendName.LOCAL and state is None:
        raise OptionError("--backend local needs --state, the one-machine cluster's state JSON file")

    def show(sample) -> None:
        typer.echo(f"{sample.time}  replicas {sample.n_replica}  CPU {sample.cpu_use_core:.3f}/"
                   f"{sample.cpu_req_core:.3f} cores  memory {sample.mem_use_KB / 1024:.0f}/"
                   f"{sample.mem_req_KB / 1024:.0f} MiB (used/requested)", err=True)

    try:
        if chosen == BackendName.KUBERNETES:
            from servetune.deploy.kubernetes_client import KubernetesError
            from servetune.monitor.kubernetes import monitor_kubernetes

            try:
                rows = monitor_kubernetes(out, namespace=namespace, selector=selector, interval_s=interval,
                                          duration_s=duration, usage_all_pods=usage_all_pods,
                                          kubeconfig=kubeconfig, context=context, on_sample=show)
            except KubernetesError as err:  # a monitor can only be pointed elsewhere: bad input, exit 2
                raise OptionError(str(err)) from None
        else:
            from servetune.monitor.local import monitor_local

            try:
                rows = monitor_local(state, out, interval_s=interval, duration_s=duration, on_sample=show)
            except (OSError, ValueError) as err:
                raise OptionError(str(err)) from None
    except KeyboardInterrupt:
        typer.echo(f"stopped; the rows measured so far are in {out}", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"{rows} samples: {out}")
