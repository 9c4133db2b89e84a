"""Write two model files as the course's notebook does (TensorFlow 2.14, `model.save("model.keras")`), to
walk `servetune tune --model` with files a course user brings. Not a servetune dependency: run it in a
TensorFlow 2.14 environment of its own, from the repository root:

    python3.11 -m venv /tmp/tf214 && /tmp/tf214/bin/pip install tensorflow-cpu==2.14.0 'numpy<2' pillow
    /tmp/tf214/bin/python benchmarks/course_models.py --data ../shared/data/food11-proxy --out /tmp/course-models

(`--onnx` also writes the trained network as a plain `.onnx` with tf2onnx: `pip install tf2onnx==1.16.1` there.)

It writes
- `vgg16-avg-224.keras`: the notebook's shape, `VGG16(include_top=False, pooling='avg')` + Dropout +
  Dense(11, softmax) at 224 px, with random weights (ImageNet weights are a download; the file shows the
  cost of the course's model, not its accuracy);
- `cnn-128.keras`: a small convolutional network with global pooling at 128 px, trained here on
  `DATA/training` for `--epochs` (it shows the accuracy axis: well above the 9 % of chance);
- with `--onnx`, `cnn-128.onnx`: the same network as a plain ONNX file (NHWC input on the 0..1 scale,
  softmax output), as another framework's user brings one;
- `course-models.json`: how each was made and the validation accuracy TensorFlow measured.
Photos are preprocessed as the course's app does: the whole photo, PIL BICUBIC resize to the input, x / 255.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow import keras
from tensorflow.keras import layers

CLASSES = 11


def photos(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixels at `size` and labels from a Food-11 split (`<class>_<n>.jpg`)."""
    files = sorted(folder.glob("*.jpg"))
    pixels = np.empty((len(files), size, size, 3), np.uint8)
    labels = np.empty(len(files), np.int64)
    for i, file in enumerate(files):
        with Image.open(file) as image:
            pixels[i] = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))
        labels[i] = int(file.name.split("_")[0])
    return pixels, labels


def vgg16_avg(size: int = 224) -> keras.Model:
    base = keras.applications.VGG16(include_top=False, weights=None, pooling="avg", input_shape=(size, size, 3))
    outputs = layers.Dense(CLASSES, activation="softmax")(layers.Dropout(0.5)(base.output))
    return keras.Model(base.input, outputs)


def small_cnn(size: int) -> keras.Model:
    """Four conv blocks and global average pooling: resizable, cheap to train on two cores."""
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for filters in (64, 128, 256):
        x = layers.MaxPooling2D()(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Dropout(0.3)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(CLASSES, activation="softmax")(x))


def train(model: keras.Model, data: Path, size: int, epochs: int) -> float:
    """Train on DATA/training; returns the validation accuracy."""
    x, y = photos(data / "training", size)
    vx, vy = photos(data / "validation", size)
    scale = layers.Rescaling(1 / 255)
    flip = layers.RandomFlip("horizontal")
    batches = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(64)
               .map(lambda a, b: (flip(scale(tf.cast(a, tf.float32)), training=True), b)).prefetch(2))
    held = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(128).map(lambda a, b: (scale(tf.cast(a, tf.float32)), b))
    # a rate decaying to 0 ends on stable batch-norm statistics (a constant one left the last epoch 10 points off)
    rate = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=epochs * len(batches))
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(batches, epochs=epochs, validation_data=held, verbose=2)
    return float(model.evaluate(held, verbose=0)[1])


def write_onnx(model: keras.Model, path: Path) -> None:
    import tf2onnx  # only with --onnx

    size = model.input_shape[1]
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a Food-11 folder (training, validation)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128, help="the trained network's input size")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--onnx", action="store_true", help="also write the trained network as a plain .onnx")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    made = {"tensorflow": tf.__version__}
    vgg = vgg16_avg()
    vgg.save(args.out / "vgg16-avg-224.keras")
    made["vgg16-avg-224.keras"] = {"input": 224, "weights": "random (no ImageNet download)"}
    began = time.monotonic()
    cnn = small_cnn(args.size)
    accuracy = train(cnn, args.data, args.size, args.epochs)
    cnn.save(args.out / f"cnn-{args.size}.keras")
    made[f"cnn-{args.size}.keras"] = {"input": args.size, "epochs": args.epochs, "validation_accuracy": accuracy,
                                      "training_seconds": round(time.monotonic() - began)}
    if args.onnx:
        write_onnx(cnn, args.out / f"cnn-{args.size}.onnx")
    (args.out / "course-models.json").write_text(json.dumps(made, indent=2) + "\n")
    print(json.dumps(made, indent=2))


if __name__ == "__main__":
    main()
