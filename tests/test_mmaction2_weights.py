"""mmaction2 TSN ResNet checkpoints (``backbone.*`` in ConvModule names, ``cls_head.fc_cls``) initialise our
recognizers through ``model.resnet.mmaction2`` / ``adamml train --init rgb=FILE``, strictly and by name."""

from __future__ import annotations

import re

import pytest
import torch

from adamml.config import ConfigError, load_config
from adamml.models.build import CheckpointError, build_recognizers
from adamml.models.tsn_resnet import TSNResNet


def mmaction2_name(key: str) -> str:
    """torchvision's ResNet name -> mmaction2's (written from mmaction/models/backbones/resnet.py)."""
    if key.startswith("fc."):
        return "cls_head.fc_cls." + key[3:]
    key = re.sub(r"^conv1\.", "conv1.conv.", key)
    key = re.sub(r"^bn1\.", "conv1.bn.", key)
    key = re.sub(r"^(layer\d+\.\d+\.)conv(\d)\.", r"\1conv\2.conv.", key)
    key = re.sub(r"^(layer\d+\.\d+\.)bn(\d)\.", r"\1conv\2.bn.", key)
    key = re.sub(r"^(layer\d+\.\d+\.)downsample\.0\.", r"\1downsample.conv.", key)
    key = re.sub(r"^(layer\d+\.\d+\.)downsample\.1\.", r"\1downsample.bn.", key)
    return "backbone." + key if not key.startswith("cls_head.") else key


def save_mmaction2(path, depth: int = 50, channels: int = 3, classes: int = 400, seed: int = 0):
    torch.manual_seed(seed)
    net = TSNResNet(depth, channels, classes)
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if value.is_floating_point():
                value.normal_()
    state = {mmaction2_name(k): v for k, v in net.state_dict().items()}
    torch.save({"meta": {"mmcv_version": "1.3.0", "epoch": 100, "config": "model = dict(type='Recognizer2D')"},
                "state_dict": state}, path)
    return path, net


def model_cfg(tmp_path, depth: int = 18, **files):
    overrides = ["model.modalities=[rgb,flow]", f"model.resnet.depth={depth}"]
    overrides += [f"model.resnet.mmaction2.{m}={p}" for m, p in files.items()]
    return load_config("paper-rgb-flow", overrides).model


def test_rgb_and_flow_backbones_load_by_name_and_the_head_is_left_out(tmp_path):
    rgb, rgb_net = save_mmaction2(tmp_path / "tsn_rgb.pth", seed=1)
    flow, flow_net = save_mmaction2(tmp_path / "tsn_flow.pth", channels=10, seed=2)
    torch.manual_seed(0)
    recognizers = build_recognizers(model_cfg(tmp_path, depth=50, rgb=rgb, flow=flow))  # the published TSN R50
    for name, source in (("rgb", rgb_net), ("flow", flow_net)):
        got, want = recognizers[name].state_dict(), source.state_dict()
        for key, value in got.items():
            if key.startswith("fc."):
                assert value.shape[0] == 31  # our classes, not the checkpoint's 400
            else:
                torch.testing.assert_close(value, want[key], msg=f"{name}: {key}")


def test_an_rgb_checkpoint_initialises_flow_with_its_averaged_first_conv(tmp_path):
    rgb, rgb_net = save_mmaction2(tmp_path / "tsn_rgb.pth", depth=18, seed=3)
    recognizers = build_recognizers(model_cfg(tmp_path, flow=rgb))
    averaged = rgb_net.conv1.weight.mean(dim=1, keepdim=True).expand(-1, 10, -1, -1)
    torch.testing.assert_close(recognizers["flow"].conv1.weight, averaged)


def test_another_depth_is_a_readable_mismatch(tmp_path):
    deeper, _ = save_mmaction2(tmp_path / "tsn_r34.pth", depth=34)
    with pytest.raises(CheckpointError) as info:
        build_recognizers(model_cfg(tmp_path, rgb=deeper))
    message = str(info.value)
    assert "tsn_r34.pth does not match TSNResNet (depth 18" in message
    assert "unexpected in the checkpoint" in message and "layer1.2.conv1.weight" in message


def test_files_that_are_not_mmaction2_recognizers_are_refused(tmp_path):
    plain = tmp_path / "torchvision.pth"
    torch.save(TSNResNet(18, 3, 10).state_dict(), plain)
    with pytest.raises(CheckpointError, match="torchvision.pth: no 'backbone.\\*' keys"):
        build_recognizers(model_cfg(tmp_path, rgb=plain))
    odd = tmp_path / "odd.pth"
    torch.save({"state_dict": {"backbone.conv1.conv.weight": torch.zeros(64, 3, 7, 7),
                               "backbone.neck.weight": torch.zeros(1)}}, odd)
    with pytest.raises(CheckpointError, match="odd.pth: keys that are not a ResNet backbone's.*neck"):
        build_recognizers(model_cfg(tmp_path, rgb=odd))


class RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_a_pickle_with_code_is_refused(tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": RunsCode()}, evil)
    with pytest.raises(CheckpointError, match="evil.pth: not a readable mmaction2 checkpoint.*Python objects other than tensors"):
        build_recognizers(model_cfg(tmp_path, rgb=evil))
    assert "this would have run" not in capsys.readouterr().out


def test_only_visual_modalities_take_mmaction2_weights():
    with pytest.raises(ConfigError, match="resnet.mmaction2.audio"):
        load_config("paper-rgb-audio", ["model.resnet.mmaction2.audio=x.pth"])


def test_train_init_accepts_modality_equals_file(tmp_path, monkeypatch):
    from adamml.cli import main
    import adamml.train.trainer as stages

    seen = {}

    def fake_train(cfg, stage, data, out, info, init, resume, console):
        seen.update(cfg=cfg, init=init)
        return stages.TrainSummary(stage, 0.0, 0.0, str(out))

    monkeypatch.setattr(stages, "train", fake_train)
    assert main(["train", "--config", "tiny", "--stage", "unimodal", "--modalities", "rgb", "--data", str(tmp_path),
                 "--out", str(tmp_path / "run"), "--device", "cpu", "--init", "rgb=/weights/tsn_rgb.pth",
                 str(tmp_path / "other.pt")]) == 0
    assert seen["cfg"].model.resnet.mmaction2 == {"rgb": "/weights/tsn_rgb.pth"}
    assert [str(p) for p in seen["init"]] == [str(tmp_path / "other.pt")]
