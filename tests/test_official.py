"""Official AdaMML checkpoints: files in the official layout (random weights, the official code's names and shapes)
convert into adamml checkpoints that give the logits of the official architecture, written here independently
from the official code (models/resnet.py, models/sound_mobilenet_v2.py, models/joint_resnet_mobilenetv2.py,
models/adamml/policy_net.py, models/adamml/adamml.py); bad files are refused by name, nothing half written.

Small inputs keep it fast: 2 segments of 8 frames at 32 x 32 (the policy at 16 x 16), spectrograms of 64 x 64."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import MobileNetV2 as TorchvisionMobileNetV2
from torchvision.models.resnet import BasicBlock, Bottleneck

from adamml.cli import main
from adamml.data.batch import finish_batch
from adamml.data.dataset import rgbdiff_segment
from adamml.data.transforms import official_rgb_differences
from adamml.inference.checkpoint import load_trained
from adamml.interop.official import OfficialCheckpointError, _numpy_scalar_globals, convert_official
from adamml.modalities import IMAGENET_MEAN, IMAGENET_STD

SIZES = ["model.input_size=32", "model.policy.size=16", "model.audio.size=64", "model.policy.audio_size=64"]
SMALL = SIZES + ["model.resnet.depth=18"]  # the official code's -d 18: the same layout with fewer weights
SEGMENTS, FRAMES, SIDE, SPEC = 2, 8, 32, 64


# ------------------------------------------------------------------------------- the official architecture


def temporal_max_pool(x: torch.Tensor, frames: int) -> torch.Tensor:
    """models/common.py TemporalPooling, mode max, kernel 3, stride 2."""
    nt, c, h, w = x.shape
    x = x.view(-1, frames, c, h, w).transpose(1, 2)
    x = F.max_pool3d(x, kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
    return x.transpose(1, 2).contiguous().view(-1, c, h, w)


class OfficialResNet(nn.Module):
    """models/resnet.py: TSN ResNet (-d 18 or 50), temporal max pools after layer1-3, frames in the channels."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 18, frames: int = FRAMES) -> None:
        super().__init__()
        self.frames = frames
        self.inplanes = 64
        block, blocks = (BasicBlock, [2, 2, 2, 2]) if depth == 18 else (Bottleneck, [3, 4, 6, 3])
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._layer(block, 64, blocks[0])
        self.layer2 = self._layer(block, 128, blocks[1], 2)
        self.layer3 = self._layer(block, 256, blocks[2], 2)
        self.layer4 = self._layer(block, 512, blocks[3], 2)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        down = None
        out = planes * block.expansion
        if stride != 1 or self.inplanes != out:
            down = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
        layers = [block(self.inplanes, planes, stride, down)]
        self.inplanes = out
        return nn.Sequential(*layers, *[block(self.inplanes, planes) for _ in range(1, blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ct, h, w = x.shape
        x = x.view(n * self.frames, ct // self.frames, h, w)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        frames = self.frames
        for layer in (self.layer1, self.layer2, self.layer3):
            x = temporal_max_pool(layer(x), frames)
            frames = max(1, frames // 2)
        x = F.adaptive_avg_pool2d(self.layer4(x), 1).flatten(1)
        return self.fc(x).view(n, -1, self.fc.out_features).mean(dim=1)


def official_sound_net(num_classes: int) -> nn.Module:
    """models/sound_mobilenet_v2.py: torchvision's MobileNetV2 layout with one input channel."""
    net = TorchvisionMobileNetV2(num_classes=num_classes, dropout=0.5)
    net.features[0][0] = nn.Conv2d(1, 32, 3, 2, 1, bias=False)
    return net


def _conv_bn(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU6(inplace=True))


class PolicyBlock(nn.Module):
    """models/adamml/policy_net.py InvertedResidual: layers listed flat, temporal pool before the block."""

    def __init__(self, inp: int, oup: int, stride: int, expand: int, frames: int | None) -> None:
        super().__init__()
        hidden = round(inp * expand)
        self.frames, self.identity = frames, stride == 1 and inp == oup
        layers = [] if expand == 1 else [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden),
                                         nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frames:
            x = temporal_max_pool(x, self.frames)
        return x + self.conv(x) if self.identity else self.conv(x)


class OfficialPolicyMobileNet(nn.Module):
    """models/adamml/policy_net.py MobileNetV2 (classifier deleted): features, then the 1x1 conv ``conv``."""

    SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
               [6, 320, 1, 1]]

    def __init__(self, in_channels: int, frames: int) -> None:
        super().__init__()
        self.orig_frames = frames
        layers, inp = [_conv_bn(in_channels, 32, 3, 2)], 32
        for t, c, n, s in self.SETTING:
            pooled = c in (64, 160)
            for i in range(n):
                layers.append(PolicyBlock(inp, c, s if i == 0 else 1, t,
                                          frames if i == 0 and pooled and frames != 1 else None))
                inp = c
            if pooled:
                frames //= 2
        self.features = nn.Sequential(*layers)
        self.conv = _conv_bn(inp, 1280, 1, 1)

    def feature_extraction(self, x: torch.Tensor) -> torch.Tensor:
        n, ct, h, w = x.shape
        x = self.conv(self.features(x.view(n * self.orig_frames, ct // self.orig_frames, h, w)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class OfficialAdaMML(nn.Module):
    """models/adamml/*.py and joint_resnet_mobilenetv2.py (logits fusion, learnable weights, LSTM policy);
    decisions by argmax of the heads' logits in place of the official Gumbel sampling."""

    def __init__(self, modality: list[str], num_classes: int, p_size: int) -> None:
        super().__init__()
        channels = {"rgb": 3, "flow": 10, "rgbdiff": 15, "sound": 1}
        self.modality, self.p_size = modality, p_size
        self.p_modality = [m for m in modality if m != "flow"] if "rgbdiff" in modality else modality
        self.m_modality = [m for m in modality if m != "rgbdiff"]
        self.policy_net = nn.Module()
        self.policy_net.joint_net = nn.Module()
        self.policy_net.joint_net.nets = nn.ModuleList(
            OfficialPolicyMobileNet(channels[m], 1 if m == "sound" else FRAMES // 2) for m in self.p_modality)
        self.policy_net.joint_net.joint = nn.Sequential(nn.Linear(1280 * len(self.p_modality), 2048), nn.ReLU(True),
                                                        nn.Linear(2048, 2048), nn.ReLU(True))
        m = len(self.m_modality)
        self.policy_net.lstm = nn.LSTMCell(2048 + 2 * m, 256)
        self.policy_net.fcs = nn.ModuleList(nn.Linear(256, 2) for _ in range(m))
        self.main_net = nn.Module()
        self.main_net.nets = nn.ModuleList(official_sound_net(num_classes) if x == "sound"
                                           else OfficialResNet(channels[x], num_classes) for x in self.m_modality)
        self.main_net.lf_weights = nn.Parameter(torch.rand(m - 1) / m)

    def forward(self, x: list[torch.Tensor], segments: int) -> torch.Tensor:
        p_x, m_x = [], []
        for x_, name in zip(x, self.modality):  # AdaMML.data_layer, test mode
            if name == "sound":
                tmp = x_.view(x_.size(0), segments, -1, *x_.shape[-2:]).transpose(0, 1).contiguous()
                p_x.append(tmp)
                m_x.append(tmp)
                continue
            if name in self.p_modality:
                b = x_.shape[0]
                tmp = F.interpolate(x_, size=(self.p_size, self.p_size), mode="bilinear")
                tmp = tmp.view(b, segments, FRAMES, -1, self.p_size, self.p_size)[:, :, range(0, FRAMES, 2)]
                p_x.append(tmp.reshape(b, segments, -1, self.p_size, self.p_size).transpose(0, 1).contiguous())
            if name in self.m_modality:
                m_x.append(x_.view(x_.size(0), segments, -1, *x_.shape[-2:]).transpose(0, 1).contiguous())
        m = len(self.m_modality)
        h = c = logits = None
        decisions = []
        for i in range(segments):  # PolicyNet.forward, causality_modeling lstm
            feats = torch.cat([net.feature_extraction(p[i]) for net, p in zip(self.policy_net.joint_net.nets, p_x)], 1)
            feats = self.policy_net.joint_net.joint(feats)
            if i == 0:
                h, c = self.policy_net.lstm(torch.cat([feats, feats.new_zeros(feats.shape[0], 2 * m)], dim=-1))
            else:
                previous = logits.view(m, -1, 2).permute(1, 0, 2).contiguous().view(-1, 2 * m)
                h, c = self.policy_net.lstm(torch.cat([feats, previous], dim=-1), (h, c))
            logits = torch.cat([fc(h) for fc in self.policy_net.fcs], dim=0)  # (M N, 2)
            decisions.append((logits[:, 1] > logits[:, 0]).float().view(m, -1))  # (M, N)
        weights = torch.cat([self.main_net.lf_weights, 1 - self.main_net.lf_weights.sum().reshape(1)])
        segment_logits = []
        for i in range(segments):  # JointResNetMobileNetV2.forward, fusion_point logits
            out = torch.stack([net(m_x[k][i]) * decisions[i][k].view(-1, 1)
                               for k, net in enumerate(self.main_net.nets)])  # (M, N, K)
            segment_logits.append((out * weights.view(-1, 1, 1)).sum(dim=0))
        return torch.stack(segment_logits, dim=1).mean(dim=1)


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Batch-norm statistics and affine parameters away from their defaults (so a misplaced one shows), decision
    heads spread so that segments and modalities decide differently."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=g))
                module.bias.copy_(0.1 * torch.randn(n, generator=g))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                module.running_var.copy_(0.5 + torch.rand(n, generator=g))
        for name, p in model.named_parameters():
            if "fcs" in name:
                p.copy_(2.0 * torch.randn(p.shape, generator=g))
    return model.eval()


def save_official(path: Path, model: nn.Module, **extra) -> Path:
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # saved from DistributedDataParallel
    torch.save({"epoch": 12, "arch": "adamml", "state_dict": state, **extra}, path)
    return path


def inputs(seed: int = 0, batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, SEGMENTS, FRAMES)
    return {"rgb": torch.randn(*shape, 3, SIDE, SIDE, generator=g),
            "flow": torch.randn(*shape, 10, SIDE, SIDE, generator=g),
            "rgbdiff": torch.randn(*shape, 15, SIDE, SIDE, generator=g),
            "audio": torch.randn(batch, SEGMENTS, 1, SPEC, SPEC, generator=g)}


def official_inputs(batch: dict[str, torch.Tensor], modality: list[str]) -> list[torch.Tensor]:
    """Our batch in the official layout: (N, S F C, H, W) per visual modality, (N, S, F, W) for sound."""
    ours = {"rgb": "rgb", "flow": "flow", "rgbdiff": "rgbdiff", "sound": "audio"}
    out = []
    for name in modality:
        x = batch[ours[name]]
        out.append(x[:, :, 0] if name == "sound" else x.reshape(x.shape[0], -1, *x.shape[-2:]))
    return out


# ------------------------------------------------------------------------------- conversion gives the same logits


@pytest.fixture(scope="module")
def rgb_flow_audio(tmp_path_factory) -> tuple[Path, OfficialAdaMML]:
    torch.manual_seed(1)
    official = randomize(OfficialAdaMML(["rgb", "sound", "flow", "rgbdiff"], 31, p_size=16), seed=1)
    path = tmp_path_factory.mktemp("official") / "adamml_rgb_sound_flow.pth.tar"
    return save_official(path, official, temperature=3.3, best_top1=np.float64(88.5)), official


def test_rgb_flow_audio_converts_to_the_official_logits(rgb_flow_audio, tmp_path):
    path, official = rgb_flow_audio
    out = tmp_path / "best.pt"
    assert main(["convert-official", str(path), "--out", str(out)] + [a for s in SMALL for a in ("--set", s)]) == 0
    trained = load_trained(out, fold=False)
    model, cfg, payload = trained.model, trained.config, trained.metadata
    assert payload["stage"] == "adamml" and cfg.data.conventions == "official"
    assert model.modalities == ("rgb", "flow", "audio")  # adamml's order; the file's is rgb, sound, flow
    assert float(model.policy.temperature) == pytest.approx(3.3)
    batch = inputs()
    with torch.no_grad():
        expected = official(official_inputs(batch, official.modality), SEGMENTS)
        ours = model.infer(batch)
        dense = model(batch)
    decisions = ours.decisions
    assert 0 < decisions.mean() < 1, "the test needs some cells used and some skipped"
    torch.testing.assert_close(ours.logits, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dense.logits, expected, rtol=1e-4, atol=1e-4)
    # the fusion weights of the file, in adamml's order
    w = official.main_net.lf_weights.detach()
    file_weights = torch.cat([w, 1 - w.sum().reshape(1)])  # rgb, sound, flow
    torch.testing.assert_close(model.fusion.weights(), file_weights[[0, 2, 1]])


def test_rgb_audio_converts_to_the_official_logits(tmp_path):
    torch.manual_seed(2)
    official = randomize(OfficialAdaMML(["rgb", "sound"], 31, p_size=16), seed=2)
    path = save_official(tmp_path / "rgb_sound.pth.tar", official)  # no temperature: from the epoch
    conversion = convert_official(path, overrides=SMALL)
    assert conversion.payload["converted_from"]["temperature"] == pytest.approx(5.0 * 0.965 ** 11)
    model = conversion.model.eval()
    batch = inputs(3)
    with torch.no_grad():
        expected = official(official_inputs(batch, official.modality), SEGMENTS)
        torch.testing.assert_close(model.infer(batch).logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("modality", ["flow", "sound"])
def test_unimodal_files_convert(tmp_path, modality):
    torch.manual_seed(3)
    net = randomize(official_sound_net(31) if modality == "sound" else OfficialResNet(10, 31, depth=50), seed=3)
    path = save_official(tmp_path / f"{modality}.pth.tar", net)
    out = tmp_path / "best.pt"
    if modality == "sound":  # through the command line and the loader of eval, predict, bench and export
        assert main(["convert-official", str(path), "--out", str(out)] + [a for s in SIZES for a in ("--set", s)]) == 0
        trained = load_trained(out, fold=False)
        model, cfg, payload = trained.model, trained.config, trained.metadata
    else:  # the published ResNet-50 layout
        conversion = convert_official(path, overrides=SIZES)
        model, cfg, payload = conversion.model.eval(), conversion.cfg, conversion.payload
    name = "audio" if modality == "sound" else "flow"
    assert payload["stage"] == "unimodal" and cfg.model.modalities == (name,)
    batch = inputs(4)
    x = batch[name]
    with torch.no_grad():
        expected = net(x[:, 0] if name == "audio" else x[:, 0].reshape(x.shape[0], -1, *x.shape[-2:]).contiguous())
        got = model.recognizers[name](x[:, 0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------- bad files


def test_another_shape_is_refused_by_name(tmp_path):
    net = OfficialResNet(3, 400)  # a Kinetics-400 head
    path = save_official(tmp_path / "k400.pth.tar", net)
    out = tmp_path / "best.pt"
    with pytest.raises(OfficialCheckpointError, match=r"k400\.pth\.tar.*\n.*fc\.weight: file \(400, 512\)"):
        convert_official(path, overrides=SMALL)
    assert main(["convert-official", str(path), "--out", str(out)] + [a for s in SMALL for a in ("--set", s)]) == 2
    assert not out.exists()


def test_missing_and_unexpected_keys_are_listed(rgb_flow_audio, tmp_path):
    path, _ = rgb_flow_audio
    with torch.serialization.safe_globals(_numpy_scalar_globals()):  # the official files hold NumPy scalars
        payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["module.policy_net.fcs.1.bias"]
    payload["state_dict"]["module.policy_net.extra.weight"] = torch.zeros(2)
    broken = tmp_path / "broken.pth.tar"
    torch.save(payload, broken)
    with pytest.raises(OfficialCheckpointError) as info:
        convert_official(broken, overrides=SMALL)
    message = str(info.value)
    assert "broken.pth.tar" in message and "policy.heads.audio.bias" in message  # fcs.1 is sound's head
    assert "policy_net.extra.weight" in message


def test_truncated_file_is_refused(rgb_flow_audio, tmp_path):
    path, _ = rgb_flow_audio
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    out = tmp_path / "best.pt"
    with pytest.raises(OfficialCheckpointError, match="cut.pth.tar: not a readable official"):
        convert_official(cut)
    assert main(["convert-official", str(cut), "--out", str(out)]) == 2
    assert not out.exists() and not list(tmp_path.glob(".best.pt.*"))


class RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": RunsCode()}, path)
    with pytest.raises(OfficialCheckpointError, match="evil.pth.tar.*Python objects other than tensors"):
        convert_official(path)
    assert "this would have run" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(RunsCode()))
    with pytest.raises(OfficialCheckpointError, match="raw.pkl"):
        convert_official(raw)


def test_a_file_for_another_preset_is_refused(rgb_flow_audio):
    path, _ = rgb_flow_audio
    with pytest.raises(OfficialCheckpointError, match="rgb\\+flow\\+audio; the preset 'paper-rgb-audio'"):
        convert_official(path, preset="paper-rgb-audio", overrides=SMALL)


# ------------------------------------------------------------------------------- the official input conventions


def official_difference_image(frames_rgb: np.ndarray) -> np.ndarray:
    """utils/video_dataset.py compute_img_diff, then ToTorchFormatTensor and GroupNormalize: (K+1, H, W, 3) RGB
    uint8 -> (K, 3, H, W)."""
    out = []
    for a, b in zip(frames_rgb[:-1], frames_rgb[1:]):
        diff = (np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64) + 255.0) * (255.0 / 510.0)
        image = diff.astype(np.uint8).astype(np.float32) / 255.0  # (H, W, 3)
        out.append((image.transpose(2, 0, 1) - np.array(IMAGENET_MEAN, np.float32)[:, None, None])
                   / np.array(IMAGENET_STD, np.float32)[:, None, None])
    return np.stack(out)


def test_official_rgb_differences_match_the_official_images():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, size=(6, 5, 7, 3), dtype=np.uint8)
    expected = official_difference_image(bgr[..., ::-1]).reshape(15, 5, 7)
    np.testing.assert_allclose(official_rgb_differences(bgr), expected, rtol=0, atol=1e-5)


class Frames:
    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images

    def image(self, i: int) -> np.ndarray:
        return self.images[i]


def test_conventions_switch_reaches_the_dataset_and_the_device_path():
    from adamml.config import load_config
    from adamml.data.transforms import centre_crop

    rng = np.random.default_rng(1)
    frames = Frames([rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8) for _ in range(10)])
    crop = centre_crop(12, 12, 8, 12)
    positions = np.array([0, 2])
    official = rgbdiff_segment(frames, positions, crop, 10, conventions="official")
    ours = rgbdiff_segment(frames, positions, crop, 10)
    assert not np.allclose(official, ours)
    raw = rgbdiff_segment(frames, positions, crop, 10, raw=True)  # (T', 6, H, W, 3) uint8
    cfg = load_config("tiny", ["model.modalities=[rgbdiff]"]).model
    done = finish_batch({"rgbdiff": torch.from_numpy(raw)[None, None]}, cfg, policy=False, conventions="official")
    np.testing.assert_allclose(done["rgbdiff"][0, 0].numpy(), official, atol=1e-5)
