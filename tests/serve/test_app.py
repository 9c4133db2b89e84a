"""The HTTP API in-process (the app with its lifespan, through Starlette's test client)."""

import asyncio
import io
import os
import re
import socket
import threading

import httpx
import pytest
from fastapi.testclient import TestClient  # imported quietly by conftest first
from PIL import Image

from servetune.config import PredictionResponse
from servetune.serve.app import create_app
from servetune.serve.pool import InferencePool, Overloaded
from servetune.serve.settings import ServerSettings


def jpeg_bytes(size=(320, 240), color=(180, 90, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def test_test_endpoint_classifies_the_sample_image(client):
    response = client.get("/test")
    assert response.status_code == 200
    body = PredictionResponse.model_validate(response.json())
    assert body.model == "tiny"
    assert body.prediction == body.top_k[0].label and len(body.top_k) == 3
    assert body.inference_ms == pytest.approx(body.decode_ms + body.preprocess_ms + body.infer_ms)


def test_test_endpoint_is_never_cached(client):
    timings = {client.get("/test").json()["inference_ms"] for _ in range(3)}
    assert len(timings) == 3  # each call ran the model again


def test_predict_an_upload(client):
    response = client.post("/predict", files={"file": ("dish.jpg", jpeg_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"prediction", "probability", "top_k", "inference_ms", "model"}
    assert body["top_k"][0] == {"label": body["prediction"], "probability": body["probability"]}


def test_every_response_names_the_process(client):
    expected = f"{socket.gethostname()}:{os.getpid()}"
    for response in (client.get("/healthz"), client.get("/nowhere"), client.post("/predict")):
        assert response.headers["x-served-by"] == expected


def test_health_readiness_and_version(client, tiny_model):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    version = client.get("/version").json()
    assert version["model"]["name"] == "tiny" and len(version["model"]["sha256"]) == 64
    assert version["inference_threads"] == 1
    # The model's name, file name and digest, never where it lies on the server's disk.
    assert version["model"]["file"] == "tiny.onnx"
    assert str(tiny_model.parent) not in client.get("/version").text


def test_openapi_docs_describe_the_upload(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    upload = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["file"]["format"] == "binary"
    # An empty file is refused (400), so the schema says a file has at least one byte.
    assert upload["schema"]["properties"]["file"]["minLength"] == 1
    empty = client.post("/predict", files={"file": ("empty.jpg", b"", "image/jpeg")})
    assert empty.status_code == 400 and empty.json() == {"error": "empty file"}
    assert {"/test", "/healthz", "/readyz", "/metrics", "/version"} <= set(schema["paths"])


def test_docs_are_served_from_this_server(client):
    """Swagger UI's script and stylesheet come from this server (an offline cluster reaches no CDN)."""
    page = client.get("/docs").text
    assert "cdn." not in page and "https://" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/") for source in sources)
    for source in sources:
        response = client.get(source)
        assert response.status_code == 200 and len(response.content) > 300, source
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN: not offered


def test_responses_forbid_sniffing_and_the_page_gets_a_content_security_policy(client):
    for path in ("/", "/healthz", "/nowhere", "/static/app.js", "/docs", "/metrics"):
        assert client.get(path).headers["x-content-type-options"] == "nosniff", path
    for path in ("/", "/docs"):
        policy = client.get(path).headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert "content-security-policy" not in client.get("/healthz").headers


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    missing = client.get("/static/no-such-file.js")
    assert missing.status_code == 404 and "error" in missing.json()


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nope", 404), ("DELETE", "/test", 405),
                                                         ("GET", "/predict", 405), ("PUT", "/readyz", 405)])
def test_unknown_routes_and_methods_get_json_errors(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


def test_metrics_count_requests_predictions_and_memory(client):
    client.get("/test")
    client.post("/predict", files={"file": ("x.txt", b"not an image", "text/plain")})
    text = client.get("/metrics").text
    assert 'servetune_http_requests_total{endpoint="/test",method="GET",status="200"}' in text
    assert 'servetune_http_requests_total{endpoint="/predict",method="POST",status="415"}' in text
    assert 'servetune_http_request_duration_seconds_bucket{endpoint="/test",le="0.1",status="200"}' in text
    assert 'servetune_inference_seconds_count{step="infer"}' in text
    assert "servetune_predictions_total{label=" in text
    assert "servetune_prediction_confidence_count" in text
    assert "servetune_requests_in_flight 1.0" in text  # the /metrics request itself
    assert "servetune_ready 1.0" in text
    rss = [line for line in text.splitlines() if line.startswith("servetune_process_resident_memory_bytes")]
    assert float(rss[0].split()[-1]) > 10_000_000
    assert "process_resident_memory_bytes" in text
    # Unknown paths share one label instead of creating a series each.
    client.get("/random-path-12345")
    assert "random-path-12345" not in client.get("/metrics").text


def test_readiness_follows_the_lifespan_and_ready_file(tiny_model, tmp_path):
    ready_dir = tmp_path / "ready"
    settings = ServerSettings(model_path=str(tiny_model), threads=1, ready_dir=str(ready_dir))
    app = create_app(settings)
    server = app.state.server
    assert not server.ready
    with TestClient(app) as test_client:
        assert test_client.get("/readyz").status_code == 200
        assert (ready_dir / str(os.getpid())).is_file()
    assert not server.ready
    assert not (ready_dir / str(os.getpid())).exists()


def test_requests_before_the_model_is_ready_get_503(tiny_model):
    app = create_app(ServerSettings(model_path=str(tiny_model), threads=1))

    async def without_lifespan() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return [await http.get("/readyz"), await http.get("/test"), await http.get("/healthz")]

    readyz, test, healthz = asyncio.run(without_lifespan())
    assert readyz.status_code == 503 and test.status_code == 503 and "Retry-After" in test.headers
    assert healthz.status_code == 200


def test_pool_refuses_work_beyond_threads_plus_backlog():
    pool = InferencePool(threads=1, backlog=1)
    release = threading.Event()

    async def scenario() -> list:
        running = [asyncio.ensure_future(pool.run(release.wait, 5)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await pool.run(release.wait, 5)
        release.set()
        results = await asyncio.gather(*running)
        return results + [await pool.run(lambda: "accepted again")]

    try:
        assert asyncio.run(scenario()) == [True, True, "accepted again"]
    finally:
        release.set()
        pool.shutdown()


def test_full_backlog_answers_503_with_retry_after(tiny_model):
    app = create_app(ServerSettings(model_path=str(tiny_model), threads=1, backlog=0))
    release = threading.Event()

    async def scenario() -> list[httpx.Response]:
        server = app.state.server
        real_predict = server.predictor.predict

        def held_predict(data: bytes):  # the real model, after the test lets it go
            release.wait(10)
            return real_predict(data)

        server.predictor.predict = held_predict
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            upload = {"file": ("a.jpg", jpeg_bytes(), "image/jpeg")}
            first = asyncio.ensure_future(http.post("/predict", files=upload))
            await asyncio.sleep(0.1)
            second = await http.post("/predict", files=upload)
            release.set()
            return [await first, second]

    with TestClient(app):  # runs the lifespan (model load), then the scenario on its own loop
        first, second = asyncio.run(scenario())
    assert first.status_code == 200
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert "busy" in second.json()["error"]


def test_settings_from_env(monkeypatch, tiny_model):
    monkeypatch.setenv("SERVETUNE_MODEL", str(tiny_model))
    monkeypatch.setenv("SERVETUNE_THREADS", "3")
    monkeypatch.setenv("SERVETUNE_BACKLOG", "5")
    monkeypatch.setenv("SERVETUNE_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("SERVETUNE_READY_DIR", "/tmp/ready")
    settings = ServerSettings.from_env()
    assert (settings.threads, settings.backlog, settings.max_upload_bytes) == (3, 5, 1000)
    assert settings.ready_dir == "/tmp/ready" and settings.model_path == str(tiny_model)
    monkeypatch.setenv("SERVETUNE_THREADS", "many")
    with pytest.raises(ValueError, match="SERVETUNE_THREADS"):
        ServerSettings.from_env()


def test_an_unexpected_failure_is_a_json_500_and_the_server_goes_on(tiny_model):
    app = create_app(ServerSettings(model_path=str(tiny_model), threads=1))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        server = app.state.server
        real_predict = server.predictor.predict

        def broken(data: bytes):
            raise RuntimeError("simulated fault in the model runtime")

        server.predictor.predict = broken
        response = test_client.post("/predict", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")})
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error"} and "x-served-by" in response.headers
        server.predictor.predict = real_predict
        assert test_client.get("/test").status_code == 200
        assert 'endpoint="/predict",method="POST",status="500"' in test_client.get("/metrics").text
