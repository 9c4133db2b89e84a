"""Measure a model's calibration on the one-machine cluster (`servetune tune calibrate`).

For each CPU limit (0.25, 0.5, 1, 2 cores, cgroup-enforced as `deploy local` does) one replica is started
(its CPU time until ready is the start-up's cost); the built-in load driver (siege semantics, one connection per request) sends
`GET /test` and `POST /predict` (the server's sample image) first from one user without think time, then
from 20 users at once (as each run of a profile starts). The replica's CPU time comes from its process (psutil), the driver's own CPU from
this process's CPU time, memory from the replica's working set as the monitor reads it (idle, after
each endpoint's load). At 1 CPU a second replica is asked for and timed until ready (an HPA scale-up).

The load driver runs on the same cores as the replica: its CPU per request is kept in the calibration, and
the simulator takes it out of the node's cores when it simulates the one-machine cluster.

CPU per request, the mean the simulator draws from, is measured the way a run uses it (tune/cpu_cost.py): at
1 CPU, `repeats` loads of 20 users thinking 0 or 1 s per endpoint, the worker's own CPU time over each, with
the cores other processes took meanwhile recorded; the figure comes from the repeats least disturbed.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import psutil

from servetune import __version__
from servetune.config import DeploymentSpec, LoadPhase, LoadProfile, ResourceAmounts
from servetune.deploy.local import LocalCluster, model_footprint
from servetune.errors import FailedError
from servetune.host.cpu import cpu_model
from servetune.host.machine_cpu import host_cpu, snapshot
from servetune.host.usage import working_set_bytes
from servetune.load.driver import LoadOptions, run_load_test
from servetune.load.request_log import read_request_log
from servetune.model.artifact import file_sha256, read_spec
from servetune.runfolder import RunFolder
from servetune.serve.sample_image import sample_image_bytes
from servetune.tune.calibration import QUANTILES, Calibration, CpuPerRequest, ServiceTimes, Target
from servetune.tune.cpu_cost import DELAY_S, USERS, busy_note, cpu_per_request, repeat_figures

CPU_LIMITS = (0.25, 0.5, 1.0, 2.0)
TARGETS: tuple[Target, ...] = ("GET /test", "POST /predict")
SATURATING_USERS = 20  # like a profile's run starting all its users at once
REPEATS = 3  # loads that measure CPU per request, per endpoint
COST_LIMIT = 1.0  # the CPU limit they run at: one worker's thread never throttled
MEMORY_MB = 1024  # generous: the calibration measures memory, it must not be limited by it
LONGER = 4  # a load that got no answer runs again this many times as long (a slow model at a small limit)


class CalibrationFailed(FailedError):
    """A measurement the calibration needs did not happen; the message says which and what to try."""


def machine_text() -> str:
    cpu = cpu_model()
    memory_gib = psutil.virtual_memory().total / 2**30
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} CPUs, {memory_gib:.0f} GiB, load average {load} at the start"


def quantiles(values: list[float]) -> list[float]:
    return [round(float(x), 4) for x in np.percentile(values, QUANTILES)]


def quantile_mean(values: list[float]) -> float:
    """The mean of the distribution the simulator draws from these quantiles (linear between them)."""
    return sum((a + b) / 2 for a, b in itertools.pairwise(values)) / (len(values) - 1)


def resident(pid: int) -> int:
    """The replica's memory as the monitor counts it (working set of its cgroup, else its RSS)."""
    return working_set_bytes(pid) or psutil.Process(pid).memory_info().rss


def one_replica(limit: float, footprint_bytes: int = 0) -> DeploymentSpec:
    """One replica at `limit` CPU with memory to spare: MEMORY_MB, or 3 x the model's footprint when larger
    (a VGG16 holds more than 1 GiB under load, and a replica killed for memory measures nothing)."""
    amounts = ResourceAmounts(cpu=limit, memory_mb=max(MEMORY_MB, math.ceil(3 * footprint_bytes / 2**20)))
    return DeploymentSpec(name="calibrate", replicas=1, requests=amounts, limits=amounts)


@dataclass(frozen=True)
class Setting:
    """What one (limit, target) measured."""

    target: Target
    limit: float
    latencies_ms: list[float]
    cpu_ms: float
    driver_ms: float
    saturated_per_s: float
    saturated_cpu_ms: float


def sample_images(folder: Path) -> Path:
    """A folder holding the server's sample image, the only photo the calibration's POST /predict sends."""
    images = folder / "images"
    images.mkdir()
    (images / "sample.jpg").write_bytes(sample_image_bytes())
    return images


class ProcessCpu:
    """The replica's CPU seconds during a load, from its process (psutil): what the one-machine cluster counts."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = 0.0

    def start(self) -> None:
        self.before = sum(self.process.cpu_times()[:2])

    def stop(self) -> float:
        return sum(self.process.cpu_times()[:2]) - self.before


class CpuMeter(Protocol):
    """Counts the replica's CPU seconds from start() to stop() (a load)."""

    def start(self) -> None: ...

    def stop(self) -> float: ...


def measure_target(url: str, meter: CpuMeter, target: Target, seconds: float, images: Path, work: Path,
                   saturated_s: float | None = None) -> tuple:
    """(latencies ms at concurrency 1, replica CPU ms per request, driver CPU ms per request, answers/s
    with SATURATING_USERS users, replica CPU ms per request with them). The 20-user load runs `saturated_s`
    [default: half of `seconds`]. A load that got no answer in its time (a model slower than `seconds` per
    request at this limit) is run again LONGER x as long, twice."""
    results = []
    for users, base in ((1, seconds), (SATURATING_USERS, saturated_s or seconds / 2)):
        for length in (base, base * LONGER, base * LONGER**2):
            out = work / f"{target.split()[1].strip('/')}-{users}-{length:g}s"
            profile = LoadProfile(name="calibrate", phases=[
                LoadPhase(users=users, delay=0, duration_s=length, target=target)])
            meter.start()
            own_before = time.process_time()
            run_load_test(profile, url, out, LoadOptions(images=images, progress=False, seed=1))
            own = time.process_time() - own_before
            cpu = meter.stop()
            records = [r for r in read_request_log(RunFolder(out).request_log) if r.status == 200]
            if records:
                break
        else:
            raise CalibrationFailed(f"{target} answered no request with 200 in {length:g} s with {users} user(s) "
                                    "(the replica failed, or the model is slower still: more "
                                    "--calibration-seconds)")
        results.append((records, cpu, own, length))
    (single, cpu1, own1, _), (busy, cpu_busy, _, busy_s) = results
    count = len(single)
    return ([r.latency_s * 1000 for r in single], 1000 * cpu1 / count, 1000 * own1 / count,
            len(busy) / busy_s, 1000 * cpu_busy / len(busy))


def measure_cost(url: str, pid: int, target: Target, limit: float, idle_cores: float, seconds: float,
                 images: Path, work: Path, repeats: int) -> CpuPerRequest:
    """CPU per request of `target` from `repeats` run-like loads of `seconds` (tune/cpu_cost.py); a load
    that got no answer (a slow model, a busy machine) runs again LONGER x as long, twice."""
    measured = []
    for index in range(repeats):
        for length in (seconds, seconds * LONGER, seconds * LONGER**2):
            out = work / f"cost-{target.split()[1].strip('/')}-{index + 1}-{length:g}s"
            profile = LoadProfile(name="calibrate", phases=[
                LoadPhase(users=USERS, delay=DELAY_S, duration_s=length, target=target)])
            meter = ProcessCpu(pid)
            machine_before = snapshot()
            meter.start()
            run_load_test(profile, url, out, LoadOptions(images=images, progress=False, seed=index + 1))
            cpu_s = meter.stop()
            machine = host_cpu(machine_before, snapshot())
            answered = sum(1 for r in read_request_log(RunFolder(out).request_log) if r.status == 200)
            if answered:
                break
        else:
            raise CalibrationFailed(f"{target} answered no request with 200 in {length:g} s with {USERS} users "
                                    f"thinking up to {DELAY_S:g} s (the replica failed, or the model is slower "
                                    "still: more --calibration-seconds)")
        measured.append(repeat_figures(cpu_s, idle_cores, machine["seconds"] if machine else length, answered,
                                       machine["others_cores"] if machine else None))
    return cpu_per_request(target, limit, measured)


def calibrate_model(
    model_path: Path,
    *,
    seconds: float = 6.0,
    limits: tuple[float, ...] = CPU_LIMITS,
    repeats: int = REPEATS,
    progress: Callable[[str], None] = lambda text: None,
) -> Calibration:
    """Measure `model_path` on this machine; `progress` hears one line per step. CPU per request comes from
    `repeats` loads per endpoint at COST_LIMIT (else the largest limit given)."""
    model = read_spec(model_path)
    settings: list[Setting] = []
    ready_times: list[float] = []
    start_cpu: list[float] = []
    rss_idle: list[int] = []
    rss_loaded: list[int] = []
    rss_peak = 0
    idle_cores: list[float] = []
    costs: list[CpuPerRequest] = []
    machine = machine_text()  # its load average before the calibration's own load
    cost_limit = COST_LIMIT if COST_LIMIT in limits else max(limits)
    with tempfile.TemporaryDirectory(prefix="servetune-calibrate-") as folder:
        work = Path(folder)
        images = sample_images(work)
        footprint = model_footprint(model_path)  # the same at every limit: load the model for it once
        for limit in limits:
            progress(f"{model.name}: one replica at {limit:g} CPU: start")
            cluster = LocalCluster(one_replica(limit, footprint), model_path, workdir=work / f"cluster-{limit:g}",
                                   footprint_bytes=footprint)
            with cluster:
                cluster.wait_ready(120)
                pid = cluster.state().replicas[0].pid
                assert pid is not None
                worker = psutil.Process(pid)
                start_cpu.append(sum(worker.cpu_times()[:2]))  # importing, loading and warming the model
                rss_idle.append(resident(pid))
                cpu_before = sum(worker.cpu_times()[:2])
                time.sleep(1.0)
                idle_cores.append(sum(worker.cpu_times()[:2]) - cpu_before)
                url = f"http://127.0.0.1:{cluster.port}"
                for target in TARGETS:
                    cost = limit == cost_limit and repeats > 0
                    progress(f"{model.name}: {target} at {limit:g} CPU" + (
                        f", then its CPU per request ({repeats} repeats)" if cost else ""))
                    try:
                        measured = measure_target(url, ProcessCpu(pid), target, seconds, images,
                                               work / f"load-{limit:g}")
                        if cost:
                            costs.append(measure_cost(url, pid, target, limit, idle_cores[-1], seconds, images,
                                                      work / f"load-{limit:g}", repeats))
                    except CalibrationFailed as error:
                        raise CalibrationFailed(f"{model_path}: at {limit:g} CPU: {error}") from None
                    settings.append(Setting(target, limit, *measured))
                    rss_peak = max(rss_peak, resident(pid))
                rss_loaded.append(resident(pid))
                if (limit == 1.0 or len(limits) == 1) and cluster.capacity >= 2:
                    progress(f"{model.name}: a second replica at {limit:g} CPU: until ready")
                    ready_times.append(added_replica_ready_s(cluster))
    return build_calibration(model_path, model.name, model.accuracy, settings, ready_times, start_cpu,
                             rss_idle, rss_loaded, rss_peak, idle_cores, costs, machine)


def added_replica_ready_s(cluster: LocalCluster, timeout_s: float = 120.0) -> float:
    """Seconds from asking for one more replica until it is ready (what an HPA scale-up waits)."""
    began = time.perf_counter()
    cluster.scale_to(2)
    while time.perf_counter() - began < timeout_s:
        if sum(1 for replica in cluster.state().replicas if replica.ready) >= 2:
            return time.perf_counter() - began
        time.sleep(0.1)
    raise CalibrationFailed(f"a second replica was not ready within {timeout_s:.0f} s")


def cpu_distributions(settings: list[Setting], reference: dict[str, Setting], driver_ms: float,
                      measured: dict[str, float]) -> dict[str, list[float]]:
    """Per target, CPU ms per request at QUANTILES: the shape of one user's latencies less the driver's
    overhead at the reference limit, scaled to the mean `measured` (the repeats), else (no repeats: on a
    cluster) to the CPU per request with several requests at once (more connections, context switches and
    cache misses than one at a time), as the pods serve a load: its mean over every limit's 20-user
    measurement, one 20-user load of a few seconds on a shared machine varying by 10-20 %."""
    cpu_quantiles: dict[str, list[float]] = {}
    for target, setting in reference.items():
        overhead = min(driver_ms, statistics.fmean(setting.latencies_ms))
        floor = 0.2 * setting.cpu_ms
        shape = quantiles([max(floor, x - overhead) for x in setting.latencies_ms])
        loaded = statistics.fmean(s.saturated_cpu_ms for s in settings if s.target == target)
        mean = measured[target] if target in measured else max(setting.cpu_ms, loaded)
        factor = mean / quantile_mean(shape)
        cpu_quantiles[target] = [round(x * factor, 4) for x in shape]
    return cpu_quantiles


def service_times(settings: list[Setting]) -> list[ServiceTimes]:
    """What each setting measured, as the calibration keeps it."""
    return [
        ServiceTimes(target=s.target, cpu_limit=s.limit, workers=1, threads=max(1, int(s.limit)),
                     requests=len(s.latencies_ms), latency_ms_quantiles=quantiles(s.latencies_ms),
                     cpu_ms_per_request=round(s.cpu_ms, 3), saturated_per_s=round(s.saturated_per_s, 2),
                     saturated_cpu_ms_per_request=round(s.saturated_cpu_ms, 3))
        for s in settings
    ]


def build_calibration(model_path: Path, name: str, accuracy: dict[str, float], settings: list[Setting],
                      ready_times: list[float], start_cpu: list[float], rss_idle: list[int],
                      rss_loaded: list[int], rss_peak: int,
                      idle_cores: list[float], costs: list[CpuPerRequest] | None = None,
                      machine: str | None = None) -> Calibration:
    """The simulator's figures from the measured settings.

    CPU per request is the figure of `costs` (tune/cpu_cost.py) where measured, else (on a cluster) the mean
    over the limits of the CPU per request with 20 users; its spread comes
    from one user at a time at 1 CPU (one thread, one request never throttled):
    the client's latency there is the request's CPU time plus the load driver's own work on each request
    (connect, send, read, parse: its CPU per request, in series with the server's), plus any wait for a
    busy machine's cores. The overhead is the driver's CPU per request; the CPU quantiles are the latency
    quantiles less it, scaled to the CPU per request measured with several users.
    """
    service = service_times(settings)
    reference = {s.target: s for s in settings if s.limit == 1.0} or {s.target: s for s in settings}
    driver_ms = statistics.fmean(s.driver_ms for s in settings)
    costs = costs or []
    cpu_quantiles = cpu_distributions(settings, reference, driver_ms, {cost.target: cost.ms for cost in costs})
    parallelism = 1.0
    two = [s for s in settings if s.limit >= 2 and s.target == "GET /test"]
    if two and "GET /test" in reference:
        service_ms = statistics.median(two[0].latencies_ms) - driver_ms
        if service_ms > 0:
            parallelism = max(1.0, min(2.0, two[0].cpu_ms / service_ms))
    return Calibration(
        model=name,
        model_file=model_path.name,
        model_sha256=file_sha256(model_path),
        accuracy=accuracy,
        service=service,
        cpu_ms_quantiles=cpu_quantiles,
        parallelism=round(parallelism, 3),
        idle_cpu_cores=round(statistics.fmean(idle_cores), 4) if idle_cores else 0.0,
        overhead_ms=round(driver_ms, 3),
        rss_idle_bytes=int(statistics.median(rss_idle)),
        rss_loaded_bytes=int(statistics.median(rss_loaded)),
        rss_peak_bytes=int(rss_peak),
        start_to_ready_s=round(statistics.median(ready_times or start_cpu), 3),
        start_cpu_s=round(statistics.median(start_cpu), 3),
        load_generator_cpu_ms_per_request=round(driver_ms, 3),
        cpu_per_request=costs,
        notes=[note] if (note := busy_note(costs)) else [],
        machine=machine or machine_text(),
        date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        version=__version__,
        source="measured",
    )
