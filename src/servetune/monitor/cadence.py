"""How often the resource monitor samples: the reference monitor's 5 s, compressed with the profile."""

from __future__ import annotations

MONITOR_INTERVAL_S = 5.0  # the reference monitor's cadence, before time compression
MIN_MONITOR_INTERVAL_S = 0.5  # a compressed run samples no faster than this


def monitor_interval_s(time_scale: float) -> float:
    """The monitor's interval for a profile compressed by `time_scale` (real and simulated runs alike)."""
    return max(MIN_MONITOR_INTERVAL_S, MONITOR_INTERVAL_S * time_scale)
