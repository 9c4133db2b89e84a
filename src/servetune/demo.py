"""The main job in one command: the default model, the demo spec, the one-machine cluster, the quick profile.

The quick profile (7.5 minutes of low, high, low load) runs compressed by DEMO_TIME_SCALE, and so do the
autoscaler's time constants, so the whole demo takes about 4 minutes on a 2-core machine while keeping the
shape of the load: replicas scale up under the high phase and back down in the low tail.
"""

from __future__ import annotations

from pathlib import Path

from servetune.backend.protocol import BackendName
from servetune.run import RunOptions

DEMO_SPEC = "demo"
DEMO_PROFILE = "quick"
DEMO_TIME_SCALE = 0.45


def demo_options(out: Path, time_scale: float = DEMO_TIME_SCALE, port: int = 0) -> RunOptions:
    return RunOptions(
        spec=DEMO_SPEC, out=out, backend=BackendName.LOCAL, profile=DEMO_PROFILE, time_scale=time_scale, port=port,
    )
