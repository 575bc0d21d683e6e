"""`adamml export`: the exported policy and recognizers give the model's outputs."""

from __future__ import annotations

import json

import torch

from adamml.cli import main
from adamml.config import load_config
from adamml.export import example_inputs
from adamml.models.build import build_model
from adamml.train.checkpoint import model_payload, save_checkpoint

SMALL = ["model.num_classes=3", "model.num_segments=3", "model.input_size=32", "model.audio.size=32",
         "model.policy.size=16", "model.policy.audio_size=32"]


def test_exported_parts_match_the_model(tmp_path):
    cfg = load_config("tiny", SMALL)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, {**model_payload(model, cfg), "stage": "adamml"})
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "export")]) == 0
    meta = json.loads((tmp_path / "export" / "export.json").read_text())
    assert meta["modalities"] == ["rgb", "flow", "audio"] and meta["num_segments"] == 3
    inputs = example_inputs(model, videos=3)  # another batch size than the traced one
    policy = torch.export.load(str(tmp_path / "export" / meta["files"]["policy"])).module()
    with torch.no_grad():
        expected = model.decide(inputs).logits
        got = policy(*[inputs[n] for n in meta["policy_inputs"]])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        for name in meta["modalities"]:
            recognizer = torch.export.load(str(tmp_path / "export" / meta["files"][name])).module()
            cells = inputs[name].flatten(0, 1)[:5]  # any number of cells
            torch.testing.assert_close(recognizer(cells), model.recognize(name, cells), rtol=1e-4, atol=1e-5)
