"""run.json's contents, typed: what one run (real or simulated) recorded about itself.

`runfolder.RunFolder` reads and writes it (`read_record`, `write_record`); `runfolder.RunRecorder` keeps it
during a run. Every field is optional: a run that stopped part-way, a simulated run and a hand-made run folder
each hold only some, and run.json keeps only the fields that were set (a field set to null stays null).
Unknown fields are kept as they are, so a run.json of another servetune version reads and writes back whole.
docs/architecture.md lists who sets which field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Status = Literal["running", "completed", "failed", "interrupted"]
VERSION_KEY = "servetune_version"
OLD_VERSION_KEYS = ("servetune",)  # what run.py wrote before the one key; read as servetune_version


class RecordPart(BaseModel):
    """A part of run.json: unknown fields kept, assignments checked."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def as_json(self) -> dict:
        """Its JSON object: the fields that were set, unknown ones kept."""
        return self.model_dump(mode="json", exclude_unset=True)


class Step(RecordPart):
    """One protocol step: its name, status and timing, and the one line its backend call returned."""

    name: str
    status: Status
    started_at: float | None = None
    ended_at: float | None = None
    seconds: float | None = None
    detail: str | None = None
    # What the step's body says its outcome was (the load step: interrupted or failed without raising);
    # never written: it becomes `status` when the step ends.
    outcome: str | None = Field(default=None, exclude=True)


class Machine(RecordPart):
    host: str | None = None
    platform: str | None = None
    python: str | None = None
    cpus: int | None = None


class ModelFile(RecordPart):
    """The model file the run served: where it was, its hash and size, whether the run folder has a copy."""

    path: str
    sha256: str | None = None
    bytes: int | None = None
    copied: bool | None = None
    in_image_only: bool | None = None  # on Kubernetes: a model only the image holds


class TimeScaleOnCluster(RecordPart):
    """What a time scale changed of the HPA on a real cluster (deploy/compressed_hpa.py) and what it could not."""

    time_scale: float
    compressed: list[str] = Field(default_factory=list)
    not_compressed: list[str] = Field(default_factory=list)


class HostCpu(RecordPart):
    """This machine's CPU during the load (host/machine_cpu.py): busy cores, the run's, the others'."""

    cores: int | None = Field(default=None, gt=0)
    busy_cores: float | None = None
    run_cores: float | None = None
    others_cores: float = Field(ge=0)
    seconds: float | None = None
    counts: str | None = None  # what "the run's" took in


class NodeCpu(RecordPart):
    """The replicas' nodes' CPU during the load (monitor/node_usage.py), or why it could not be read."""

    unavailable: str | None = None
    nodes: list[str] | None = None
    busy_cores: float | None = None
    replica_cores: float | None = None
    others_cores: float | None = Field(default=None, ge=0)
    samples: int | None = None
    counts: str | None = None


class LiveAccuracyRecord(RecordPart):
    """The labelling users' held-out labels the deployment accepted and how often its model agreed."""

    accuracy: float | None = None
    correct: int | None = None
    n: int | None = None
    wilson_95: tuple[float, float] | None = None
    held_out: int | None = None
    uploads: int | None = None
    refused: dict[str, int] | None = None  # HTTP status (or "no answer") -> refused labels or uploads
    source: str | None = None


class CalibrationUsed(RecordPart):
    """Which calibration a simulated run used."""

    machine: str | None = None
    date: str | None = None
    version: str | None = None
    source: str | None = None


class RunRecord(RecordPart):
    """run.json, field by field, in the order a run sets them."""

    status: Status | None = None
    failed_step: str | None = None
    error: str | None = None
    name: str | None = None
    backend: str | None = None
    spec: str | None = None  # the spec as given: a file or a bundled name
    profile: str | None = None
    profile_seconds: float | None = None
    time_scale: float | None = Field(default=None, gt=0)
    driver: str | None = None
    monitor_interval_s: float | None = None
    started_at: float | None = None
    servetune_version: str | None = None  # the servetune that wrote it (RunFolder.write_record sets it)
    machine: Machine | None = None
    steps: list[Step] = Field(default_factory=list)
    model_file: ModelFile | None = None
    model: str | None = None
    accuracy: float | None = None  # the model card's, of `accuracy_split`
    accuracy_split: str | None = None
    url: str | None = None
    limits_enforced: bool | None = None
    limits_note: str | None = None
    restarts: int | None = Field(default=None, ge=0)
    restart_reasons: dict[str, int] | None = None
    time_scale_on_cluster: TimeScaleOnCluster | None = None
    node_cpu: NodeCpu | None = None
    simulated: bool | None = None
    seed: int | None = None
    calibration: CalibrationUsed | None = None
    load_started_at: float | None = None
    monitor_first_sample_at: float | None = None
    live_accuracy: LiveAccuracyRecord | None = None
    host_cpu: HostCpu | None = None
    load_ended_at: float | None = None
    monitor_samples: int | None = None
    analysis: str | None = None
    report: str | None = None
    ended_at: float | None = None

    @model_validator(mode="before")
    @classmethod
    def one_version_key(cls, data: Any) -> Any:
        """An older run.json's version key read as the one key."""
        if isinstance(data, dict) and any(key in data for key in OLD_VERSION_KEYS):
            data = dict(data)
            for key in OLD_VERSION_KEYS:
                version = data.pop(key, None)
                if version is not None and data.get(VERSION_KEY) is None:
                    data[VERSION_KEY] = version
        return data

    def set(self, **fields: object) -> None:
        """Set run.json fields, each checked; TypeError for a name run.json does not have."""
        for name, value in fields.items():
            if name not in RunRecord.model_fields:
                raise TypeError(f"run.json has no field {name!r}")
            setattr(self, name, value)
