"""A discrete-event simulation of the whole evaluation protocol for one deployment spec: the kernel
(sim/kernel.py) driving the domain: the load (sim/load.py), the pods and the Service (sim/pods.py) on the
node's time-shared CPU (sim/cpu.py), the autoscaler and the monitor (sim/metrics.py).

The real rules are imported, not copied: the load driver's think time, deploy/hpa.py's `hpa_step`, the
one-machine cluster's pods that fit (deploy/capacity.py) and the monitor's interval (monitor/cadence.py).
Not modelled: request timeouts; network latency beyond the calibrated overhead.
"""

from __future__ import annotations

import random

from servetune.config import DeploymentSpec, LoadProfile
from servetune.deploy.capacity import Capacity
from servetune.deploy.compressed_hpa import compressed_spec
from servetune.deploy.hpa import HpaTimings
from servetune.monitor.cadence import monitor_interval_s
from servetune.sim.costs import Costs, cpu_quantiles
from servetune.sim.cpu import Group, Processor
from servetune.sim.kernel import Kernel, Repeat
from servetune.sim.load import Load
from servetune.sim.metrics import Metrics
from servetune.sim.pods import Cluster, pod_shape
from servetune.sim.simulation import MetricsTiming, Simulation, summarize_simulation

__all__ = ["MetricsTiming", "Simulation", "simulate"]

# At equal times: pods ready (0) and gone (1), CPU (2), requests (3), then scrape, sync and sample.
_SCRAPE, _SYNC, _SAMPLE = 4, 5, 6


def _sampler(quantiles: dict[str, tuple[float, ...]], rng: random.Random):
    def work(target: str) -> float:
        """CPU seconds of one request: a draw from the calibrated distribution, interpolated."""
        values = quantiles[target]
        position = rng.random() * (len(values) - 1)
        index = int(position)
        low = values[index]
        return low + (values[index + 1] - low) * (position - index)

    return work


def _drive_on_the_node(cpu: Processor, load: Load, driver_ms: float) -> None:
    """The load driver runs on the node it loads: its CPU per request comes out of the node's cores."""
    if driver_ms:
        driver = Group(None, solo=1.0, shared=1.0, cap=1.0)  # one process, one thread of asyncio
        cpu.groups.append(driver)
        load.driver = (cpu, driver, driver_ms / 1000)


def simulate(
    spec: DeploymentSpec,
    profile: LoadProfile,
    calibration: Costs,
    *,
    capacity: Capacity | None = None,
    seed: int = 0,
    record: bool = False,
    metrics: MetricsTiming | None = None,
    node_cpu: float | None = None,
    others_cores: float = 0.0,
    open_loop: bool = False,
    monitor_interval: float | None = None,
) -> Simulation:
    """Simulate `spec` under `profile` (as compressed: profile.time_scale) with `calibration`'s figures.

    `capacity`: the cluster's allocatable resources (None: every pod fits). `record`: keep every request
    (requests.csv). `metrics`: how usage reaches the HPA (default: Kubernetes' metrics-server); with
    MetricsTiming(backend="local") the autoscaler's time constants are scaled by profile.time_scale as
    `servetune run --backend local` does (on Kubernetes only the HPA's behavior is: deploy/compressed_hpa.py),
    each replica is one worker and the load driver's CPU per request comes out of the node's cores.
    `node_cpu`: the cores the pods (one node) really get, all quotas together; None: no bound beyond each
    pod's quota. `others_cores`: of `node_cpu`, the cores other work on the machine takes all along (a run's
    recorded `host_cpu.others_cores`): the pods and the load driver share the rest. `open_loop`: Poisson
    arrivals at each phase's rate, else siege's closed loop. `monitor_interval`: [default: monitor/cadence.py].
    """
    if open_loop and (problem := profile.open_loop_problem()) is not None:
        raise ValueError(f"profile {profile.name}: {problem}")
    timing = metrics or MetricsTiming()
    local = timing.backend == "local"
    # On Kubernetes a compressed run's HPA has its behavior compressed, its controller's clocks not.
    spec_run = spec if local else compressed_spec(spec, profile.time_scale)[0]
    rng = random.Random(seed)
    kernel = Kernel()
    cpu = Processor(kernel, node_cpu, others_cores)
    load = Load(kernel, profile, rng, open_loop, record)
    quantiles = {phase.target: cpu_quantiles(calibration, phase.target) for phase in profile.phases}
    shape = pod_shape(spec, calibration, capacity, local)
    cluster = Cluster(kernel, cpu, spec_run, shape, rng, _sampler(quantiles, rng), load.answer)
    if local and node_cpu is not None:
        _drive_on_the_node(cpu, load, calibration.load_generator_cpu_ms_per_request or 0.0)
    hpa = HpaTimings(time_scale=profile.time_scale if local else 1.0)
    watcher = Metrics(cluster, spec_run, timing, hpa, calibration.idle_cpu_cores * shape.workers,
                      (float(calibration.rss_idle_bytes), float(calibration.rss_loaded_bytes)))
    interval = monitor_interval or monitor_interval_s(profile.time_scale)
    cluster.start()
    load.start(cluster)
    offset = timing.offset_s
    if spec_run.autoscaling is not None:
        first = rng.random() * hpa.sync_period if offset is None else offset
        kernel.at(first, Repeat(kernel, hpa.sync_period, load.end, watcher.sync, _SYNC))
    if not local:
        first = rng.random() * timing.resolution_s if offset is None else offset
        kernel.at(first, Repeat(kernel, timing.resolution_s, load.end, watcher.scrape, _SCRAPE))
    kernel.at(0.0, Repeat(kernel, interval, load.end, watcher.sample, _SAMPLE))
    kernel.run_until()
    return summarize_simulation(
        spec, profile, calibration, load.raw, watcher.samples, load.starts, load.ends, load.requests,
        cluster.events, seed,
    )
