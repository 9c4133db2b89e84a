"""Uploads as the server writes them, for the label store's tests."""

from __future__ import annotations

import hashlib
import secrets
import time

from servetune.labels.records import Kind, Upload


def make_upload(
    kind: Kind = "holdout", predicted: str = "Bread", probability: float = 0.8, ttl_s: float = 600,
    created_at: float | None = None, model_sha256: str = "a" * 64, review: bool = False,
) -> tuple[str, Upload]:
    """A token and its upload row."""
    token = secrets.token_urlsafe(24)
    now = time.time() if created_at is None else created_at
    upload = Upload(
        key=hashlib.sha256(token.encode()).hexdigest(), kind=kind, created_at=now, expires_at=now + ttl_s,
        model_name="tiny", model_sha256=model_sha256, predicted=predicted, probability=probability,
        top_k=((predicted, probability), ("Egg", 1 - probability)), photo_sha256="b" * 64,
        replica="host:1", review=review,
    )
    return token, upload
