"""Class scores to probabilities, and class ranking by score with ties broken the same way everywhere:
the lower class index first.

An INT8 model's probabilities come in steps of 1/255, so equal top scores are common; the server, the
offline evaluation and the import checks all rank through this one function so they name the same class.
"""

from __future__ import annotations

import numpy as np


def ranked(scores: np.ndarray) -> np.ndarray:
    """Class indices from the highest score down, along the last axis (stable: ties keep class order)."""
    return np.argsort(-np.asarray(scores), axis=-1, kind="stable")


def top1(scores: np.ndarray) -> np.ndarray:
    """The highest-scoring class along the last axis; the lowest index among equal scores."""
    return np.argmax(np.asarray(scores), axis=-1)


def class_probabilities(scores: np.ndarray, output: str) -> np.ndarray:
    """Probabilities along the last axis from a model's scores: the softmax of logits; scores that are
    already probabilities (ModelSpec.output) are returned as they are. The dtype is kept."""
    if output == "probabilities":
        return scores
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
