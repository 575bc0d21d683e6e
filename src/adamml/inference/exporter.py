"""The policy and the recognizers as `torch.export` programs and, with `onnx`, ONNX models checked with ONNX
Runtime: the library behind `adamml export` (`adamml.cli.export` says how a serving loop uses them)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from adamml.data.batch import sample_shape
from adamml.errors import UserError
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
        shape = sample_shape(name, cfg, policy=name not in model.modalities)
        out[name] = torch.randn(videos, cfg.num_segments, *shape)
    return out


def export(model: AdaMML, out: Path, onnx: bool = False) -> dict[str, str]:
    """Write policy.pt2, recognizer-<m>.pt2 and export.json into `out` (with `onnx`, also policy.onnx and
    recognizer-<m>.onnx, each checked against the model with ONNX Runtime on another batch size than the traced
    one; the largest difference goes into export.json); returns the written files."""
    model = model.eval()
    out.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(model)
    files, onnx_files, checks = {}, {}, {}
    videos, cells = torch.export.Dim("videos", min=1), torch.export.Dim("cells", min=1)
    with torch.no_grad():
        policy = PolicyLogits(model).eval()
        args = tuple(inputs[n] for n in policy.names)
        programs = {"policy": torch.export.export(policy, args, dynamic_shapes=(tuple({0: videos} for _ in args),))}
        for name in model.modalities:
            packed = inputs[name].flatten(0, 1)  # (B * S, ...)
            programs[name] = torch.export.export(_Recognizer(model, name).eval(), (packed,),
                                                 dynamic_shapes=({0: cells},))
        for key, program in programs.items():
            stem = "policy" if key == "policy" else f"recognizer-{key}"
            torch.export.save(program, str(out / f"{stem}.pt2"))
            files[key] = f"{stem}.pt2"
            if onnx:
                onnx_files[key] = f"{stem}.onnx"
                names = list(policy.names) if key == "policy" else ["cells"]
                _write_onnx(program, out / onnx_files[key], names, "logits")
        if onnx:
            checks = check_onnx(model, out, onnx_files)
    meta = {"modalities": list(model.modalities), "policy_inputs": list(model.policy.inputs),
            "num_segments": model.cfg.num_segments, "threshold": model.policy.threshold,
            "fusion_weights": model.fusion.weights().tolist(), "segment_mean": model.fusion.segment_mean,
            "skipped_logits": None if model.fusion.skipped is None else model.fusion.skipped.tolist(),
            "files": files}
    if onnx:
        meta.update(onnx_files=onnx_files, onnx_max_abs_difference=checks)
    (out / "export.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return {**files, **{f"{k} (onnx)": v for k, v in onnx_files.items()}}


def _write_onnx(program: torch.export.ExportedProgram, path: Path, inputs: list[str], output: str) -> None:
    """One exported program as an ONNX model (torch's dynamo exporter; its dynamic batch dimension kept)."""
    try:
        import onnxscript  # noqa: F401  (the exporter's dependency: fail with a clear message without it)
    except ImportError:
        raise UserError("--onnx needs the packages onnx and onnxscript (and onnxruntime for the check): "
                        "pip install onnx onnxscript onnxruntime") from None
    torch.onnx.export(program, (), str(path), input_names=inputs, output_names=[output], dynamo=True,
                      external_data=False, verbose=False)


def check_onnx(model: AdaMML, out: Path, onnx_files: dict[str, str], videos: int = 3) -> dict[str, float]:
    """Run each ONNX model with ONNX Runtime (CPU) on `videos` random videos (a batch size other than the traced
    one; recognizers on 5 cells) and return its largest absolute difference from the model's outputs."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("checking the ONNX models needs onnxruntime: pip install onnxruntime") from None
    inputs = example_inputs(model, videos)
    checks = {}
    with torch.no_grad():
        for key, name in onnx_files.items():
            session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
            if key == "policy":
                feed = {n: inputs[n].numpy() for n in model.policy.inputs}
                expected = model.decide(inputs).logits
            else:
                cells = inputs[key].flatten(0, 1)[:5]
                feed = {"cells": cells.numpy()}
                expected = model.recognize(key, cells)
            got = torch.from_numpy(session.run(None, feed)[0])
            checks[key] = float((got - expected).abs().max())
    return checks


class _Recognizer(nn.Module):
    """One modality's recognizer on packed cells (N, ...) -> logits (N, K), input resizing included."""

    def __init__(self, model: AdaMML, name: str) -> None:
        super().__init__()
        self.net, self.name, self.audio_size = model.recognizers[name], name, model.cfg.audio.size

    def forward(self, cells: Tensor) -> Tensor:
        return self.net(recognizer_input(self.name, cells, self.audio_size))
