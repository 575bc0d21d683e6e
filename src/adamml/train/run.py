"""One training run: the configuration a stage trains, its model (initialised from earlier checkpoints), its data
sets and what it holds out, and the checks made before it starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from torch.utils.data import Dataset, Subset

from adamml.config import LATE_FUSION_KINDS, Config
from adamml.data.dataset import SegmentDataset, Store, sampling_config
from adamml.data.store import PREPARED_KEYS
from adamml.data.loader import LoaderPool, make_loader
from adamml.data.layout import StoreError
from adamml.data.splits import HOLDOUT, holdout_split
from adamml.inference.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    load_recognizer,
)
from adamml.modalities import get_modality
from adamml.models.build import Model, build_model
from adamml.runtime.distributed import DistInfo, sync_batch_norm
from adamml.runtime.precision import FP32, Amp, amp_for, channels_last
from adamml.stages import Stage, get_stage
from adamml.train.logs import RunLog

# the fewest training steps per epoch a preset's schedule is meant for (fewer: a warning)
MIN_STEPS_PER_EPOCH = 10


def stage_config(cfg: Config, stage: str) -> Config:
    """The configuration `stage` trains: a baseline stage sets `model.fusion.kind` to its own name; the other
    stages use AdaMML's late fusion (weighted or average)."""
    kind = cfg.model.fusion.kind
    own = get_stage(stage).fusion_kind
    if own is not None:
        if kind != own and kind not in LATE_FUSION_KINDS:
            raise ValueError(f"--stage {stage} trains the {own!r} fusion, but the configuration sets "
                             f"model.fusion.kind={kind!r} (drop it, or train --stage {kind})")
        fusion = dataclasses.replace(cfg.model.fusion, kind=own)
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, fusion=fusion))
    if kind not in LATE_FUSION_KINDS:
        raise ValueError(f"the {stage} stage uses AdaMML's late fusion (model.fusion.kind weighted or average), "
                         f"the configuration sets {kind!r}: train that baseline with --stage {kind}")
    return cfg


@dataclass
class Run:
    """Everything one training run holds."""

    cfg: Config
    stage: str
    out: Path
    info: DistInfo
    model: Model
    train_set: SegmentDataset
    val_set: SegmentDataset
    multi_label: bool
    console: Console
    best_score: float = float("-inf")
    log: RunLog = dataclasses.field(default_factory=RunLog)
    classes: list[str] = dataclasses.field(default_factory=list)  # the store's, saved in checkpoints
    policy_set: SegmentDataset | None = None  # the policy's inputs only (policy pre-training)
    # gradient blending: the training split's indices trained on, and the eval-mode sets its loss weights are
    # measured on (held-out part, as many training videos)
    train_part: list[int] | None = None
    blend_sets: tuple[Dataset, Dataset] | None = None
    amp: Amp = FP32  # train.precision on this device
    # the loaders kept from epoch to epoch, their workers running (data.persistent_workers); closed by `train`
    loaders: LoaderPool = dataclasses.field(default_factory=LoaderPool)

    @property
    def store_settings(self) -> dict:
        """How the training store was prepared, saved in checkpoints (`Store.settings_note` compares it later)."""
        return {key: self.train_set.store.settings.get(key) for key in PREPARED_KEYS}

    def loader(self, data: Dataset, batch: int, seed: int, train: bool, workers: int | None = None):
        """`make_loader` for this run: `data` in batches of `batch` (global), in the order of `seed` when `train`,
        with data.workers workers (or `workers`), kept in the run's pool with data.persistent_workers."""
        workers = self.cfg.data.workers if workers is None else workers
        return make_loader(data, batch, self.info, seed, train=train, workers=workers,
                           pool=self.loaders if self.cfg.data.persistent_workers else None)

    @property
    def record(self) -> Stage:
        return get_stage(self.stage)


def chance_score(data: SegmentDataset, multi_label: bool) -> float | None:
    """Top-1 (%) of always answering the most frequent class of `data` (None for multi-label data: mAP)."""
    if multi_label:
        return None
    labels = [(row.get("label_ids") or [-1])[0] for row in data.rows]
    labels = [label for label in labels if label >= 0]
    if not labels:
        return None
    return 100.0 * max(labels.count(label) for label in set(labels)) / len(labels)


def _warn_small_training_set(run: Run) -> None:
    """Say so when the training split gives fewer steps than the schedule needs to move the weights."""
    videos, wanted = len(run.train_set), max(1, run.cfg.train.batch_size)
    batch = max(1, min(wanted, videos))  # a batch larger than the training set is cut to it (`make_loader`)
    steps = videos // batch
    if steps < MIN_STEPS_PER_EPOCH and run.info.is_main:
        cut = f" (train.batch_size {wanted}, cut to the training set)" if batch < wanted else ""
        run.console.print(f"[yellow]warning:[/yellow] {videos} training videos make {steps} "
                          f"step{'s' if steps != 1 else ''} of {batch} per epoch{cut} (fewer than "
                          f"{MIN_STEPS_PER_EPOCH}): the "
                          "preset's schedule was set for more data and may learn nothing. Add videos, lower "
                          "train.batch_size, or raise the epochs of each phase.")


PAPER_DEPTH = 50  # the paper's recognizers: ResNet-50 (a smaller preset is not expected to start from ImageNet)


def random_start_warning(cfg: Config, stage: str, init: list[Path]) -> str | None:
    """What a paper-sized run starting from random weights should be told (None: nothing to say). The paper starts
    the recognizers from ImageNet (and Kinetics), the policy's MobileNetV2 from ImageNet; the paper presets leave
    those paths empty because nothing is downloaded."""
    m = cfg.model
    if m.resnet.depth < PAPER_DEPTH:
        return None
    record = get_stage(stage)
    keys = []
    if not init:  # recognizers not taken from unimodal checkpoints
        if any(get_modality(name).visual for name in m.modalities) and not m.resnet.pretrained:
            keys.append("model.resnet.pretrained (a torchvision resnet50 ImageNet file, e.g. resnet50-0676ba61.pth)")
        if "audio" in m.modalities and not m.audio.pretrained:
            keys.append("model.audio.pretrained (a torchvision mobilenet_v2 ImageNet file, "
                        "e.g. mobilenet_v2-b0353104.pth)")
    if record.uses_policy and not m.policy.pretrained:
        keys.append("model.policy.pretrained (the same torchvision mobilenet_v2 file)")
    if not keys:
        return None
    return ("this run starts from random weights where the paper starts from ImageNet: set "
            + "; ".join(keys) + " with --set KEY=PATH (docs/cli.md, presets). From random weights expect far "
            "lower accuracy than the paper's, and longer training")


def build_run(cfg: Config, stage: str, data: Path, out: Path, info: DistInfo, console: Console,
              init: list[Path]) -> Run:
    if get_stage(stage).one_modality and len(cfg.model.modalities) != 1:
        raise ValueError(f"the {stage} stage trains one modality, got {list(cfg.model.modalities)} "
                         "(give --modalities NAME)")
    store = Store.open(data)
    if len(store.classes) < 2:
        raise StoreError(f"{data}: {len(store.classes)} class(es) in its classes.txt; training needs labelled videos "
                         "of at least 2 classes (prepare a list with labels, or --classes FILE)")
    if len(store.classes) != cfg.model.num_classes:  # the config's count is the preset's: the store decides
        if info.is_main:
            console.print(f"model.num_classes: {len(store.classes)}, the classes of {data} (the config says "
                          f"{cfg.model.num_classes})")
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=len(store.classes)))
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    for path in init:
        payload = load_checkpoint(path)
        have = [m for m in checkpoint_config(payload, path).model.modalities if m in cfg.model.modalities]
        if not have:
            raise CheckpointError(f"{path}: none of its modalities are in this model ({list(cfg.model.modalities)})")
        for name in have:
            load_recognizer(model, name, payload, path)
    model = channels_last(sync_batch_norm(model, info).to(info.device), info.device)
    sampling = sampling_config(cfg)
    train_set = SegmentDataset(store, "train", cfg.model.modalities, train=True, sampling=sampling,
                               seed=cfg.train.seed)
    val_set = SegmentDataset(store, cfg.data.val_split, cfg.model.modalities, train=False, sampling=sampling)
    run = Run(cfg, stage, out, info, model, train_set, val_set, store.multi_label, console, classes=store.classes,
              amp=amp_for(cfg.train.precision, info.device))
    _warn_small_training_set(run)
    if cfg.data.val_split == HOLDOUT and info.is_main:
        console.print(f"model selection on {len(val_set)} videos held out of the training split "
                      f"(data.val_split: {HOLDOUT}, seed {cfg.data.holdout_seed}); training on the other "
                      f"{len(train_set)}")
    warning = random_start_warning(cfg, stage, init)
    if warning and info.is_main:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for note in (train_set.silent_note(), store.size_note(cfg.data.test_short_side), store.stale_note()):
        if note and info.is_main:
            console.print(f"[yellow]warning:[/yellow] {escape(note)}")
    if run.record.holds_out:
        _split_for_blending(run)
    return run


def _split_for_blending(run: Run) -> None:
    """Hold out part of the training split for gradient blending's estimates (see `adamml.train.blending`)."""
    cfg = run.cfg
    labels = [(row.get("label_ids") or [-1])[0] for row in run.train_set.rows]
    train_part, held_out = holdout_split(labels, cfg.train.blend.holdout, cfg.train.seed)
    probe = [train_part[i] for i in np.random.default_rng([cfg.train.seed, 7753]).permutation(len(train_part))]
    probe = sorted(probe[: len(held_out)])
    measured = SegmentDataset(run.train_set.store, "train", cfg.model.modalities, train=False,
                              sampling=sampling_config(cfg))
    run.train_part = train_part
    run.blend_sets = (Subset(measured, probe), Subset(measured, held_out))
    if run.info.is_main:
        run.console.print(f"gradient blending: {len(train_part)} training videos, {len(held_out)} held out to "
                          f"estimate the loss weights")


def training_data(run: Run) -> Dataset:
    """What the stage trains on: the training split (less gradient blending's held-out part)."""
    return run.train_set if run.train_part is None else Subset(run.train_set, run.train_part)
