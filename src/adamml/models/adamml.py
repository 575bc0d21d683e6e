"""The AdaMML model: policy, per-modality recognizers and late fusion (paper Sec. 3, Fig. 2).

Two paths, both returning an ``AdaMMLOutput``:

- ``forward`` (training path): every recognizer runs on every (video, segment) cell and its logits are multiplied
  by the policy's straight-through decisions, so gradients reach the policy (Sec. 3.3).
- ``infer`` (inference path): each recognizer runs only on the cells whose decision selected it, batched across
  the videos of the batch; nothing is computed for the rest. It gives the same logits as ``forward`` in eval mode.

Batch layout: a dict keyed by modality name, each ``(B, S, ...)`` (B videos, S segments):
``rgb`` ``(B, S, T, 3, H, W)``, ``flow`` ``(B, S, T, 10, H, W)``, ``rgbdiff`` ``(B, S, T, 15, H, W)`` with T = 8
frames of the recognizer size, ``audio`` ``(B, S, 1, 256, 256)``. The policy's inputs are frames 0, 2, 4, 6 at
160 x 160 (flow is represented by ``rgbdiff``) and the spectrogram: the data pipeline gives them already shaped
under ``policy_rgb``, ``policy_rgbdiff``, ``policy_audio``, or they are derived here from the stored layout (see
``adamml.data.batch``). The spectrogram is resized to a network's configured size when it differs (tiny presets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from adamml.config import ModelConfig, PolicyConfig
from adamml.data.batch import policy_key, policy_view, recognizer_view
from adamml.modalities import get_modality
from adamml.models.fusion import LateFusion
from adamml.models.policy import DecisionRule, PolicyNetwork, PolicyOutput


@dataclass
class AdaMMLOutput:
    """What the model computed for a batch; modalities in ``AdaMML.modalities`` order."""

    logits: Tensor  # (B, K) video logits
    segment_logits: Tensor  # (B, S, K) fused segment logits
    modality_logits: Tensor  # (B, S, M, K) per-modality segment logits, zero where the modality was not used
    decisions: Tensor  # (B, S, M) 1.0 = the recognizer of that modality ran on that segment
    decision_probs: Tensor  # (B, S, M) P(use) from the policy (the decisions themselves when given)
    decision_logits: Tensor | None  # (B, S, M, 2) policy logits; None when decisions were given


def policy_inputs(batch: dict[str, Tensor], names: tuple[str, ...], cfg: PolicyConfig) -> dict[str, Tensor]:
    """The policy's inputs ``(B, S, ...)``: those the data pipeline already shaped (``policy_key(name)``) as they
    are, the others derived from the stored layout (``adamml.data.batch.policy_view``)."""
    out = {}
    for name in names:
        shaped = batch.get(policy_key(name))
        out[name] = policy_view(name, shaped if shaped is not None else batch[name], cfg)
    return out


def recognizer_input(name: str, cells: Tensor, audio_size: int) -> Tensor:
    """Packed cells ``(N, ...)`` of modality ``name`` as its recognizer takes them (the spectrogram resized)."""
    return recognizer_view(name, cells, audio_size)


class AdaMML(nn.Module):
    """Adaptive multi-modal recognition: a policy chooses, per segment, which recognizers run."""

    def __init__(self, cfg: ModelConfig, recognizers: dict[str, nn.Module], policy: PolicyNetwork,
                 fusion: LateFusion) -> None:
        super().__init__()
        if tuple(recognizers) != cfg.modalities or policy.modalities != cfg.modalities:
            raise ValueError(f"recognizers {list(recognizers)} and policy {list(policy.modalities)} must follow "
                             f"the configured modalities {list(cfg.modalities)}")
        self.cfg = cfg
        self.modalities = cfg.modalities
        self.recognizers = nn.ModuleDict(recognizers)
        self.policy = policy
        self.fusion = fusion

    # ------------------------------------------------------------------------------------------- inputs
    def policy_inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The policy's inputs ``(B, S, ...)`` derived from the batch (frame subsampling, resizing)."""
        for name in self.policy.inputs:
            if name not in batch and policy_key(name) not in batch:
                wanted = [m for m in self.modalities if get_modality(m).policy_proxy == name]
                raise KeyError(f"the batch has no {name!r}, the policy's input for {wanted}; keys: {sorted(batch)}")
        return policy_inputs(batch, self.policy.inputs, self.cfg.policy)

    def recognizer_input(self, name: str, cells: Tensor) -> Tensor:
        """Prepare packed cells ``(N, ...)`` of modality ``name`` for its recognizer (audio: resize)."""
        return recognizer_input(name, cells, self.cfg.audio.size)

    # ------------------------------------------------------------------------------------------- pieces
    def decide(self, batch: dict[str, Tensor], rule: DecisionRule | None = None) -> PolicyOutput:
        """Run the policy on the batch (`rule`: the threshold or sampling of this call, else the configured)."""
        return self.policy(self.policy_inputs(batch), rule)

    def recognize(self, name: str, cells: Tensor) -> Tensor:
        """Logits ``(N, K)`` of modality ``name``'s recognizer on packed cells ``(N, ...)``."""
        return self.recognizers[name](self.recognizer_input(name, cells))

    def _policy_or_given(self, batch: dict[str, Tensor], decisions: Tensor | None,
                         rule: DecisionRule | None = None) -> PolicyOutput | None:
        if decisions is None:
            return self.decide(batch, rule)
        if decisions.dim() != 3 or decisions.shape[-1] != len(self.modalities):
            raise ValueError(f"decisions must be (B, S, {len(self.modalities)}), got {tuple(decisions.shape)}")
        return None

    def _output(self, modality_logits: Tensor, decisions: Tensor, policy: PolicyOutput | None) -> AdaMMLOutput:
        segment_logits, logits = self.fusion(modality_logits, decisions)
        return AdaMMLOutput(
            logits=logits,
            segment_logits=segment_logits,
            modality_logits=modality_logits * decisions.unsqueeze(-1),
            decisions=decisions,
            decision_probs=policy.probs if policy is not None else decisions,
            decision_logits=policy.logits if policy is not None else None,
        )

    # ------------------------------------------------------------------------------------------- paths
    def forward(self, batch: dict[str, Tensor], decisions: Tensor | None = None,
                recognized: Tensor | None = None) -> AdaMMLOutput:
        """Training path: every recognizer on every cell, logits masked by the (straight-through) decisions.

        ``decisions`` ``(B, S, M)`` replaces the policy (e.g. all ones: the always-on weighted-fusion baseline).
        ``recognized`` ``(B, S, M, K)`` replaces the recognizers' logits: what frozen recognizers gave these very
        cells, computed once and reused by the policy's training (`adamml.train.loop.recognizer_logits`).
        """
        policy = self._policy_or_given(batch, decisions)
        if policy is not None:
            decisions = policy.decisions
        b, s = decisions.shape[:2]
        if recognized is not None:
            if recognized.shape[:3] != (b, s, len(self.modalities)):
                raise ValueError(f"recognized logits must be (B={b}, S={s}, M={len(self.modalities)}, K), "
                                 f"got {tuple(recognized.shape)}")
            return self._output(recognized, decisions.to(recognized.dtype), policy)
        modality_logits = self.recognize_all(batch)  # (B, S, M, K)
        return self._output(modality_logits, decisions.to(modality_logits.dtype), policy)

    def recognize_all(self, batch: dict[str, Tensor]) -> Tensor:
        """Every recognizer on every cell: logits ``(B, S, M, K)`` (no policy, no fusion)."""
        per_modality = []
        for name in self.modalities:
            x = batch[name]
            per_modality.append(self.recognize(name, x.flatten(0, 1)).view(*x.shape[:2], -1))  # (B, S, K)
        return torch.stack(per_modality, dim=2)  # (B, S, M, K)

    @torch.no_grad()
    def infer(self, batch: dict[str, Tensor], decisions: Tensor | None = None,
              rule: DecisionRule | None = None) -> AdaMMLOutput:
        """Inference path: each recognizer only on the cells that selected it (call in eval mode); the policy
        decides by `rule` (default: its configured threshold) unless `decisions` are given.

        A modality that no cell selected is never read from the batch.
        """
        policy = self._policy_or_given(batch, decisions, rule)
        if policy is not None:
            decisions = policy.decisions
        b, s, m = decisions.shape
        selected = decisions > 0.5  # (B, S, M)
        modality_logits: Tensor | None = None
        for i, name in enumerate(self.modalities):
            index = selected[:, :, i].flatten().nonzero().squeeze(1)  # (N,) cells b * S + s
            if index.numel() == 0:
                continue
            cells = batch[name].flatten(0, 1).index_select(0, index)  # (N, ...)
            logits = self.recognize(name, cells)  # (N, K)
            if modality_logits is None:
                modality_logits = logits.new_zeros(b * s, m, logits.shape[-1])  # (B * S, M, K)
            modality_logits[index, i] = logits
        if modality_logits is None:  # nothing selected anywhere: zero logits
            modality_logits = decisions.new_zeros(b * s, m, self.cfg.num_classes)
        modality_logits = modality_logits.view(b, s, m, -1)  # (B, S, M, K)
        return self._output(modality_logits, decisions.to(modality_logits.dtype), policy)
