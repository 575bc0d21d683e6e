"""Models: shapes, gradients through the Gumbel-Softmax path, sparse inference = dense inference, decisions,
fusion, and ImageNet weight loading with channel inflation. Tiny inputs, CPU only."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from adamml.config import (
    AudioNetConfig,
    FusionConfig,
    ModelConfig,
    PolicyConfig,
    ResNetConfig,
)
from adamml.inference.gflops import measure_costs
from adamml.models import (
    AdaMML,
    CheckpointError,
    LateFusion,
    MobileNetV2Extractor,
    MobileNetV2Recognizer,
    TSNResNet,
    build_model,
    load_imagenet_weights,
)
from adamml.models.policy import DecisionRule
from adamml.models.tsn_resnet import temporal_max_pool

CHANNELS = {"rgb": 3, "flow": 10, "rgbdiff": 15}


def small_cfg(modalities: tuple[str, ...] = ("rgb", "flow", "audio"), **changes: object) -> ModelConfig:
    """A very small model: ResNet-18 x1/16 on 32 x 32, MobileNetV2 x0.25, a 16-16-8 policy."""
    cfg = ModelConfig(
        modalities=modalities, num_classes=5, num_segments=3, input_size=32,
        resnet=ResNetConfig(depth=18, base_width=4), audio=AudioNetConfig(size=32, width_mult=0.25),
        policy=PolicyConfig(size=32, frames=4, audio_size=32, width_mult=0.25, hidden=(16, 16), lstm_hidden=8),
    )
    return ModelConfig(**{**cfg.__dict__, **changes})


def make_batch(b: int = 2, s: int = 3, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs for every modality, ``(B, S, ...)``; the spectrogram is 48 x 48 (resized by the model)."""
    g = torch.Generator().manual_seed(seed)
    batch = {name: torch.randn(b, s, 8, c, size, size, generator=g) for name, c in CHANNELS.items()}
    batch["audio"] = torch.randn(b, s, 1, 48, 48, generator=g)
    return batch


def build(cfg: ModelConfig, seed: int = 0) -> AdaMML:
    torch.manual_seed(seed)
    return build_model(cfg)


# ------------------------------------------------------------------------------------------------ networks


@pytest.mark.parametrize("depth", [18, 34, 50])
@pytest.mark.parametrize("modality", ["rgb", "flow", "rgbdiff"])
def test_tsn_resnet_shapes_and_temporal_pooling(depth: int, modality: str) -> None:
    net = TSNResNet(depth, CHANNELS[modality], num_classes=5, base_width=4).eval()
    seen = {}
    net.layer4.register_forward_hook(lambda module, inputs, output: seen.update(layer4=inputs[0].shape))
    x = torch.randn(2, 8, CHANNELS[modality], 32, 32)  # (N, T, C, H, W)
    logits = net(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert seen["layer4"][0] == 2  # 8 -> 4 -> 2 -> 1 frames before layer4
    assert net.forward_features(x).shape == (2, net.num_features)


def test_temporal_max_pool_is_kernel3_stride2_pad1() -> None:
    x = torch.arange(2 * 8, dtype=torch.float32).view(2 * 8, 1, 1, 1)  # (N * T, C, H, W), N = 2, T = 8
    y, frames = temporal_max_pool(x, 8)
    assert frames == 4
    assert y.flatten().tolist() == [1, 3, 5, 7, 9, 11, 13, 15]  # max over frames (2t-1, 2t, 2t+1)
    assert temporal_max_pool(torch.randn(3, 2, 4, 4), 1)[1] == 1


def test_mobilenets_shapes() -> None:
    audio = MobileNetV2Recognizer(1, 5, width_mult=0.25).eval()
    assert audio(torch.randn(2, 1, 32, 32)).shape == (2, 5)
    for channels in (3, 15):
        extractor = MobileNetV2Extractor(channels, width_mult=0.25).eval()
        assert extractor(torch.randn(2, 4, channels, 32, 32)).shape == (2, 1280)
    assert MobileNetV2Extractor(1, width_mult=0.25).eval()(torch.randn(2, 1, 32, 32)).shape == (2, 1280)


@pytest.mark.parametrize("modalities", [("rgb", "audio"), ("rgb", "flow"), ("rgb", "flow", "audio"), ("rgb",),
                                        ("audio",), ("rgb", "rgbdiff")])
def test_adamml_output_shapes(modalities: tuple[str, ...]) -> None:
    model = build(small_cfg(modalities)).eval()
    assert model.policy.inputs == tuple(dict.fromkeys("rgbdiff" if m == "flow" else m for m in modalities))
    out = model(make_batch())
    m = len(modalities)
    assert out.logits.shape == (2, 5) and out.segment_logits.shape == (2, 3, 5)
    assert out.modality_logits.shape == (2, 3, m, 5)
    assert out.decisions.shape == out.decision_probs.shape == (2, 3, m)
    assert out.decision_logits is not None and out.decision_logits.shape == (2, 3, m, 2)
    for tensor in (out.logits, out.segment_logits, out.decision_probs):
        assert torch.isfinite(tensor).all()


def test_policy_inputs_subsample_frames_and_resize() -> None:
    model = build(small_cfg())
    batch = make_batch(size=32)
    inputs = model.policy_inputs(batch)
    assert inputs["rgb"].shape == (2, 3, 4, 3, 32, 32)
    torch.testing.assert_close(inputs["rgb"], batch["rgb"][:, :, 0:8:2])  # frames 0, 2, 4, 6
    assert inputs["rgbdiff"].shape == (2, 3, 4, 15, 32, 32) and "flow" not in inputs
    assert inputs["audio"].shape == (2, 3, 1, 32, 32)  # 48 -> 32
    big = model.policy_inputs(make_batch(size=40))
    assert big["rgb"].shape == (2, 3, 4, 3, 32, 32)
    del batch["rgbdiff"]
    with pytest.raises(KeyError, match="rgbdiff"):
        model.decide(batch)


# ------------------------------------------------------------------------------------------------ training


def test_every_parameter_gets_a_gradient_through_gumbel_softmax() -> None:
    model = build(small_cfg(), seed=1).train()
    torch.manual_seed(3)
    batch = make_batch(b=2, s=4)
    out = model(batch)
    assert set(out.decisions.unique().tolist()) <= {0.0, 1.0}
    assert out.decisions.requires_grad  # straight-through: the hard decisions carry the soft gradient
    assert (out.decisions.sum(dim=(0, 1)) > 0).all(), "every recognizer should be selected somewhere"
    loss = F.cross_entropy(out.logits, torch.tensor([1, 3]))
    loss.backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_temperature_is_a_buffer() -> None:
    model = build(small_cfg())
    model.policy.set_temperature(2.5)
    assert model.state_dict()["policy.temperature"].item() == pytest.approx(2.5)
    with pytest.raises(ValueError):
        model.policy.set_temperature(0.0)


def test_scaled_gumbel_noise_moves_training_samples_to_the_evaluation_decisions() -> None:
    """Noise scale 1 is the paper's Gumbel-Softmax (same draws), 0 takes the evaluation's P(use) >= 0.5 in training
    mode (gradients still straight-through), and in between the samples disagree with it less and less."""
    model = build(small_cfg(), seed=1).train()
    batch = make_batch(b=4, s=4)
    torch.manual_seed(5)
    paper = model.decide(batch).decisions
    model.policy.set_noise_scale(1.0)
    torch.manual_seed(5)
    torch.testing.assert_close(model.decide(batch).decisions, paper)
    model.policy.set_noise_scale(0.0)
    out = model.decide(batch)
    torch.testing.assert_close(out.decisions.detach(), (out.probs >= 0.5).float())
    assert not torch.equal(out.decisions, paper)
    assert out.decisions.requires_grad
    logits = torch.randn(20000, 2)
    disagree = []
    for scale in (1.0, 0.5, 0.1):
        model.policy.set_noise_scale(scale)
        sampled = model.policy._one_hot(logits)[..., 1]
        disagree.append(float((sampled != (logits[:, 1] >= logits[:, 0]).float()).float().mean()))
    assert disagree[0] > disagree[1] > disagree[2] > 0.0 and disagree[0] == pytest.approx(0.28, abs=0.03)
    with pytest.raises(ValueError, match="noise scale"):
        model.policy.set_noise_scale(1.5)


# ------------------------------------------------------------------------------------------------ decisions


def test_eval_decisions_are_deterministic_and_thresholded() -> None:
    model = build(small_cfg()).eval()
    batch = make_batch()
    first, second = model.decide(batch), model.decide(batch)
    torch.testing.assert_close(first.decisions, second.decisions)
    torch.testing.assert_close(first.decisions, (first.probs >= 0.5).float())
    torch.testing.assert_close(first.probs, first.logits.softmax(-1)[..., 1])


def test_threshold_trades_usage() -> None:
    model = build(small_cfg()).eval()
    batch = make_batch()
    probs = model.decide(batch).probs
    assert model.decide(batch, DecisionRule(threshold=0.0)).decisions.eq(1).all()
    assert model.decide(batch, DecisionRule(threshold=1.0)).decisions.eq(0).all()
    middle = model.decide(batch, DecisionRule(threshold=float(probs.detach().median()))).decisions
    torch.testing.assert_close(middle, (probs >= probs.median()).float())
    assert 0 < middle.sum() < middle.numel()
    assert model.policy.threshold == 0.5  # a rule is for its call only: the configured threshold stays
    # the sparse path takes the same rule: no cell selected at threshold 1
    assert model.infer(batch, rule=DecisionRule(threshold=1.0)).decisions.eq(0).all()


def test_random_at_test_reproduces_official_sampling() -> None:
    model = build(small_cfg()).eval()
    sampled = DecisionRule(sample=True)
    model.policy.set_temperature(50.0)  # flat: the samples are nearly fair coins
    batch = make_batch()
    samples = []
    for seed in range(4):
        torch.manual_seed(seed)
        samples.append(model.decide(batch, sampled).decisions)
    assert all(set(s.unique().tolist()) <= {0.0, 1.0} for s in samples)
    assert any(not torch.equal(samples[0], s) for s in samples[1:])


def test_policy_fed_its_decisions_conditions_each_segment_on_what_was_taken() -> None:
    model = build(small_cfg(policy=PolicyConfig(size=32, frames=4, audio_size=32, width_mult=0.25, hidden=(16, 16),
                                                lstm_hidden=8, feed="decisions"))).eval()
    batch = make_batch(b=2, s=4)
    out = model.decide(batch)
    torch.testing.assert_close(out.decisions, (out.probs >= 0.5).float())  # deterministic and thresholded
    torch.testing.assert_close(out.probs, out.logits.softmax(-1)[..., 1])
    # the second segment's logits follow the first segment's decisions, not its logits: a threshold that flips
    # the first decisions changes what comes after, a threshold that keeps them changes nothing
    policy = model.policy
    features = policy.forward_features(model.policy_inputs(batch))
    p0 = out.probs[:, 0].detach()
    policy.threshold = 0.0
    all_on = policy.forward_head(features)
    policy.threshold = 1.0
    all_off = policy.forward_head(features)
    torch.testing.assert_close(all_on[:, 0], all_off[:, 0])
    assert not torch.allclose(all_on[:, 1], all_off[:, 1])
    policy.threshold = float(p0.min()) / 2  # every first-segment cell used, as with 0.0
    torch.testing.assert_close(policy.forward_head(features)[:, 1], all_on[:, 1])
    # in training, gradients reach every policy parameter through the fed-back samples too
    model.train()
    model(batch).logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.policy.parameters())


def test_training_with_recognized_logits_equals_running_the_recognizers() -> None:
    model = build(small_cfg(), seed=2).eval()
    batch = make_batch(b=2, s=3)
    with torch.no_grad():
        recognized = model.recognize_all(batch)  # (B, S, M, K)
    torch.manual_seed(5)
    plain = model(batch)
    torch.manual_seed(5)
    cached = model(batch, recognized=recognized)
    for name in ("logits", "segment_logits", "modality_logits", "decisions"):
        torch.testing.assert_close(getattr(cached, name), getattr(plain, name))
    with pytest.raises(ValueError, match="recognized logits"):
        model(batch, recognized=recognized[:, :2])


# ------------------------------------------------------------------------------------------------ sparse = dense


def _decisions(kind: str, b: int, s: int, m: int) -> torch.Tensor | None:
    g = torch.Generator().manual_seed(7)
    if kind == "random":
        return (torch.rand(b, s, m, generator=g) < 0.5).float()
    if kind == "all_on":
        return torch.ones(b, s, m)
    if kind == "all_off":
        return torch.zeros(b, s, m)
    if kind == "empty_segments":  # some segments use nothing, one video uses only audio
        d = (torch.rand(b, s, m, generator=g) < 0.6).float()
        d[0, 1] = 0
        d[1] = 0
        d[1, 2, 2] = 1
        return d
    return None  # the policy decides


@pytest.mark.parametrize("kind", ["policy", "random", "all_on", "all_off", "empty_segments"])
@pytest.mark.parametrize("fusion", [FusionConfig(), FusionConfig(kind="average", segment_mean="selected")])
def test_sparse_inference_equals_dense(kind: str, fusion: FusionConfig) -> None:
    model = build(small_cfg(fusion=fusion)).eval()
    batch = make_batch(b=2, s=3)
    decisions = _decisions(kind, 2, 3, 3)
    if decisions is None:
        model.policy.threshold = float(model.decide(batch).probs.detach().median())  # a mix of used and skipped cells
    with torch.no_grad():
        dense = model(batch, decisions)
    sparse = model.infer(batch, decisions)
    torch.testing.assert_close(sparse.decisions, dense.decisions)
    if decisions is None:
        assert 0 < sparse.decisions.sum() < sparse.decisions.numel()
        torch.testing.assert_close(sparse.decision_probs, dense.decision_probs)
    for name in ("logits", "segment_logits", "modality_logits"):
        torch.testing.assert_close(getattr(sparse, name), getattr(dense, name), atol=1e-5, rtol=1e-4)
    assert torch.isfinite(sparse.logits).all()
    skipped = sparse.decisions == 0
    assert sparse.modality_logits[skipped].eq(0).all()


def test_sparse_inference_never_runs_unselected_recognizers() -> None:
    model = build(small_cfg()).eval()
    batch = make_batch()
    calls: dict[str, int] = {}
    for name, net in model.recognizers.items():
        net.register_forward_hook(lambda module, inputs, output, name=name: calls.update({name: inputs[0].shape[0]}))
    decisions = torch.zeros(2, 3, 3)
    decisions[0, 1, 0] = decisions[1, 2, 0] = decisions[1, 0, 2] = 1  # rgb on 2 cells, audio on 1, flow never
    del batch["flow"]  # a modality nobody selected is never read
    out = model.infer(batch, decisions)
    assert calls == {"rgb": 2, "audio": 1}
    assert out.decision_logits is None


# ------------------------------------------------------------------------------------------------ fusion


def test_fusion_weights() -> None:
    fusion = LateFusion(3, "weighted")
    torch.testing.assert_close(fusion.weights(), torch.full((3,), 1 / 3))
    with torch.no_grad():
        fusion.free_weights.copy_(torch.tensor([0.5, 0.2]))
    torch.testing.assert_close(fusion.weights(), torch.tensor([0.5, 0.2, 0.3]))
    assert list(LateFusion(1, "weighted").parameters()) == []
    assert list(LateFusion(3, "average").parameters()) == []


def test_fusion_segment_means() -> None:
    logits = torch.ones(1, 2, 2, 4)  # (B, S, M, K)
    decisions = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # (B, S, M): the second segment uses nothing
    segments, video = LateFusion(2, "average", "all")(logits, decisions)
    torch.testing.assert_close(segments[0, :, 0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(video, torch.full((1, 4), 0.5))
    _, video = LateFusion(2, "average", "selected")(logits, decisions)
    torch.testing.assert_close(video, torch.ones(1, 4))
    _, video = LateFusion(2, "average", "selected")(logits, torch.zeros(1, 2, 2))
    torch.testing.assert_close(video, torch.zeros(1, 4))


def test_one_computed_cell_counts_as_much_as_all_of_them_under_the_modality_mean() -> None:
    """segment_mean "modality": each modality's logits are averaged over the segments that computed it, so one
    informative RGB cell of four is not outvoted by modalities computed everywhere; always-on, it equals "all"."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, requires_grad=True)  # (B, S, M, K)
    fusion = LateFusion(3, "weighted", "modality")
    with torch.no_grad():
        fusion.free_weights.copy_(torch.tensor([0.5, 0.2]))
    same = LateFusion(3, "weighted", "all")
    same.load_state_dict(fusion.state_dict())
    on = torch.ones(2, 4, 3)
    assert torch.equal(fusion(logits, on)[1], same(logits, on)[1])  # always-on: bit for bit the paper's mean
    rgb = torch.zeros(1, 4, 3, 5)
    rgb[0, 2, 0] = torch.tensor([0.0, 4.0, 0.0, 0.0, 0.0])  # RGB computed in segment 2 only: says class 1
    rgb[0, :, 1:] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])  # flow and audio everywhere: lean to class 0
    decisions = torch.ones(1, 4, 3)
    decisions[0, [0, 1, 3], 0] = 0.0
    _, video = fusion(rgb, decisions)
    # RGB's weight 0.5 x (0, 4, 0, 0, 0) + flow's 0.2 and audio's 0.3 x (1, 0, 0, 0, 0)
    torch.testing.assert_close(video, torch.tensor([[0.5, 2.0, 0.0, 0.0, 0.0]]))
    assert video.argmax().item() == 1
    assert LateFusion(3, "weighted", "all")(rgb, decisions)[1].argmax().item() == 0  # diluted over 4 segments
    _, nothing = fusion(rgb, torch.zeros(1, 4, 3))
    torch.testing.assert_close(nothing, torch.zeros(1, 5))
    decisions = torch.ones(2, 4, 3, requires_grad=True)
    fusion(logits, decisions)[1].sum().backward()
    assert decisions.grad.abs().sum() > 0 and fusion.free_weights.grad.abs().sum() > 0


def test_flip_gradient_is_the_change_of_the_video_logits_when_one_decision_flips() -> None:
    """decision_gradient "flip" under the modality mean: the forward value is the derivative's bit for bit, the
    recognizers get the same gradient, and each decision's gradient is what flipping that decision alone changes
    (checked by flipping every cell); a second cell that agrees with the first gets nothing."""
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 3, 5)
    hard = (torch.rand(3, 4, 3) > 0.5).float()
    hard[0, :, 0] = 0.0  # a modality computed nowhere
    hard[1, :, 1] = 0.0
    hard[1, 2, 1] = 1.0  # a modality computed once
    upstream = torch.randn(3, 5)
    flip = LateFusion(3, "weighted", "modality", "flip")
    with torch.no_grad():
        flip.free_weights.copy_(torch.tensor([0.5, 0.2]))
    derivative = LateFusion(3, "weighted", "modality")
    derivative.load_state_dict(flip.state_dict())
    grads = {}
    for name, fusion in (("flip", flip), ("derivative", derivative)):
        x, d = logits.clone().requires_grad_(), hard.clone().requires_grad_()
        video = fusion(x, d)[1]
        (video * upstream).sum().backward()
        grads[name] = (video.detach(), x.grad, d.grad)
    assert torch.equal(grads["flip"][0], grads["derivative"][0])
    torch.testing.assert_close(grads["flip"][1], grads["derivative"][1])
    with torch.no_grad():
        for b, s, m in itertools.product(range(3), range(4), range(3)):
            on, off = hard.clone(), hard.clone()
            on[b, s, m], off[b, s, m] = 1.0, 0.0
            change = ((flip(logits, on)[1] - flip(logits, off)[1]) * upstream).sum()
            torch.testing.assert_close(grads["flip"][2][b, s, m], change, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(grads["flip"][2], grads["derivative"][2])

    same = torch.zeros(1, 4, 3, 5)
    same[0, :, 0] = torch.tensor([0.0, 4.0, 0.0, 0.0, 0.0])  # every RGB cell says class 1
    two = torch.zeros(1, 4, 3)
    two[0, :2, 0] = 1.0  # RGB computed in segments 0 and 1
    d = two.clone().requires_grad_()
    flip(same, d)[1][0, 1].backward()
    assert torch.equal(d.grad[0, :, 0], torch.zeros(4))  # none adds anything to the other's mean
    one = torch.zeros(1, 4, 3)
    one[0, 0, 0] = 1.0
    d = one.clone().requires_grad_()
    flip(same, d)[1][0, 1].backward()
    torch.testing.assert_close(d.grad[0, :, 0], torch.tensor([0.5 * 4.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="flip"):
        LateFusion(3, "weighted", "selected", "flip")
    with pytest.raises(ValueError, match="decision_gradient"):
        FusionConfig(segment_mean="selected", decision_gradient="flip")


@pytest.mark.parametrize("segment_mean", ["all", "modality"])
def test_learned_skipped_logits_stand_for_a_skipped_modality(segment_mean) -> None:
    """skipped_logits "learned": zero at the start (the paper's fusion, bit for bit); then a skipped cell (all) or a
    modality computed nowhere (modality) adds its weighted vector; each decision's flip gradient is still what
    flipping it alone changes; always-on fusion never uses the vectors, so they learn only from skipped cells."""
    torch.manual_seed(2)
    logits = torch.randn(3, 4, 3, 5)
    hard = (torch.rand(3, 4, 3) > 0.5).float()
    hard[0, :, 0] = 0.0  # RGB computed nowhere in the first video
    hard[1, :, 0] = 1.0
    learned = LateFusion(3, "weighted", segment_mean, "flip", "learned", num_classes=5)
    paper = LateFusion(3, "weighted", segment_mean, "flip")
    assert torch.equal(learned(logits, hard)[1], paper(logits, hard)[1])  # starts as the paper's fusion
    with torch.no_grad():
        learned.free_weights.copy_(torch.tensor([0.5, 0.2]))
        learned.skipped.copy_(torch.randn(3, 5))
    paper.free_weights.data.copy_(learned.free_weights)
    w, b = learned.weights(), learned.skipped.detach()
    with torch.no_grad():
        expected = paper(logits, hard)[1]
        skipped = 1.0 - hard  # (B, S, M)
        if segment_mean == "all":  # every skipped cell adds w_m b_m / S
            expected = expected + torch.einsum("bsm,m,mk->bk", skipped, w, b) / 4
        else:  # a modality computed nowhere adds w_m b_m
            expected = expected + torch.einsum("bm,m,mk->bk", (hard.sum(dim=1) == 0).float(), w, b)
        torch.testing.assert_close(learned(logits, hard)[1], expected)
        on = torch.ones(3, 4, 3)
        assert torch.equal(learned(logits, on)[1], paper(logits, on)[1])  # always-on: never used
    d = hard.clone().requires_grad_()
    upstream = torch.randn(3, 5)
    (learned(logits, d)[1] * upstream).sum().backward()
    assert learned.skipped.grad.abs().sum() > 0
    with torch.no_grad():
        for i, s, m in itertools.product(range(3), range(4), range(3)):
            flipped_on, flipped_off = hard.clone(), hard.clone()
            flipped_on[i, s, m], flipped_off[i, s, m] = 1.0, 0.0
            change = ((learned(logits, flipped_on)[1] - learned(logits, flipped_off)[1]) * upstream).sum()
            torch.testing.assert_close(d.grad[i, s, m], change, atol=1e-5, rtol=1e-5)
    learned.zero_grad()
    learned(logits, torch.ones(3, 4, 3, requires_grad=True))[1].sum().backward()
    assert torch.equal(learned.skipped.grad, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="skipped logits"):
        LateFusion(3, "weighted", "selected", skipped_logits="learned", num_classes=5)
    with pytest.raises(ValueError, match="skipped_logits"):
        FusionConfig(segment_mean="selected", skipped_logits="learned")


# ------------------------------------------------------------------------------------------------ weights


@pytest.fixture(scope="module")
def imagenet_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fake torchvision ImageNet checkpoints (torchvision's own definitions, random weights)."""
    folder = tmp_path_factory.mktemp("imagenet")
    torch.manual_seed(0)
    files = {"resnet18": folder / "resnet18.pth", "mobilenet_v2": folder / "mobilenet_v2.pth"}
    resnet = torchvision.models.resnet18().state_dict()
    resnet = {k: v for k, v in resnet.items() if not k.endswith("num_batches_tracked")}  # like the old files
    torch.save(resnet, files["resnet18"])
    torch.save(torchvision.models.mobilenet_v2().state_dict(), files["mobilenet_v2"])
    return files


def test_loading_inflates_the_first_conv(imagenet_files: dict[str, Path]) -> None:
    source = torch.load(imagenet_files["resnet18"], weights_only=True)
    flow = TSNResNet(18, 10, num_classes=5)
    head = flow.fc.weight.detach().clone()
    load_imagenet_weights(flow, imagenet_files["resnet18"])
    expected = source["conv1.weight"].mean(dim=1, keepdim=True).expand(-1, 10, -1, -1)
    torch.testing.assert_close(flow.conv1.weight, expected)
    torch.testing.assert_close(flow.layer3[1].conv2.weight, source["layer3.1.conv2.weight"])
    torch.testing.assert_close(flow.fc.weight, head)  # the ImageNet classifier is not loaded
    rgb = TSNResNet(18, 3, num_classes=5)
    load_imagenet_weights(rgb, imagenet_files["resnet18"])
    torch.testing.assert_close(rgb.conv1.weight, source["conv1.weight"])

    mobile = torch.load(imagenet_files["mobilenet_v2"], weights_only=True)
    audio = MobileNetV2Recognizer(1, 5)
    load_imagenet_weights(audio, imagenet_files["mobilenet_v2"])
    torch.testing.assert_close(audio.features[0][0].weight, mobile["features.0.0.weight"].mean(1, keepdim=True))
    diff = MobileNetV2Extractor(15)
    load_imagenet_weights(diff, imagenet_files["mobilenet_v2"])
    assert diff.features[0][0].weight.shape[1] == 15
    torch.testing.assert_close(diff.features[18][0].weight, mobile["features.18.0.weight"])


def test_build_model_loads_every_pretrained_file(imagenet_files: dict[str, Path]) -> None:
    cfg = small_cfg(resnet=ResNetConfig(depth=18, pretrained=str(imagenet_files["resnet18"])),
                    audio=AudioNetConfig(size=32, pretrained=str(imagenet_files["mobilenet_v2"])),
                    policy=PolicyConfig(size=32, audio_size=32, hidden=(16, 16), lstm_hidden=8,
                                        pretrained=str(imagenet_files["mobilenet_v2"])))
    model = build_model(cfg)
    source = torch.load(imagenet_files["resnet18"], weights_only=True)
    torch.testing.assert_close(model.recognizers["rgb"].layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    assert model.policy.extractors["rgbdiff"].features[0][0].weight.shape[1] == 15
    out = model.eval()(make_batch(b=1, s=2))
    assert torch.isfinite(out.logits).all()


def test_wrong_checkpoint_gives_a_readable_error(imagenet_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as error:
        load_imagenet_weights(TSNResNet(50, 3, 5, base_width=4), imagenet_files["resnet18"])
    message = str(error.value)
    assert "missing from the checkpoint" in message and "layer1.0.conv3.weight" in message
    assert "shape mismatch" in message and "depth 50" in message
    shapes = r"conv1.weight: checkpoint \(64, 3, 7, 7\) vs model \(32, 3, 7, 7\)"
    with pytest.raises(CheckpointError, match=shapes):
        load_imagenet_weights(TSNResNet(18, 3, 5, base_width=32), imagenet_files["resnet18"])
    with pytest.raises(CheckpointError, match="unexpected in the checkpoint"):
        load_imagenet_weights(TSNResNet(18, 3, 5), imagenet_files["mobilenet_v2"])
    wrapped = tmp_path / "trainer.pth"
    torch.save({"epoch": 3, "state_dict": {"conv1.weight": torch.zeros(1)}}, wrapped)
    with pytest.raises(CheckpointError, match="flat state dict"):
        load_imagenet_weights(TSNResNet(18, 3, 5), wrapped)
    with pytest.raises(FileNotFoundError):
        load_imagenet_weights(TSNResNet(18, 3, 5), tmp_path / "absent.pth")


@pytest.mark.parametrize("kind", ["weighted", "lateral-bi", "gating"])
def test_inference_optimisation_keeps_the_outputs_and_drops_the_norm_layers(kind):
    from adamml.config import load_config
    from adamml.models.folding import fold_batch_norms, optimize_for_inference

    cfg = load_config("tiny", ["model.num_classes=5", "model.resnet.base_width=8", "model.audio.width_mult=0.25",
                               "model.input_size=32", "model.num_segments=2", f"model.fusion.kind={kind}"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    for module in model.modules():  # statistics and affine parameters away from the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    m = cfg.model
    batch = {"rgb": torch.randn(2, 2, 4, 3, 32, 32), "flow": torch.randn(2, 2, 4, 10, 32, 32),
             "rgbdiff": torch.randn(2, 2, 4, 15, 32, 32), "audio": torch.randn(2, 2, 1, m.audio.size, m.audio.size)}
    model.eval()
    with pytest.raises(ValueError, match="eval"):
        fold_batch_norms(build_model(cfg.model).train())
    with torch.no_grad():
        before = model.infer(batch)
        optimize_for_inference(model)
        after = model.infer(batch)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in model.modules())
    convs = [x for x in model.modules() if isinstance(x, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    torch.testing.assert_close(after.logits, before.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after.decisions, before.decisions)
    torch.testing.assert_close(after.decision_probs, before.decision_probs, rtol=1e-4, atol=1e-5)


def test_each_policy_extractor_can_have_its_own_width() -> None:
    from adamml.config import ConfigError, load_config

    narrow = load_config("tiny", ["model.policy.widths.rgbdiff=0.25", "model.policy.widths.audio=0.25"]).model
    wide = load_config("tiny", ["model.policy.widths.rgbdiff=0.5", "model.policy.widths.audio=0.5"]).model
    narrow_net, wide_net = build_model(narrow), build_model(wide)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(narrow_net.policy.extractors["rgb"]) == count(wide_net.policy.extractors["rgb"])
    for name in ("rgbdiff", "audio"):
        assert count(narrow_net.policy.extractors[name]) < count(wide_net.policy.extractors[name])
    # the cost accounting measures the network built: the narrow extractors cost less, the recognizers the same
    a, b = measure_costs(narrow), measure_costs(wide)
    assert a.extractors["rgb"].conv == b.extractors["rgb"].conv
    assert a.extractors["rgbdiff"].conv < b.extractors["rgbdiff"].conv
    assert a.recognizers["rgb"].conv == b.recognizers["rgb"].conv
    with pytest.raises(ConfigError, match="policy.widths.flow"):
        load_config("tiny", ["model.policy.widths.flow=0.25"])


def test_heads_reading_the_segment_features_start_as_the_paper_policy_and_learn_from_them() -> None:
    policy_cfg = PolicyConfig(size=32, frames=4, audio_size=32, width_mult=0.25, hidden=(16, 16), lstm_hidden=8)
    paper = build(small_cfg(policy=policy_cfg)).eval()
    skip = build(small_cfg(policy=dataclasses.replace(policy_cfg, head_input="lstm+features"))).eval()
    batch = make_batch(b=2, s=3)
    # the extra weights start at zero and draw nothing from the generator: the same seed gives the same policy
    assert skip.policy.feature_heads.shape == (3, 2, 16) and not skip.policy.feature_heads.any()
    torch.testing.assert_close(skip.decide(batch).logits, paper.decide(batch).logits)
    # each head then adds a linear read of its own segment's MLP features to what it reads from the LSTM
    features = skip.policy.forward_features(skip.policy_inputs(batch))  # (B, S, D)
    with torch.no_grad():
        skip.policy.feature_heads[0, 1, 5] = 2.0  # the first modality's "use" logit reads feature 5
    moved = skip.policy.forward_head(features) - paper.policy.forward_head(features)  # (B, S, M, 2)
    # (the first segment: later ones also see the moved logits fed back through the LSTM)
    torch.testing.assert_close(moved[:, 0, 0, 1], 2.0 * features[:, 0, 5])
    torch.testing.assert_close(moved[:, 0, 1:], torch.zeros_like(moved[:, 0, 1:]))
    # trained, the gradient reaches them; they cost 2 MACs per feature and modality per segment
    skip.train()
    skip(batch).logits.sum().backward()
    assert skip.policy.feature_heads.grad is not None and skip.policy.feature_heads.grad.abs().sum() > 0
    with_features = measure_costs(small_cfg(policy=dataclasses.replace(policy_cfg, head_input="lstm+features")))
    without = measure_costs(small_cfg(policy=policy_cfg))
    assert with_features.policy_head.all - without.policy_head.all == pytest.approx(3 * 16 * 2 / 1e9)
    with pytest.raises(ValueError, match="head_input"):
        dataclasses.replace(policy_cfg, head_input="features")
