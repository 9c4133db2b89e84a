"""A discrete-event simulation of the whole evaluation protocol for one deployment spec.

Same clock semantics as the real thing (see OPTIMIZER.md):
- load: the profile as load/driver.py runs it (closed loop: every run starts all its users together,
  think time int(U*d + 0.5) whole seconds, one connection per request, 408/5xx failed, in-flight requests
  dropped at the end of a run; open loop: Poisson arrivals at the phase's rate);
- Service: each request goes to a ready pod drawn at random (kube-proxy in iptables mode);
- pod: a FIFO queue in front of `workers` workers; a request needs the calibrated CPU time and runs under
  the pod's CFS quota (limit x 100 ms of CPU per 100 ms period, shared by the pod's workers);
- autoscaler: deploy/hpa.py's `hpa_step` itself, every sync period, fed by metrics-server-like samples
  (scrape resolution, CPU window, delay: `MetricsTiming`); new pods are ready after the calibrated
  start-to-ready time, pods that do not fit the capacity stay Pending;
- monitor: one sample every 5 s (x the profile's time scale), Pending pods counted as replicas.
The output is a `Simulation`: the statistics `servetune analyze` computes, and the files of a run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from servetune.config import DeploymentSpec, LoadProfile, LoadRunRow, RequestRecord, ResourceSample, RunSummary
from servetune.tune.calibration import Calibration
from servetune.tune.capacity import Capacity, CapacityError, parse_capacity

__all__ = ["Capacity", "CapacityError", "MetricsTiming", "Simulation", "parse_capacity", "simulate"]

CFS_PERIOD_S = 0.1
MONITOR_INTERVAL_S = 5.0


@dataclass(frozen=True)
class MetricsTiming:
    """How CPU usage reaches the autoscaler and the monitor.

    kubernetes: metrics-server scrapes every `resolution_s` (15 s); each sample is the CPU rate over the
    kubelet's last `window_s`, usable `delay_s` after the scrape. local: the one-machine cluster measures
    each replica over the last sync period at the sync itself, and its monitor over the last 5 s.
    """

    backend: Literal["kubernetes", "local"] = "kubernetes"
    resolution_s: float = 15.0
    window_s: float = 15.0
    delay_s: float = 2.0


@dataclass
class Simulation:
    """One simulated evaluation: its statistics and what a run folder would hold."""

    spec: DeploymentSpec
    profile: LoadProfile
    statistics: RunSummary
    resources: list[ResourceSample]
    load_rows: list[LoadRunRow]
    requests: list[RequestRecord] | None = None
    events: list[str] = field(default_factory=list)
    seed: int = 0

    def write(self, run_folder: str | Path) -> Path:
        """resource_usage.csv, load_output.csv, load_profile.yaml, spec.yaml, events.log, requests.csv
        (only when recorded) and run.json with `simulated: true`: `servetune report`/`compare` read it."""
        raise NotImplementedError


def simulate(
    spec: DeploymentSpec,
    profile: LoadProfile,
    calibration: Calibration,
    *,
    capacity: Capacity | None = None,
    seed: int = 0,
    record: bool = False,
    metrics: MetricsTiming | None = None,
) -> Simulation:
    """Simulate `spec` under `profile` (as compressed: profile.time_scale) with `calibration`'s figures.

    `capacity`: the cluster's allocatable resources (None: every pod fits). `record`: keep every request
    (requests.csv). `metrics`: how usage reaches the HPA (default: Kubernetes' metrics-server); with
    MetricsTiming(backend="local") the autoscaler's time constants are scaled by profile.time_scale as
    `servetune run --backend local` does. Statistics are the same as `servetune analyze` computes.
    """
    raise NotImplementedError
