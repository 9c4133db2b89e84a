"""Prometheus metrics of one server process, and their exposition for GET /metrics.

With several worker processes (gunicorn) PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is
imported; each process then writes its values to files there and /metrics merges all of them.
"""

from __future__ import annotations

import os
import time

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# The *_created series double the output and nothing here reads them.
disable_created_metrics()

# Request latency of an image classifier: from a few ms (cache-warm tiny model) to seconds (overload).
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class ServerMetrics:
    """The metrics one app records, in a registry of its own (several apps may live in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_dir() is not None
        if not self.multiprocess:
            ProcessCollector(registry=self.registry)
        registry = self.registry
        self.requests = Counter(
            "servetune_http_requests", "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"], registry=registry,
        )
        self.latency = Histogram(
            "servetune_http_request_duration_seconds", "HTTP request latency by endpoint and status",
            ["endpoint", "status"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.inference = Histogram(
            "servetune_inference_seconds", "Model time per image by step (decode, preprocess, infer, total)",
            ["step"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.predictions = Counter(
            "servetune_predictions", "Predicted class counts", ["label"], registry=registry,
        )
        self.confidence = Histogram(
            "servetune_prediction_confidence", "Probability of the predicted class",
            buckets=CONFIDENCE_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge(
            "servetune_requests_in_flight", "HTTP requests being handled", registry=registry,
            multiprocess_mode="livesum",
        )
        self.inference_queue = Gauge(
            "servetune_inference_queue", "Images waiting for or in the inference pool", registry=registry,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "servetune_backlog_rejections", "Requests answered 503 because the inference backlog was full",
            registry=registry,
        )
        self.memory = Gauge(
            "servetune_process_resident_memory_bytes", "Resident memory of each server process",
            registry=registry, multiprocess_mode="liveall",
        )
        self.ready = Gauge(
            "servetune_ready", "1 once the model is loaded and warmed up", registry=registry,
            multiprocess_mode="liveall",
        )
        self.add_label_metrics(registry)
        self.process = psutil.Process()
        self.memory_updated = 0.0

    def add_label_metrics(self, registry: CollectorRegistry) -> None:
        """Labels from users (serve/labelling.py): bounded label values (model sha256, the model's classes)."""
        self.holdout_uploads = Counter(
            "servetune_holdout_uploads", "Uploads held out: the user was asked for the class", ["model_sha256"],
            registry=registry,
        )
        self.holdout_labels = Counter(
            "servetune_holdout_labels", "Held-out labels received, by the user's class and whether the model "
            "agreed (live top-1 accuracy: correct=true over all)", ["model_sha256", "label", "correct"],
            registry=registry,
        )
        self.holdout_skipped = Counter(
            "servetune_holdout_skipped", "Uploads that would have been held out but were shown: the label store "
            "was down or its queue full", ["reason"], registry=registry,
        )
        self.label_refusals = Counter(
            "servetune_label_refusals", "Labels and feedback refused, by reason", ["endpoint", "reason"],
            registry=registry,
        )
        self.feedback = Counter(
            "servetune_feedback", "'wrong?' feedback on shown predictions (biased: not an accuracy)",
            ["model_sha256"], registry=registry,
        )
        self.review_queued = Counter(
            "servetune_review_queued", "Shown uploads queued for review (probability under --review-below)",
            ["model_sha256"], registry=registry,
        )
        self.store_up = Gauge(
            "servetune_labels_store_up", "1 while the label store answers", registry=registry,
            multiprocess_mode="livemin",
        )
        self.live_accuracy = Gauge(
            "servetune_live_accuracy", "Live top-1 accuracy on held-out labels in the store (every replica's)",
            ["model_sha256"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.live_labelled = Gauge(
            "servetune_live_labelled", "Held-out labels in the store (every replica's)", ["model_sha256"],
            registry=registry, multiprocess_mode="mostrecent",
        )

    def update_memory(self, min_interval_s: float = 1.0) -> None:
        now = time.monotonic()
        if now - self.memory_updated >= min_interval_s:
            self.memory_updated = now
            self.memory.set(self.process.memory_info().rss)

    def record_prediction(self, label: str, probability: float, timings: dict[str, float]) -> None:
        self.predictions.labels(label).inc()
        self.confidence.observe(probability)
        for step, milliseconds in timings.items():
            self.inference.labels(step).observe(milliseconds / 1000)

    def exposition(self) -> tuple[bytes, str]:
        self.update_memory(min_interval_s=0)
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def process_exited(self) -> None:
        """Drop this process's live gauges from the shared files (gunicorn worker shutdown)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())
