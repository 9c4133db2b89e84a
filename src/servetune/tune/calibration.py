"""A model's calibration: what one replica of it costs and how fast it answers, measured on a real server.

The simulator (sim/) reads nothing else about a model. A calibration is measured by
`servetune tune calibrate` (tune/measure.py) on the one-machine cluster with cgroup-enforced CPU limits,
or recalibrated from a completed run folder (its requests.csv and resource_usage.csv hold the same figures).

What the simulator assumes from these figures:
- a request holds one worker for `cpu_ms` of CPU time (sampled from `cpu_ms_quantiles`), spent at up to
  `parallelism` cores at once, and is slowed only by its pod's CFS quota (limit x 100 ms per 100 ms period);
- the client sees `overhead_ms` more than the pod's service time (connection, HTTP, the load driver's own
  scheduling on the same cores);
- each worker holds `rss_*` bytes of memory; a pod is ready `start_to_ready_s` after it is created, or
  later under a CPU limit too small for its start-up: `start_cpu_s` / limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servetune.errors import ServetuneError

CALIBRATION_FILE = "calibration.json"
DEFAULT_CALIBRATION = Path(__file__).parent / "default_calibration.json"
QUANTILES = tuple(range(0, 101, 5))  # percentiles kept of every distribution

Target = Literal["GET /test", "POST /predict"]


class CalibrationError(ServetuneError, ValueError):
    """A calibration file that cannot be used; the message names the file and the problem."""


class ServiceTimes(BaseModel):
    """One measured setting: a single replica under a CPU limit, with `workers` x `threads`, at concurrency 1."""

    model_config = ConfigDict(extra="forbid")

    target: Target
    cpu_limit: float | None = Field(description="cgroup CPU limit in cores; None: unlimited")
    workers: int = Field(ge=1)
    threads: int = Field(ge=1)
    requests: int = Field(ge=1, description="requests measured")
    latency_ms_quantiles: list[float] = Field(description="client latency at percentiles 0, 5, ..., 100")
    cpu_ms_per_request: float = Field(ge=0, description="the replica's CPU time per request (cgroup/psutil)")
    saturated_per_s: float | None = Field(default=None, description="answers per second with 20 clients")
    saturated_cpu_ms_per_request: float | None = Field(default=None, description="CPU per request with 20 clients")


class CpuRepeat(BaseModel):
    """One repeat of the load that measures CPU per request: the server's own process CPU over it."""

    model_config = ConfigDict(extra="forbid")

    requests: int = Field(ge=1, description="requests answered with 200")
    seconds: float = Field(gt=0, description="wall seconds of the load")
    cpu_ms_per_request: float = Field(ge=0, description="the worker processes' CPU time (user + system) less "
                                      "their idle CPU over the load, per request")
    others_cores: float | None = Field(description="cores other processes on the machine took during it "
                                       "(/proc/stat's busy time less servetune's process tree); None: unknown")


class CpuPerRequest(BaseModel):
    """CPU per request of one endpoint as a run uses it, from several repeats of a run-like load."""

    model_config = ConfigDict(extra="forbid")

    target: Target
    cpu_limit: float = Field(gt=0, description="the replica's CPU limit during the repeats")
    users: int = Field(ge=1)
    delay: float = Field(ge=0, description="the users' think time bound (siege -d)")
    ms: float = Field(ge=0, description="the figure: median of the repeats used")
    low_ms: float = Field(ge=0, description="the least of the repeats used")
    high_ms: float = Field(ge=0, description="the most of the repeats used")
    used: int = Field(ge=1, description="repeats the figure comes from: the least disturbed by other processes")
    others_cores: float | None = Field(description="mean cores other processes took during the repeats used")
    repeats: list[CpuRepeat] = Field(min_length=1)


class Calibration(BaseModel):
    """Per model artifact: service times per (CPU limit, workers, threads), CPU per request, memory, start-up."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the model's name (artifact metadata)")
    model_file: str = Field(default="", description="the artifact's file name")
    model_sha256: str = ""
    accuracy: dict[str, float] = Field(default_factory=dict, description="split -> top-1, from the metadata")
    service: list[ServiceTimes] = Field(min_length=1)
    cpu_ms_quantiles: dict[str, list[float]] = Field(
        description="target -> CPU ms per request at percentiles 0, 5, ..., 100 (unthrottled)"
    )
    parallelism: float = Field(default=1.0, ge=1.0, description="cores one request keeps busy with 2+ threads")
    idle_cpu_cores: float = Field(default=0.0, ge=0, description="one idle worker's CPU (probes, timers)")
    response_bytes: int = Field(default=400, ge=0, description="body bytes of one answer")
    overhead_ms: float = Field(ge=0, description="client latency beyond the replica's service time")
    rss_idle_bytes: int = Field(gt=0, description="one worker, loaded and warmed up")
    rss_loaded_bytes: int = Field(gt=0, description="one worker after serving a load")
    rss_peak_bytes: int = Field(gt=0, description="the highest resident set seen")
    start_to_ready_s: float = Field(ge=0, description="an added replica: asked for until ready, at 1 CPU")
    start_cpu_s: float = Field(default=0.0, ge=0, description="CPU seconds a worker spends until ready")
    load_generator_cpu_ms_per_request: float | None = Field(
        default=None, description="the load driver's own CPU per request on the same machine"
    )
    cpu_per_request: list[CpuPerRequest] = Field(
        default_factory=list, description="per endpoint: the repeats that set the mean of cpu_ms_quantiles "
        "(empty in calibrations made before them, from a run or on a cluster)")
    notes: list[str] = Field(default_factory=list, description="what the measurement warned of (a busy machine)")
    machine: str = Field(description="CPU model and count, memory")
    date: str = Field(description="ISO date and time of the measurement (UTC)")
    version: str = Field(description="servetune version that measured it")
    source: str = Field(default="measured", description="'measured' or 'run folder <path>'")
    backend: str = Field(default="local", description="where it was measured: local (the one-machine cluster, "
                         "this machine's cores) or kubernetes (a cluster's nodes: measured there, or from a run "
                         "there)")


def load_calibration(path: str | Path) -> Calibration:
    """A calibration file (or a folder holding calibration.json); CalibrationError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / CALIBRATION_FILE
    try:
        return Calibration.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CalibrationError(f"{path}: not readable: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise CalibrationError(f"{path}: not a calibration: {where}: {first['msg']}") from None


def default_calibration() -> Calibration:
    """The packaged default model's calibration, measured on this project's machine (package data)."""
    return load_calibration(DEFAULT_CALIBRATION)


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".json":
        path = path / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path
