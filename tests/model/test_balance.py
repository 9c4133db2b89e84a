"""Loss weights that balance the classes, and per-class accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from servetune.model.balance import class_weights, per_class_accuracy


def test_every_class_gets_the_same_total_weight_and_the_mean_weight_is_one():
    counts = [3000, 748, 3000]
    weights = class_weights(counts)
    totals = [w * n for w, n in zip(weights, counts, strict=True)]
    assert totals == pytest.approx([totals[0]] * 3)
    assert sum(totals) / sum(counts) == pytest.approx(1.0)
    assert weights[1] > 4 * weights[0] - 1e-9
    assert class_weights([5, 5]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="at least one example"):
        class_weights([3, 0])


def test_per_class_accuracy_leaves_out_classes_without_examples():
    labels = np.array([0, 0, 0, 0, 2, 2])
    predicted = np.array([0, 0, 1, 2, 2, 0])
    assert per_class_accuracy(labels, predicted, ["a", "b", "c"]) == {"a": 0.5, "c": 0.5}
