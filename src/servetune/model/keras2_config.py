"""Translate a model config written by Keras 2 (TensorFlow 2.x's tf.keras) into one Keras 3 deserializes.

Keras 3 reads most of a Keras 2 config, but not all: Keras 2.14 writes BatchNormalization's `axis` as a
list (`[3]`), DepthwiseConv2D's unused `groups`, the Functional class under its Keras 2 module path
(`keras.src.engine.functional`), and counts a nested model's own construction as its node 0 (so a base
model called once is referenced as node 1). A pure function: config in, config out.
"""

from __future__ import annotations

import copy
from typing import Any

KERAS2_MODULES = ("keras.src.engine.functional", "keras.engine.functional", "keras.src.engine.training",
                  "keras.engine.training", "keras.src.engine.sequential", "keras.engine.sequential")
MODEL_CLASSES = ("Functional", "Model", "Sequential")


def upgrade_config(config: dict) -> dict:
    """The Keras 3 form of a Keras 2 model (or layer) config; the argument is left unchanged."""
    config = copy.deepcopy(config)
    upgrade_object(config)
    return config


def upgrade_object(item: Any) -> None:
    if isinstance(item, list):
        for element in item:
            upgrade_object(element)
        return
    if not isinstance(item, dict):
        return
    if "class_name" in item and isinstance(item.get("config"), dict):
        upgrade_layer(item)
    for value in item.values():
        upgrade_object(value)


def upgrade_layer(layer: dict) -> None:
    name, config = layer["class_name"], layer["config"]
    if layer.get("module") in KERAS2_MODULES:
        layer["module"] = "keras.src.models.functional" if name in ("Functional", "Model") else "keras"
        if name == "Model":
            layer["class_name"] = "Functional"
    if name == "BatchNormalization" and isinstance(config.get("axis"), list) and len(config["axis"]) == 1:
        config["axis"] = config["axis"][0]
    if name == "DepthwiseConv2D":
        config.pop("groups", None)
    if name in MODEL_CLASSES and "layers" in config and "input_layers" in config:
        shift_nested_model_nodes(config)
        for key in ("input_layers", "output_layers"):
            # Keras 2 lists a single input or output as [[name, node, tensor]]; Keras 3 reads that as a
            # list of one tensor, which a following Dense layer then takes for a shape.
            if len(config[key]) == 1 and isinstance(config[key][0], list):
                config[key] = config[key][0]


def shift_nested_model_nodes(config: dict) -> None:
    """Keras 2 gives a nested model a node of its own before it is first called; Keras 3 does not."""
    nested = {layer["config"]["name"] for layer in config["layers"]
              if layer.get("class_name") in MODEL_CLASSES and "name" in layer.get("config", {})}
    if not nested:
        return
    references = [reference for layer in config["layers"] for node in layer.get("inbound_nodes", [])
                  if isinstance(node, list) for reference in node]
    references += [*config.get("input_layers", []), *config.get("output_layers", [])]
    for reference in references:
        if isinstance(reference, list) and reference and reference[0] in nested and reference[1] > 0:
            reference[1] -= 1
