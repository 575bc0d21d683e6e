"""Efficiency loss and metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adamml.inference.metrics import average_precision, mean_average_precision, topk_accuracy
from adamml.train.losses import classification_loss, correctness, efficiency_loss


def test_efficiency_loss_matches_the_formula():
    decisions = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]])  # (B=2, S=2, M=2)
    correct = torch.tensor([1.0, 0.0])
    loss = efficiency_loss(decisions, correct, lambdas=[1.0, 0.05], gamma=10.0)
    # video 0 is right: usage (1.0, 0.5); video 1 is wrong: only gamma
    expected = 1.0 * (1.0 ** 2 + 0.0) / 2 + 0.05 * (0.5 ** 2 + 0.0) / 2 + 10.0 * 0.5
    assert loss.item() == pytest.approx(expected)


def test_efficiency_loss_gradient_reaches_decisions_of_correct_videos_only():
    decisions = torch.full((2, 3, 2), 0.5, requires_grad=True)
    loss = efficiency_loss(decisions, torch.tensor([1.0, 0.0]), [1.0, 1.0], 10.0)
    loss.backward()
    assert (decisions.grad[0] > 0).all() and (decisions.grad[1] == 0).all()
    with pytest.raises(ValueError, match="2 lambdas for 3 modalities"):
        efficiency_loss(torch.zeros(1, 1, 3), torch.ones(1), [1.0, 1.0], 1.0)


def test_correctness_single_and_multi_label():
    logits = torch.tensor([[0.1, 2.0, 0.3], [3.0, 0.0, 0.0]])
    assert correctness(logits, torch.tensor([1, 2])).tolist() == [1.0, 0.0]
    target = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    assert correctness(logits, torch.tensor([1, 1]), target).tolist() == [1.0, 0.0]
    assert classification_loss(logits, torch.tensor([1, 0]), target, multi_label=True).item() > 0


def test_topk_accuracy():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = np.array([1, 1, 0])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(100 / 3)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(200 / 3)
    assert topk_accuracy(scores, labels, 5) == 100.0


def test_average_precision_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    positives = np.array([1, 0, 1, 0])
    assert average_precision(scores, positives) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert np.isnan(average_precision(scores, np.zeros(4)))
    targets = np.stack([positives, 1 - positives], axis=1)
    both = np.stack([scores, 1 - scores], axis=1)
    # class 1: scores .1 .2 .3 .4, positives at .2 and .4 -> ranks 1 and 3
    ap1 = average_precision(1 - scores, 1 - positives)
    assert ap1 == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert mean_average_precision(both, targets) == pytest.approx(100 * (average_precision(scores, positives) + ap1) / 2)


def test_a_class_that_every_video_has_is_not_ranked_into_the_map():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    one_class = np.array([[1, 0], [1, 0], [1, 0]])  # a split of one class: AP 100 % whatever the scores
    assert np.isnan(mean_average_precision(scores, one_class))
    # multi-label: class 1 is in every video and left out; class 0 (videos 0 and 2 of 3) is ranked
    shared = np.array([[1, 1], [0, 1], [1, 1]])
    assert mean_average_precision(scores, shared) == pytest.approx(100 * average_precision(scores[:, 0], shared[:, 0]))
