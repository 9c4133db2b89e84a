"""What the evaluation protocol (run.py) needs from a place that runs a deployment: the Backend protocol.

run.py calls, in this order: warm_up, apply, wait_ready, measure, tear_down (tear_down also after a failure
or Ctrl-C), and records `url` and `limits()` in run.json. Each call returns one line for the terminal and
run.json's step detail, and raises (any exception, its message recorded) when the step fails.

`measure` is the whole load + monitor step: it must leave load_output.csv and resource_usage.csv in the run
folder (requests.csv and load_profile.yaml when it can). A backend that runs real replicas implements
`LiveBackend` and measures with backend/measure.py (a real load driver against `url`, the resource monitor
on the same clock); a backend that only computes what would happen (a simulator) writes the files itself.
See docs/architecture.md, "How to add a backend".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from servetune.config import LoadProfile, ResourceSample
from servetune.load.labelling_users import LabellingPlan
from servetune.load.runner import LoadDriver
from servetune.runfolder import RunFolder, RunRecorder


class BackendName(StrEnum):
    LOCAL = "local"  # the one-machine cluster: gunicorn workers as replicas (deploy/local.py)
    KUBERNETES = "kubernetes"  # a real cluster (deploy/kubernetes.py)
    SIMULATED = "simulated"  # computed by the simulator (sim/backend.py), made by cli/ with a calibration


@dataclass(frozen=True)
class Measurement:
    """What the load + monitor step is asked to measure, and where the files go."""

    profile: LoadProfile
    folder: RunFolder
    driver: LoadDriver = LoadDriver.BUILTIN
    monitor_interval_s: float = 5.0
    progress: bool = True  # the load driver's live table
    labelling: LabellingPlan | None = None  # labelling users beside the load (load/labelling_users.py)


class Backend(Protocol):
    name: str  # run.json's `backend`
    warm_up_description: str  # how the terminal describes the warm-up step

    def warm_up(self) -> str: ...

    def apply(self) -> str: ...

    def wait_ready(self) -> str: ...

    @property
    def url(self) -> str: ...  # where the load goes; known once apply() returned

    # run.json's limits_enforced, limits_note, and what else the backend knows of the run (restarts, where
    # counted; what a time scale could not compress on a real cluster)
    def limits(self) -> dict: ...

    def measure(self, measurement: Measurement, recorder: RunRecorder) -> str: ...  # the step's outcome

    def tear_down(self) -> str: ...


class LiveBackend(Backend, Protocol):
    """A backend with real replicas: a resource monitor source and a way to notice that they broke."""

    host_cpu_counts: str  # what run.json's host_cpu.others_cores counts as "other processes" here

    def monitor(self, out: Path, interval_s: float, stop: threading.Event,
                on_sample: Callable[[ResourceSample], None]) -> int: ...

    def failure(self) -> str | None: ...  # why the deployment broke while it ran, or None
