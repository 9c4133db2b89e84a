"""The rows of the label store, as the server writes them and `servetune labels` reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Kind = Literal["holdout", "shown"]

# The columns in the order every query names them.
COLUMNS = (
    "key", "kind", "created_at", "expires_at", "model_name", "model_sha256", "predicted", "probability",
    "top_k", "photo_sha256", "photo_file", "replica", "review", "label", "labelled_at", "feedback_label",
    "feedback_at", "review_label", "reviewed_at",
)


@dataclass(frozen=True)
class Upload:
    """One upload a label may come back for. `key` is the sha256 of the client's token, never the token."""

    key: str
    kind: Kind
    created_at: float
    expires_at: float
    model_name: str
    model_sha256: str
    predicted: str
    probability: float
    top_k: tuple[tuple[str, float], ...]
    photo_sha256: str
    replica: str
    photo_file: str | None = None
    review: bool = False
    label: str | None = None  # the held-out answer (kind holdout)
    labelled_at: float | None = None
    feedback_label: str | None = None  # "wrong?" on a shown prediction; the class is optional
    feedback_at: float | None = None
    review_label: str | None = None  # from an annotation tool (servetune labels import)
    reviewed_at: float | None = None

    def values(self) -> tuple:
        """The row's values in COLUMNS order, as the store takes them."""
        row = {name: getattr(self, name) for name in COLUMNS}
        row["top_k"] = json.dumps([[label, p] for label, p in self.top_k])
        row["review"] = int(self.review)
        return tuple(row[name] for name in COLUMNS)

    @classmethod
    def from_row(cls, row: tuple) -> Upload:
        data = dict(zip(COLUMNS, row, strict=True))
        data["top_k"] = tuple((str(label), float(p)) for label, p in json.loads(data["top_k"]))
        data["review"] = bool(data["review"])
        return cls(**data)


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Answer:
    """What became of a label sent for a token: accepted (with the stored upload) or why not."""

    outcome: Outcome
    upload: Upload | None = None
