"""Classification and efficiency losses (paper Sec. 3.3, Eq. 4-5).

The efficiency loss charges each modality for how often it is used on videos the model gets right, and a
constant gamma for every video it gets wrong:

    L_eff = sum_k lambda_k * mean_b(correct_b * u_{b,k}^2) + gamma * mean_b(1 - correct_b)

with u_{b,k} the fraction of video b's segments that used modality k. The gamma term carries no gradient
(it is a constant per wrong video); it is reported so the loss reads as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def classification_loss(logits: Tensor, label: Tensor, target: Tensor | None = None, multi_label: bool = False) -> Tensor:
    """Cross-entropy (single label) or binary cross-entropy over classes (multi-label, `target` multi-hot)."""
    if multi_label:
        if target is None:
            raise ValueError("multi-label training needs the multi-hot `target`")
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    return F.cross_entropy(logits, label)


def head_losses(modality_logits: Tensor, logits: Tensor, label: Tensor, target: Tensor | None = None,
                multi_label: bool = False) -> Tensor:
    """Classification loss of every head of a gradient-blending model: each modality's video logits (the mean of
    ``modality_logits`` (B, S, M, K) over segments), then the fused ``logits`` (B, K). Returns (M + 1,)."""
    per_modality = modality_logits.mean(dim=1)  # (B, M, K)
    heads = [per_modality[:, m] for m in range(per_modality.shape[1])] + [logits]
    return torch.stack([classification_loss(h, label, target, multi_label) for h in heads])


def correctness(logits: Tensor, label: Tensor, target: Tensor | None = None) -> Tensor:
    """(B,) 1.0 where the top-1 class is right (for multi-label: is one of the video's labels)."""
    top1 = logits.detach().argmax(dim=-1)  # (B,)
    if target is not None and target.dim() == 2:
        return target.gather(1, top1[:, None]).squeeze(1).to(logits.dtype)
    return (top1 == label).to(logits.dtype)


def efficiency_loss(
    decisions: Tensor,
    correct: Tensor,
    lambdas: Sequence[float],
    gamma: float,
) -> Tensor:
    """`decisions` (B, S, M) in {0, 1} (straight-through), `correct` (B,); lambdas per modality (M,)."""
    if decisions.shape[-1] != len(lambdas):
        raise ValueError(f"{len(lambdas)} lambdas for {decisions.shape[-1]} modalities")
    usage = decisions.mean(dim=1)  # (B, M): fraction of segments using each modality
    weights = torch.as_tensor(list(lambdas), dtype=usage.dtype, device=usage.device)  # (M,)
    charged = (correct[:, None] * usage.pow(2)).mean(dim=0)  # (M,)
    return (weights * charged).sum() + gamma * (1.0 - correct).mean()
