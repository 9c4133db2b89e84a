"""Integration: train a tiny model through the CLI, export, quantize, evaluate, and serve it over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from servetune.model.artifact import read_spec
from servetune.model.data import read_split
from servetune.model.evaluate import evaluate, predict_offline
from servetune.model.preprocess import load_and_preprocess
from servetune.model.train import load_trained

CLI = [sys.executable, "-c", "from servetune.cli import app; app()"]


def servetune(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_food11) -> Path:
    """One tiny training run + export shared by the tests below (64 px, 4 images per class)."""
    out = tmp_path_factory.mktemp("run")
    servetune("model", "train", "--data", str(tiny_food11), "--out", str(out), "--input-size", "64",
              "--views", "1", "--finetune-blocks", "1", "--head-epochs", "6", "--finetune-epochs", "2",
              "--patience", "10", "--threads", "2")
    servetune("model", "export", str(out / "model.pt"), "--out", str(out / "tiny-fp32.onnx"),
              "--data", str(tiny_food11), "--calibration-images", "16")
    return out


def test_training_writes_model_summary_and_checkpoint(run):
    summary = json.loads((run / "train_summary.json").read_text())
    assert [len(stage["history"]) for stage in summary["stages"]] == [6, 2]
    assert (run / "checkpoint.pt").is_file()
    assert 0.0 <= summary["validation_accuracy"] <= 1.0


def test_resume_continues_from_the_checkpoint(run, tiny_food11, tmp_path):
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(run, copy)
    servetune("model", "train", "--data", str(tiny_food11), "--out", str(copy), "--input-size", "64",
              "--views", "1", "--finetune-blocks", "1", "--head-epochs", "6", "--finetune-epochs", "3",
              "--patience", "10", "--threads", "2", "--resume")
    summary = json.loads((copy / "train_summary.json").read_text())
    # stage 1 was finished: only stage 2 runs, from epoch 3 (its first two epochs are in the checkpoint);
    # the summary still shows both stages
    original = json.loads((run / "train_summary.json").read_text())
    assert [stage["stage"] for stage in summary["stages"]] == [1, 2]
    assert summary["stages"][0] == original["stages"][0]
    assert [h["epoch"] for h in summary["stages"][1]["history"]] == [1, 2, 3]
    assert summary["stages"][1]["history"][:2] == original["stages"][1]["history"]


def test_onnx_export_matches_torch_and_carries_the_spec(run, tiny_food11):
    model, spec = load_trained(run / "model.pt")
    fp32 = run / "tiny-fp32.onnx"
    exported = read_spec(fp32)
    assert exported.precision == "fp32" and exported.input_size == 64 and exported.backbone == "efficientnet-lite0"
    assert "evaluation" in exported.accuracy
    sample = read_split(tiny_food11, "evaluation").samples[0]
    array = load_and_preprocess(sample.path.read_bytes(), spec)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(array[None])), 1).numpy()
    probabilities, kept, skipped, _ = predict_offline(fp32, [sample])
    assert kept == [0] and not skipped
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_export_at_another_input_size_serves_the_same_weights(run, tmp_path):
    servetune("model", "export", str(run / "model.pt"), "--out", str(tmp_path / "tiny-48-fp32.onnx"),
              "--no-int8", "--input-size", "48")
    model, trained = load_trained(run / "model.pt")
    spec = read_spec(tmp_path / "tiny-48-fp32.onnx")
    assert (spec.input_size, spec.resize) == (48, round(trained.resize * 48 / 64))
    assert spec.name == trained.name.removesuffix("-64") + "-48-fp32"
    assert spec.accuracy == {}  # the trained side's validation accuracy does not hold at another side
    image = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 48)).astype(np.float32)
    from servetune.model.evaluate import onnx_session

    logits = onnx_session(tmp_path / "tiny-48-fp32.onnx").run(None, {"input": image})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_int8_artifact_is_smaller_and_close_to_fp32(run, tiny_food11):
    import onnx

    fp32, int8 = run / "tiny-fp32.onnx", run / "tiny-int8.onnx"
    spec = read_spec(int8)
    assert spec.precision == "int8" and spec.name.endswith("-int8")
    assert int8.stat().st_size < 0.45 * fp32.stat().st_size
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    samples = read_split(tiny_food11, "evaluation").samples
    p32, _, _, _ = predict_offline(fp32, samples)
    p8, _, _, _ = predict_offline(int8, samples)
    assert np.abs(p32 - p8).max() < 0.25


def test_export_int8_weights_option(run, tiny_food11, tmp_path):
    import onnx

    servetune("model", "export", str(run / "model.pt"), "--out", str(tmp_path / "tiny-fp32.onnx"),
              "--data", str(tiny_food11), "--calibration-images", "8", "--int8-weights", "s8-reduced")
    model = onnx.load(str(tmp_path / "tiny-int8.onnx"))
    weight_types = {t.data_type for t in model.graph.initializer if t.data_type in (onnx.TensorProto.INT8,
                                                                                   onnx.TensorProto.UINT8)}
    assert onnx.TensorProto.INT8 in weight_types  # the default (run's tiny-int8.onnx) stores them unsigned
    default = onnx.load(str(run / "tiny-int8.onnx"))
    assert not any(t.data_type == onnx.TensorProto.INT8 for t in default.graph.initializer)
    bad = subprocess.run([*CLI, "model", "export", str(run / "model.pt"), "--out", str(tmp_path / "x-fp32.onnx"),
                          "--data", str(tiny_food11), "--int8-weights", "s7"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--int8-weights must be u8 or s8-reduced or s8, not 's7'" in bad.stderr
    assert not (tmp_path / "x-fp32.onnx").exists()


def test_eval_cli_json_and_outputs(run, tiny_food11):
    out = run / "eval"
    result = servetune("model", "eval", str(run / "tiny-fp32.onnx"), "--data", str(tiny_food11), "--json",
                       "--out", str(out))
    summary = json.loads(result.stdout)
    assert summary["count"] == 44 and summary["split"] == "evaluation"
    assert sum(map(sum, summary["confusion"])) == 44
    assert summary["top3_accuracy"] >= summary["accuracy"]
    assert (out / "confusion.png").stat().st_size > 1000
    assert (out / "confusion.csv").read_text().splitlines()[0].startswith("true \\ predicted,Bread")


def test_served_accuracy_equals_offline_accuracy(run, tiny_food11):
    model = run / "tiny-int8.onnx"
    port = free_port()
    server = subprocess.Popen([*CLI, "serve", "--model", str(model), "--port", str(port), "--host", "127.0.0.1",
                               "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.3)
        offline = evaluate(model, tiny_food11, "evaluation")
        served = evaluate(None, tiny_food11, "evaluation", url=url)
        assert served.count == offline.count == 44
        assert served.confusion == offline.confusion
        assert served.accuracy == offline.accuracy
        result = servetune("model", "eval", "--via-http", url, "--data", str(tiny_food11), "--json")
        assert json.loads(result.stdout)["accuracy"] == offline.accuracy
    finally:
        server.terminate()
        server.wait(timeout=20)
