"""Cost accounting: the paper's GFLOPs (GMACs) figures, the per-video function, caching and `adamml flops`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adamml.cli import main
from adamml.config import ModelConfig, load_config
from adamml.inference.gflops import (
    Cost,
    always_on_gmacs,
    count_gmacs,
    lstm_cell_gmacs,
    measure_costs,
    video_gmacs,
)
from adamml.models import TSNResNet

PAPER = {  # supplementary Table 2 and Sec. B, GMACs: conv layers, per segment
    "rgb": 14.136, "flow": 16.339, "rgbdiff": 17.912, "audio": 0.3817,
}
REL = 1e-3  # 0.1 %


def test_resnet50_rgb_segment_on_a_real_cpu_forward() -> None:
    """The one test that instantiates a real ResNet-50: 8 x 224^2 with temporal pooling, conv layers."""
    net = TSNResNet(50, 3, num_classes=31).eval()
    cost = count_gmacs(net, torch.zeros(1, 8, 3, 224, 224))
    assert cost.conv == pytest.approx(PAPER["rgb"], rel=REL)
    assert cost.all == pytest.approx(cost.conv + 2048 * 31 / 1e9)  # plus the classifier


def test_recognizers_and_policy_per_segment_match_the_paper() -> None:
    costs = measure_costs(load_config("paper-rgb-flow-audio").model)
    for name in ("rgb", "flow", "audio"):
        assert costs.recognizers[name].conv == pytest.approx(PAPER[name], rel=REL), name
    assert costs.extractors["rgb"].conv == pytest.approx(0.3754, rel=REL)
    assert costs.extractors["rgbdiff"].conv == pytest.approx(0.4639, rel=REL)  # at 160^2, not 224^2
    assert costs.extractors["audio"].conv == pytest.approx(0.3817, rel=REL)
    assert costs.extractor_inputs["rgbdiff"] == (4, 15, 160, 160)
    rgbdiff = measure_costs(ModelConfig(modalities=("rgb", "rgbdiff"))).recognizers["rgbdiff"]
    assert rgbdiff.conv == pytest.approx(PAPER["rgbdiff"], rel=REL)


@pytest.mark.parametrize("preset, total", [("paper-rgb-audio", 145.18), ("paper-rgb-flow", 304.75),
                                           ("paper-rgb-flow-audio", 308.57)])
def test_always_on_fusion_totals_for_10_segments(preset: str, total: float) -> None:
    cfg = load_config(preset).model
    costs = measure_costs(cfg)
    assert always_on_gmacs(costs, cfg.num_segments) == pytest.approx(total, rel=REL)
    for name in cfg.modalities:
        ten = {"rgb": 141.36, "flow": 163.39, "audio": 3.817}[name]
        assert 10 * costs.recognizers[name].conv == pytest.approx(ten, rel=REL)


def test_rgb_plus_rgbdiff_fusion_total() -> None:
    costs = measure_costs(ModelConfig(modalities=("rgb", "rgbdiff")))
    assert always_on_gmacs(costs, 10) == pytest.approx(320.48, rel=REL)  # supplementary Table 2


def test_policy_head_lstm_matches_the_analytic_count() -> None:
    cell = torch.nn.LSTMCell(2048 + 6, 256)
    assert lstm_cell_gmacs(2048 + 6, 256) == pytest.approx(4 * 256 * (2054 + 256) / 1e9)
    counted = count_gmacs(cell, torch.zeros(1, 2054)).all
    assert counted in (0.0, pytest.approx(lstm_cell_gmacs(2054, 256)))  # 0 where the counter is blind
    costs = measure_costs(load_config("paper-rgb-flow-audio").model)
    mlp = (3 * 1280 * 2048 + 2048 * 2048) / 1e9
    heads = 3 * 256 * 2 / 1e9
    assert costs.policy_head.conv == 0.0
    assert costs.policy_head.all == pytest.approx(mlp + lstm_cell_gmacs(2054, 256) + heads)


def test_video_gmacs_from_decisions() -> None:
    costs = measure_costs(load_config("paper-rgb-flow-audio").model)
    s = 10
    ones, zeros = np.ones((s, 3)), np.zeros((s, 3))
    policy = costs.policy().conv
    assert video_gmacs(ones, costs, include_policy=False) == pytest.approx(308.57, rel=REL)
    assert video_gmacs(ones, costs) == pytest.approx(308.566 + s * policy, rel=REL)
    assert video_gmacs(zeros, costs) == pytest.approx(s * policy)
    decisions = torch.zeros(2, s, 3)  # (B, S, M)
    decisions[0, :4, 0] = 1  # video 0: rgb on 4 segments
    decisions[1, :, 2] = 1  # video 1: audio everywhere
    decisions[1, 3, 1] = 1  # and flow once
    per_video = video_gmacs(decisions, costs)
    assert per_video.shape == (2,)
    assert per_video[0] == pytest.approx(s * policy + 4 * 14.136, rel=REL)
    assert per_video[1] == pytest.approx(s * policy + 10 * 0.3817 + 16.339, rel=REL)
    np.testing.assert_allclose(video_gmacs(decisions.numpy(), costs), per_video)
    all_layers = video_gmacs(decisions, costs, count="all")
    assert (all_layers > per_video).all()
    with pytest.raises(ValueError):
        video_gmacs(np.ones((s, 2)), costs)


def test_costs_are_cached_and_tiny_policy_is_a_small_fraction() -> None:
    cfg = load_config("tiny").model
    first = measure_costs(cfg)
    other = load_config("tiny", ["model.policy.threshold=0.2", "model.num_segments=9"]).model
    again = measure_costs(other)
    assert again is first  # the cached object: nothing measured again
    ratio = first.policy().all / first.always_on().all
    assert 0.06 < ratio < 0.09  # RGB x0.5, RGBDiff and audio x0.25: 7.5 % (the paper's is 4 %; see the preset)
    assert Cost(1.0, 2.0) * 3 + Cost(1.0, 1.0) == Cost(4.0, 7.0)


def test_flops_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "--config", "paper-rgb-flow-audio"]) == 0
    out = capsys.readouterr().out
    for text in ("conv layers (paper)", "all layers", "14.1360", "16.3389", "0.3817", "0.3754", "0.4639",
                 "308.57", "10 segments"):
        assert text in out, text
    assert main(["flops", "--config", "tiny", "--num-segments", "2"]) == 0
    assert "2 segments" in capsys.readouterr().out
    assert main(["flops", "--config", "paper-rgb-audio", "--set", "model.num_segments=10"]) == 0
    assert "145.18" in capsys.readouterr().out
    assert main(["flops", "--config", "no-such-preset"]) == 2
