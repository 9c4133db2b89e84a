import numpy as np
import pytest

from servetune.model.ranking import class_probabilities, ranked, top1


def test_equal_scores_rank_the_lower_class_index_first():
    scores = np.array([[0.2, 0.4, 0.4, 0.0], [0.5, 0.1, 0.5, 0.5]])
    assert ranked(scores).tolist() == [[1, 2, 0, 3], [0, 2, 3, 1]]
    assert top1(scores).tolist() == [1, 0]


def test_logits_become_probabilities_in_the_same_order_and_dtype():
    logits = np.array([[1.0, 3.0, 2.0], [1000.0, 1000.0, 0.0]], dtype=np.float32)
    probabilities = class_probabilities(logits, "logits")
    assert probabilities.dtype == np.float32
    assert probabilities.sum(axis=-1) == pytest.approx([1.0, 1.0])
    assert ranked(probabilities)[0].tolist() == [1, 2, 0]
    assert probabilities[1].tolist() == pytest.approx([0.5, 0.5, 0.0])  # large logits do not overflow


def test_probability_outputs_are_returned_unchanged():
    scores = np.array([0.1, 0.7, 0.2])
    assert class_probabilities(scores, "probabilities") is scores
    assert class_probabilities(scores, "logits").tolist() != scores.tolist()
