"""`servetune simulate`: predict a deployment's statistics under a load profile (sim/); with --out, the short
form of `servetune run --backend simulated`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from servetune.backend.protocol import BackendName
from servetune.cli.errors import OptionError
from servetune.cli.options import choice, time_scale_option

CALIBRATION_OPTION = typer.Option(
    "--calibration", help="calibration.json (or its folder) [default: the packaged model's, measured with it; "
    "a spec of another model needs its own]")


def simulate(
    spec: Annotated[str, typer.Option("--spec", "-c", help="deployment spec YAML, or bundled: default, fixed-1, "
                                      "demo")],
    profile: Annotated[str, typer.Option(help="reference, quick, or a profile YAML file")] = "reference",
    time_scale: Annotated[float, time_scale_option("compress the profile like `servetune run --time-scale`")] = 1.0,
    calibration: Annotated[Path | None, CALIBRATION_OPTION] = None,
    capacity: Annotated[str | None, typer.Option(help="the cluster's allocatable resources, e.g. "
                                                 "'cpu=2,memory=8Gi' [default: every pod fits; local: this "
                                                 "machine's]")] = None,
    backend: Annotated[str, typer.Option(help="kubernetes (metrics-server, HPA at Kubernetes' pace) or local "
                                         "(the one-machine cluster, as `servetune run --backend local`)")] = "kubernetes",
    node_cpu: Annotated[float | None, typer.Option(min=0.01, help="cores the pods really get on their node "
                                                   "(a shared machine) [default: no limit beyond quotas; local: "
                                                   "the capacity's]")] = None,
    others_cores: Annotated[float, typer.Option(min=0, help="of --node-cpu, the cores other work on the machine "
                                                "takes (a recorded run's run.json host_cpu.others_cores)")] = 0.0,
    mode: Annotated[str, typer.Option(help="closed (siege's users) or open (Poisson arrivals)")] = "closed",
    seed: Annotated[int, typer.Option(help="random seed (think times, request sizes, pod choice)")] = 0,
    out: Annotated[Path | None, typer.Option(help="write a run folder (resource_usage.csv, load_output.csv, "
                                             "run.json with simulated: true) for `servetune report`/`compare`")] = None,
    record: Annotated[bool, typer.Option(help="also write requests.csv (every request) into --out")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print the statistics as JSON")] = False,
) -> None:
    """Predict a deployment's statistics under a load profile in well under a second: a discrete-event
    simulation of the load, the Service, the pods under their CPU quota, the HPA and the monitor."""
    from servetune.deploy.capacity import parse_capacity
    from servetune.deploy.spec import load_deployment_spec
    from servetune.load.profile import load_profile
    from servetune.runfolder import RUN_FILE
    from servetune.sim.backend import SimulatedBackend
    from servetune.sim.simulate import MetricsTiming
    from servetune.sim.simulate import simulate as run_simulation
    from servetune.tune.calibration import load_calibration
    from servetune.tune.evaluate import ModelCalibrations, covering, describe, model_file, model_text

    backend = choice(backend, [BackendName.KUBERNETES, BackendName.LOCAL], "--backend")
    mode = choice(mode, ["closed", "open"], "--mode")
    if out is not None and (out / RUN_FILE).exists():
        raise OptionError(f"{out}: already holds a run ({RUN_FILE}); choose another --out")
    deployment = load_deployment_spec(spec)
    load = load_profile(profile, time_scale)
    if calibration:
        # the one calibration given is used as it is (a run of an earlier model file reproduces with its own),
        # but not silently when it is of another model file than the spec's
        figures = load_calibration(calibration)
        path, digest = model_file(deployment.model)
        if covering({calibration: figures}, path, digest) is None:
            typer.secho(f"warning: {calibration} is a calibration of {describe(figures)}, not of the spec's model "
                        f"{model_text(deployment.model, path, digest)}: simulating with it as given", err=True)
    else:
        figures = ModelCalibrations({}).add(deployment.model)
    cluster = parse_capacity(capacity) if capacity else None
    if backend == BackendName.LOCAL:
        from servetune.deploy.capacity import Capacity
        from servetune.host.cgroups import allocatable

        # the one-machine cluster: this machine's cores hold the pods and the load driver
        cluster = cluster or Capacity(*allocatable())
        node_cpu = node_cpu or cluster.cpu_cores
    if others_cores and node_cpu is None:
        raise OptionError("--others-cores: other work takes cores of a node: give --node-cpu (or --backend local)")
    if mode == "open" and (problem := load.open_loop_problem()) is not None:
        raise OptionError(f"{profile}: {problem}")
    if cluster is not None and cluster.pods_that_fit(deployment) < 1:
        typer.secho(f"warning: one pod requests {deployment.requests.cpu:g} CPU and {deployment.requests.memory_mb} "
                    f"MiB, more than the capacity ({cluster.cpu_cores:g} CPU, {cluster.memory_bytes // 2**20} MiB): "
                    "every pod stays Pending and every request fails", err=True)
    timing = MetricsTiming(backend=backend.value)
    if out is None:
        simulation = run_simulation(deployment, load, figures, capacity=cluster, seed=seed, metrics=timing,
                                    node_cpu=node_cpu, others_cores=others_cores, open_loop=mode == "open")
    else:  # the protocol on the simulated backend: the run folder `servetune run --backend simulated` writes
        simulation = simulated_run(spec, out, profile, time_scale, SimulatedBackend(
            deployment, figures, capacity=cluster, metrics=timing, node_cpu=node_cpu, others_cores=others_cores,
            open_loop=mode == "open",
            seed=seed, record_requests=record))
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


def simulated_run(spec: str, out: Path, profile: str, time_scale: float, backend):
    """run.py's protocol with `backend` (a SimulatedBackend) into `out`; its simulation."""
    from servetune.cli.errors import CommandFailed
    from servetune.run import RunOptions, evaluate

    options = RunOptions(spec=spec, out=out, backend=BackendName.SIMULATED, profile=profile, time_scale=time_scale,
                         copy_model=False, progress=False)
    result = evaluate(options, backend=backend)
    if result.status != "completed" or backend.simulation is None:
        raise CommandFailed(f"{result.record.failed_step} step failed: {result.record.error}")
    return backend.simulation
