"""The multi-modal policy network (paper Sec. 3.1, Fig. 2; supplementary Sec. B).

For every segment, one MobileNetV2 per policy input looks at cheap data: RGB and RGBDiff (standing in for optical
flow, so no flow is computed to decide about flow) on 4 frames of 160 x 160 with two temporal pools, audio on the
spectrogram; each gives 1280 features. Concatenated features go through an MLP (2048, 2048, ReLU) and an LSTM
cell (256) whose input also holds the previous segment's decision logits (zeros at the first segment; with
``feed: decisions``, the one-hot decisions actually taken instead); one 2-way linear head per recognizer modality
gives the decision logits (index 1 = "use").

Training: hard Gumbel-Softmax with a temperature, straight-through, so gradients reach every policy parameter.
A hard sample uses a modality with probability P(use) whatever the temperature (the temperature shapes only the
gradient); ``noise_scale`` < 1 scales the Gumbel noise down, so the samples move towards the decisions taken at
evaluation (0: exactly those; see ``train.gumbel_noise_decay``).
Evaluation: deterministic, a modality is used when P(use) >= threshold (settable at test time to trade accuracy
for cost); ``random_at_test`` reproduces the official code's random Gumbel sampling at test time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adamml.config import PolicyConfig
from adamml.modalities import check_modalities, get_modality, policy_modalities
from adamml.models.mobilenet import MobileNetV2Extractor


@dataclass
class PolicyOutput:
    """Decisions for every (video, segment, modality) cell; modalities in ``PolicyNetwork.modalities`` order."""

    decisions: Tensor  # (B, S, M): 1.0 = use (straight-through hard Gumbel samples in training)
    probs: Tensor  # (B, S, M): P(use) = softmax(logits)[..., 1]
    logits: Tensor  # (B, S, M, 2)


@dataclass(frozen=True)
class DecisionRule:
    """How an evaluation takes the policy's decisions, given per call: P(use) >= `threshold` (None: the configured
    ``model.policy.threshold``), or Gumbel samples with `sample` (the official code's random test decisions)."""

    threshold: float | None = None
    sample: bool = False


class PolicyNetwork(nn.Module):
    """Per-segment, per-modality usage decisions for recognizer modalities ``modalities``."""

    def __init__(self, modalities: tuple[str, ...], cfg: PolicyConfig) -> None:
        super().__init__()
        self.modalities = check_modalities(modalities)
        self.inputs = policy_modalities(modalities)  # e.g. ("rgb", "rgbdiff", "audio")
        self.extractors = nn.ModuleDict(
            {name: MobileNetV2Extractor(get_modality(name).channels, cfg.widths.get(name, cfg.width_mult))
             for name in self.inputs}
        )
        width = sum(extractor.num_features for extractor in self.extractors.values())
        layers: list[nn.Module] = []
        for hidden in cfg.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.feature_dim = width
        self.lstm_hidden = cfg.lstm_hidden
        num = len(self.modalities)
        self.lstm = nn.LSTMCell(width + 2 * num, cfg.lstm_hidden)
        self.heads = nn.ModuleDict({name: nn.Linear(cfg.lstm_hidden, 2) for name in self.modalities})
        # head_input "lstm+features": each head also reads the segment's MLP features, through weights that start
        # at zero (the policy starts as the paper's; no random draws, so a seed's other weights are unchanged)
        self.feature_heads = (nn.Parameter(torch.zeros(num, 2, width)) if cfg.head_input == "lstm+features"
                              else None)
        self.register_buffer("temperature", torch.tensor(float(cfg.temperature)))
        self.threshold = cfg.threshold
        self.random_at_test = cfg.random_at_test
        self.feed = cfg.feed
        # scale of the Gumbel noise of training samples (1: the paper's Gumbel-Softmax); set by the trainer, not
        # saved in checkpoints (it does not change evaluation)
        self.noise_scale = 1.0

    def set_temperature(self, temperature: float) -> None:
        """Set the Gumbel-Softmax temperature (the trainer decays it by 0.965 per alternating epoch)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature.fill_(float(temperature))

    def set_noise_scale(self, scale: float) -> None:
        """Scale the Gumbel noise of training samples: 1 samples with P(use), 0 takes P(use) >= 0.5 (straight-through
        gradients either way)."""
        if not 0.0 <= scale <= 1.0:
            raise ValueError(f"the Gumbel noise scale must be in [0, 1], got {scale}")
        self.noise_scale = float(scale)

    def forward_features(self, inputs: dict[str, Tensor]) -> Tensor:
        """Policy inputs keyed by name, each ``(B, S, ...)`` -> MLP features ``(B, S, D)``.

        Visual inputs are ``(B, S, T, C, H, W)`` at the policy size; audio ``(B, S, 1, F, W)``.
        """
        features = []
        b, s = inputs[self.inputs[0]].shape[:2]
        for name, extractor in self.extractors.items():
            x = inputs[name]
            if x.shape[:2] != (b, s):
                raise ValueError(f"policy input {name!r} has shape {tuple(x.shape)}, expected (B={b}, S={s}, ...)")
            features.append(extractor(x.flatten(0, 1)))  # (B * S, F)
        x = self.mlp(torch.cat(features, dim=1))  # (B * S, D)
        return x.view(b, s, -1)  # (B, S, D)

    def forward_head(self, features: Tensor, rule: DecisionRule | None = None) -> Tensor:
        """MLP features ``(B, S, D)`` -> decision logits ``(B, S, M, 2)`` (LSTM over the segments).

        With ``feed: decisions`` the logits of a segment depend on the decisions taken before it: they are taken
        here as ``decide`` would (sampled in training, thresholded in eval mode)."""
        return self._steps(features, rule)[0]

    def _steps(self, features: Tensor, rule: DecisionRule | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits ``(B, S, M, 2)``, and with ``feed: decisions`` the straight-through one-hot decisions
        ``(B, S, M, 2)`` taken on the way (None with ``feed: logits``: decide after the loop)."""
        b, s, _ = features.shape
        num = len(self.modalities)
        h = features.new_zeros(b, self.lstm_hidden)
        c = features.new_zeros(b, self.lstm_hidden)
        previous = features.new_zeros(b, 2 * num)  # (B, 2M): the previous segment's logits or one-hot decisions
        steps, taken = [], []
        for i in range(s):
            h, c = self.lstm(torch.cat([features[:, i], previous], dim=1), (h, c))
            step = torch.stack([self.heads[name](h) for name in self.modalities], dim=1)  # (B, M, 2)
            if self.feature_heads is not None:
                step = step + torch.einsum("bd,mkd->bmk", features[:, i], self.feature_heads.to(features.dtype))
            steps.append(step)
            if self.feed == "decisions":
                taken.append(self._one_hot(step, rule))
                previous = taken[-1].reshape(b, 2 * num)  # (B, 2M)
            else:
                previous = step.reshape(b, 2 * num)  # (B, 2M)
        logits = torch.stack(steps, dim=1)  # (B, S, M, 2)
        return logits, (torch.stack(taken, dim=1) if taken else None)

    def _one_hot(self, logits: Tensor, rule: DecisionRule | None = None) -> Tensor:
        """Decision logits ``(..., 2)`` -> one-hot decisions ``(..., 2)`` (straight-through when sampled), taken in
        float32 whatever the autocast precision. `rule` overrides the configured threshold / test-time sampling."""
        logits = logits.float()
        rule = rule or DecisionRule()
        if self.training and self.noise_scale != 1.0:
            return _scaled_gumbel_softmax(logits, float(self.temperature), self.noise_scale)
        if self.training or self.random_at_test or rule.sample:
            return F.gumbel_softmax(logits, tau=float(self.temperature), hard=True)
        threshold = self.threshold if rule.threshold is None else rule.threshold
        use = (logits.softmax(dim=-1)[..., 1] >= threshold).to(logits.dtype)
        return torch.stack([1.0 - use, use], dim=-1)

    def decide(self, logits: Tensor, rule: DecisionRule | None = None) -> tuple[Tensor, Tensor]:
        """Decision logits ``(..., 2)`` -> decisions and P(use), both ``(...)``."""
        return self._one_hot(logits, rule)[..., 1], logits.float().softmax(dim=-1)[..., 1]

    def forward(self, inputs: dict[str, Tensor], rule: DecisionRule | None = None) -> PolicyOutput:
        return self.decide_features(self.forward_features(inputs), rule)

    def decide_features(self, features: Tensor, rule: DecisionRule | None = None) -> PolicyOutput:
        """Decisions from MLP features ``(B, S, D)`` (what ``forward`` does after the extractors): the features do
        not depend on the threshold, so a threshold sweep computes them once (`adamml.inference.operating_point`)."""
        logits, taken = self._steps(features, rule)
        if taken is None:
            decisions, probs = self.decide(logits, rule)
        else:
            decisions, probs = taken[..., 1], logits.float().softmax(dim=-1)[..., 1]
        return PolicyOutput(decisions=decisions, probs=probs, logits=logits)


def _scaled_gumbel_softmax(logits: Tensor, tau: float, scale: float) -> Tensor:
    """Hard, straight-through Gumbel-Softmax over the last dimension with the noise multiplied by `scale` (the same
    random draws as ``F.gumbel_softmax``): the sample is argmax(logits + scale * g), so at 1 it follows the softmax
    and at 0 it is the argmax."""
    gumbels = -torch.empty_like(logits, memory_format=torch.legacy_contiguous_format).exponential_().log()
    soft = ((logits + scale * gumbels) / tau).softmax(dim=-1)
    hard = torch.zeros_like(logits).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft
