"""Recalibrate from a completed run folder: its requests.csv and resource_usage.csv hold the same figures.

What a run measures replaces the calibration's figures: CPU per request (the monitor's CPU over the run
divided by the requests answered, less the replicas' idle CPU), the spread of the CPU per request (the
base's shape, scaled to the new mean), memory per replica (the monitor's memory used over replicas with a
process: least, median, highest), and a service-time entry for the run's own setting. What a run does not
measure (overhead, start-to-ready, the driver's CPU) is kept from the base calibration.
"""

from __future__ import annotations

import itertools
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path

from servetune.analyze.stats import AnalysisError, RunData, accuracy, is_okay, sample_seconds
from servetune.config import RunSummary
from servetune.deploy.spec import SpecError, load_deployment_spec
from servetune.runfolder import SPEC_FILE
from servetune.tune.calibration import Calibration, CalibrationError, ServiceTimes
from servetune.tune.measure import quantile_mean, quantiles


def run_workers(data: RunData, spec_workers: int) -> int:
    """Workers per replica in the run: the one-machine cluster runs one whatever the spec says."""
    return 1 if data.run_info.get("backend") == "local" else spec_workers


def run_cpu_ms_per_request(data: RunData, idle_cores_per_replica: float, requests: int) -> float:
    """What the run's replicas used per request: the monitor's CPU over the run (each sample standing for the
    interval between samples) less the replicas' idle CPU, over `requests`."""
    times = sample_seconds(data.resources)
    steps = [b - a for a, b in itertools.pairwise(times)]
    interval = statistics.median(steps) if steps else 5.0
    cpu_seconds = sum(max(0.0, s.cpu_use_core - idle_cores_per_replica * s.n_replica) * interval
                      for s in data.resources)
    return 1000 * cpu_seconds / requests


def calibration_from_run(run_dir: str | Path, base: Calibration) -> Calibration:
    """`base` with the figures the run folder measured; CalibrationError naming the file and problem."""
    run_dir = Path(run_dir)
    try:
        data = RunData(run_dir)
    except AnalysisError as error:
        raise CalibrationError(str(error)) from None
    folder = data.folder
    if not data.requests:
        raise CalibrationError(f"{folder.request_log}: missing or empty; recalibrating needs every request")
    spec_path = folder / SPEC_FILE
    try:
        spec = load_deployment_spec(spec_path)
    except SpecError as error:
        raise CalibrationError(f"{spec_path}: {error}") from None
    okay = [r for r in data.requests if is_okay(r)]
    if not okay:
        raise CalibrationError(f"{folder.request_log}: no answered request to calibrate from")
    running = [s for s in data.resources if s.mem_use_KB > 0 and s.n_replica > 0]
    workers = run_workers(data, spec.workers)
    cpu_ms = run_cpu_ms_per_request(data, base.idle_cpu_cores * workers, len(data.requests))
    if cpu_ms <= 0:
        raise CalibrationError(f"{folder.resource_csv}: no CPU used: cannot calibrate from it")
    per_replica = [s.mem_use_KB * 1024 / s.n_replica / workers for s in running]
    if not per_replica:
        raise CalibrationError(f"{folder.resource_csv}: no memory used: cannot calibrate from it")
    targets = {phase.target for phase in data.profile.phases} if data.profile else {"GET /test"}
    scaled = {}
    for target, values in base.cpu_ms_quantiles.items():
        factor = cpu_ms / quantile_mean(values)
        scaled[target] = [round(x * factor, 4) for x in values] if target in targets else values
    service = ServiceTimes(
        target=min(targets), cpu_limit=spec.limits.cpu if spec.limits else None, workers=workers,
        threads=spec.threads or 1, requests=len(okay),
        latency_ms_quantiles=quantiles([r.latency_s * 1000 for r in okay]), cpu_ms_per_request=round(cpu_ms, 3),
    )
    value, _, model = accuracy(data)
    # the calibration is the run's model's: tune matches calibrations to models by this hash
    artifact = data.run_info.get("model_file") or {}
    identity = {"model_sha256": artifact["sha256"], "model_file": Path(artifact["path"]).name} \
        if artifact.get("sha256") and artifact.get("path") else {}
    return base.model_copy(update={
        **identity,
        "model": model or base.model,
        "accuracy": {"run": value} if value is not None and not base.accuracy else base.accuracy,
        "service": [*base.service, service],
        "cpu_ms_quantiles": scaled,
        "rss_idle_bytes": int(min(per_replica)),
        "rss_loaded_bytes": int(statistics.median(per_replica)),
        "rss_peak_bytes": int(max(per_replica)),
        "machine": json.dumps(data.run_info.get("machine")) if data.run_info.get("machine") else base.machine,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": f"run folder {run_dir}",
        "backend": str(data.run_info.get("backend") or base.backend),
    })


def busiest_cores(summary: RunSummary, calibration: Calibration) -> float:
    """The CPU a run's machine gave it when it was busiest: the pods' mean use in that phase plus the load
    driver's CPU at that phase's rate. On a machine shared with other work this is what `node_cpu` of a
    simulation of that run should be (what the servers really got, not the machine's cores)."""
    phase = max(summary.phases, key=lambda p: p.cpu_used_core or 0.0)
    driver_ms = calibration.load_generator_cpu_ms_per_request or 0.0
    return (phase.cpu_used_core or 0.0) + driver_ms / 1000 * phase.transaction_rate
