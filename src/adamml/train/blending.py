"""Gradient blending's loss weights (Wang, Tran, Feiszli, "What Makes Training Multi-modal Classification Networks
Hard?", CVPR 2020): the online estimate from overfitting-to-generalisation ratios.

The model (``adamml.models.baselines``, kind ``gradient-blending``) has H = M + 1 heads: one per modality, then
the fused one; the loss is ``sum_k w_k L_k``. Every ``train.blend.interval`` epochs each head's loss is measured, in
eval mode, on a held-out part V of the training split and on as many training videos T. Between two measurements
(before, after) head k

    gained generalisation  G_k = L^V_before - L^V_after
    gained overfitting     O_k = (L^V_after - L^T_after) - (L^V_before - L^T_before)

and gets ``w_k proportional to G_k / O_k^2`` for the next interval (uniform weights until the first estimate).

Where V comes from: a stratified, seeded ``train.blend.holdout`` fraction of the *training* split, not trained on
in this stage. Not the val split: val already selects ``best.pt``; fitting the loss weights to it as well would let
model selection and training share the same videos and overstate the validation score.

Stability. The AdaMML authors report that gradient blending diverged for them; the raw ratio is unbounded (O near
0) and negative when a head got worse, so it rescales the effective learning rate without limit. Here: G is
clipped at 0 (a head that lost ground on V gets no more than the floor); O is floored at
``train.blend.min_overfit`` (overfitting that did not grow counts as the smallest); the weights are normalised
and mixed with a floor, ``w = m + (1 - H m) w / sum(w)`` with ``m = train.blend.min_weight``; when no head
generalised (every G = 0) the previous weights are kept. The loss is then a convex combination of the heads'
losses, never larger than the largest of them, and the gradient norm is clipped as in every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adamml.config import BlendConfig


@dataclass
class HeadLosses:
    """Each head's mean loss on the training probe (T) and on the held-out part (V), heads in model order."""

    train: np.ndarray  # (H,)
    held_out: np.ndarray  # (H,)


def ogr_weights(before: HeadLosses, after: HeadLosses, cfg: BlendConfig) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The heads' weights ``(H,)`` from two measurements (None when no head generalised), and the terms used."""
    gain = np.clip(before.held_out - after.held_out, 0.0, None)  # (H,)
    overfit = (after.held_out - after.train) - (before.held_out - before.train)
    ratio = gain / np.maximum(overfit, cfg.min_overfit) ** 2
    terms = {"gain": gain.tolist(), "overfit": overfit.tolist()}
    if not ratio.sum() > 0:
        return None, terms
    heads = len(ratio)
    weights = cfg.min_weight + (1.0 - heads * cfg.min_weight) * ratio / ratio.sum()
    return weights, terms


@dataclass
class BlendState:
    """The current weights, the last measurement and every estimate so far (saved in checkpoints)."""

    heads: tuple[str, ...]
    weights: list[float] = field(default_factory=list)
    reference: HeadLosses | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = [1.0 / len(self.heads)] * len(self.heads)

    def update(self, measured: HeadLosses, epoch: int, cfg: BlendConfig) -> dict[str, Any]:
        """Take a new measurement at the start of ``epoch``: new weights from the change since the last one."""
        entry: dict[str, Any] = {"epoch": epoch, "train_loss": measured.train.tolist(),
                                 "held_out_loss": measured.held_out.tolist()}
        if self.reference is not None:
            weights, terms = ogr_weights(self.reference, measured, cfg)
            entry.update(terms)
            entry["kept_previous"] = weights is None
            if weights is not None:
                self.weights = [float(w) for w in weights]
        entry["weights"] = list(self.weights)
        self.reference = measured
        self.history.append(entry)
        return entry

    def state_dict(self) -> dict[str, Any]:
        reference = None if self.reference is None else {
            "train": self.reference.train.tolist(), "held_out": self.reference.held_out.tolist()}
        return {"heads": list(self.heads), "weights": list(self.weights), "reference": reference,
                "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["heads"]) != self.heads:
            raise ValueError(f"gradient blending state for heads {state['heads']}, this model has {list(self.heads)}")
        self.weights = [float(w) for w in state["weights"]]
        ref = state["reference"]
        self.reference = None if ref is None else HeadLosses(np.asarray(ref["train"]), np.asarray(ref["held_out"]))
        self.history = list(state["history"])
