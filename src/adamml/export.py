"""`adamml export`: the policy and the recognizers as `torch.export` programs, for serving without adamml's code.

The per-segment routing stays in Python (it is data-dependent): a serving loop runs `policy.pt2` on the cheap
inputs, thresholds P(use), and calls `recognizer-<modality>.pt2` on the selected segments only, as
`adamml.predict` does. Load with `torch.export.load(path).module()`. Recognizers take any number of packed
cells and the policy any number of videos; the policy steps its LSTM over exactly `model.num_segments`
segments. `torch.export` was chosen over ONNX (which needs extra packages here) and TorchScript (deprecated in
this torch); it round-trips these networks exactly (tested).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich.console import Console
from torch import Tensor, nn

from adamml.modalities import get_modality
from adamml.models.adamml import AdaMML, policy_inputs, recognizer_input
from adamml.models.inference import fold_batch_norms


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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="write the policy and the recognizers as torch.export programs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from adamml.evaluate import load_trained
    from adamml.train.checkpoint import CheckpointError

    console = Console(stderr=True, soft_wrap=True)
    try:
        # batch norms folded, weights left in the default layout: a channels-last program warns on saving and
        # the serving runtime chooses its own layout
        model, _cfg, _payload = load_trained(args.checkpoint, fold=False)
        fold_batch_norms(model)
    except CheckpointError as error:
        console.print(f"[red]error:[/red] {error}")
        return 2
    if not isinstance(model, AdaMML):
        console.print(f"[red]error:[/red] {args.checkpoint} is a {_payload.get('stage')!r} baseline: adamml export "
                      "writes AdaMML's policy and recognizers (the routing stays in Python); a baseline's fusion "
                      "has no policy to route with")
        return 2
    files = export(model, args.out)
    console.print(f"exported {', '.join(files.values())} and export.json to {args.out}")
    return 0
