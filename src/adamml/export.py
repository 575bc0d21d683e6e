"""The policy and the recognizers as `torch.export` programs: the library behind `adamml export`
(`adamml.export_cli` says how a serving loop uses them)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from adamml.modalities import get_modality
from adamml.models.adamml import AdaMML, policy_inputs, recognizer_input


class PolicyLogits(nn.Module):
    """The policy as a function of positional tensors (its inputs in `policy.inputs` order) -> decision logits
    (B, S, M, 2); P(use) = softmax(logits)[..., 1]."""

    def __init__(self, model: AdaMML) -> None:
        super().__init__()
        self.policy = model.policy
        self.names = model.policy.inputs
        self.cfg = model.cfg.policy

    def forward(self, *inputs: Tensor) -> Tensor:
        features = self.policy.forward_features(policy_inputs(dict(zip(self.names, inputs)), self.names, self.cfg))
        return self.policy.forward_head(features)


def example_inputs(model: AdaMML, videos: int = 2) -> dict[str, Tensor]:
    """Random inputs (B, S, ...) at the model's configured sizes, for every recognizer and policy input."""
    cfg = model.cfg
    out = {}
    for name in set(model.modalities) | set(model.policy.inputs):
        modality = get_modality(name)
        frames = cfg.frames_per_segment if name in model.modalities else cfg.policy.frames
        shape = (frames, modality.channels, cfg.input_size, cfg.input_size) if modality.visual else (1, 256, 256)
        out[name] = torch.randn(videos, cfg.num_segments, *shape)
    return out


def export(model: AdaMML, out: Path) -> dict[str, str]:
    """Write policy.pt, recognizer-<m>.pt and export.json into `out`; returns the written files."""
    model = model.eval()
    out.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(model)
    files = {}
    videos, cells = torch.export.Dim("videos", min=1), torch.export.Dim("cells", min=1)
    with torch.no_grad():
        policy = PolicyLogits(model).eval()
        args = tuple(inputs[n] for n in policy.names)
        program = torch.export.export(policy, args, dynamic_shapes=(tuple({0: videos} for _ in args),))
        torch.export.save(program, str(out / "policy.pt2"))
        files["policy"] = "policy.pt2"
        for name in model.modalities:
            packed = inputs[name].flatten(0, 1)  # (B * S, ...)
            program = torch.export.export(_Recognizer(model, name).eval(), (packed,), dynamic_shapes=({0: cells},))
            torch.export.save(program, str(out / f"recognizer-{name}.pt2"))
            files[name] = f"recognizer-{name}.pt2"
    meta = {"modalities": list(model.modalities), "policy_inputs": list(model.policy.inputs),
            "num_segments": model.cfg.num_segments, "threshold": model.policy.threshold,
            "fusion_weights": model.fusion.weights().tolist(), "files": files}
    (out / "export.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return files


class _Recognizer(nn.Module):
    """One modality's recognizer on packed cells (N, ...) -> logits (N, K), input resizing included."""

    def __init__(self, model: AdaMML, name: str) -> None:
        super().__init__()
        self.net, self.name, self.audio_size = model.recognizers[name], name, model.cfg.audio.size

    def forward(self, cells: Tensor) -> Tensor:
        return self.net(recognizer_input(self.name, cells, self.audio_size))
