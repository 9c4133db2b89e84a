"""The main job in one command: the default model, the demo spec, the one-machine cluster, the quick profile.

The quick profile (7.5 minutes of low, high, low load) runs compressed by DEMO_TIME_SCALE, and so do the
autoscaler's time constants, so the whole demo takes about 4 minutes on a 2-core machine while keeping the
shape of the load: replicas scale up under the high phase and back down in the low tail.
"""

from __future__ import annotations

from pathlib import Path

from servetune.config import RunSummary
from servetune.run import RunOptions

DEMO_SPEC = "demo"
DEMO_PROFILE = "quick"
DEMO_TIME_SCALE = 0.45


def demo_options(out: Path, time_scale: float = DEMO_TIME_SCALE, port: int = 0) -> RunOptions:
    return RunOptions(
        spec=DEMO_SPEC, out=out, backend="local", profile=DEMO_PROFILE, time_scale=time_scale, port=port,
    )


def headline_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """The four reference statistics, then accuracy and what the autoscaler did."""
    response = "n/a" if summary.response_time_s is None else f"{summary.response_time_s * 1000:.1f} ms"
    source = summary.model if summary.accuracy_source == "run.json" and summary.model else summary.accuracy_source
    accuracy = "n/a" if summary.accuracy is None else f"{summary.accuracy:.2%} ({source})"
    return [
        ("memory requested", f"{summary.memory_requested_KB / 1024:,.0f} MiB (mean of mem_req_KB)"),
        ("memory used", f"{summary.memory_used_KB / 1024:,.0f} MiB (mean of mem_use_KB)"),
        ("transaction rate", f"{summary.transaction_rate:.2f} /s (OKAY per second)"),
        ("response time", f"{response} (OKAY-weighted)"),
        ("accuracy", accuracy),
        ("replicas", f"mean {summary.mean_replicas:.2f}, max {summary.max_replicas}"),
        ("failure rate", f"{summary.failure_rate:.2%} of {summary.okay + summary.failed:,} requests"),
    ]
