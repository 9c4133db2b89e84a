"""How one inference server process runs, and the SERVETUNE_* environment that carries it.

The settings reach a server as flags of `servetune serve` or as environment variables: gunicorn workers
(serve/launch.py), the one-machine cluster's replicas (deploy/local.py) and the Kubernetes container
(deploy/manifests.py) are all given `to_env()`, and every worker builds its app from `from_env()`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servetune.config import LabelsSpec

ENV_NAMES = {
    "model_path": "SERVETUNE_MODEL",
    "sample_image": "SERVETUNE_SAMPLE_IMAGE",
    "threads": "SERVETUNE_THREADS",
    "ready_dir": "SERVETUNE_READY_DIR",
    "max_upload_bytes": "SERVETUNE_MAX_UPLOAD_BYTES",
    "max_pixels": "SERVETUNE_MAX_PIXELS",
    "backlog": "SERVETUNE_BACKLOG",
    "top_k": "SERVETUNE_TOP_K",
    "warmup_runs": "SERVETUNE_WARMUP_RUNS",
    "holdout_fraction": "SERVETUNE_HOLDOUT_FRACTION",
    "labels_db": "SERVETUNE_LABELS_DB",
    "label_ttl_s": "SERVETUNE_LABEL_TTL_S",
    "label_rate_per_min": "SERVETUNE_LABEL_RATE_PER_MIN",
    "review_below": "SERVETUNE_REVIEW_BELOW",
    "feedback": "SERVETUNE_FEEDBACK",
    "keep_photos": "SERVETUNE_KEEP_PHOTOS",
    "keep_photos_mb": "SERVETUNE_KEEP_PHOTOS_MB",
}
DEFAULT_LABELS_DB = "servetune-labels.db"  # in the working directory, when a label feature is on


class ServerSettings(BaseModel):
    """How one inference server process runs (flags of `servetune serve`, or SERVETUNE_* env vars)."""

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = Field(
        default=None, description="the model artifact (.onnx with servetune metadata); None: the packaged default"
    )
    sample_image: str | None = Field(default=None, description="image for GET /test; None: generated")
    threads: int | None = Field(default=None, ge=1, le=256, description="inference threads; None: CPU quota")
    ready_dir: str | None = Field(default=None, description="write <ready_dir>/<pid> once ready")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=40_000_000, gt=0, description="larger images are rejected (bombs)")
    backlog: int = Field(default=64, ge=0, description="requests that may wait for the inference pool")
    top_k: int = Field(default=3, ge=1)
    warmup_runs: int = Field(default=3, ge=0)
    # Labels from users (serve/labelling.py); each is off by default.
    holdout_fraction: float = Field(
        default=0.0, ge=0, le=1, description="share of uploads whose class the user is asked for (held out)"
    )
    labels_db: str | None = Field(
        default=None, description=f"SQLite file or postgresql:// URL; None: {DEFAULT_LABELS_DB} when needed",
        repr=False,  # a URL may carry a password
    )
    label_ttl_s: int = Field(default=900, ge=10, le=7 * 86_400, description="how long a label id stays valid")
    label_rate_per_min: int = Field(default=120, ge=0, description="labels per client per minute; 0: no limit")
    review_below: float = Field(default=0.0, ge=0, le=1, description="queue shown uploads under this probability")
    feedback: bool = Field(default=False, description="offer 'wrong?' feedback on shown predictions")
    keep_photos: str | None = Field(default=None, description="folder for held-out and review photos")
    keep_photos_mb: int = Field(default=1024, gt=0, description="size quota of keep_photos")

    def labelling(self) -> bool:
        """Whether any label feature is on (and so the server needs its label store)."""
        return self.holdout_fraction > 0 or self.review_below > 0 or self.feedback

    def to_env(self) -> dict[str, str]:
        """The variables that give a server these settings: only those that differ from the defaults."""
        values = self.model_dump(exclude_defaults=True)
        return {ENV_NAMES[field]: str(value) for field, value in values.items() if value is not None}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """The settings the variables give (unset or empty: the default); a bad value names its variable."""
        environ = os.environ if environ is None else environ
        fields = {field: environ[name] for field, name in ENV_NAMES.items() if environ.get(name)}
        try:
            return cls(**fields)
        except ValidationError as error:
            problem = error.errors()[0]
            name = ENV_NAMES[str(problem["loc"][0])]
            raise ValueError(f"{name}={environ[name]!r}: {problem['msg']}") from None


def label_fields(labels: LabelsSpec | None) -> dict:
    """The ServerSettings fields a spec's `labels` section sets (the store's location is the caller's)."""
    if labels is None:
        return {}
    return labels.model_dump(include={"holdout_fraction", "review_below", "feedback", "label_ttl_s",
                                      "label_rate_per_min"})
