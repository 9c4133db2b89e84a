"""Image bytes -> top-k classes with ONNX Runtime on the CPU, timing each step.

The preprocessing comes from the artifact's ModelSpec (model/preprocess.py), so what is served is what was
evaluated.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from servetune.config import ModelSpec
from servetune.errors import first_line
from servetune.model.artifact import ArtifactError, file_sha256, spec_from_metadata
from servetune.model.preprocess import DEFAULT_MAX_PIXELS, preprocess
from servetune.model.ranking import class_probabilities, ranked
from servetune.serve.decode import decode_bounded


@dataclass
class Prediction:
    label: str
    probability: float
    top_k: list[tuple[str, float]]
    decode_ms: float
    preprocess_ms: float
    infer_ms: float

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.preprocess_ms + self.infer_ms


@dataclass
class Predictor:
    """An ONNX Runtime session; `predict` is safe to call from several threads at once.

    A lone request runs its inference on `threads` intra-op threads (lowest latency). While another
    prediction is in progress it uses a second, single-threaded session instead: the calls already run in
    parallel, and splitting each one over threads that other calls need only adds wake-ups and contention.
    """

    path: Path
    threads: int
    max_pixels: int = DEFAULT_MAX_PIXELS
    top_k: int = 3
    spec: ModelSpec = field(init=False)
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such model file")
        self.session = self.new_session(self.threads)
        # ~8 MB for a Lite0 INT8 model; only worth it when there is more than one thread to give.
        self.busy_session = self.new_session(1) if self.threads > 1 else self.session
        self.in_progress = 0
        self.in_progress_lock = threading.Lock()
        self.spec = spec_from_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.input_name = self.session.get_inputs()[0].name
        self.sha256 = file_sha256(self.path)

    def new_session(self, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning idle threads burn the CPU quota (and inflate the autoscaler's CPU reading) for a few
        # microseconds of latency; a server between requests should sleep.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 ORT raises several private exception types for unreadable files
            raise ArtifactError(f"{self.path}: not a loadable ONNX model: {first_line(err)}") from None

    def predict(self, data: bytes) -> Prediction:
        """Raises model.preprocess.ImageError (a reason fit for the client) when `data` is not usable."""
        with self.in_progress_lock:
            self.in_progress += 1
        try:
            return self.run_steps(data, busy=None)
        finally:
            with self.in_progress_lock:
                self.in_progress -= 1

    def run_steps(self, data: bytes, busy: bool | None) -> Prediction:
        """Decode, preprocess, infer; `busy` None picks the session by the other predictions in progress."""
        start = time.perf_counter()
        image = decode_bounded(data, self.spec, self.max_pixels)
        decoded = time.perf_counter()
        batch = preprocess(image, self.spec)[np.newaxis]
        prepared = time.perf_counter()
        if busy is None:
            busy = self.in_progress > 1  # read without the lock: a hint, not an invariant
        session = self.busy_session if busy else self.session
        output = session.run(None, {self.input_name: batch})[0]
        done = time.perf_counter()
        probabilities = self.probabilities(np.asarray(output, dtype=np.float64).reshape(-1))
        order = ranked(probabilities)[: self.top_k]
        names = self.spec.class_names
        top = [(names[i], float(probabilities[i])) for i in order]
        return Prediction(
            label=top[0][0],
            probability=top[0][1],
            top_k=top,
            decode_ms=(decoded - start) * 1000,
            preprocess_ms=(prepared - decoded) * 1000,
            infer_ms=(done - prepared) * 1000,
        )

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        if scores.shape[0] != len(self.spec.class_names):
            raise ArtifactError(
                f"{self.path}: model outputs {scores.shape[0]} scores for {len(self.spec.class_names)} classes"
            )
        return class_probabilities(scores, self.spec.output)

    def warm_up(self, image: bytes, runs: int = 3) -> None:
        """The first runs allocate ORT's buffers and page in the weights; do them before taking traffic."""
        for _ in range(runs):
            self.run_steps(image, busy=False)
            if self.busy_session is not self.session:
                self.run_steps(image, busy=True)
