"""Hand-made calibrations with known figures, so simulations can be checked against hand computations."""

from __future__ import annotations

from servetune.tune.calibration import Calibration, ServiceTimes

MIB = 1024 * 1024


def constant_calibration(cpu_ms: float, overhead_ms: float = 0.0, start_to_ready_s: float = 2.0,
                         rss_mib: int = 80) -> Calibration:
    """Every request needs exactly `cpu_ms` of CPU; the client adds `overhead_ms`."""
    flat = [cpu_ms] * 21
    return Calibration(
        model="hand-made",
        accuracy={"evaluation": 0.5},
        service=[ServiceTimes(target="GET /test", cpu_limit=1.0, workers=1, threads=1, requests=1,
                              latency_ms_quantiles=[cpu_ms + overhead_ms] * 21, cpu_ms_per_request=cpu_ms)],
        cpu_ms_quantiles={"GET /test": flat, "POST /predict": flat},
        overhead_ms=overhead_ms,
        rss_idle_bytes=rss_mib * MIB,
        rss_loaded_bytes=rss_mib * MIB,
        rss_peak_bytes=rss_mib * MIB,
        start_to_ready_s=start_to_ready_s,
        machine="hand-made",
        date="2026-11-30T00:00:00Z",
        version="0",
    )
