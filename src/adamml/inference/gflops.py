"""Computational cost: measured per component, and per video from the decisions actually taken.

The field's "GFLOPs" are multiply-accumulates (GMACs); every number here is in GMACs. The cost of each component
is measured by counting the operations of a real forward pass (``torch.utils.flop_counter.FlopCounterMode``,
which counts 2 per MAC) at the configured input sizes, on meta tensors so that even ResNet-50 costs nothing to
count. The policy's LSTM cell is counted the same way where the counter sees it (torch 2.14 does, through its
matrix products); where a counter is blind to it (older torch versions) its analytic count is added instead.

Two counts are kept side by side:

- ``conv``: convolution layers only, as the paper counts (supplementary Table 2: ResNet-50 at 8 x 224^2 with
  temporal pooling: RGB 14.136, flow 16.339, RGBDiff 17.912; MobileNetV2 audio 0.3817; policy MobileNetV2 on
  4 x 160^2 with two temporal pools: RGB 0.3754, RGBDiff 0.4639).
- ``all``: every layer with multiply-accumulates: convolutions, fully connected layers and the LSTM cell
  (batch norm, activations, pooling and element-wise additions are not counted by either).

A video's cost (paper Sec. 4 "GFLOPs"): the policy on every segment plus each recognizer on the segments that
selected it; ``video_gmacs`` is that pure function of the decisions, for the evaluator and the predictor alike.

The always-on fusion baselines (``adamml.models.baselines``) add their fusion modules (lateral projections, gates,
fused heads) to the recognizers. Their cost is measured the same way, on the baseline's whole forward pass: once
for a video of one segment and once for two, which gives the cost per segment and the cost once per video (the
gating baseline's gate runs on the video's pooled features); what is not in the recognizers is ``fusion`` (per
segment) and ``fusion_video``. AdaMML's late fusion counts zero (a weighted sum of M x K logits).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from adamml.config import BASELINE_KINDS, FusionConfig, ModelConfig, PolicyConfig
from adamml.modalities import get_modality
from adamml.models.adamml import AdaMML
from adamml.models.build import build_model
from adamml.models.policy import PolicyNetwork

Count = Literal["conv", "all"]


@dataclass(frozen=True)
class Cost:
    """GMACs of one run of a component: convolution layers only, and all layers with MACs."""

    conv: float
    all: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.conv + other.conv, self.all + other.all)

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.conv - other.conv, self.all - other.all)

    def __mul__(self, factor: float) -> Cost:
        return Cost(self.conv * factor, self.all * factor)

    __rmul__ = __mul__

    def get(self, count: Count) -> float:
        """The ``conv`` or the ``all`` figure."""
        if count not in ("conv", "all"):
            raise ValueError(f"count must be 'conv' or 'all', got {count!r}")
        return self.conv if count == "conv" else self.all


ZERO = Cost(0.0, 0.0)


def count_gmacs(module: nn.Module | Callable[..., object], *inputs: Tensor) -> Cost:
    """Measure one call of ``module`` (a module or a method) on ``inputs`` (any device, meta included)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    flops = counter.get_flop_counts().get("Global", {})
    conv = sum(v for op, v in flops.items() if "convolution" in str(op))
    total = sum(flops.values())
    return Cost(conv / 2e9, total / 2e9)  # the counter counts 2 per multiply-accumulate


def lstm_cell_gmacs(input_size: int, hidden_size: int) -> float:
    """MACs of one ``nn.LSTMCell`` step: the four gates' input and hidden matrix products."""
    return 4 * hidden_size * (input_size + hidden_size) / 1e9


@dataclass(frozen=True)
class ModelCosts:
    """Per-segment cost of every component of an AdaMML model; modalities in model order."""

    modalities: tuple[str, ...]
    recognizers: Mapping[str, Cost]  # per recognizer modality, one segment
    extractors: Mapping[str, Cost]  # per policy input (rgb, rgbdiff, audio), one segment
    policy_head: Cost  # MLP + LSTM cell + decision heads, one segment
    recognizer_inputs: Mapping[str, tuple[int, ...]]  # per-segment input shape of each recognizer
    extractor_inputs: Mapping[str, tuple[int, ...]]  # per-segment input shape of each policy extractor
    fusion: Cost = ZERO  # a fusion baseline's modules beyond the recognizers, one segment (every modality on)
    fusion_video: Cost = ZERO  # a fusion baseline's modules that run once per video

    def policy(self) -> Cost:
        """The policy on one segment."""
        total = self.policy_head
        for cost in self.extractors.values():
            total = total + cost
        return total

    def always_on(self) -> Cost:
        """Every recognizer on one segment, with a fusion baseline's per-segment modules (no policy)."""
        total = self.fusion
        for name in self.modalities:
            total = total + self.recognizers[name]
        return total


def _cost_key(cfg: ModelConfig) -> ModelConfig:
    """The configuration with everything that does not change the cost set to defaults (for the cache)."""
    fusion = FusionConfig()
    if cfg.fusion.kind in BASELINE_KINDS:
        fusion = dataclasses.replace(cfg.fusion, segment_mean="all", dropout=0.0)
    return dataclasses.replace(
        cfg,
        num_segments=1,
        resnet=dataclasses.replace(cfg.resnet, pretrained=None, mmaction2={}),
        audio=dataclasses.replace(cfg.audio, pretrained=None),
        policy=dataclasses.replace(cfg.policy, pretrained=None, threshold=PolicyConfig.threshold,
                                   temperature=PolicyConfig.temperature, random_at_test=False),
        fusion=fusion,
    )


def measure_costs(cfg: ModelConfig) -> ModelCosts:
    """Measure every component of the model ``cfg`` describes (cached: a repeated call is free)."""
    return _measure(_cost_key(cfg))


def _recognizer_shape(cfg: ModelConfig, name: str) -> tuple[int, ...]:
    """Per-segment input shape of modality ``name``'s recognizer."""
    modality = get_modality(name)
    if modality.visual:
        return (cfg.frames_per_segment, modality.channels, cfg.input_size, cfg.input_size)
    return (modality.channels, cfg.audio.size, cfg.audio.size)


def _fusion_costs(model: nn.Module, cfg: ModelConfig, recognizers: Cost) -> tuple[Cost, Cost]:
    """(per segment, per video) cost of a fusion baseline's modules: its whole forward pass on a video of one
    and of two segments, less ``recognizers`` (every recognizer on one segment)."""

    def whole(segments: int) -> Cost:
        batch = {name: torch.zeros((1, segments, *_recognizer_shape(cfg, name)), device="meta")
                 for name in cfg.modalities}
        return count_gmacs(lambda: model(batch))

    def exact(cost: Cost) -> Cost:  # whole multiply-accumulates: no rounding residue of the differences
        return Cost(round(cost.conv, 9), round(cost.all, 9))

    one, two = whole(1), whole(2)
    per_segment = two - one
    return exact(per_segment - recognizers), exact(one - per_segment)


@functools.lru_cache(maxsize=64)
def _measure(cfg: ModelConfig) -> ModelCosts:
    with torch.device("meta"):
        model = build_model(cfg).eval()
        # a baseline has no policy: measure the one AdaMML would have, for comparison tables
        policy = model.policy if isinstance(model, AdaMML) else PolicyNetwork(cfg.modalities, cfg.policy).eval()
    recognizers, recognizer_inputs = {}, {}
    for name in cfg.modalities:
        shape = _recognizer_shape(cfg, name)
        recognizers[name] = count_gmacs(model.recognizers[name], torch.zeros((1, *shape), device="meta"))
        recognizer_inputs[name] = shape
    extractors, extractor_inputs = {}, {}
    for name in policy.inputs:
        modality = get_modality(name)
        if modality.visual:
            shape = (cfg.policy.frames, modality.channels, cfg.policy.size, cfg.policy.size)
        else:
            shape = (modality.channels, cfg.policy.audio_size, cfg.policy.audio_size)
        extractors[name] = count_gmacs(policy.extractors[name], torch.zeros((1, *shape), device="meta"))
        extractor_inputs[name] = shape
    width = sum(extractor.num_features for extractor in policy.extractors.values())
    mlp = count_gmacs(policy.mlp, torch.zeros((1, width), device="meta"))
    # one segment of the LSTM cell and the decision heads
    step = count_gmacs(policy.forward_head, torch.zeros((1, 1, policy.feature_dim), device="meta"))
    num = len(cfg.modalities)
    lstm = lstm_cell_gmacs(policy.feature_dim + 2 * num, cfg.policy.lstm_hidden)
    head_inputs = cfg.policy.lstm_hidden + (policy.feature_dim if cfg.policy.head_input == "lstm+features" else 0)
    heads = num * head_inputs * 2 / 1e9
    if step.all < lstm:  # the counter did not see the LSTM cell: count it analytically
        step = Cost(0.0, lstm + heads)
    fusion = fusion_video = ZERO
    if not isinstance(model, AdaMML):
        fusion, fusion_video = _fusion_costs(model, cfg, sum(recognizers.values(), ZERO))
    return ModelCosts(
        modalities=cfg.modalities,
        recognizers=recognizers,
        extractors=extractors,
        policy_head=mlp + step,
        recognizer_inputs=recognizer_inputs,
        extractor_inputs=extractor_inputs,
        fusion=fusion,
        fusion_video=fusion_video,
    )


def video_gmacs(decisions: Tensor | np.ndarray, costs: ModelCosts, count: Count = "conv",
                include_policy: bool = True) -> np.ndarray:
    """GMACs each video actually cost, from its decisions ``(..., S, M)`` (1 = the recognizer ran).

    The policy on every segment (unless ``include_policy`` is false) plus each recognizer on every segment that
    selected it, plus a fusion baseline's modules (their decisions are all ones). Returns float64 ``(...)``,
    e.g. ``(B,)`` for ``(B, S, M)`` decisions.
    """
    if isinstance(decisions, Tensor):
        decisions = decisions.detach().cpu().numpy()
    used = np.asarray(decisions, dtype=np.float64) > 0.5  # (..., S, M)
    if used.ndim < 2 or used.shape[-1] != len(costs.modalities):
        raise ValueError(f"decisions must be (..., S, {len(costs.modalities)}), got {used.shape}")
    per_cell = np.array([costs.recognizers[m].get(count) for m in costs.modalities])  # (M,)
    total = (used * per_cell).sum(axis=(-1, -2))  # (...)
    total = total + used.shape[-2] * costs.fusion.get(count) + costs.fusion_video.get(count)
    if include_policy:
        total = total + used.shape[-2] * costs.policy().get(count)
    return total


def always_on_gmacs(costs: ModelCosts, num_segments: int, count: Count = "conv") -> float:
    """GMACs of the model always on: every recognizer on every segment (with a fusion baseline's modules), no
    policy; for AdaMML models, the always-on weighted-fusion baseline."""
    return num_segments * costs.always_on().get(count) + costs.fusion_video.get(count)
