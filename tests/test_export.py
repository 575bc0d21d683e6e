"""`adamml export`: the exported policy and recognizers give the model's outputs."""

from __future__ import annotations

import json

import pytest
import torch

from adamml.cli import main
from adamml.config import load_config
from adamml.inference.checkpoint import model_payload, save_checkpoint
from adamml.inference.exporter import example_inputs
from adamml.models.build import build_model

SMALL = ["model.num_classes=3", "model.num_segments=3", "model.input_size=32", "model.audio.size=32",
         "model.policy.size=16", "model.policy.audio_size=32"]


def _exported(tmp_path, seed: int, *options: str):
    """A random tiny AdaMML saved as a checkpoint and exported with `options`: (model, export folder, export.json)."""
    cfg = load_config("tiny", SMALL)
    torch.manual_seed(seed)
    model = build_model(cfg.model).eval()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, {**model_payload(model, cfg), "stage": "adamml"})
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "export"), *options]) == 0
    return model, tmp_path / "export", json.loads((tmp_path / "export" / "export.json").read_text())


def test_exported_parts_match_the_model(tmp_path):
    model, _, meta = _exported(tmp_path, 0)
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


@pytest.mark.parametrize("segment_mean,skipped", [("all", "zero"), ("modality", "zero"), ("all", "learned"),
                                                  ("modality", "learned")])
def test_export_json_says_how_to_fuse_the_exported_recognizers_into_the_models_prediction(tmp_path, segment_mean,
                                                                                          skipped):
    """The exported recognizers on the cells the policy selected, fused as export.json and docs/cli.md say, give
    the model's video logits."""
    cfg = load_config("tiny", SMALL + [f"model.fusion.segment_mean={segment_mean}",
                                       f"model.fusion.skipped_logits={skipped}"])
    torch.manual_seed(1)
    model = build_model(cfg.model).eval()
    if skipped == "learned":
        with torch.no_grad():
            model.fusion.skipped.normal_()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, {**model_payload(model, cfg), "stage": "adamml"})
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "export")]) == 0
    meta = json.loads((tmp_path / "export" / "export.json").read_text())
    assert meta["segment_mean"] == segment_mean and (meta["skipped_logits"] is None) == (skipped == "zero")
    inputs = example_inputs(model, videos=4)
    with torch.no_grad():
        model.policy.threshold = float(model.decide(inputs).probs.median())  # some cells used, some not
        out = model(inputs)
        use = out.decisions  # (B, S, M)
        assert 0 < use.sum() < use.numel()
        fused = 0.0
        for m, name in enumerate(meta["modalities"]):
            recognizer = torch.export.load(str(tmp_path / "export" / meta["files"][name])).module()
            logits = recognizer(inputs[name].flatten(0, 1)).view(*use.shape[:2], -1)  # (B, S, K)
            total = (logits * use[..., m, None]).sum(dim=1)
            count = use[..., m].sum(dim=1, keepdim=True)  # (B, 1) cells that computed the modality
            b = torch.tensor(meta["skipped_logits"][m]) if meta["skipped_logits"] else torch.zeros(())
            if segment_mean == "modality":  # computed nowhere: its skipped logits
                total = torch.where(count > 0, total / count.clamp(min=1), b)
            else:  # every skipped cell adds its skipped logits
                total = (total + (meta["num_segments"] - count) * b) / meta["num_segments"]
            fused = fused + meta["fusion_weights"][m] * total
        torch.testing.assert_close(fused, out.logits, rtol=1e-4, atol=1e-5)


def test_onnx_models_run_in_onnx_runtime_like_the_model(tmp_path):
    import numpy as np
    import onnxruntime as ort

    model, out, meta = _exported(tmp_path, 1, "--onnx")
    assert set(meta["onnx_files"]) == {"policy", "rgb", "flow", "audio"}
    assert all(v < 1e-4 for v in meta["onnx_max_abs_difference"].values())
    # checked here too, independently: dynamic videos for the policy, dynamic cells for a recognizer
    for videos in (1, 4):
        inputs = example_inputs(model, videos=videos)
        policy = ort.InferenceSession(str(out / meta["onnx_files"]["policy"]), providers=["CPUExecutionProvider"])
        got = policy.run(None, {n: inputs[n].numpy() for n in meta["policy_inputs"]})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model.decide(inputs).logits.numpy(), rtol=1e-4, atol=1e-5)
    flow = ort.InferenceSession(str(out / meta["onnx_files"]["flow"]), providers=["CPUExecutionProvider"])
    cells = example_inputs(model, videos=3)["flow"].flatten(0, 1)[:7]
    with torch.no_grad():
        np.testing.assert_allclose(flow.run(None, {"cells": cells.numpy()})[0], model.recognize("flow", cells).numpy(),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stage", ["unimodal", "fusion", "random"])
def test_a_checkpoint_without_a_trained_policy_is_not_exported(tmp_path, capsys, stage):
    # a unimodal or fusion model is built with an untrained policy: exporting it would ship a policy that means
    # nothing, at threshold 0.5, with nothing in export.json saying so
    cfg = load_config("tiny", SMALL)
    model = build_model(cfg.model).eval()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, {**model_payload(model, cfg), "stage": stage})
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "export")]) == 2
    assert f"is a '{stage}' checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "export" / "export.json").exists()
