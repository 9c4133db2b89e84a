"""What the simulator reads of a model's calibration (tune/calibration.py's `Calibration` has these fields).

A structural type, so sim/ needs no import from tune/, the stage above it that measures calibrations.
"""

from __future__ import annotations

from typing import Protocol


class Costs(Protocol):
    model: str
    accuracy: dict[str, float]
    cpu_ms_quantiles: dict[str, list[float]]  # target -> CPU ms per request at percentiles 0, 5, ..., 100
    parallelism: float  # cores one request alone keeps busy with 2+ threads
    idle_cpu_cores: float
    response_bytes: int
    overhead_ms: float
    rss_idle_bytes: int
    rss_loaded_bytes: int
    rss_peak_bytes: int
    start_to_ready_s: float
    start_cpu_s: float
    load_generator_cpu_ms_per_request: float | None
    machine: str
    date: str
    version: str
    source: str


def cpu_quantiles(costs: Costs, target: str) -> tuple[float, ...]:
    """CPU seconds per request of `target` at percentiles 0, 5, ..., 100 (else the first target's)."""
    quantiles = costs.cpu_ms_quantiles.get(target) or next(iter(costs.cpu_ms_quantiles.values()))
    return tuple(q / 1000 for q in quantiles)
