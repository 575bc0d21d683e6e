"""Always-on multi-modal fusion baselines (supplementary material Sec. C; paper Table 7): `gating`,
`lateral-uni` / `lateral-bi`, `context-gating` and `gradient-blending`. Each is a `FusionBaseline` (AdaMML's
per-modality recognizers and a `fusion` module) taking AdaMML's batch and returning an `AdaMMLOutput` with
all-ones decisions. How each one fuses: docs/design.md, "The fusion baselines".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adamml.config import BASELINE_KINDS, ModelConfig
from adamml.modalities import get_modality
from adamml.models.adamml import AdaMMLOutput, recognizer_input
from adamml.models.fusion import LateFusion
from adamml.models.tsn_resnet import NUM_STAGES

BLEND_FUSED = "fused"  # name of gradient blending's fused head, after the modalities' auxiliary heads


def _features(recognizers: nn.ModuleDict, cells: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each modality's pooled features ``(B * S, F_m)``."""
    return {name: recognizers[name].forward_features(x) for name, x in cells.items()}


def _scores(recognizers: nn.ModuleDict, features: dict[str, Tensor], videos: int) -> Tensor:
    """Each modality's own classifier on its features -> ``(B, S, M, K)``."""
    logits = torch.stack([recognizers[name].forward_head(f) for name, f in features.items()], dim=1)  # (B*S, M, K)
    return logits.view(videos, -1, *logits.shape[1:])


class GatingFusion(nn.Module):
    """Learned gating late fusion: per-video softmax weights over the modalities from their pooled features."""

    def __init__(self, feature_dims: dict[str, int], hidden: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(sum(feature_dims.values()), hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, len(feature_dims)))
        nn.init.normal_(self.gate[-1].weight, std=0.01)  # near-uniform weights at the start: the plain average
        nn.init.zeros_(self.gate[-1].bias)

    def weights(self, features: dict[str, Tensor], videos: int) -> Tensor:
        """Per-video modality weights ``(B, M)`` from features ``(B * S, F_m)``."""
        pooled = [f.view(videos, -1, f.shape[-1]).mean(dim=1) for f in features.values()]  # M x (B, F_m)
        return self.gate(torch.cat(pooled, dim=-1)).softmax(dim=-1)

    def forward(self, recognizers: nn.ModuleDict, cells: dict[str, Tensor], videos: int) -> tuple[Tensor, Tensor]:
        features = _features(recognizers, cells)
        scores = _scores(recognizers, features, videos)  # (B, S, M, K)
        return scores, torch.einsum("bsmk,bm->bsk", scores, self.weights(features, videos))


class ContextGatingFusion(nn.Module):
    """Collaborative-experts gating: each modality's feature gated from its relations with the other experts."""

    def __init__(self, feature_dims: dict[str, int], hidden: int) -> None:
        super().__init__()
        self.project = nn.ModuleDict({name: nn.Linear(dim, hidden) for name, dim in feature_dims.items()})
        self.pair = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden))
        self.attend = nn.ModuleDict({name: nn.Linear(hidden, dim) for name, dim in feature_dims.items()})
        for layer in self.attend.values():  # gates start at 2 sigmoid(~0) = ~1: the unimodal classifiers as they are
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def gates(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """The gate ``(B * S, F_i)`` in (0, 2) of every expert i."""
        embedded = {name: self.project[name](f) for name, f in features.items()}  # (B*S, D)
        gates = {}
        for name, e in embedded.items():
            relations = [self.pair(torch.cat([e, other], dim=-1)) for o, other in embedded.items() if o != name]
            gates[name] = 2.0 * torch.sigmoid(self.attend[name](torch.relu(torch.stack(relations).sum(dim=0))))
        return gates

    def forward(self, recognizers: nn.ModuleDict, cells: dict[str, Tensor], videos: int) -> tuple[Tensor, Tensor]:
        features = _features(recognizers, cells)
        gates = self.gates(features)
        scores = _scores(recognizers, {name: f * gates[name] for name, f in features.items()}, videos)
        return scores, scores.mean(dim=2)  # (B, S, M, K), (B, S, K)


class ConvLateral(nn.Module):
    """ResNet -> ResNet lateral connection: a 1 x 1 convolution (zero at the start) on the aligned source map."""

    def __init__(self, source: int, target: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(source, target, kernel_size=1, bias=False)
        nn.init.zeros_(self.conv.weight)

    def forward(self, x: Tensor, frames: int, target_frames: int) -> Tensor:
        if frames != target_frames:
            raise ValueError(f"lateral convolution between streams of {frames} and {target_frames} frames")
        return self.conv(x)  # (N * T, C_target, H, W)


class PooledLateral(nn.Module):
    """Lateral connection between streams of different layouts (audio <-> ResNet): the source map averaged to one
    vector per segment, a linear projection (zero at the start), added to the target as a per-channel bias."""

    def __init__(self, source: int, target: int) -> None:
        super().__init__()
        self.linear = nn.Linear(source, target)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, frames: int, target_frames: int) -> Tensor:
        pooled = x.view(-1, frames, *x.shape[1:]).mean(dim=(1, 3, 4))  # (N, C): frames and positions averaged
        bias = self.linear(pooled).repeat_interleave(target_frames, dim=0)  # (N * T_target, C_target)
        return bias[:, :, None, None]


class LateralFusion(nn.Module):
    """Mid-level fusion: the streams run stage by stage with lateral connections, then weighted late fusion."""

    def __init__(self, recognizers: dict[str, nn.Module], stages: tuple[int, ...], bilateral: bool) -> None:
        super().__init__()
        names = list(recognizers)
        visual = [name for name in names if get_modality(name).visual]
        self.hub = "rgb" if "rgb" in names else visual[0]
        self.stages = tuple(sorted(stages))
        self.connections: list[tuple[str, str, int]] = []  # (source, target, stage after which it adds)
        self.laterals = nn.ModuleDict()
        for stage in self.stages:
            for other in names:
                if other == self.hub:
                    continue
                pairs = [(other, self.hub)] + ([(self.hub, other)] if bilateral else [])
                for source, target in pairs:
                    channels = (recognizers[source].stage_channels[stage - 1],
                                recognizers[target].stage_channels[stage - 1])
                    both_visual = get_modality(source).visual and get_modality(target).visual
                    self.laterals[self.key(source, target, stage)] = (ConvLateral(*channels) if both_visual
                                                                      else PooledLateral(*channels))
                    self.connections.append((source, target, stage))
        self.late = LateFusion(len(names), "weighted")

    @staticmethod
    def key(source: str, target: str, stage: int) -> str:
        return f"{source}_to_{target}_{stage}"

    def forward(self, recognizers: nn.ModuleDict, cells: dict[str, Tensor], videos: int) -> tuple[Tensor, Tensor]:
        streams = {name: recognizers[name].begin(x) for name, x in cells.items()}  # name -> (map, frames)
        for index in range(NUM_STAGES):
            streams = {name: recognizers[name].forward_stage(index, *streams[name]) for name in streams}
            added: dict[str, Tensor] = {}
            for source, target, stage in self.connections:
                if stage == index + 1:  # every lateral reads the maps before any of this stage's additions
                    lateral = self.laterals[self.key(source, target, stage)]
                    term = lateral(*streams[source], streams[target][1])
                    added[target] = added[target] + term if target in added else term
            for target, term in added.items():
                x, frames = streams[target]
                streams[target] = (x + term, frames)
        features = {name: recognizers[name].end(x, cells[name].shape[0]) for name, (x, _frames) in streams.items()}
        scores = _scores(recognizers, features, videos)  # (B, S, M, K)
        return scores, self.late.forward_segments(scores, torch.ones_like(scores[..., 0]))


class BlendingHeads(nn.Module):
    """Gradient blending's fused head on the concatenated features; the recognizers' classifiers are the
    per-modality auxiliary heads."""

    def __init__(self, feature_dims: dict[str, int], num_classes: int, dropout: float) -> None:
        super().__init__()
        self.heads = tuple(feature_dims) + (BLEND_FUSED,)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(sum(feature_dims.values()), num_classes)

    def forward(self, recognizers: nn.ModuleDict, cells: dict[str, Tensor], videos: int) -> tuple[Tensor, Tensor]:
        features = _features(recognizers, cells)
        fused = self.fc(self.dropout(torch.cat(list(features.values()), dim=-1)))  # (B*S, K)
        return _scores(recognizers, features, videos), fused.view(videos, -1, fused.shape[-1])


class FusionBaseline(nn.Module):
    """Every recognizer on every segment, fused by ``fusion``: AdaMML's interface without a policy."""

    def __init__(self, cfg: ModelConfig, recognizers: dict[str, nn.Module], fusion: nn.Module) -> None:
        super().__init__()
        if tuple(recognizers) != cfg.modalities:
            raise ValueError(f"recognizers {list(recognizers)} must follow the configured modalities "
                             f"{list(cfg.modalities)}")
        self.cfg = cfg
        self.kind = cfg.fusion.kind
        self.modalities = cfg.modalities
        self.recognizers = nn.ModuleDict(recognizers)
        self.fusion = fusion

    def forward(self, batch: dict[str, Tensor], decisions: Tensor | None = None) -> AdaMMLOutput:
        """Every recognizer on every cell, then the fusion. ``decisions``, when given, must be all ones."""
        missing = [name for name in self.modalities if name not in batch]
        if missing:
            raise KeyError(f"the batch has no {missing} for the {self.kind} baseline; keys: {sorted(batch)}")
        b, s = batch[self.modalities[0]].shape[:2]
        if decisions is not None and (tuple(decisions.shape) != (b, s, len(self.modalities))
                                      or not bool((decisions > 0.5).all())):
            raise ValueError(f"the {self.kind} baseline runs every modality on every segment: decisions must be "
                             f"all ones of shape {(b, s, len(self.modalities))}, got {tuple(decisions.shape)}")
        cells = {name: recognizer_input(name, batch[name].flatten(0, 1), self.cfg.audio.size)
                 for name in self.modalities}  # (B * S, ...)
        modality_logits, segment_logits = self.fusion(self.recognizers, cells, b)  # (B, S, M, K), (B, S, K)
        ones = modality_logits.new_ones(b, s, len(self.modalities))
        return AdaMMLOutput(logits=segment_logits.mean(dim=1), segment_logits=segment_logits,
                            modality_logits=modality_logits, decisions=ones, decision_probs=ones,
                            decision_logits=None)

    @torch.no_grad()
    def infer(self, batch: dict[str, Tensor], decisions: Tensor | None = None, rule: object = None) -> AdaMMLOutput:
        """Inference: the same computation as ``forward`` (nothing to skip; no policy, so no `rule`); call in eval
        mode."""
        return self.forward(batch, decisions)


def build_baseline(cfg: ModelConfig, recognizers: dict[str, nn.Module]) -> FusionBaseline:
    """The fusion baseline ``cfg.fusion.kind`` around ``recognizers`` (one per modality, in model order)."""
    kind = cfg.fusion.kind
    if kind not in BASELINE_KINDS:
        raise ValueError(f"{kind!r} is not a fusion baseline ({', '.join(BASELINE_KINDS)})")
    if len(cfg.modalities) < 2:
        raise ValueError(f"the {kind} fusion baseline fuses two or more modalities, got {list(cfg.modalities)}")
    dims = {name: net.num_features for name, net in recognizers.items()}
    fusion: nn.Module
    if kind == "gating":
        fusion = GatingFusion(dims, cfg.fusion.hidden)
    elif kind == "context-gating":
        fusion = ContextGatingFusion(dims, cfg.fusion.hidden)
    elif kind in ("lateral-uni", "lateral-bi"):
        fusion = LateralFusion(recognizers, cfg.fusion.lateral_stages, bilateral=kind == "lateral-bi")
    else:
        fusion = BlendingHeads(dims, cfg.num_classes, cfg.fusion.dropout)
    return FusionBaseline(cfg, recognizers, fusion)
