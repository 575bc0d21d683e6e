"""The configuration's schema: frozen dataclasses whose defaults are the paper's setting (Sec. 4 and supplementary
Sec. B), checked when built."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Literal


from adamml.modalities import check_modalities


FusionKind = Literal["weighted", "average", "gating", "lateral-uni", "lateral-bi", "context-gating",
                     "gradient-blending"]
SegmentMean = Literal["all", "selected", "modality"]
DecisionGradient = Literal["derivative", "flip"]
SkippedLogits = Literal["zero", "learned"]
PretrainTarget = Literal["labels", "recognizers", "usefulness"]
PolicyFeed = Literal["logits", "decisions"]
PolicyHeadInput = Literal["lstm", "lstm+features"]
Precision = Literal["fp32", "bf16", "fp16"]  # see adamml.runtime.precision
# how the inputs are formed: adamml's own, or the official AdaMML code's (what its published checkpoints were
# trained on; `adamml convert-official` sets it): see docs/official.md
Conventions = Literal["adamml", "official"]
Decode = Literal["cpu", "device"]  # where the store's JPEG frames are decoded (see DataConfig.decode)
# AdaMML's late fusion (Sec. 3.2), with the policy's decisions or always on; the rest are the always-on fusion
# baselines of the supplementary material (``adamml.models.baselines``), each trained by the stage of its name
LATE_FUSION_KINDS: tuple[str, ...] = ("weighted", "average")
BASELINE_KINDS: tuple[str, ...] = ("gating", "lateral-uni", "lateral-bi", "context-gating", "gradient-blending")


@dataclass(frozen=True)
class ResNetConfig:
    """TSN-style 2D ResNet recognizer for the visual modalities (rgb, flow, rgbdiff)."""

    depth: int = 50  # 18, 34 or 50 (torchvision definitions)
    base_width: int = 64  # channels of the stem and of the first stage (64 = torchvision); 128/256/512 follow
    dropout: float = 0.5
    pretrained: str | None = None  # local torchvision ImageNet ResNet checkpoint (.pth), or none
    # per visual modality, a local mmaction2 TSN checkpoint (backbone.*, cls_head.*) that initialises its
    # recognizer after the ImageNet weights (`adamml.models.mmaction2_weights`), e.g. {rgb: tsn_r50_rgb.pth}
    mmaction2: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in self.mmaction2:
            if name not in ("rgb", "flow", "rgbdiff"):
                raise ValueError(f"resnet.mmaction2.{name}: mmaction2 weights initialise the ResNet of rgb, flow "
                                 "or rgbdiff")
        if self.depth not in (18, 34, 50):
            raise ValueError(f"resnet.depth must be 18, 34 or 50, got {self.depth}")
        if self.base_width < 1:
            raise ValueError(f"resnet.base_width must be positive, got {self.base_width}")
        _check_probability("resnet.dropout", self.dropout)


@dataclass(frozen=True)
class AudioNetConfig:
    """MobileNetV2 recognizer on the log-spectrogram."""

    size: int = 256  # spectrogram side the network runs at (the spectrogram is resized when it differs)
    width_mult: float = 1.0
    dropout: float = 0.5
    pretrained: str | None = None  # local torchvision ImageNet MobileNetV2 checkpoint, or none

    def __post_init__(self) -> None:
        if self.size < 16 or self.width_mult <= 0:
            raise ValueError(f"audio: size must be >= 16 and width_mult > 0, got {self.size}, {self.width_mult}")
        _check_probability("audio.dropout", self.dropout)


@dataclass(frozen=True)
class PolicyConfig:
    """The policy network (Sec. 3.1) and how its decisions are taken."""

    size: int = 160  # side of the visual policy inputs
    frames: int = 4  # frames of the visual policy inputs (frames 0, 2, 4, 6 of 8)
    audio_size: int = 256  # side of the spectrogram the policy's audio extractor runs at
    width_mult: float = 1.0  # MobileNetV2 width of the feature extractors (each gives 1280 features)
    # per policy input (rgb, rgbdiff, audio), a width that replaces width_mult for that extractor: spend the
    # policy's budget where its decision is hard (e.g. only RGB wider)
    widths: dict[str, float] = field(default_factory=dict, hash=False)  # (the cost cache compares it by equality)
    hidden: tuple[int, ...] = (2048, 2048)  # the MLP after concatenating the extractors' features
    lstm_hidden: int = 256
    temperature: float = 5.0  # initial Gumbel-Softmax temperature (training)
    threshold: float = 0.5  # evaluation: use a modality when P(use) >= threshold
    random_at_test: bool = False  # evaluation: sample like the official code instead of thresholding
    pretrained: str | None = None  # local torchvision ImageNet MobileNetV2 checkpoint, or none
    # what the LSTM is given of the previous segment: its decision logits (the official code), or the decisions
    # actually taken (sampled in training, thresholded at test), so it knows which cells were really computed and
    # can skip a modality that an earlier segment already supplied (a departure from the paper; a switch)
    feed: PolicyFeed = "logits"
    # what the decision heads read: the LSTM's state (the paper), or that and the segment's MLP features, so a
    # decision that hangs on one feature of the segment (is the object coloured) need not be routed through the
    # LSTM first (a departure; a switch)
    head_input: PolicyHeadInput = "lstm"

    def __post_init__(self) -> None:
        if self.feed not in ("logits", "decisions"):
            raise ValueError(f"policy.feed must be logits or decisions, got {self.feed!r}")
        if self.head_input not in typing.get_args(PolicyHeadInput):
            raise ValueError(f"policy.head_input must be lstm or lstm+features, got {self.head_input!r}")
        if self.size < 16 or self.audio_size < 16:
            raise ValueError(f"policy sizes must be >= 16, got {self.size}, {self.audio_size}")
        if self.frames < 1 or self.lstm_hidden < 1 or self.width_mult <= 0:
            raise ValueError("policy.frames, lstm_hidden and width_mult must be positive")
        for name, width in self.widths.items():
            if name not in ("rgb", "rgbdiff", "audio") or not width > 0:
                raise ValueError(f"policy.widths.{name}: a positive width for the policy input rgb, rgbdiff or "
                                 f"audio, got {width!r}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"policy.hidden must be a non-empty list of positive sizes, got {self.hidden}")
        if self.temperature <= 0:
            raise ValueError(f"policy.temperature must be positive, got {self.temperature}")
        _check_probability("policy.threshold", self.threshold)


@dataclass(frozen=True)
class FusionConfig:
    """How the modalities are fused: AdaMML's late fusion of segment logits (Sec. 3.2), or one of the always-on
    fusion baselines (``BASELINE_KINDS``, see ``adamml.models.baselines``)."""

    kind: FusionKind = "weighted"  # learnable weights (official), plain average, or a baseline
    segment_mean: SegmentMean = "all"  # video logits: mean over all segments, over those that used something, or
    # each modality's mean over the segments that used it (see adamml.models.fusion)
    decision_gradient: DecisionGradient = "derivative"  # what a decision's straight-through gradient carries: the
    # derivative of the video logits (paper), or their change when that one decision flips (see adamml.models.fusion)
    skipped_logits: SkippedLogits = "zero"  # what a skipped modality adds: zero logits (paper), or a learned vector
    # per modality (for a skipped cell with segment_mean all, for a modality computed nowhere with modality)
    hidden: int = 512  # gating, context-gating: width of the gate networks
    lateral_stages: tuple[int, ...] = (1, 2, 3)  # lateral-uni/bi: connections after these ResNet stages (layerN)
    dropout: float = 0.5  # gradient-blending: dropout before the fused classifier

    def __post_init__(self) -> None:
        kinds = LATE_FUSION_KINDS + BASELINE_KINDS
        if self.kind not in kinds:
            raise ValueError(f"fusion.kind must be one of {', '.join(kinds)}, got {self.kind!r}")
        if self.segment_mean not in typing.get_args(SegmentMean):
            raise ValueError(f"fusion.segment_mean must be one of {list(typing.get_args(SegmentMean))}, "
                             f"got {self.segment_mean!r}")
        if self.decision_gradient not in typing.get_args(DecisionGradient):
            raise ValueError(f"fusion.decision_gradient must be one of {list(typing.get_args(DecisionGradient))}, "
                             f"got {self.decision_gradient!r}")
        if self.decision_gradient == "flip" and self.segment_mean == "selected":
            raise ValueError("fusion.decision_gradient: flip is defined for segment_mean all and modality, "
                             "not selected")
        if self.skipped_logits not in typing.get_args(SkippedLogits):
            raise ValueError(f"fusion.skipped_logits must be zero or learned, got {self.skipped_logits!r}")
        if self.skipped_logits == "learned" and self.segment_mean == "selected":
            raise ValueError("fusion.skipped_logits: learned is defined for segment_mean all and modality, "
                             "not selected")
        if self.hidden < 1:
            raise ValueError(f"fusion.hidden must be positive, got {self.hidden}")
        stages = list(self.lateral_stages)
        if not stages or len(set(stages)) != len(stages) or not set(stages) <= {1, 2, 3}:
            raise ValueError(f"fusion.lateral_stages must be distinct stages among 1, 2, 3, got {stages}")
        _check_probability("fusion.dropout", self.dropout)


@dataclass(frozen=True)
class ModelConfig:
    """The whole AdaMML model: recognizers, policy and fusion."""

    modalities: tuple[str, ...] = ("rgb", "audio")  # recognizer modalities; the policy uses their proxies
    num_classes: int = 31
    num_segments: int = 10  # segments per video at test time (cost reports use it)
    frames_per_segment: int = 8
    input_size: int = 224  # side of the visual recognizer inputs
    resnet: ResNetConfig = field(default_factory=ResNetConfig)
    audio: AudioNetConfig = field(default_factory=AudioNetConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self) -> None:
        check_modalities(self.modalities)
        if self.num_classes < 1 or self.num_segments < 1 or self.frames_per_segment < 1:
            raise ValueError("model.num_classes, num_segments and frames_per_segment must be positive")
        if self.input_size < 16:
            raise ValueError(f"model.input_size must be >= 16, got {self.input_size}")
        if self.policy.frames > self.frames_per_segment:
            raise ValueError("model.policy.frames cannot exceed model.frames_per_segment")


@dataclass(frozen=True)
class DataConfig:
    """How a prepared store is sampled (supplementary Sec. B); frames per segment and input size are in
    ``model``, the number of test segments is ``model.num_segments``."""

    train_segments: int = 5  # one random window in each of this many equal regions
    stride: int = 4  # frame stride inside a segment (8 frames at stride 4: a 32-frame window)
    train_scale: tuple[int, ...] = (256, 320)  # training: short side drawn from [low, high]
    test_short_side: int = 256  # test: short side resized to this, then the centre crop
    workers: int = 2  # data-loading processes per training process
    # a training run keeps each loader's workers from epoch to epoch (started once, not at every epoch and
    # validation); false starts them for every pass, holding no idle processes between passes
    persistent_workers: bool = True
    # the loader's workers send the cropped frames and flow as uint8 and the training process converts them
    # (normalisation, RGB differences, the policy's resizing: `adamml.data.batch.finish_batch`) on its device: 4x
    # less data through shared memory and less work per worker, the way of the field's fast GPU loaders
    normalize_on_device: bool = False
    # the split that selects best.pt and the operating point (never the test split); "holdout": a seeded part of
    # the training split (`adamml.data.splits`), for sets whose only other split is the one reported
    val_split: str = "val"
    holdout_fraction: float = 0.1  # with val_split holdout: about this fraction of each class held out of training
    holdout_seed: int = 0  # with val_split holdout: draws the held-out videos (the same on every training seed)
    # input conventions: "official" forms RGBDiff as the official code does, a (d + 255) / 2 image normalised
    # like an RGB frame, for checkpoints converted from it; "adamml" the difference of normalised frames
    conventions: Conventions = "adamml"
    # where the frames are decoded: "cpu" in the loader's workers; "device": the workers only read the JPEG files'
    # bytes and the training process decodes, crops and flips a whole batch on its device (torchvision's nvJPEG
    # decoder on a GPU: `adamml.data.jpeg`), implying the uint8 transport of `normalize_on_device`
    decode: Decode = "cpu"

    def __post_init__(self) -> None:
        if self.conventions not in ("adamml", "official"):
            raise ValueError(f"data.conventions must be adamml or official, got {self.conventions!r}")
        if self.decode not in ("cpu", "device"):
            raise ValueError(f"data.decode must be cpu or device, got {self.decode!r}")
        if self.train_segments < 1 or self.stride < 1 or self.workers < 0:
            raise ValueError("data.train_segments and data.stride must be positive, data.workers >= 0")
        if len(self.train_scale) != 2 or not 0 < self.train_scale[0] <= self.train_scale[1]:
            raise ValueError(f"data.train_scale must be [low, high] with 0 < low <= high, got {list(self.train_scale)}")
        if self.val_split == "test":
            raise ValueError("data.val_split cannot be the test split: model selection never looks at it")
        if self.val_split == "train":
            raise ValueError("data.val_split cannot be the training split: it would select on the videos trained on "
                             "(data.val_split: holdout holds out part of it instead)")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"data.holdout_fraction must be between 0 and 1, got {self.holdout_fraction}")


@dataclass(frozen=True)
class OptimConfig:
    """One optimiser and its step schedule (milestones in epochs of its phase)."""

    lr: float = 0.001
    epochs: int = 10
    milestones: tuple[int, ...] = ()
    lr_decay: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.epochs < 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be positive, epochs and weight_decay non-negative, got lr {self.lr}, "
                             f"epochs {self.epochs}, weight_decay {self.weight_decay}")
        if self.lr_decay <= 0 or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"lr_decay must be positive and momentum in [0, 1), got {self.lr_decay}, {self.momentum}")
        if any(m < 0 for m in self.milestones):
            raise ValueError(f"milestones must be epochs >= 0, got {list(self.milestones)}")


@dataclass(frozen=True)
class BlendConfig:
    """Gradient blending (Wang et al., CVPR 2020): how the loss weights of its heads are estimated."""

    holdout: float = 0.2  # fraction of the training split held out (never trained on) to measure generalisation
    interval: int = 2  # epochs between two estimates (the paper's "super-epoch")
    min_weight: float = 0.05  # floor of every head's weight; the weights sum to 1
    min_overfit: float = 0.01  # floor of the overfitting increase O in w = G / O^2 (no division by ~0)

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"train.blend.holdout must be in (0, 1), got {self.holdout}")
        if self.interval < 1:
            raise ValueError(f"train.blend.interval must be positive, got {self.interval}")
        if not 0.0 <= self.min_weight < 0.2:  # at most 5 heads (4 modalities + the fused one) must fit under 1
            raise ValueError(f"train.blend.min_weight must be in [0, 0.2), got {self.min_weight}")
        if self.min_overfit <= 0:
            raise ValueError(f"train.blend.min_overfit must be positive, got {self.min_overfit}")


OperatingTarget = Literal["accuracy", "budget", "fixed"]


@dataclass(frozen=True)
class OperatingPointConfig:
    """How an AdaMML training ends: the decision threshold read off the validation split
    (`adamml.inference.operating_point`) and recorded in best.pt, which eval, predict, bench and export then use."""

    # accuracy: the fewest GFLOPs within `margin` points of the best (every cell computed, or the curve's best
    # plateau when higher); budget: the best score within
    # `budget` x the always-on GFLOPs; fixed: model.policy.threshold, as the paper (nothing recorded)
    target: OperatingTarget = "accuracy"
    margin: float = 1.0  # points of the validation top-1 (mAP on multi-label sets), applied in whole videos
    budget: float = 0.5  # fraction of the always-on GFLOPs per video
    thresholds: tuple[float, ...] = (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                                     0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)  # the grid searched

    def __post_init__(self) -> None:
        if self.target not in typing.get_args(OperatingTarget):
            raise ValueError(f"train.operating_point.target must be accuracy, budget or fixed, got {self.target!r}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"train.operating_point.margin must be a non-negative number of points, got {self.margin}")
        if not (math.isfinite(self.budget) and 0 < self.budget <= 1):
            raise ValueError(f"train.operating_point.budget must be in (0, 1], got {self.budget}")
        if not self.thresholds:
            raise ValueError("train.operating_point.thresholds must list at least one threshold")
        for value in self.thresholds:
            _check_probability("train.operating_point.thresholds", value)


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (paper Sec. 3.3 and supplementary Sec. B)."""

    batch_size: int = 72  # global batch, whatever the number of processes
    eval_batch_size: int = 8
    seed: int = 0
    unimodal: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.01, epochs=60, milestones=(20, 40, 50)))
    fusion: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.001, epochs=20, milestones=(10, 15)))
    warmup: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.001, epochs=5))
    alternating: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.001, epochs=20, milestones=(10, 15)))
    finetune: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.001, epochs=10))
    # supervised pre-training of the policy's feature extractors on the video labels (Adam), before warm-up; the
    # paper's policy starts from ImageNet MobileNetV2 weights instead (model.policy.pretrained): 0 epochs there
    policy_pretrain: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.01, epochs=0))
    # what each extractor learns in that pre-training: "labels" (classify each segment with the video's label) or
    # "recognizers" (match, segment by segment, the class distribution of the recognizer it decides about, as
    # initialised by --init: which segments that recognizer finds telling is what the policy must see), or
    # "usefulness" (predict, segment by segment, how much the segment tells that recognizer: the negative entropy
    # of its class distribution, standardised; it tells informative segments from the others far better than the
    # recognizer's probability of the label, which an over-confident recognizer spreads on both)
    policy_pretrain_target: PretrainTarget = "labels"
    policy_lr: float = 0.01  # Adam
    policy_weight_decay: float = 1e-4
    # passes of each alternating epoch's policy part over that epoch's samples (same segments and crops, batches
    # reshuffled); above 1, the frozen recognizers' logits are computed once per epoch and reused, so a pass costs
    # the policy's network only. 1 is the paper's recipe (one policy epoch per alternating epoch)
    policy_passes: int = 1
    # keep the policy's feature extractors as their pre-training (or ImageNet weights) left them in the
    # alternating phase: only the MLP, LSTM and decision heads learn (a departure; the paper trains all of it)
    freeze_policy_extractors: bool = False
    temperature_decay: float = 0.965  # per alternating epoch
    # the Gumbel noise of the policy's training samples is multiplied by this once per alternating epoch (the first
    # samples with P(use); fine-tuning uses the scale after the last), so that the decisions the recognizers and
    # the policy are trained with approach those taken at evaluation, P(use) >= 0.5. A hard sample's odds do not
    # depend on the temperature: without this, a cell at P(use) = 0.3 is computed in 30 % of training samples and
    # never at test. 1.0 is the paper's recipe (a departure below it)
    gumbel_noise_decay: float = 1.0
    # ... but never below this: with the noise near 0 the policy is trained on its own thresholded decisions, and a
    # cell's P(use) only needs to sit on the right side of 0.5, so many settle just beside it (P(use) 0.45-0.55) and
    # the threshold sweep falls off a cliff; a floor keeps a margin (a cell computed at this noise with P(use) = p is
    # computed in most samples only once p is well above 0.5)
    gumbel_noise_min: float = 0.0
    efficiency_weights: dict[str, float] = field(default_factory=lambda: {"rgb": 1.0, "audio": 0.05})  # lambda_k
    gamma: float = 10.0  # efficiency loss for a wrong prediction
    random_rates: dict[str, float] = field(default_factory=dict)  # random-policy baseline (default 0.5 each)
    clip_grad_norm: float = 20.0  # gradient norm clipping of each optimiser's parameters; 0 disables
    # after each policy epoch, the policy's batch-norm statistics are recomputed on this many training batches
    # ("precise BN"): the running averages lag behind fast-changing weights and make the policy's evaluation
    # decisions input-independent; 0 keeps the running averages
    precise_bn_batches: int = 20
    # model selection (adamml stage): only epochs whose validation GFLOPs per video are at most this fraction of
    # the always-on cost are candidates for best.pt (1.0: any epoch; the best model under a cost budget)
    select_max_gflops: float = 1.0
    blend: BlendConfig = field(default_factory=BlendConfig)  # the gradient-blending stage
    operating_point: OperatingPointConfig = field(default_factory=OperatingPointConfig)  # chosen after training
    # arithmetic of every stage's forward and backward passes (see adamml.runtime.precision): fp32, or bf16 / fp16 under
    # autocast (fp16 with a gradient scaler); weights and checkpoints stay float32
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("train.batch_size and train.eval_batch_size must be positive")
        if self.policy_passes < 1:
            raise ValueError(f"train.policy_passes must be at least 1, got {self.policy_passes}")
        if self.policy_lr <= 0 or self.policy_weight_decay < 0:
            raise ValueError(f"train.policy_lr must be positive and train.policy_weight_decay non-negative, got "
                             f"{self.policy_lr}, {self.policy_weight_decay}")
        if not 0.0 < self.temperature_decay <= 1.0:
            raise ValueError(f"train.temperature_decay must be in (0, 1], got {self.temperature_decay}")
        if not 0.0 <= self.gumbel_noise_decay <= 1.0:
            raise ValueError(f"train.gumbel_noise_decay must be in [0, 1], got {self.gumbel_noise_decay}")
        if not 0.0 <= self.gumbel_noise_min <= 1.0:
            raise ValueError(f"train.gumbel_noise_min must be in [0, 1], got {self.gumbel_noise_min}")
        if self.gamma < 0:
            raise ValueError(f"train.gamma must be non-negative, got {self.gamma}")
        for name, weight in self.efficiency_weights.items():
            if weight < 0:
                raise ValueError(f"train.efficiency_weights.{name} must be non-negative, got {weight}")
        if self.clip_grad_norm < 0 or self.precise_bn_batches < 0:
            raise ValueError(f"train.clip_grad_norm and train.precise_bn_batches must be non-negative, got "
                             f"{self.clip_grad_norm}, {self.precise_bn_batches}")
        if self.select_max_gflops <= 0:
            raise ValueError(f"train.select_max_gflops must be positive, got {self.select_max_gflops}")
        for name, rate in self.random_rates.items():
            _check_probability(f"train.random_rates.{name}", rate)


@dataclass(frozen=True)
class Config:
    """Top level: the model, how data is sampled, how it is trained."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
