# The serving image: servetune with its core dependencies only (ONNX Runtime; no torch, no TensorFlow).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# `pip install .` without extras: exactly pyproject's core dependencies, plus the packaged default model.
RUN pip install . && rm -rf /build

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin servetune
USER 10001
WORKDIR /home/servetune

EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/readyz', timeout=2)"]
CMD ["servetune", "serve", "--host", "0.0.0.0", "--port", "5000"]
