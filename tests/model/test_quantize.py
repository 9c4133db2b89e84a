"""INT8 quantization: what the integer kernels compute agrees with the fake-quant model, and signed weights
can be rewritten as unsigned with identical values."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from servetune.config import FOOD11_CLASSES, ModelSpec
from servetune.model.artifact import read_spec, save_artifact
from servetune.model.quantize import WeightsError, quantize_int8, unsigned_weights

SIZE, CHANNELS = 16, 32
CLI = [sys.executable, "-c", "from servetune.cli import app; app()"]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """A 1x1 convolution with large positive weights on 0..1 inputs: activations near 255 times weights near
    127 is the product pair that overflows 16 bits in u8 x s8 kernels on x86-64 CPUs without VNNI."""
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.5, 1.0, (len(FOOD11_CLASSES), CHANNELS, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["conv"]), helper.make_node("GlobalAveragePool", ["conv"], ["pool"]),
         helper.make_node("Flatten", ["pool"], ["logits"])],
        "conv", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(FOOD11_CLASSES)])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(name="conv-fp32", class_names=FOOD11_CLASSES, input_size=SIZE, resize=SIZE, crop="none")
    return save_artifact(model, spec, tmp_path_factory.mktemp("quantize") / "conv-fp32.onnx")


def inputs(count: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.uniform(0, 1, (CHANNELS, SIZE, SIZE)).astype(np.float32) for _ in range(count)]


def outputs(path, level) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.stack(inputs())})[0]


def weight_types(path) -> set[int]:
    model = onnx.load(str(path))
    initializers = {tensor.name: tensor.data_type for tensor in model.graph.initializer}
    return {initializers[node.input[0]] for node in model.graph.node
            if node.op_type == "DequantizeLinear" and node.input[0] in initializers
            and initializers[node.input[0]] != TensorProto.INT32}


def weight_zero_points(path) -> set[int]:
    model = onnx.load(str(path))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    return {int(value) for node in model.graph.node
            if node.op_type == "DequantizeLinear" and node.input[0] in initializers
            and initializers[node.input[0]].data_type != TensorProto.INT32
            for value in np.ravel(numpy_helper.to_array(initializers[node.input[2]]))}


def test_int8_kernels_agree_with_the_fake_quant_model(fp32, tmp_path):
    # ORT_ENABLE_BASIC runs Q/DQ in float (the intended values); ORT_ENABLE_ALL, what serving uses, fuses
    # them into integer kernels. With signed full-range weights these differ by about 9 % of the output
    # on an AVX2 CPU without VNNI (the overflow); with the default weights they agree.
    int8 = quantize_int8(fp32, tmp_path / "conv-int8.onnx", inputs())
    # unsigned weights with one zero point: what keeps Conv on ONNX Runtime's u8 x u8 integer kernel
    assert weight_types(int8) == {TensorProto.UINT8} and weight_zero_points(int8) == {128}
    served = outputs(int8, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    intended = outputs(int8, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    assert np.abs(served - intended).max() <= 0.01 * np.abs(intended).max()


def test_signed_reduced_range_weights_are_seven_bit(fp32, tmp_path):
    int8 = quantize_int8(fp32, tmp_path / "conv-int8.onnx", inputs(), weights="s8-reduced")
    model = onnx.load(str(int8))
    weights = next(numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8)
    assert np.abs(weights.astype(np.int16)).max() <= 64


def test_unsigned_weights_keep_every_value_and_the_metadata(fp32, tmp_path):
    signed = quantize_int8(fp32, tmp_path / "conv-int8.onnx", inputs(), weights="s8")
    assert weight_types(signed) == {TensorProto.INT8}
    rewritten, count = unsigned_weights(signed, tmp_path / "conv-u8.onnx")
    assert count == 1 and weight_types(rewritten) == {TensorProto.UINT8} and weight_zero_points(rewritten) == {128}
    assert read_spec(rewritten) == read_spec(signed)
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
        np.testing.assert_array_equal(outputs(rewritten, level), outputs(signed, level))
    served = outputs(rewritten, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    intended = outputs(signed, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    assert np.abs(served - intended).max() <= 0.01 * np.abs(intended).max()


def test_unsigned_weights_refuses_what_it_cannot_rewrite(fp32, tmp_path):
    with pytest.raises(WeightsError, match="not an INT8 artifact"):
        unsigned_weights(fp32, tmp_path / "out.onnx")
    unsigned = quantize_int8(fp32, tmp_path / "conv-int8.onnx", inputs())
    with pytest.raises(WeightsError, match="no signed 8-bit weights"):
        unsigned_weights(unsigned, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_cli_rewrites_and_reports_bad_input(fp32, tmp_path):
    signed = quantize_int8(fp32, tmp_path / "conv-int8.onnx", inputs(), weights="s8")
    done = subprocess.run([*CLI, "model", "unsigned-weights", str(signed), "--out", str(tmp_path / "u8.onnx")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 weight tensors rewritten" in done.stdout and (tmp_path / "u8.onnx").is_file()
    bad = subprocess.run([*CLI, "model", "unsigned-weights", str(fp32), "--out", str(tmp_path / "x.onnx")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "not an INT8 artifact" in bad.stderr and "Traceback" not in bad.stderr
