"""The main job in one command: the default model, the demo spec, the one-machine cluster, the quick profile,
then a short tune calibrated on that run.

The quick profile (7.5 minutes of low, high, low load) runs compressed by DEMO_TIME_SCALE, and so do the
autoscaler's time constants, so the run takes about 3.5 minutes on a 2-core machine while keeping the shape of
the load: replicas scale up under the high phase and back down in the low tail. The short tune then
recalibrates the simulator from what the run measured on this machine (CPU per request, memory per replica)
and searches DEMO_TUNE_BUDGET candidates of the bundled space on the same profile for one better than the
demo spec (no more memory or CPU requested, no slower), starting from the demo spec itself; it takes seconds
and verifies nothing for real (a verification is another run of the profile). The demo spec's CPU limit is
4 x its request, above the tune's default --max-limit-ratio of 2, so the short tune allows the demo spec's
own ratio: under the default nothing near the demo spec qualifies (a limit halved slows every request), and
"better than what you ran" would exclude what you ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from servetune.backend.protocol import BackendName
from servetune.run import RunOptions

if TYPE_CHECKING:
    from servetune.tune.pipeline import TuneOptions

DEMO_SPEC = "demo"
DEMO_PROFILE = "quick"
DEMO_TIME_SCALE = 0.45
DEMO_TUNE_BUDGET = 320
DEMO_TUNE_FOLDER = "tune"  # inside the demo's run folder


def demo_options(out: Path, time_scale: float = DEMO_TIME_SCALE, port: int = 0) -> RunOptions:
    return RunOptions(
        spec=DEMO_SPEC, out=out, backend=BackendName.LOCAL, profile=DEMO_PROFILE, time_scale=time_scale, port=port,
    )


def demo_tune_options(run_dir: Path, budget: int = DEMO_TUNE_BUDGET) -> TuneOptions:
    """Recalibrate from the completed demo run into <run>/tune/calibration.json; the short tune's options."""
    # imported here: the tune's plotting costs a second at start-up that the run alone does not need
    from servetune.deploy.spec import load_deployment_spec
    from servetune.tune.calibration import default_calibration, save_calibration
    from servetune.tune.constraints import Constraints, limit_ratio
    from servetune.tune.from_run import calibration_from_run
    from servetune.tune.pipeline import TuneOptions

    out = run_dir / DEMO_TUNE_FOLDER
    calibration = save_calibration(calibration_from_run(run_dir, default_calibration()), out / "calibration.json")
    constraints = Constraints(max_limit_ratio=limit_ratio(load_deployment_spec(DEMO_SPEC)))
    return TuneOptions(out=out, profile=DEMO_PROFILE, calibrations=[calibration], constraints=constraints,
                       budget=budget, verify=0, baselines=[DEMO_SPEC], better_than=[DEMO_SPEC],
                       headroom=0.0)  # nothing is verified for real here: the bounds are the demo's simulation
