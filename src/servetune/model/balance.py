"""Class balance: loss weights that give every class the same total weight, and per-class accuracy to
see whether the balance holds (Food-11's and the proxy's classes differ up to four-fold in size)."""

from __future__ import annotations

import numpy as np


def class_weights(counts: list[int]) -> list[float]:
    """Weight of one example of each class, inversely proportional to the class's size and scaled so
    that the weights average 1 over the training examples (the loss keeps its usual magnitude)."""
    if any(count <= 0 for count in counts):
        raise ValueError(f"every class needs at least one example, got counts {counts}")
    total = sum(counts)
    return [total / (len(counts) * count) for count in counts]


def per_class_accuracy(labels: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Accuracy on each class that has examples (classes without any are left out)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    return {
        name: float((predicted[labels == index] == index).mean())
        for index, name in enumerate(class_names)
        if (labels == index).any()
    }
