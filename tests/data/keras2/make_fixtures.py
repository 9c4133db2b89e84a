"""Write the Keras 2 fixtures: small models saved by TensorFlow 2.14 and TF's own predictions on test photos.

Run once with TensorFlow 2.14 (not a servetune dependency), from the repository root:

    python3.11 -m venv /tmp/tf214 && /tmp/tf214/bin/pip install tensorflow-cpu==2.14.0 'numpy<2' pillow
    /tmp/tf214/bin/python tests/data/keras2/make_fixtures.py

The bases are the `keras.applications` constructors the course's notebook uses (VGG16, MobileNetV2,
EfficientNet, ResNet), built with `weights=None` at 32x32 and shrunk (fewer filters or blocks) so the
files stay small; each has a pooling + Dropout + Dense(11, softmax) head, as a Sequential or a Functional
model, saved as `.keras` and `.h5`. Weights are random but spread (batch-norm statistics included), so a
layer converted wrongly changes the answer.

`photos/` holds JPEGs of several sizes; `predictions.json` holds, per model file, TF's softmax output on
each photo preprocessed as the course's app does: full decode, PIL BICUBIC resize to the input, x / 255.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow import keras
from tensorflow.keras import layers

HERE = Path(__file__).parent
SIZE = 32
CLASSES = 11
PHOTO_SIZES = [(640, 480), (480, 640), (1024, 768), (300, 300), (96, 64), (1280, 960), (200, 150), (32, 32)]
PHOTOS_PER_SIZE = 4


def vgg16_shaped() -> keras.Model:
    """VGG16's five conv blocks and layer names (keras.applications.VGG16), with 2..16 filters."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for block, (convs, filters) in enumerate([(2, 2), (2, 4), (3, 8), (3, 16), (3, 16)], start=1):
        for conv in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, activation="relu", padding="same", name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="vgg16")


def mobilenet_v2() -> keras.Model:
    return keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.1, include_top=False, weights=None, pooling="avg"
    )


def efficientnet() -> keras.Model:
    from keras.src.applications.efficientnet import EfficientNet

    return EfficientNet(
        0.1, 0.1, SIZE, 0.2, model_name="efficientnetb0", include_top=False, weights=None,
        input_shape=(SIZE, SIZE, 3), pooling="avg",
    )


def resnet() -> keras.Model:
    from keras.src.applications.resnet import ResNet, stack1

    def stacks(x):
        x = stack1(x, 4, 1, stride1=1, name="conv2")
        return stack1(x, 8, 1, name="conv3")

    return ResNet(
        stacks, False, True, "resnet50", include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
        pooling="max",
    )


BASES = {"vgg16": vgg16_shaped, "mobilenetv2": mobilenet_v2, "efficientnet": efficientnet, "resnet": resnet}


def sequential(base: keras.Model) -> keras.Model:
    """The course notebook's shape: the base (with its pooling) then Dropout and Dense."""
    return keras.Sequential([base, layers.Dropout(0.3), layers.Dense(CLASSES, activation="softmax")])


def functional(base: keras.Model) -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3))
    x = base(inputs, training=False)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def spread_weights(model: keras.Model, batch: np.ndarray, rng: np.random.Generator) -> None:
    """Random weights with real spread: He-scaled kernels, non-trivial batch-norm statistics, and a head
    whose Dense layers are centred and scaled on the photos' features so that the answers differ by photo."""
    for weight in model.weights:
        name, shape = weight.name, tuple(weight.shape)
        if "moving_variance" in name or name.endswith("variance:0"):
            value = rng.uniform(0.5, 2.0, shape)
        elif "gamma" in name:
            value = rng.uniform(0.7, 1.3, shape)
        elif "moving_mean" in name or "beta" in name or name.endswith("mean:0") or "bias" in name:
            value = rng.normal(0, 0.1, shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1])) if "depthwise" not in name else int(np.prod(shape[:2]))
            value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
            if "_se_" in name:  # EfficientNet's squeeze-excite gates: keep them off saturation
                value *= 0.1
        else:
            continue
        weight.assign(value.astype(np.float32))
    for base in [layer for layer in model.layers if isinstance(layer, keras.Model)]:
        for layer in [layer for layer in base.layers if isinstance(layer, layers.Normalization)]:
            # EfficientNet scales x / 255 itself, then normalises: fit that to the photos, as adapt() would.
            seen = keras.Model(base.inputs, layer.input).predict(batch, verbose=0)
            count = layer.get_weights()[2]
            layer.set_weights([seen.mean(axis=(0, 1, 2)), seen.var(axis=(0, 1, 2)), count])
    features = batch  # both heads are chains of layers: follow the photos through them
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, layers.Dense):
            mean, spread = features.mean(axis=0), features.std(axis=0)
            # Features that hardly vary are not blown up past float32's precision of their magnitude.
            std = spread + 0.2 * spread.mean() + 3e-3 * np.abs(mean).mean() + 1e-6
            kernel = rng.normal(0, 2.5 / np.sqrt(features.shape[1]), (features.shape[1], layer.units))
            layer.set_weights([(kernel / std[:, None]).astype(np.float32),
                               (-(mean / std) @ kernel).astype(np.float32)])
        features = np.asarray(layer(features, training=False))


# Which files each model is saved as: every base and head in both formats where small, else one of each.
FORMATS = {
    "vgg16": {"sequential": (".keras", ".h5"), "functional": (".keras", ".h5")},
    "resnet": {"sequential": (".keras", ".h5"), "functional": (".keras", ".h5")},
    "mobilenetv2": {"sequential": (".keras",), "functional": (".h5",)},
    "efficientnet": {"sequential": (".h5",), "functional": (".keras",)},
}


def photo(width: int, height: int, seed: int) -> bytes:
    """A smooth colour field with a few sharp shapes: detail a reduced-size decode loses."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(5, 5, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)).copy()
    for _ in range(12):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(1, max(2, width // 6)), rng.integers(1, max(2, height // 6))
        image[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def course_input(data: bytes) -> np.ndarray:
    """The course app's preprocessing: full decode, BICUBIC resize to the input, x / 255."""
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def main() -> None:
    photos_dir = HERE / "photos"
    photos_dir.mkdir(exist_ok=True)
    names = []
    for index, (width, height) in enumerate(PHOTO_SIZES * PHOTOS_PER_SIZE):
        name = f"photo{index:02d}_{width}x{height}.jpg"
        (photos_dir / name).write_bytes(photo(width, height, seed=index))
        names.append(name)
    batch = np.stack([course_input((photos_dir / name).read_bytes()) for name in names])

    predictions = {"tensorflow": tf.__version__, "input_size": SIZE, "photos": names, "models": {}}
    for seed, (base_name, make_base) in enumerate(BASES.items()):
        for head, (head_name, make_model) in enumerate((("sequential", sequential), ("functional", functional))):
            keras.utils.set_random_seed(seed)
            model = make_model(make_base())
            spread_weights(model, batch, np.random.default_rng(2 * seed + head))
            probabilities = model.predict(batch, verbose=0)
            top = probabilities.max(axis=1)
            print(f"{base_name}-{head_name}: top-1 probability {top.min():.2f}..{top.max():.2f}, "
                  f"{len(set(probabilities.argmax(axis=1)))} distinct classes")
            for suffix in FORMATS[base_name][head_name]:
                file_name = f"{base_name}-{head_name}{suffix}"
                model.save(HERE / file_name)
                predictions["models"][file_name] = probabilities.round(7).tolist()
    (HERE / "predictions.json").write_text(json.dumps(predictions))


if __name__ == "__main__":
    main()
