"""Recognition metrics as the field reports them: top-k accuracy and mean average precision (mAP)."""

from __future__ import annotations

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percentage of videos whose label is among the `k` highest scores; `scores` (N, K), `labels` (N,)."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(100.0 * np.mean(np.any(top == labels[:, None], axis=1)))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of one class: mean precision at the rank of each positive (ties broken by order); nan without
    positives."""
    positives = positives.astype(bool)
    if not positives.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = positives[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP in percent over the classes that have at least one positive and one negative video; `targets` (N, K)
    multi-hot. A class that every video has is ranked first whatever the scores (AP 100 %), so it says nothing:
    on a split of one class the mAP is nan, not 100 %."""
    targets = np.asarray(targets).astype(bool)
    ranked = targets.any(axis=0) & ~targets.all(axis=0)
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1]) if ranked[c]]
    aps = [a for a in aps if not np.isnan(a)]
    return float(100.0 * np.mean(aps)) if aps else float("nan")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
