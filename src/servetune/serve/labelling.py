"""Labels from users: the held-out flow, review queue and "wrong?" feedback of one server process.

- Held out: for a random share of uploads (decided here, never by the client) /predict answers
  `{"holdout": true, "id": ...}` instead of the prediction; `POST /labels {"id", "label"}` takes the user's
  class once, before the id expires, and answers the prediction that was hidden until then.
- Review: a shown upload whose top probability is under `review_below` is stored (with its photo when
  photos are kept) for annotation: `servetune labels export` / `import`.
- Feedback: with `feedback` on, a shown prediction carries `feedback_id`; `POST /feedback {"id", "label"?}`
  records once that the user found it wrong (biased: counted apart from held-out accuracy).

The client holds a token (secrets.token_urlsafe, 192 bits); the store keeps only its sha256. Every write
goes through the label store's writer thread (labels/writer.py): /predict never waits on the store, and
while it is down uploads are shown instead of held out, and labels get 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect, Request

from servetune.labels.location import parse_location
from servetune.labels.photos import PhotoKeeper
from servetune.labels.records import Answer, Kind, Outcome, Upload
from servetune.labels.store import AnswerKind, LabelStore, StoreUnavailable, open_store
from servetune.labels.writer import StoreWriter
from servetune.serve.metrics import ServerMetrics
from servetune.serve.predictor import Prediction
from servetune.serve.rate_limit import RateLimiter
from servetune.serve.settings import DEFAULT_LABELS_DB, ServerSettings

MAX_BODY_BYTES = 4096
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
ANSWER_TIMEOUT_S = 5.0
REFUSALS = {  # outcome: (status, reason)
    Outcome.UNKNOWN: (404, "unknown id"),
    Outcome.USED: (409, "this id has already been answered"),
    Outcome.EXPIRED: (410, "this id has expired"),
}
draw = secrets.SystemRandom()  # the held-out draw: unpredictable to clients
log = logging.getLogger("servetune.serve")


class BadAnswer(Exception):
    def __init__(self, status: int, reason: str, cause: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.cause = status, reason, cause


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    sha256: str
    classes: tuple[str, ...]


def new_token() -> tuple[str, str]:
    """A token for the client and the key the store keeps (its sha256)."""
    token = secrets.token_urlsafe(24)
    return token, token_key(token)


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Labelling:
    """One process's part of the label flows; `enabled` is False when every feature is off."""

    def __init__(self, settings: ServerSettings, metrics: ServerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.enabled = settings.labelling()
        self.model: ModelIdentity | None = None
        self.replica = socket.gethostname()
        self.limiter = RateLimiter(settings.label_rate_per_min)
        self.writer: StoreWriter | None = None

    def start(self, model: ModelIdentity, pid: int) -> None:
        if not self.enabled:
            return
        self.model = model
        self.replica = f"{socket.gethostname()}:{pid}"
        settings = self.settings
        location = parse_location(settings.labels_db or DEFAULT_LABELS_DB)
        keeper = PhotoKeeper(settings.keep_photos, settings.keep_photos_mb * 1024 * 1024) if settings.keep_photos else None
        self.metrics.store_up.set(0)
        self.writer = StoreWriter(
            lambda: open_store(location),
            keep_photo=keeper.keep if keeper else None,
            on_change=lambda up: self.metrics.store_up.set(int(up)),
            refresh=self.refresh_accuracy,
        )
        self.writer.start()
        log.info(
            "labels: held out %.3g of uploads, review below %.3g, feedback %s, store %s",
            settings.holdout_fraction, settings.review_below, "on" if settings.feedback else "off",
            location.redacted(),
        )

    def stop(self) -> None:
        if self.writer is not None:
            self.writer.stop()

    def refresh_accuracy(self, store: LabelStore) -> None:
        for sha, (correct, total) in store.accuracy_by_model().items():
            self.metrics.live_labelled.labels(sha).set(total)
            self.metrics.live_accuracy.labels(sha).set(correct / total if total else 0.0)

    # --- /predict -------------------------------------------------------------------------------------

    def after_prediction(self, data: bytes, prediction: Prediction) -> dict | JSONResponse | None:
        """What a classified upload answers besides the prediction: a held-out answer that replaces it,
        extra fields for it (feedback_id), or None."""
        if not self.enabled or self.writer is None or self.model is None:
            return None
        settings = self.settings
        if settings.holdout_fraction > 0 and draw.random() < settings.holdout_fraction:
            if not self.writer.up:
                self.metrics.holdout_skipped.labels("store_down").inc()
            else:
                token = self.store(data, prediction, "holdout", keep=True)
                if token is not None:
                    self.metrics.holdout_uploads.labels(self.model.sha256).inc()
                    return JSONResponse({
                        "holdout": True, "id": token, "classes": list(self.model.classes),
                        "expires_in_s": settings.label_ttl_s, "model": self.model.name,
                    })
                self.metrics.holdout_skipped.labels("queue_full").inc()
        review = prediction.probability < settings.review_below
        if not (review or settings.feedback) or not self.writer.up:
            return None
        token = self.store(data, prediction, "shown", keep=review, review=review)
        if token is None:
            return None
        if review:
            self.metrics.review_queued.labels(self.model.sha256).inc()
        return {"feedback_id": token} if settings.feedback else None

    def store(self, data: bytes, prediction: Prediction, kind: Kind, keep: bool, review: bool = False) -> str | None:
        assert self.writer is not None and self.model is not None
        token, key = new_token()
        now = time.time()
        upload = Upload(
            key=key, kind=kind, created_at=now, expires_at=now + self.settings.label_ttl_s,
            model_name=self.model.name, model_sha256=self.model.sha256, predicted=prediction.label,
            probability=prediction.probability, top_k=tuple(prediction.top_k), photo_sha256="",
            replica=self.replica, review=review,
        )
        return token if self.writer.add(upload, data, keep=keep and self.settings.keep_photos is not None) else None

    # --- /labels and /feedback ------------------------------------------------------------------------

    async def answer(self, kind: AnswerKind, request: Request) -> JSONResponse:
        endpoint = "/labels" if kind == "label" else "/feedback"
        try:
            token, label = await self.read_answer(kind, request)
            answer = await self.record(kind, token, label)
        except BadAnswer as refusal:
            self.metrics.label_refusals.labels(endpoint, refusal.cause).inc()
            headers = {"Retry-After": "5"} if refusal.status in (429, 503) else None
            return JSONResponse({"error": refusal.reason}, status_code=refusal.status, headers=headers)
        upload = answer.upload
        assert upload is not None
        if kind == "feedback":
            self.metrics.feedback.labels(upload.model_sha256).inc()
            return JSONResponse({"recorded": True, "label": label})
        correct = upload.predicted == label
        assert self.writer is not None
        self.writer.refresh_soon()  # servetune_live_accuracy: every replica's labels, from the store
        self.metrics.holdout_labels.labels(upload.model_sha256, label, str(correct).lower()).inc()
        return JSONResponse({
            "label": label, "correct": correct, "prediction": upload.predicted, "probability": upload.probability,
            "top_k": [{"label": name, "probability": p} for name, p in upload.top_k], "model": upload.model_name,
        })

    async def read_answer(self, kind: AnswerKind, request: Request) -> tuple[str, str | None]:
        if not self.enabled or self.model is None:
            what = "held-out labels" if kind == "label" else "feedback"
            raise BadAnswer(404, f"this server takes no {what}", "off")
        client = request.client.host if request.client else "unknown"
        if not self.limiter.allow(client):
            raise BadAnswer(429, "too many labels from this client; try again later", "rate_limited")
        body = await read_small_body(request)
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadAnswer(400, "the body must be a JSON object {\"id\": ..., \"label\": ...}", "bad_request") from None
        if not isinstance(data, dict) or set(data) - {"id", "label"}:
            raise BadAnswer(400, "the body must be a JSON object with only \"id\" and \"label\"", "bad_request")
        token, label = data.get("id"), data.get("label")
        if not isinstance(token, str) or not TOKEN.match(token):
            raise BadAnswer(400, "\"id\" must be the id that /predict answered", "bad_request")
        if label is None and kind == "feedback":
            return token, None
        if not isinstance(label, str) or label not in self.model.classes:
            raise BadAnswer(
                422, f"\"label\" must be one of the model's classes: {', '.join(self.model.classes)}", "bad_class"
            )
        return token, label

    async def record(self, kind: AnswerKind, token: str, label: str | None) -> Answer:
        assert self.writer is not None
        key, now = token_key(token), time.time()
        future = self.writer.call(lambda store: store.answer(kind, key, label, now))
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                answer = await asyncio.wrap_future(future)
        except (StoreUnavailable, TimeoutError):
            raise BadAnswer(503, "the label store is unavailable; try again later", "store_down") from None
        if answer.outcome is not Outcome.ACCEPTED:
            status, reason = REFUSALS[answer.outcome]
            raise BadAnswer(status, reason, answer.outcome.value)
        return answer


async def read_small_body(request: Request) -> bytes:
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                raise BadAnswer(413, f"the body is larger than {MAX_BODY_BYTES} bytes", "too_large")
    except ClientDisconnect:
        raise BadAnswer(400, "the client disconnected", "bad_request") from None
    return bytes(body)
