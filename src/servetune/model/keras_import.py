"""Convert a user's Keras image classifier (model.keras) into a servetune artifact.

Keras 3 runs on its torch backend here, so no TensorFlow is needed: the model is loaded with
`keras.saving.load_model` (a file written by TensorFlow's Keras 2 is first translated, see
model/keras2_config.py) and exported with Keras' own ONNX exporter (`model.export(format="onnx")`),
which on the torch backend traces the model through `torch.onnx.export` with a dynamic batch axis.
The ONNX graph is then checked against `model.predict` on random inputs before the artifact is written.

Keras and torch are imported only inside `import_keras_model`: serving never imports them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from servetune.config import FOOD11_CLASSES, ModelSpec
from servetune.errors import ServetuneError, first_line
from servetune.model.source_check import Agreement, compare, sample_photos

# Largest disagreement allowed between Keras and ONNX Runtime on the same input, relative to the largest
# score: a float32 re-ordering of the same arithmetic stays far below this; a wrong conversion does not.
MAX_CONVERSION_DIFF = 1e-4
OPSET = 17


class KerasImportError(ServetuneError):
    """The Keras file cannot be converted; the message names the file and the problem."""


def import_keras_model(
    source: str | Path,
    out: str | Path | None = None,
    name: str | None = None,
    class_names: list[str] | None = None,
    input_size: int | None = None,
) -> tuple[Path, ModelSpec, Agreement]:
    """Convert `source` (.keras or legacy .h5) to a single-file ONNX artifact.

    Returns its path, its spec and how closely it answers like Keras on sample photos (Keras fed as the
    reference app feeds it, the artifact through its own preprocessing).

    The spec is the reference GourmetGram app's preprocessing: the photo is decoded in full, resized
    straight to the input size with PIL's BICUBIC filter (no crop), scaled to 0..1 (x/255) and fed as NHWC.
    A model that starts with its own `Rescaling` layer is fed raw 0..255 pixels instead.
    """
    source = Path(source)
    out = Path(out) if out is not None else source.with_suffix(".onnx")
    class_names = list(class_names) if class_names else list(FOOD11_CLASSES)
    check_source(source)
    model = load_keras(source)
    layout, size = input_geometry(model, source, input_size)
    check_output(model, source, len(class_names))

    with tempfile.TemporaryDirectory(prefix="servetune-keras-") as work:
        onnx_path = Path(work) / "model.onnx"
        export_onnx(model, source, onnx_path, layout, size)
        onnx_model = load_onnx(onnx_path, source)
    output = verify_conversion(model, onnx_model, source, layout, size)
    name_graph(onnx_model, source, output)

    spec = ModelSpec(
        name=name or source.stem,
        class_names=class_names,
        input_size=size,
        resize=size,
        crop="none",
        interpolation="bicubic",
        decode="full",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        scale=1.0 if starts_with_rescaling(model) else 1.0 / 255.0,
        layout=layout,
        output=output,
        backbone=backbone_name(model),
        precision="fp32",
        data=f"imported from the Keras model {source.name}; training data not recorded in the file",
    )
    from servetune.model.artifact import save_artifact

    path = save_artifact(onnx_model, spec, out)
    return path, spec, agreement_with_keras(model, path, spec)


def agreement_with_keras(model, path: Path, spec: ModelSpec) -> Agreement:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return compare(
        lambda batch: model.predict(batch, verbose=0),
        lambda batch: session.run(None, {name: batch})[0],
        spec,
        sample_photos(),
    )


def check_source(source: Path) -> None:
    if not source.is_file():
        raise KerasImportError(f"{source}: no such file")
    if source.suffix.lower() in (".h5", ".hdf5"):
        with open(source, "rb") as handle:
            if handle.read(8) != b"\x89HDF\r\n\x1a\n":
                raise KerasImportError(f"{source}: not a Keras HDF5 file")
        return
    if not zipfile.is_zipfile(source):
        raise KerasImportError(f"{source}: not a Keras file (a .keras file is a zip archive saved by model.save)")
    with zipfile.ZipFile(source) as archive:
        if "config.json" not in archive.namelist():
            raise KerasImportError(f"{source}: not a Keras file (the archive has no config.json)")


def load_keras(source: Path):
    backend = os.environ.get("KERAS_BACKEND")
    if backend not in (None, "torch"):
        raise KerasImportError(
            f"{source}: KERAS_BACKEND={backend} is set; import runs Keras on its torch backend (unset it)"
        )
    # Must be set before Keras is first imported; Keras reads it once.
    os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError:
        raise KerasImportError(
            f"{source}: Keras is not installed; install the extra: pip install 'servetune[keras]'"
        ) from None
    if keras.backend.backend() != "torch":
        raise KerasImportError(f"{source}: Keras was already loaded with the {keras.backend.backend()} backend")
    version = keras_version(source)
    written_by = f" (a Keras {version} file)" if version else ""
    if version.startswith("2."):
        written_by = f" (a Keras {version} file, written by TensorFlow's tf.keras)"
    with tempfile.TemporaryDirectory(prefix="servetune-keras2-") as work:
        try:
            readable = keras3_copy(source, Path(work)) if version.startswith("2.") else source
            model = keras.saving.load_model(readable, compile=False)
        except (TypeError, ValueError, KeyError, AttributeError, NotImplementedError, OSError) as err:
            raise KerasImportError(
                f"{source}: cannot load the Keras model{written_by}: {load_error_reason(err)}"
            ) from None
    if not isinstance(model, keras.Model):
        raise KerasImportError(f"{source}: the file holds a {type(model).__name__}, not a Keras model")
    return model


def keras_version(source: Path) -> str:
    """The Keras version that wrote the file ("" when it does not say)."""
    try:
        if source.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(source, "r") as handle:
                value = handle.attrs.get("keras_version", "")
            return value.decode() if isinstance(value, bytes) else str(value)
        with zipfile.ZipFile(source) as archive:
            if "metadata.json" not in archive.namelist():
                return ""
            return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return ""


def keras3_copy(source: Path, work: Path) -> Path:
    """A copy of a Keras 2 file whose model config Keras 3 reads; the weights are copied unchanged."""
    from servetune.model.keras2_config import upgrade_config

    copy = work / source.name
    if source.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        shutil.copyfile(source, copy)
        with h5py.File(copy, "r+") as handle:
            if "model_config" not in handle.attrs:
                raise ValueError("the HDF5 file holds weights only (no model_config): save the whole model")
            handle.attrs["model_config"] = json.dumps(upgrade_config(json.loads(handle.attrs["model_config"])))
        return copy
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(copy, "w") as upgraded:
        for name in original.namelist():
            data = original.read(name)
            if name == "config.json":
                data = json.dumps(upgrade_config(json.loads(data))).encode()
            upgraded.writestr(name, data)
    return copy


def input_geometry(model, source: Path, input_size: int | None) -> tuple[Literal["NHWC", "NCHW"], int]:
    if len(model.inputs) != 1:
        raise KerasImportError(f"{source}: the model has {len(model.inputs)} inputs; expected one image input")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or 3 not in (shape[3], shape[1]):
        raise KerasImportError(f"{source}: input shape {shape} is not an RGB image batch (N,H,W,3)")
    layout: Literal["NHWC", "NCHW"] = "NHWC" if shape[3] == 3 else "NCHW"
    height, width = shape[1:3] if layout == "NHWC" else shape[2:4]
    if height is None and width is None:
        return layout, input_size or 224
    if height != width or None in (height, width):
        raise KerasImportError(f"{source}: input {height}x{width} is not square; servetune needs a square input")
    if input_size is not None and input_size != height:
        raise KerasImportError(f"{source}: the model's input is fixed at {height}x{width}, not {input_size}; import "
                               f"it as it is, then `servetune model resize ARTIFACT --input-size {input_size}`")
    return layout, int(height)


def check_output(model, source: Path, classes: int) -> None:
    if len(model.outputs) != 1:
        raise KerasImportError(f"{source}: the model has {len(model.outputs)} outputs; expected one")
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2 or shape[1] != classes:
        raise KerasImportError(
            f"{source}: output shape {shape} does not give {classes} class scores per image "
            f"(pass --classes with the model's class names if it is not a Food-11 model)"
        )


def export_onnx(model, source: Path, path: Path, layout: str, size: int) -> None:
    import warnings

    import keras

    shape = (None, size, size, 3) if layout == "NHWC" else (None, 3, size, size)
    signature = [keras.InputSpec(shape=shape, dtype="float32", name="input")]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the torch tracer warns about every Python-side shape check
            model.export(str(path), format="onnx", verbose=False, input_signature=signature, opset_version=OPSET)
    except Exception as err:  # noqa: BLE001 - the torch tracer and ONNX exporter raise many unrelated types
        raise KerasImportError(
            f"{source}: a layer cannot be exported to ONNX (unsupported layer or op): {first_line(err)}"
        ) from None


def load_onnx(path: Path, source: Path):
    """The exported graph with its weights inlined (the artifact is one file)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - protobuf decode errors have no public common base
        raise KerasImportError(f"{source}: the exported ONNX graph cannot be read: {first_line(err)}") from None
    if len(model.graph.output) != 1:
        raise KerasImportError(f"{source}: the exported graph has {len(model.graph.output)} outputs; expected one")
    return model


def name_graph(model, source: Path, output: str) -> None:
    """Name the graph's output after what it holds, and its batch axis `batch` (the exporter numbers them)."""
    import onnx

    graph = model.graph
    old, new = graph.output[0].name, output
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]
    graph.output[0].name = new
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise KerasImportError(f"{source}: the exported ONNX graph is invalid: {first_line(err)}") from None


def verify_conversion(model, onnx_model, source: Path, layout: str, size: int) -> Literal["logits", "probabilities"]:
    """Run both on the same random pixels (batch of 2: exercises the dynamic batch axis)."""
    import onnxruntime as ort

    shape = (2, size, size, 3) if layout == "NHWC" else (2, 3, size, size)
    batch = np.random.default_rng(0).uniform(0.0, 1.0, size=shape).astype(np.float32)
    expected = np.asarray(model.predict(batch, verbose=0), dtype=np.float32)
    try:
        session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
        actual = session.run(None, {session.get_inputs()[0].name: batch})[0]
    except Exception as err:  # noqa: BLE001 - ORT raises several private exception types
        raise KerasImportError(f"{source}: ONNX Runtime cannot run the exported graph: {first_line(err)}") from None
    if actual.shape != expected.shape:
        raise KerasImportError(f"{source}: the exported graph gives shape {actual.shape}, Keras {expected.shape}")
    diff = float(np.abs(actual - expected).max())
    if diff > MAX_CONVERSION_DIFF * max(1.0, float(np.abs(expected).max())):
        raise KerasImportError(
            f"{source}: the exported graph disagrees with Keras (max abs difference {diff:.2e}); "
            "a layer is not converted faithfully"
        )
    is_distribution = bool((expected >= 0).all() and np.allclose(expected.sum(axis=1), 1.0, atol=1e-3))
    return "probabilities" if is_distribution else "logits"


def starts_with_rescaling(model) -> bool:
    """True when the model scales raw pixels itself (a leading keras.layers.Rescaling)."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    return bool(layers) and isinstance(layers[0], keras.layers.Rescaling)


def backbone_name(model) -> str:
    """The nested application model's name (e.g. mobilenetv2_1.00_224), else the model's own name."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer.name
    return model.name


def load_error_reason(err: BaseException) -> str:
    """Keras wraps the cause of a failed load in a long message; say the cause."""
    text = str(err)
    custom = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if custom:
        return (
            f"unsupported layer {custom.group(1)!r}: a custom class that only the training code defines "
            "(only built-in Keras layers can be imported)"
        )
    if "`Lambda` layer" in text:
        return "unsupported layer Lambda: it holds Python code, which is not loaded from a file for safety"
    return first_line(err)
