"""The inference server: an ASGI app (FastAPI) with the HTTP API of docs/architecture.md.

`create_app(settings)` builds one app; `app_from_env()` builds it from SERVETUNE_* variables for gunicorn
(serve/settings.py; `gunicorn -k servetune.serve.worker.TimedUvicornWorker 'servetune.serve.app:app_from_env()'`).
The model is loaded and warmed up during the lifespan startup, so a worker takes no connection before it
can answer; on SIGTERM uvicorn stops accepting, lets in-flight requests finish, then runs the shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servetune import __version__
from servetune.config import ClassProbability, PredictionResponse
from servetune.host.cpu_quota import cpu_quota_cores, inference_threads
from servetune.model.artifact import default_model_path
from servetune.model.preprocess import ImageError, ImageTooLarge, UnsupportedImage
from servetune.serve.allocator import keep_large_blocks_returnable
from servetune.serve.docs import add_docs
from servetune.serve.labelling import Labelling, ModelIdentity
from servetune.serve.metrics import ServerMetrics
from servetune.serve.pool import InferencePool, Overloaded
from servetune.serve.predictor import Prediction, Predictor
from servetune.serve.sample_image import sample_image_bytes
from servetune.serve.security_headers import SecurityHeadersMiddleware
from servetune.serve.settings import ServerSettings
from servetune.serve.upload import UploadError, read_file_field

PAGE_DIR = Path(__file__).parent / "page"
ENDPOINTS = {"/", "/predict", "/labels", "/feedback", "/test", "/healthz", "/readyz", "/metrics", "/version", "/docs", "/openapi.json"}
RETRY_AFTER_S = "1"

log = logging.getLogger("servetune.serve")


def error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def endpoint_label(path: str) -> str:
    """A bounded set of metric labels: unknown paths must not create new time series."""
    if path in ENDPOINTS:
        return path
    return "/static" if path.startswith("/static/") else "other"


class InstrumentMiddleware:
    """Adds X-Served-By to every response (even a crash's 500) and records request metrics."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.host = socket.gethostname()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        served_by = f"{self.host}:{os.getpid()}".encode()
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_header(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (b"x-served-by", served_by)]
            await send(message)

        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_header)
        except Exception:
            if not response_started:
                await error(500, "internal server error")(scope, receive, send_with_header)
            raise
        finally:
            metrics.in_flight.dec()
            endpoint = endpoint_label(scope["path"])
            metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            metrics.latency.labels(endpoint, str(status)).observe(time.perf_counter() - started)
            metrics.update_memory()


class Server:
    """What the endpoints share: the predictor, its thread pool, metrics and readiness."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.threads = inference_threads(settings.threads)
        self.predictor: Predictor | None = None
        self.pool: InferencePool | None = None
        self.labelling = Labelling(settings, self.metrics)
        self.ready = False
        self.ready_file = Path(settings.ready_dir) / str(os.getpid()) if settings.ready_dir else None

    def start(self) -> None:
        began = time.perf_counter()
        settings = self.settings
        keep_large_blocks_returnable()
        self.predictor = Predictor(
            Path(settings.model_path or default_model_path()), self.threads,
            max_pixels=settings.max_pixels, top_k=settings.top_k,
        )
        self.pool = InferencePool(self.threads, settings.backlog)
        self.predictor.warm_up(self.sample(), settings.warmup_runs)
        spec = self.predictor.spec
        self.labelling.start(ModelIdentity(spec.name, self.predictor.sha256, tuple(spec.class_names)), os.getpid())
        self.ready = True
        self.metrics.ready.set(1)
        if self.ready_file is not None:
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            self.ready_file.touch()
        log.info(
            "model %s ready in %.2f s (%d inference threads, CPU quota %s)",
            self.predictor.spec.name, time.perf_counter() - began, self.threads, cpu_quota_cores(),
        )

    def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        if self.pool is not None:
            self.pool.shutdown()
        self.labelling.stop()
        self.metrics.process_exited()

    def sample(self) -> bytes:
        # Read on every call when it is a file (like the reference app): /test measures the whole path.
        return sample_image_bytes(self.settings.sample_image)

    def predict_sample(self) -> Prediction:
        assert self.predictor is not None
        return self.predictor.predict(self.sample())

    async def classify(self, data: bytes | None) -> PredictionResponse | JSONResponse:
        """Run one image (None: the sample image) through the pool and turn every failure into 4xx/503."""
        prediction = await self.run_model(data)
        return prediction if isinstance(prediction, JSONResponse) else self.response(prediction)

    async def classify_upload(self, data: bytes) -> PredictionResponse | JSONResponse:
        """classify() for a user's upload: it may be held out (labelling.py) or carry a feedback id."""
        prediction = await self.run_model(data)
        if isinstance(prediction, JSONResponse):
            return prediction
        extra = self.labelling.after_prediction(data, prediction)
        if isinstance(extra, JSONResponse):
            return extra
        response = self.response(prediction)
        if extra:
            response.feedback_id = extra["feedback_id"]
        return response

    async def run_model(self, data: bytes | None) -> Prediction | JSONResponse:
        if not self.ready or self.predictor is None or self.pool is None:
            return error(503, "model not ready", {"Retry-After": RETRY_AFTER_S})
        self.metrics.inference_queue.inc()
        try:
            if data is None:
                prediction = await self.pool.run(self.predict_sample)
            else:
                prediction = await self.pool.run(self.predictor.predict, data)
        except Overloaded as err:
            self.metrics.rejected.inc()
            return error(503, f"server busy: {err}", {"Retry-After": RETRY_AFTER_S})
        except ImageTooLarge as err:
            return error(413, str(err))
        except UnsupportedImage as err:
            return error(415, str(err))
        except ImageError as err:
            return error(400, str(err))
        finally:
            self.metrics.inference_queue.dec()
        timings = {
            "decode": prediction.decode_ms,
            "preprocess": prediction.preprocess_ms,
            "infer": prediction.infer_ms,
            "total": prediction.total_ms,
        }
        self.metrics.record_prediction(prediction.label, prediction.probability, timings)
        return prediction

    def response(self, prediction: Prediction) -> PredictionResponse:
        assert self.predictor is not None
        return PredictionResponse(
            prediction=prediction.label,
            probability=prediction.probability,
            top_k=[ClassProbability(label=label, probability=p) for label, p in prediction.top_k],
            inference_ms=prediction.total_ms,
            decode_ms=prediction.decode_ms,
            preprocess_ms=prediction.preprocess_ms,
            infer_ms=prediction.infer_ms,
            model=self.predictor.spec.name,
        )


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {
                        "type": "string", "format": "binary", "minLength": 1,
                        "description": "the image (JPEG, PNG, WebP, GIF or BMP); an empty file is refused (400)",
                    }},
                    "required": ["file"],
                }
            }
        },
    }
}
ERRORS = {
    400: {"description": "not a usable image, or a malformed upload"},
    413: {"description": "file too large in bytes or pixels"},
    415: {"description": "not multipart/form-data, or an unsupported image format"},
    503: {"description": "not ready yet, or too busy (see Retry-After)"},
}
HOLDOUT_ANSWER = {"description": "the prediction, or for a held-out upload {holdout, id, classes, expires_in_s}"}
ANSWER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "label": {"type": "string", "description": "a model class"}},
            "required": ["id"],
        }}},
    }
}
LABEL_ERRORS = {
    400: {"description": "not a JSON object with id and label"},
    404: {"description": "unknown id, or this server takes no labels"},
    409: {"description": "the id was answered already"},
    410: {"description": "the id has expired"},
    413: {"description": "body too large"},
    422: {"description": "label is not one of the model's classes"},
    429: {"description": "too many labels from this client"},
    503: {"description": "the label store is unavailable"},
}


def create_app(settings: ServerSettings) -> FastAPI:
    server = Server(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.start()
        try:
            yield
        finally:
            server.stop()

    app = FastAPI(
        title="servetune",
        version=__version__,
        description="Classify a food photo: upload it to POST /predict, or GET /test for the sample image.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.server = server
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(InstrumentMiddleware, metrics=server.metrics)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(str(e.get("msg", e)) for e in exc.errors()) or "invalid request")

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        index = PAGE_DIR / "index.html"
        if not index.is_file():
            return error(404, "the upload page is not installed")
        return FileResponse(index, media_type="text/html")

    @app.post(
        "/predict", response_model=PredictionResponse, response_model_exclude_none=True,
        openapi_extra=UPLOAD_BODY, responses={**ERRORS, 200: HOLDOUT_ANSWER},
    )
    async def predict(request: Request) -> PredictionResponse | JSONResponse:
        """Classify the image in the multipart field `file`. With --holdout-fraction, a random share of
        uploads answers `{"holdout": true, "id", "classes"}` instead: send the class to POST /labels."""
        if not server.ready:
            return error(503, "model not ready", {"Retry-After": RETRY_AFTER_S})
        try:
            data = await read_file_field(request, settings.max_upload_bytes)
        except UploadError as err:
            return error(err.status, err.reason)
        return await server.classify_upload(data)

    @app.post("/labels", openapi_extra=ANSWER_BODY, responses=LABEL_ERRORS)
    async def labels(request: Request) -> JSONResponse:
        """The user's class for a held-out upload, once, before its id expires; answers the prediction."""
        return await server.labelling.answer("label", request)

    @app.post("/feedback", openapi_extra=ANSWER_BODY, responses=LABEL_ERRORS)
    async def feedback(request: Request) -> JSONResponse:
        """'Wrong?' on a shown prediction (its `feedback_id`), once; `label`, the right class, is optional."""
        return await server.labelling.answer("feedback", request)

    @app.get("/test", response_model=PredictionResponse, response_model_exclude_none=True, responses={503: ERRORS[503]})
    async def test() -> PredictionResponse | JSONResponse:
        """Classify the server's sample image through the whole path (read, decode, preprocess, infer)."""
        return await server.classify(None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "not ready"}})
    async def readyz() -> Response:
        """Readiness: the model is loaded and warmed up (and the server is not shutting down)."""
        if not server.ready:
            return error(503, "not ready")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format."""
        body, content_type = server.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/version")
    async def version() -> dict:
        """Code and model versions."""
        predictor = server.predictor
        model = None
        if predictor is not None:
            spec = predictor.spec
            model = {
                "name": spec.name, "version": spec.version, "backbone": spec.backbone,
                "precision": spec.precision, "input_size": spec.input_size, "classes": spec.class_names,
                "accuracy": spec.accuracy, "data": spec.data, "sha256": predictor.sha256,
                "file": predictor.path.name,  # not the path: it tells a client about the server's disk
            }
        return {
            "servetune": __version__, "onnxruntime": ort.__version__, "model": model,
            "inference_threads": server.threads, "cpu_quota_cores": cpu_quota_cores(),
        }

    add_docs(app)
    app.mount("/static", StaticFiles(directory=PAGE_DIR, check_dir=False), name="static")
    return app


def app_from_env() -> FastAPI:
    return create_app(ServerSettings.from_env())
