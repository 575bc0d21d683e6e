"""Late fusion of the recognizers' segment logits (paper Sec. 3.2, Eq. 1; official "learnable_lf_weights").

Segment logits = sum over modalities of ``w_m * d_{s,m} * z_{s,m}`` with ``d`` the policy's 0/1 decision and ``z``
the modality's logits. ``weighted``: M - 1 free weights initialised to 1/M, the last one is 1 minus their sum
(the official learnable late fusion). ``average``: fixed ``w_m = 1/M`` (plain averaging, as the official code
without learnable weights: unselected modalities still count in the denominator).

Video logits: the mean over all segments (paper), the mean over the segments where at least one modality was
used (``segment_mean="selected"``; a video where nothing was used gets zero logits), or the weighted sum of each
modality's mean over the segments where that modality was used (``segment_mean="modality"``; a modality used
nowhere adds zero). ``modality`` is a departure: with ``all``, one computed RGB cell of four reaches the video
logits at a quarter of its strength, so a policy that rightly computes one informative cell of several is
outvoted by the always-computed modalities; with ``modality`` one cell counts as much as four that say the same.
``selected`` does not help there when a cheap modality (audio) is used in every segment. With every decision 1
(always-on fusion) the three are the same.

The policy learns through the decisions' straight-through gradient (hard 0/1 forward, Gumbel-Softmax backward).
What reaches a decision is, by default, the derivative of the video logits with respect to it (the paper's). With
``all`` that is exactly what flipping the decision would change (the logits are linear in it); with ``modality`` it
is not: the mean over the computed cells does not move when a cell that agrees with the others is added, yet the
derivative (the count held fixed) says the cell adds its whole logits, and, for the last computed cell, the mean
is the same whether it is weighted 1 or 0.5. ``decision_gradient="flip"`` (a departure) hands each decision the
change in the video logits when that decision alone flips, the others held (the local-expectation estimator of
Titsias and Lazaro-Gredilla, 2015, linearised through the loss): a second cell that says what the first one says
gets nothing, the only computed one gets its whole weight. The forward value is unchanged, bit for bit.

What a skipped modality adds is, in the paper, nothing (zero logits). ``skipped_logits="learned"`` (a departure)
adds a learned vector ``b_m`` instead (``w_m * b_m``): with ``all`` for every skipped cell, with ``modality`` for
a modality that no segment of the video computed. The decision to skip then says something of its own (on the
built-in benchmark: RGB skipped, so the hue that needs no RGB), which the paper's zeros leave to the other
recognizers: fine-tuned with the policy, they learn that bias themselves and then outvote an informative cell of
the skipped modality in the videos that did compute it. ``b`` starts at zero (the paper's fusion) and costs no
multiply-accumulate worth counting; with every decision 1 it is never used. It is trained with the policy (Adam,
`adamml.train.optim`): under the recognizers' SGD it moved by less than 0.01 in a whole demo training while the
recognizers' features took up the bias instead.
"""

from __future__ import annotations

import typing

import torch
from torch import Tensor, nn

from adamml.config import DecisionGradient, FusionKind, SegmentMean, SkippedLogits


class LateFusion(nn.Module):
    """Weighted or averaged late fusion of decision-masked modality logits, then the mean over segments."""

    def __init__(self, num_modalities: int, kind: FusionKind = "weighted", segment_mean: SegmentMean = "all",
                 decision_gradient: DecisionGradient = "derivative", skipped_logits: SkippedLogits = "zero",
                 num_classes: int | None = None) -> None:
        super().__init__()
        if kind not in ("weighted", "average") or segment_mean not in typing.get_args(SegmentMean):
            raise ValueError(f"unknown fusion kind {kind!r} or segment mean {segment_mean!r}")
        if decision_gradient not in typing.get_args(DecisionGradient) or (
                decision_gradient == "flip" and segment_mean == "selected"):
            raise ValueError(f"decision gradient {decision_gradient!r} with segment mean {segment_mean!r}: expected "
                             "derivative, or flip with all or modality")
        if skipped_logits not in typing.get_args(SkippedLogits) or (
                skipped_logits == "learned" and (segment_mean == "selected" or not num_classes)):
            raise ValueError(f"skipped logits {skipped_logits!r} with segment mean {segment_mean!r} and "
                             f"{num_classes} classes: expected zero, or learned with all or modality and the classes")
        self.num_modalities = num_modalities
        self.kind = kind
        self.segment_mean = segment_mean
        self.decision_gradient = decision_gradient
        self.free_weights: nn.Parameter | None = None
        if kind == "weighted" and num_modalities > 1:
            self.free_weights = nn.Parameter(torch.full((num_modalities - 1,), 1.0 / num_modalities))
        self.skipped_logits = skipped_logits
        self.skipped: nn.Parameter | None = None  # (M, K) what a skipped modality adds, before its weight
        if skipped_logits == "learned":
            # zero: the fusion starts as the paper's, and no random draw moves the other initialisations
            self.skipped = nn.Parameter(torch.zeros(num_modalities, num_classes))

    def weights(self) -> Tensor:
        """The fusion weights ``(M,)`` (summing to 1)."""
        if self.free_weights is None:
            return torch.full((self.num_modalities,), 1.0 / self.num_modalities)
        return torch.cat([self.free_weights, 1.0 - self.free_weights.sum().reshape(1)])

    def forward_segments(self, modality_logits: Tensor, decisions: Tensor) -> Tensor:
        """``(B, S, M, K)`` logits and ``(B, S, M)`` decisions -> fused segment logits ``(B, S, K)``."""
        weights = self.weights().to(modality_logits)  # (M,)
        masked = modality_logits * decisions.unsqueeze(-1)  # (B, S, M, K)
        if self.skipped is not None and self.segment_mean == "all":  # linear in each decision: d z + (1 - d) b
            masked = masked + (1.0 - decisions).unsqueeze(-1) * self.skipped.to(masked)
        return torch.einsum("bsmk,m->bsk", masked, weights)

    def computed_nowhere(self, decisions: Tensor) -> Tensor:
        """``segment_mean="modality"``: the video logits ``(B, K)`` that the modalities no segment computed add
        (zero unless ``skipped_logits="learned"``)."""
        none = (decisions.detach().sum(dim=1) == 0).to(self.skipped)  # (B, M)
        return torch.einsum("bm,m,mk->bk", none, self.weights().to(self.skipped), self.skipped)

    def forward_video(self, segment_logits: Tensor, decisions: Tensor) -> Tensor:
        """``(B, S, K)`` fused segment logits -> video logits ``(B, K)`` (``all`` or ``selected``)."""
        if self.segment_mean == "all":
            return segment_logits.mean(dim=1)
        used = decisions.detach().amax(dim=-1)  # (B, S): 1 where any modality was used
        count = used.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
        return (segment_logits * used.unsqueeze(-1)).sum(dim=1) / count

    def forward(self, modality_logits: Tensor, decisions: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the fused segment logits ``(B, S, K)`` and the video logits ``(B, K)``."""
        segments = self.forward_segments(modality_logits, decisions)
        if self.segment_mean == "modality":
            # each cell's decision scaled by S / (segments that computed its modality), a constant (detached): the
            # mean over segments then gives each modality's mean over its computed cells, and with every decision
            # 1 the scale is exactly 1, so always-on fusion computes what "all" computes, bit for bit
            s = decisions.shape[1]
            scale = s / decisions.detach().sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1, M)
            if self.decision_gradient == "flip" and decisions.requires_grad:
                hard = decisions.detach()
                video = self.forward_segments(modality_logits, hard * scale).mean(dim=1)
                if self.skipped is not None:
                    video = video + self.computed_nowhere(hard).to(video)
                change = self.flip_change(modality_logits.detach(), hard)  # (B, S, M, K)
                # (decisions - hard) is 0 forward: the value is the mean above; backward it carries the change
                return segments, video + torch.einsum("bsm,bsmk->bk", decisions - hard, change)
            video = self.forward_segments(modality_logits, decisions * scale).mean(dim=1)
            if self.skipped is not None:
                video = video + self.computed_nowhere(decisions).to(video)
            return segments, video
        return segments, self.forward_video(segments, decisions)

    def flip_change(self, modality_logits: Tensor, decisions: Tensor) -> Tensor:
        """``segment_mean="modality"``: for every cell ``(B, S, M)``, the change in the video logits ``(K,)`` between
        the cell computed and not, every other decision held: the weighted change of its modality's mean over the
        computed cells (a modality computed nowhere adds zero, or its learned skipped logits)."""
        d = decisions.unsqueeze(-1)  # (B, S, M, 1)
        total = (modality_logits * d).sum(dim=1, keepdim=True)  # (B, 1, M, K)
        count = d.sum(dim=1, keepdim=True)  # (B, 1, M, 1)
        nowhere = (torch.zeros_like(total) if self.skipped is None
                   else self.skipped.detach().to(total)[None, None].expand_as(total))

        def mean(summed: Tensor, n: Tensor) -> Tensor:
            return torch.where(n > 0, summed / n.clamp(min=1.0), nowhere)

        with_cell = mean(total + (1.0 - d) * modality_logits, count + (1.0 - d))
        without_cell = mean(total - d * modality_logits, count - d)
        return (with_cell - without_cell) * self.weights().to(modality_logits).detach()[:, None]
