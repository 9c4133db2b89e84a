"""CPU per request as a run uses it: the figures of `servetune tune calibrate`'s repeated loads.

A run's CPU used is its replicas' own CPU time over the requests they answered, so the calibration counts the
same: the worker process's CPU time (user + system, from /proc) during a load like a run's busy phases, less
the worker's idle CPU over the load (probes and timers: the simulator adds `idle_cpu_cores` itself), per
request answered; the load runs several times (repeats).

Other processes on the machine do not add to a process's CPU time, but they slow it: they take the cores by
turns and share the caches, so the same request costs more CPU time on a busy machine (on this project's
2-core machine, one user at 1 CPU: 7.6 ms per `GET /test` with others taking 1.0 core, 8.7 ms with 1.45).
The relation is not a line through zero others (those measurements extrapolate to about 5 ms at zero
others, half of the 9.75 ms a quiet sequential measurement gives), so it is not subtracted by a formula:
each repeat records the cores the others took (host/machine_cpu.py), the figure is the median of the
repeats least disturbed (within QUIET_OTHERS_CORES of the quietest), the others' cores of those are kept beside
it, and a calibration whose quietest repeat had others above QUIET_OTHERS_CORES warns.
"""

from __future__ import annotations

import statistics

from servetune.host.machine_cpu import QUIET_OTHERS_CORES
from servetune.tune.calibration import CpuPerRequest, CpuRepeat, Target

USERS = 20  # the reference profile's busy phases: 20 users thinking 0 or 1 s between requests
DELAY_S = 1.0


def repeat_figures(cpu_s: float, idle_cores: float, seconds: float, requests: int,
                   others_cores: float | None) -> CpuRepeat:
    """One repeat: the worker's `cpu_s` over `seconds`, less `idle_cores` over them, per request."""
    busy_s = max(0.0, cpu_s - idle_cores * seconds)
    return CpuRepeat(requests=requests, seconds=round(seconds, 3),
                     cpu_ms_per_request=round(1000 * busy_s / requests, 3),
                     others_cores=None if others_cores is None else round(others_cores, 3))


def cpu_per_request(target: Target, cpu_limit: float, repeats: list[CpuRepeat]) -> CpuPerRequest:
    """The figure of `repeats`: the median of those within QUIET_OTHERS_CORES of the quietest (all of them when the
    others' CPU is unknown), with their spread and their others' cores."""
    known = [r.others_cores for r in repeats if r.others_cores is not None]
    if known:
        quietest = min(known)
        used = [r for r in repeats if r.others_cores is not None and r.others_cores <= quietest + QUIET_OTHERS_CORES]
    else:
        used = list(repeats)
    values = [r.cpu_ms_per_request for r in used]
    others = [r.others_cores for r in used if r.others_cores is not None]
    return CpuPerRequest(
        target=target, cpu_limit=cpu_limit, users=USERS, delay=DELAY_S, ms=round(statistics.median(values), 3),
        low_ms=min(values), high_ms=max(values), used=len(used),
        others_cores=round(statistics.fmean(others), 3) if others else None, repeats=repeats)


def busy_note(figures: list[CpuPerRequest]) -> str | None:
    """The warning for a measurement taken while other processes took more than QUIET_OTHERS_CORES (or unknown)."""
    if not figures:
        return None
    others = [r.others_cores for figure in figures for r in figure.repeats]
    if any(value is None for value in others):
        return ("the CPU other processes took during the measurement is unknown (/proc/stat not readable): "
                "CPU per request may read high if the machine was busy")
    least = min(value for value in others if value is not None)
    if least <= QUIET_OTHERS_CORES:
        return None
    return (f"other processes took {least:.2f} cores or more during every repeat (above {QUIET_OTHERS_CORES} cores): "
            "the machine was busy, so CPU per request reads high (a request costs more CPU beside other work); "
            "calibrate on a quiet machine, or recalibrate from a quiet run with --from-run")


def spread_text(figure: CpuPerRequest) -> str:
    """'GET /test 8.7 ms CPU (8.5-9.0 over 3 of 3 repeats, others 0.12 cores)'."""
    others = "others unknown" if figure.others_cores is None else f"others {figure.others_cores:.2f} cores"
    return (f"{figure.target} {figure.ms:.1f} ms CPU ({figure.low_ms:.1f}-{figure.high_ms:.1f} over {figure.used} "
            f"of {len(figure.repeats)} repeats, {others})")
