"""The always-on fusion baselines and RGBDiff as a recognition modality, on the tiny store: training steps with
finite losses and a gradient on every parameter, GFLOPs equal to the counted cost of the networks, checkpoints
that `adamml eval` rebuilds and evaluates, gradient blending's weights, and the stage / fusion-kind rules."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from adamml.cli import main
from adamml.config import BASELINE_KINDS, BlendConfig, FusionConfig, load_config
from adamml.data.dataset import SegmentDataset, Store, sampling_config
from adamml.inference.decisions import always_on
from adamml.inference.gflops import ZERO, always_on_gmacs, count_gmacs, measure_costs, video_gmacs
from adamml.models import FusionBaseline, build_model
from adamml.runtime.distributed import DistInfo
from adamml.data.splits import holdout_split
from adamml.train.blending import BlendState, HeadLosses, ogr_weights
from adamml.train.loop import train_epoch
from adamml.train.run import stage_config
from tests.conftest import TINY, train_cli

SMALL = ["model.resnet.base_width=8", "model.audio.width_mult=0.25", "model.fusion.hidden=16"]
ALL = ("rgb", "flow", "audio")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are far too small for intra-op parallelism; on a shared 2-core machine, busy-waiting
    threads of an oversubscribed pool made these tests 30-60 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(kind: str, modalities: tuple[str, ...] = ALL, *extra: str):
    cfg = load_config("tiny", TINY + SMALL + [f"model.modalities=[{','.join(modalities)}]"] + list(extra))
    return stage_config(cfg, kind)


def _one_video(cfg, segments: int) -> dict[str, torch.Tensor]:
    """Inputs of one video with ``segments`` segments at the configured sizes."""
    m = cfg.model
    shapes = {"rgb": (m.frames_per_segment, 3, m.input_size, m.input_size),
              "flow": (m.frames_per_segment, 10, m.input_size, m.input_size),
              "rgbdiff": (m.frames_per_segment, 15, m.input_size, m.input_size),
              "audio": (1, m.audio.size, m.audio.size)}
    return {name: torch.randn(1, segments, *shapes[name]) for name in m.modalities}


def _counted(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    """Cost of the whole forward pass, counted on the real (CPU) network."""
    model.eval()
    return count_gmacs(lambda: model(batch))


@pytest.mark.parametrize("kind", BASELINE_KINDS)
def test_baseline_trains_with_finite_losses_and_a_gradient_on_every_parameter(tiny_store, kind: str) -> None:  # noqa: F811
    cfg = _cfg(kind)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    assert isinstance(model, FusionBaseline) and model.kind == kind
    data = SegmentDataset(Store.open(tiny_store), "train", cfg.model.modalities, train=True,
                          sampling=sampling_config(cfg))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    heads = len(ALL) + 1
    weights = [1.0 / heads] * heads if kind == "gradient-blending" else None
    model.train()
    losses = []
    for _ in range(2):
        stats = train_epoch(model, model, loader, [optimizer], DistInfo(), decisions_fn=always_on(model),
                            efficiency=None, multi_label=False, clip_grad_norm=20.0, head_weights=weights)
        losses += [stats.loss, stats.ce]
    assert np.isfinite(losses).all(), losses
    no_gradient = [name for name, p in model.named_parameters()
                   if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not no_gradient, no_gradient
    model.eval()
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    out = model.infer(batch)
    assert out.logits.shape == (2, 2) and out.modality_logits.shape == (2, 3, 3, 2)
    assert bool((out.decisions == 1).all())
    torch.testing.assert_close(out.logits, model(batch).logits)
    with pytest.raises(ValueError, match="every modality on every segment"):
        model(batch, torch.zeros(2, 3, 3))


@pytest.mark.parametrize("kind", BASELINE_KINDS + ("weighted",))
def test_gflops_equal_the_counted_cost_of_the_networks(kind: str) -> None:
    cfg = _cfg(kind) if kind != "weighted" else _cfg("fusion")
    costs = measure_costs(cfg.model)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    for segments in (3, 5):
        counted = _counted(model, _one_video(cfg, segments)) if kind != "weighted" else None
        ones = np.ones((1, segments, len(ALL)))
        for count in ("conv", "all"):
            figure = video_gmacs(ones, costs, count, include_policy=False)[0]
            if kind == "weighted":  # AdaMML always on: the recognizers only (its late fusion counts zero)
                video = _one_video(cfg, segments)
                recognizers = sum(count_gmacs(model.recognizers[m], video[m][0]).get(count) for m in ALL)
                assert figure == pytest.approx(recognizers, rel=1e-9)
            else:
                assert figure == pytest.approx(counted.get(count), rel=1e-9), (kind, segments, count)
            assert always_on_gmacs(costs, segments, count) == pytest.approx(figure, rel=1e-9)


def test_lateral_convolutions_cost_what_the_paper_setting_predicts() -> None:
    """RGB + Flow at 224^2 on ResNet-50: one 1 x 1 C -> C convolution per direction after layer1-3, on 4, 2 and
    1 frames of 56^2 x 256, 28^2 x 512 and 14^2 x 1024."""
    base = load_config("paper-rgb-flow").model
    per_direction = (4 * 56 * 56 * 256 * 256 + 2 * 28 * 28 * 512 * 512 + 14 * 14 * 1024 * 1024) / 1e9
    weighted = measure_costs(base).always_on().conv
    for kind, directions in (("lateral-uni", 1), ("lateral-bi", 2)):
        costs = measure_costs(dataclasses.replace(base, fusion=FusionConfig(kind=kind)))
        assert costs.fusion.conv == pytest.approx(directions * per_direction, rel=1e-9)
        assert costs.always_on().conv == pytest.approx(weighted + directions * per_direction, rel=1e-9)
    assert 10 * weighted == pytest.approx(304.75, rel=1e-3)


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_baseline_and_rgbdiff_checkpoints_train_and_evaluate(tiny_store, tmp_path, capsys) -> None:  # noqa: F811
    small = [arg for item in SMALL for arg in ("--set", item)]
    for m in ("rgb", "flow", "audio", "rgbdiff"):
        assert main(train_cli(tiny_store, tmp_path / m, "unimodal", "--modalities", m, *small)) == 0
    init = ["--init"] + [str(tmp_path / m / "best.pt") for m in ALL]
    stages = ("average",) + BASELINE_KINDS
    for stage in stages:
        extra = ["--set", "train.fusion.epochs=2", "--set", "train.blend.interval=1"] * (stage == "gradient-blending")
        assert main(train_cli(tiny_store, tmp_path / stage, stage, "--modalities", ",".join(ALL), *init, *small,
                               *extra)) == 0, stage
    rgbdiff_init = ["--init", str(tmp_path / "rgb" / "best.pt"), str(tmp_path / "rgbdiff" / "best.pt")]
    assert main(train_cli(tiny_store, tmp_path / "rgb_rgbdiff", "fusion", "--modalities", "rgb,rgbdiff",
                           *rgbdiff_init, *small)) == 0
    for run in stages + ("rgbdiff", "rgb_rgbdiff"):
        assert main(["eval", "--checkpoint", str(tmp_path / run / "best.pt"), "--data", str(tiny_store),
                     "--out", str(tmp_path / run / "eval")]) == 0, run
        report = _report(tmp_path / run / "eval")
        cfg = load_config(tmp_path / run / "config.yaml")
        assert report["stage"] == {"rgbdiff": "unimodal", "rgb_rgbdiff": "fusion"}.get(run, run)
        assert report["fusion"] == {"rgbdiff": "weighted", "rgb_rgbdiff": "weighted"}.get(run, run)
        assert report["videos"] == 4 and report["segments"] == 3 and 0.0 <= report["top1"] <= 100.0
        # the report's GFLOPs: the networks' forward pass on a video of 3 segments, counted here
        model, video = build_model(cfg.model), _one_video(cfg, 3)
        if isinstance(model, FusionBaseline):
            counted = _counted(model, video)
        else:  # AdaMML models always on: every recognizer on every segment
            counted = sum((count_gmacs(model.recognizers[m], video[m][0]) for m in cfg.model.modalities), ZERO)
        assert report["gflops_per_video"] == pytest.approx(counted.conv, rel=1e-9), run
        assert report["gflops_all_layers_per_video"] == pytest.approx(counted.all, rel=1e-9), run
        assert report["gflops_per_video"] == pytest.approx(report["gflops_always_on"], rel=1e-9)
        assert torch.load(tmp_path / run / "best.pt", weights_only=True)["val"]["gflops_fraction"] == pytest.approx(1.0)
    rgbdiff = _report(tmp_path / "rgbdiff" / "eval")
    assert rgbdiff["modalities"] == ["rgbdiff"] and rgbdiff["selection_rate"] == {"rgbdiff": 1.0}
    assert _report(tmp_path / "rgb_rgbdiff" / "eval")["modalities"] == ["rgb", "rgbdiff"]
    blend_log = (tmp_path / "gradient-blending" / "log.csv").read_text().splitlines()
    assert len(blend_log) == 3 and "blend_weight_fused" in blend_log[0]
    blend = torch.load(tmp_path / "gradient-blending" / "last.pt", weights_only=True)["phase_state"]["blend"]
    assert len(blend["history"]) == 2 and sum(blend["weights"]) == pytest.approx(1.0)
    assert min(blend["weights"]) >= BlendConfig().min_weight - 1e-12
    # the commands that need AdaMML's policy refuse a baseline with a clear error
    gating = str(tmp_path / "gating" / "best.pt")
    assert main(["export", "--checkpoint", gating, "--out", str(tmp_path / "export")]) == 2
    video = tmp_path / "any.mp4"
    video.write_bytes(b"")  # exists: the refusal is the checkpoint's
    capsys.readouterr()
    assert main(["predict", str(video), "--checkpoint", gating, "--threshold", "0.3"]) == 2
    assert "threshold" in capsys.readouterr().err


def test_holdout_split_is_stratified_disjoint_and_seeded() -> None:
    labels = [0] * 10 + [1] * 5 + [2] * 1
    train, held = holdout_split(labels, 0.2, seed=3)
    assert sorted(train + held) == list(range(len(labels))) and not set(train) & set(held)
    assert [labels[i] for i in held].count(0) == 2 and [labels[i] for i in held].count(1) == 1
    assert holdout_split(labels, 0.2, seed=3) == (train, held)
    assert len(holdout_split([0, 1], 0.2, seed=0)[1]) == 1  # tiny split: one held out, one trained on
    with pytest.raises(ValueError, match="at least 2 videos"):
        holdout_split([0], 0.2, seed=0)


def test_ogr_weights_are_bounded_normalised_and_kept_when_nothing_generalises() -> None:
    cfg = BlendConfig(min_weight=0.05, min_overfit=0.01)
    before = HeadLosses(train=np.array([1.0, 1.0, 1.0]), held_out=np.array([1.2, 1.2, 1.2]))
    # head 0 generalised with no extra overfitting (O <= 0: floored), head 1 generalised while overfitting,
    # head 2 got worse on the held-out videos
    after = HeadLosses(train=np.array([0.9, 0.5, 0.9]), held_out=np.array([1.0, 1.1, 1.3]))
    weights, terms = ogr_weights(before, after, cfg)
    assert weights is not None and weights.sum() == pytest.approx(1.0)
    assert weights.min() >= 0.05 - 1e-12 and weights[2] == pytest.approx(0.05)
    assert weights[0] > weights[1] > weights[2] and terms["gain"][2] == 0.0
    assert ogr_weights(before, before, cfg)[0] is None  # no head generalised
    state = BlendState(("rgb", "audio", "fused"))
    assert state.weights == pytest.approx([1 / 3] * 3)
    state.update(before, 0, cfg)
    state.update(before, 1, cfg)  # nothing generalised: the uniform weights stay
    assert state.weights == pytest.approx([1 / 3] * 3) and state.history[-1]["kept_previous"]
    copy = BlendState(("rgb", "audio", "fused"))
    copy.load_state_dict(state.state_dict())
    assert copy.weights == state.weights and np.allclose(copy.reference.held_out, before.held_out)


def test_stages_and_fusion_kinds_must_agree() -> None:
    cfg = load_config("tiny")
    assert stage_config(cfg, "gating").model.fusion.kind == "gating"
    assert stage_config(cfg, "average").model.fusion.kind == "average"
    gating = stage_config(cfg, "gating")
    with pytest.raises(ValueError, match="--stage gating"):
        stage_config(gating, "adamml")
    with pytest.raises(ValueError, match="model.fusion.kind='gating'"):
        stage_config(gating, "lateral-uni")
    with pytest.raises(ValueError, match="two or more modalities"):
        build_model(dataclasses.replace(gating.model, modalities=("rgb",)))
