"""The driver of the training stages (the table is `adamml.stages`): a run's model, data and optimisers, one epoch
of each phase, validation and model selection, checkpoints and logs. Model selection uses the validation split
only. `last.pt` is written after every epoch with everything needed to resume; `best.pt` holds the best
validation model. Recognition SGD, policy Adam; every learning-rate schedule is attached to the optimiser that
is actually stepped, and stepped once per epoch of its phase.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from torch.utils.data import Dataset, Subset

from adamml.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    load_model_state,
    load_recognizer,
    model_payload,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from adamml.config import BASELINE_STAGES, LATE_FUSION_KINDS, STAGES, Config, dump_config
from adamml.data.dataset import SegmentDataset, Store, sampling_config
from adamml.data.loader import make_loader
from adamml.decisions import random_rates, stage_decisions
from adamml.distributed import DistInfo, barrier, sync_batch_norm, wrap
from adamml.flops import always_on_gmacs, measure_costs, video_gmacs
from adamml.jsonfile import write_json
from adamml.models.adamml import AdaMML
from adamml.models.baselines import BLEND_FUSED
from adamml.models.build import Model, build_model
from adamml.precision import FP32, Amp, amp_for, channels_last
from adamml.predictions import predict, summarize
from adamml.stages import Phase, Stage, get_stage
from adamml.train.blending import BlendState, HeadLosses, holdout_split
from adamml.train.logs import RunLog
from adamml.train.loop import (
    EpochStats,
    MemoryDataset,
    PolicyProbe,
    TrainingDiverged,
    distillation_teachers,
    mean_head_losses,
    pretrain_policy_epoch,
    recognizer_logits,
    recompute_batch_norm,
    train_epoch,
)

# the policy's inputs of an alternating epoch are kept in memory for its passes up to this size (the tiny preset's
# take about 130 MB; the paper's, some 38 MB a video, are read again each pass)
POLICY_INPUTS_BYTES = 2 << 30
# a run whose best validation top-1 is within this many points of always answering the most frequent class learnt
# nothing (reported as such); and the fewest training steps per epoch a preset's schedule is meant for
CHANCE_MARGIN = 5.0
MIN_STEPS_PER_EPOCH = 10


def stage_config(cfg: Config, stage: str) -> Config:
    """The configuration `stage` trains: a baseline stage sets `model.fusion.kind` to its own name; the other
    stages use AdaMML's late fusion (weighted or average)."""
    kind = cfg.model.fusion.kind
    if stage in BASELINE_STAGES:
        if kind != stage and kind not in LATE_FUSION_KINDS:
            raise ValueError(f"--stage {stage} trains the {stage!r} fusion, but the configuration sets "
                             f"model.fusion.kind={kind!r} (drop it, or train --stage {kind})")
        fusion = dataclasses.replace(cfg.model.fusion, kind=stage)
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, fusion=fusion))
    if stage in STAGES and kind not in LATE_FUSION_KINDS:
        raise ValueError(f"the {stage} stage uses AdaMML's late fusion (model.fusion.kind weighted or average), "
                         f"the configuration sets {kind!r}: train that baseline with --stage {kind}")
    return cfg


# ---------------------------------------------------------------------------------------------- the driver


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
    steps = len(run.train_set) // max(1, run.cfg.train.batch_size)
    if steps < MIN_STEPS_PER_EPOCH and run.info.is_main:
        run.console.print(f"[yellow]warning:[/yellow] {len(run.train_set)} training videos make {steps} steps of "
                          f"{run.cfg.train.batch_size} per epoch (fewer than {MIN_STEPS_PER_EPOCH}): the "
                          "preset's schedule was set for more data and may learn nothing. Add videos, lower "
                          "train.batch_size, or raise the epochs of each phase.")


def build_run(cfg: Config, stage: str, data: Path, out: Path, info: DistInfo, console: Console,
              init: list[Path]) -> Run:
    if stage == "unimodal" and len(cfg.model.modalities) != 1:
        raise ValueError(f"the unimodal stage trains one modality, got {list(cfg.model.modalities)} "
                         "(give --modalities NAME)")
    store = Store.open(data)
    if len(store.classes) != cfg.model.num_classes:
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


def _training_data(run: Run) -> Dataset:
    """What the stage trains on: the training split (less gradient blending's held-out part)."""
    return run.train_set if run.train_part is None else Subset(run.train_set, run.train_part)


def _estimate_blend(run: Run, state: PhaseState, epoch: int) -> None:
    """Measure the heads' losses and update gradient blending's weights (at the start of `epoch`)."""
    cfg, info = run.cfg, run.info
    losses = []
    for data in run.blend_sets:
        loader = make_loader(data, cfg.train.eval_batch_size, info, 0, train=False, workers=cfg.data.workers)
        losses.append(mean_head_losses(run.model, loader, info, run.multi_label, run.amp))
    entry = state.blend.update(HeadLosses(*losses), epoch, cfg.train.blend)
    if info.is_main:
        weights = " ".join(f"{h} {w:.3f}" for h, w in zip(state.blend.heads, entry["weights"]))
        note = "" if "gain" in entry else " (initial)"
        note = " (no head generalised: weights kept)" if entry.get("kept_previous") else note
        run.console.print(f"  gradient blending at epoch {epoch + 1}: weights {weights}{note}")


def _set_trainable(model: Model, recognizers: bool, policy: bool, extractors: bool = True) -> None:
    """Freeze or unfreeze the two sides, modes included: a frozen side neither learns nor moves its batch-norm
    statistics (frozen recognizers also drop dropout); a frozen policy keeps sampling its Gumbel decisions.
    `extractors=False` keeps the policy's feature extractors frozen while the rest of a trained policy learns.
    A fusion baseline has no policy: its recognition side is everything."""
    model.train()
    for p in _recognition_params(model):
        p.requires_grad_(recognizers)
    if not recognizers:
        model.recognizers.eval()
    if not isinstance(model, AdaMML):
        return
    for p in model.policy.parameters():
        p.requires_grad_(policy)
    frozen = model.policy if not policy else None if extractors else model.policy.extractors
    if frozen is not None:
        for p in frozen.parameters():
            p.requires_grad_(False)
        for module in frozen.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def _trained_policy_params(model: AdaMML, cfg: Config) -> list[torch.nn.Parameter]:
    """What the alternating phase's policy optimiser trains: the whole policy, or all but its feature extractors
    (`train.freeze_policy_extractors`)."""
    if not cfg.train.freeze_policy_extractors:
        return list(model.policy.parameters())
    kept = {id(p) for p in model.policy.extractors.parameters()}
    return [p for p in model.policy.parameters() if id(p) not in kept]


def _recognition_params(model: Model) -> list[torch.nn.Parameter]:
    return list(model.recognizers.parameters()) + list(model.fusion.parameters())


def _sgd(params, opt) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)


def _schedule(optimizer: torch.optim.Optimizer, opt) -> torch.optim.lr_scheduler.MultiStepLR:
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(opt.milestones), gamma=opt.lr_decay)


class PhaseState:
    """The optimisers and schedulers of one phase, created explicitly for it."""

    def __init__(self, run: Run, phase: Phase) -> None:
        cfg, model = run.cfg.train, run.model
        self.phase = phase
        self.rec_opt: torch.optim.Optimizer | None = None
        self.rec_sched = None
        self.pol_opt: torch.optim.Optimizer | None = None
        self.pol_sched = None
        self.probe: PolicyProbe | None = None
        self.blend: BlendState | None = None
        self.scaler = run.amp.scaler()  # fp16's loss scale, carried from epoch to epoch (a no-op otherwise)
        if phase.spec.pretrains_policy:
            outputs = 1 if cfg.policy_pretrain_target == "usefulness" else run.cfg.model.num_classes
            self.probe = PolicyProbe(model.policy, outputs).to(run.info.device)
            self.pol_opt = torch.optim.Adam(self.probe.parameters(), lr=cfg.policy_pretrain.lr,
                                            weight_decay=cfg.policy_pretrain.weight_decay)
            self.pol_sched = _schedule(self.pol_opt, cfg.policy_pretrain)
            return
        settings = getattr(cfg, phase.spec.section)
        self.rec_opt = _sgd(_recognition_params(model), settings)
        self.rec_sched = _schedule(self.rec_opt, settings)
        if phase.spec.alternates:
            self.pol_opt = torch.optim.Adam(_trained_policy_params(model, run.cfg), lr=cfg.policy_lr,
                                            weight_decay=cfg.policy_weight_decay)
            self.pol_sched = _schedule(self.pol_opt, cfg.alternating)
        if run.record.holds_out:
            self.blend = BlendState(tuple(model.modalities) + (BLEND_FUSED,))

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.rec_opt is not None:
            state.update(rec_opt=self.rec_opt.state_dict(), rec_sched=self.rec_sched.state_dict())
        if self.pol_opt is not None:
            state.update(pol_opt=self.pol_opt.state_dict(), pol_sched=self.pol_sched.state_dict())
        if self.probe is not None:
            state["probe_heads"] = self.probe.heads.state_dict()
        if self.blend is not None:
            state["blend"] = self.blend.state_dict()
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.rec_opt is not None:
            self.rec_opt.load_state_dict(state["rec_opt"])
            self.rec_sched.load_state_dict(state["rec_sched"])
        if self.pol_opt is not None:
            self.pol_opt.load_state_dict(state["pol_opt"])
            self.pol_sched.load_state_dict(state["pol_sched"])
        if self.probe is not None:
            self.probe.heads.load_state_dict(state["probe_heads"])
        if self.blend is not None:
            self.blend.load_state_dict(state["blend"])
        if self.scaler.is_enabled() and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def step_schedules(self) -> None:
        if self.rec_opt is not None:
            self.rec_sched.step()
        if self.pol_sched is not None:
            self.pol_sched.step()


def _efficiency(cfg: Config) -> tuple[tuple[float, ...], float]:
    weights = dict(cfg.train.efficiency_weights)
    missing = [m for m in cfg.model.modalities if m not in weights]
    if missing:
        raise ValueError(f"train.efficiency_weights has no weight for {missing} (set e.g. "
                         f"--set train.efficiency_weights.{missing[0]}=1.0)")
    return tuple(float(weights[m]) for m in cfg.model.modalities), cfg.train.gamma


def train(cfg: Config, stage: str, data: Path, out: Path, info: DistInfo | None = None, init: list[Path] = (),
          resume: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Train `stage` on the store `data` into `out` (best.pt, last.pt, config.yaml, log.csv); returns a summary.
    `info` is this process's place in a distributed run (default: one process)."""
    info = info or DistInfo()
    console = console or Console(stderr=True, soft_wrap=True)
    out = Path(out)
    cfg = stage_config(cfg, stage)
    phases = get_stage(stage).phases_for(cfg.train)
    last = out / "last.pt"
    if resume and not last.exists():
        console.print(f"--resume: {last} not found, starting from the beginning")
        resume = False
    if not resume and last.exists():
        raise CheckpointError(f"{out} already holds a run (last.pt); use --resume to continue it or another --out")
    if get_stage(stage).needs_init and not init and not resume:
        console.print("[yellow]warning:[/yellow] no --init checkpoints: the recognizers start from scratch "
                      "(the paper initialises them from unimodal models)")
    payload = None
    if resume:
        payload = load_checkpoint(last)
        if payload.get("stage") != stage:
            raise CheckpointError(f"{last} is a {payload.get('stage')!r} run, not {stage!r}")
        stored = checkpoint_config(payload, last)
        given = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=stored.model.num_classes))
        if stored != given:
            console.print("[yellow]warning:[/yellow] resuming with the configuration stored in the run, "
                          "not the one given on the command line")
        cfg = stored
    run = build_run(cfg, stage, data, out, info, console, [] if resume else list(init))
    cfg = run.cfg
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
    start_phase, start_epoch = 0, 0
    saved_phase_state = None
    if payload is not None:
        load_model_state(run.model, payload["model"], last)
        start_phase, start_epoch = payload["phase_index"], payload["epoch"] + 1
        saved_phase_state = payload["phase_state"]
        run.best_score = payload["best_score"]
        run.log = RunLog.resumed(payload.get("log_rows", []))
        set_rng_state(payload["rng"])
        console.print(f"resuming {stage} at {phases[start_phase].name} epoch {start_epoch + 1}")
    started = time.perf_counter()
    for index in range(start_phase, len(phases)):
        phase = phases[index]
        if phase.spec.from_best and (out / "best.pt").exists() and not (resume and index == start_phase):
            load_model_state(run.model, load_checkpoint(out / "best.pt")["model"], out / "best.pt")
        state = PhaseState(run, phase)
        first = 0
        if resume and index == start_phase:
            state.load_state_dict(saved_phase_state)
            first = start_epoch
        for epoch in range(first, phase.epochs):
            _run_epoch(run, state, phase, epoch)
            save_checkpoint(last, {**model_payload(run.model, cfg, classes=run.classes), **_progress(run, stage, index, epoch, state)}) \
                if info.is_main else None
            barrier(info)
    run.log.close()
    summary = {"stage": stage, "best_val_score": run.best_score, "seconds": time.perf_counter() - started,
               "out": str(out)}
    chance = chance_score(run.val_set, run.multi_label)
    if chance is not None and np.isfinite(run.best_score) and run.best_score <= chance + CHANCE_MARGIN:
        summary["at_chance"] = True
        if info.is_main:
            console.print(f"[yellow]warning:[/yellow] validation top-1 stayed at chance: best {run.best_score:.1f} % "
                          f"against {chance:.1f} % for always answering the most frequent class. The model learnt "
                          f"nothing usable from {len(run.train_set)} training videos; add videos (the tiny preset "
                          "wants some 20 per class), train longer (e.g. --set train.unimodal.epochs=...), or check the "
                          "labels.")
    if info.is_main and not (out / "best.pt").exists():  # no epoch selected (e.g. only warm-up epochs)
        save_checkpoint(out / "best.pt", {**model_payload(run.model, cfg, classes=run.classes), "stage": stage})
    if info.is_main:  # marks the run as complete
        write_json(out / "summary.json", summary, indent=1)
    return summary


def _progress(run: Run, stage: str, index: int, epoch: int, state: PhaseState) -> dict[str, Any]:
    return {"stage": stage, "phase_index": index, "epoch": epoch, "phase_state": state.state_dict(),
            "best_score": run.best_score, "rng": rng_state(), "log_rows": run.log.rows,
            "random_rates": _random_rates(run)}


def _random_rates(run: Run) -> list[float] | None:
    """The random-policy baseline's rates, saved in its checkpoints."""
    return list(random_rates(run.cfg)) if run.record.decisions == "random" else None


def _run_epoch(run: Run, state: PhaseState, phase: Phase, epoch: int) -> None:
    cfg, model, info = run.cfg, run.model, run.info
    t = cfg.train
    if phase.spec.pretrains_policy:
        _pretrain_policy_epoch(run, state, phase, epoch)
        return
    parts = phase.spec.parts
    run.train_set.set_epoch(_global_epoch(run, phase, epoch))
    if state.blend is not None and epoch % t.blend.interval == 0:
        _estimate_blend(run, state, epoch)  # new loss weights for the heads (eval mode; the parts set modes)
    for part, rec, pol in parts:
        _set_trainable(model, rec, pol, extractors=not t.freeze_policy_extractors)
        if part == "policy" and t.policy_passes > 1:
            _policy_passes(run, state, phase, epoch)
            continue
        forward = wrap(model, info)
        optimizers = [state.rec_opt] if rec else [state.pol_opt]
        decisions_fn = stage_decisions(model, run.stage, cfg, training=True)
        efficiency = _efficiency(cfg) if part == "policy" else None
        head_weights = list(state.blend.weights) if state.blend is not None else None
        loader = make_loader(_training_data(run), t.batch_size, info,
                             t.seed * 1000 + _global_epoch(run, phase, epoch), train=True, workers=cfg.data.workers)
        label = f"{phase.name} {epoch + 1}/{phase.epochs}" + (f" {part}" if len(parts) > 1 else "")
        stats = _with_progress(run, label, len(loader), lambda on_step: train_epoch(
            model, forward, loader, optimizers, info, decisions_fn=decisions_fn, efficiency=efficiency,
            multi_label=run.multi_label, clip_grad_norm=t.clip_grad_norm, head_weights=head_weights,
            on_step=on_step, amp=run.amp, scaler=state.scaler))
        _log(run, phase, epoch, part, stats, state)
    state.step_schedules()
    if phase.spec.alternates:
        model.policy.set_temperature(float(model.policy.temperature) * t.temperature_decay)
    _set_trainable(model, True, True)
    if phase.spec.alternates:
        _precise_policy_bn(run, phase, epoch)
    if not phase.spec.validates:  # warm-up: the policy is still random, nothing to select yet
        if info.is_main:
            _write_logs(run)
        return
    val = validate(run)
    run.log.update_last({f"val_{k}": v for k, v in val.items() if k in ("top1", "top5", "mAP")})
    run.log.update_last({f"val_sel_{m}": r for m, r in val["selection_rate"].items()})
    eligible = not run.record.uses_policy or val["gflops_fraction"] <= cfg.train.select_max_gflops
    improved = eligible and val["score"] > run.best_score
    if improved:
        run.best_score = val["score"]
        if info.is_main:
            save_checkpoint(run.out / "best.pt", {**model_payload(model, cfg, classes=run.classes), "stage": run.stage,
                                                  "val": val, "phase": phase.name, "epoch": epoch,
                                                  "random_rates": _random_rates(run)})
    if info.is_main:
        sel = " ".join(f"{m} {100 * r:.0f}%" for m, r in val["selection_rate"].items())
        run.console.print(f"  val: top1 {val['top1']:.2f}  mAP {val['mAP']:.2f}  selection {sel}  "
                          f"GFLOPs {100 * val['gflops_fraction']:.0f} % of always-on"
                          + ("  (best)" if improved else "" if eligible else "  (over the GFLOPs budget)"))
        _write_logs(run)


def _policy_passes(run: Run, state: PhaseState, phase: Phase, epoch: int) -> None:
    """The policy part of an alternating epoch as `train.policy_passes` passes over the epoch's samples: the frozen
    recognizers' logits on every cell are computed once (with the training split's items of this epoch: same
    segments and crops), with the policy's inputs kept in memory when they fit (`POLICY_INPUTS_BYTES`; else each
    pass reads them again, the same samples); then each pass trains the policy on them in a new batch order."""
    cfg, model, info = run.cfg, run.model, run.info
    t = cfg.train
    global_epoch = _global_epoch(run, phase, epoch)
    data = _training_data(run)
    every = make_loader(data, t.batch_size, info, 0, train=False, workers=cfg.data.workers)
    label = f"{phase.name} {epoch + 1}/{phase.epochs} recognizer logits"
    cached = _with_progress(run, label, len(every), lambda on_step: recognizer_logits(
        model, every, info, len(data), POLICY_INPUTS_BYTES, on_step=lambda _step: on_step(None), amp=run.amp),
        show=False)
    if cached.inputs is not None:
        policy_data, workers = MemoryDataset(cached.inputs), 0
    else:
        policy_data, workers = _policy_set(run), cfg.data.workers
        policy_data.set_epoch(global_epoch)
    forward = wrap(model, info)
    efficiency = _efficiency(cfg)
    loader = make_loader(policy_data, t.batch_size, info, t.seed * 1000 + global_epoch, train=True, workers=workers)
    for index in range(t.policy_passes):
        loader.batch_sampler.set_epoch(index)
        label = f"{phase.name} {epoch + 1}/{phase.epochs} policy {index + 1}/{t.policy_passes}"
        stats = _with_progress(run, label, len(loader), lambda on_step: train_epoch(
            model, forward, loader, [state.pol_opt], info, decisions_fn=None, efficiency=efficiency,
            multi_label=run.multi_label, clip_grad_norm=t.clip_grad_norm, recognized=cached.recognized,
            on_step=on_step, amp=run.amp, scaler=state.scaler))
        _log(run, phase, epoch, "policy", stats, state)


def _policy_set(run: Run) -> SegmentDataset:
    """The training split with the policy's inputs only (no optical flow is read)."""
    if run.policy_set is None:
        run.policy_set = SegmentDataset(run.train_set.store, "train", run.model.policy.inputs, train=True,
                                        sampling=sampling_config(run.cfg), seed=run.cfg.train.seed)
    return run.policy_set


def _precise_policy_bn(run: Run, phase: Phase, epoch: int) -> None:
    """Recompute the policy's batch-norm statistics with its current weights (see train.precise_bn_batches)."""
    cfg, model = run.cfg, run.model
    data = _policy_set(run)
    data.set_epoch(_global_epoch(run, phase, epoch))
    loader = make_loader(data, cfg.train.batch_size, run.info, cfg.train.seed * 1000 + 7919 + _global_epoch(run, phase, epoch),
                         train=True, workers=cfg.data.workers)
    recompute_batch_norm(model.policy, lambda batch: model.policy(model.policy_inputs(batch)), loader, run.info,
                         cfg.train.precise_bn_batches)


def _pretrain_policy_epoch(run: Run, state: PhaseState, phase: Phase, epoch: int) -> None:
    """One epoch of the policy extractors' supervised pre-training (`train.policy_pretrain_target`: on the labels,
    only the policy inputs are loaded; distilling the recognizers, their inputs too)."""
    cfg, model, info = run.cfg, run.model, run.info
    distill = cfg.train.policy_pretrain_target in ("recognizers", "usefulness")
    data = run.train_set if distill else _policy_set(run)
    data.set_epoch(_global_epoch(run, phase, epoch))
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    state.probe.train()
    for p in state.probe.parameters():
        p.requires_grad_(True)
    forward = wrap(state.probe, info)
    loader = make_loader(data, cfg.train.batch_size, info,
                         cfg.train.seed * 1000 + _global_epoch(run, phase, epoch), train=True, workers=cfg.data.workers)
    label = f"policy pre-training {epoch + 1}/{phase.epochs}"

    def body(on_step):
        return pretrain_policy_epoch(model, forward, loader, state.pol_opt, info, run.multi_label,
                                     cfg.train.clip_grad_norm, on_step,
                                     teachers=distillation_teachers(model) if distill else None,
                                     usefulness=cfg.train.policy_pretrain_target == "usefulness", amp=run.amp,
                                     scaler=state.scaler)

    stats = _with_progress(run, label, len(loader), body)
    _log(run, phase, epoch, "policy", stats, state)
    state.step_schedules()
    _set_trainable(model, True, True)
    _precise_policy_bn(run, phase, epoch)
    if info.is_main:
        _write_logs(run)


def _global_epoch(run: Run, phase: Phase, epoch: int) -> int:
    offset = 0
    for p in run.record.phases_for(run.cfg.train):
        if p.name == phase.name:
            return offset + epoch
        offset += p.epochs
    return epoch


def validate(run: Run) -> dict[str, Any]:
    loader = make_loader(run.val_set, run.cfg.train.eval_batch_size, run.info, 0, train=False,
                         workers=run.cfg.data.workers)
    pred = predict(run.model, loader, run.info, stage_decisions(run.model, run.stage, run.cfg), amp=run.amp)
    if not np.isfinite(pred.logits).all():  # argmax of NaN is class 0: never a score, never a best.pt
        raise TrainingDiverged("validation: the model produces NaN or infinite logits; training stopped and this "
                               "state was not saved. Lower the learning rate or check the inputs")
    out = summarize(pred, run.model.modalities, run.multi_label)
    costs = measure_costs(run.cfg.model)
    gflops = video_gmacs(pred.decisions, costs, include_policy=run.record.uses_policy)
    out["gflops_fraction"] = float(gflops.mean()) / always_on_gmacs(costs, pred.decisions.shape[1])
    return out


def _with_progress(run: Run, label: str, total: int, body, show: bool = True):
    """Run `body(on_step)` under a progress bar; `on_step(stats)` advances it (with `show`, printing the epoch's
    running loss, accuracy and selection rates from `stats`)."""
    progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=run.console,
                        disable=not run.info.is_main, transient=False)
    with progress:
        task = progress.add_task(label, total=total, status="")
        temperature = _temperature(run.model)
        shown = f" T {temperature:.2f}" if temperature is not None else ""

        def on_step(stats: EpochStats | None) -> None:
            if not show or stats is None:
                progress.update(task, advance=1)
                return
            sel = " ".join(f"{m}:{100 * r:.0f}%" for m, r in stats.selection.items())
            progress.update(task, advance=1, status=f"loss {stats.loss:.3f} acc {stats.top1:.1f} {sel}{shown}")

        return body(on_step)


def _temperature(model: Model) -> float | None:
    """The policy's Gumbel temperature (None for a fusion baseline: no policy)."""
    return float(model.policy.temperature) if isinstance(model, AdaMML) else None


def _log(run: Run, phase: Phase, epoch: int, part: str, stats: EpochStats, state: PhaseState) -> None:
    row = {"phase": phase.name, "epoch": epoch + 1, "part": part,
           "lr": state.rec_opt.param_groups[0]["lr"] if part != "policy" else state.pol_opt.param_groups[0]["lr"],
           "loss": stats.loss, "ce": stats.ce, "efficiency": stats.efficiency, "train_top1": stats.top1}
    temperature = _temperature(run.model)
    if temperature is not None:
        row["temperature"] = temperature
    row.update({"seconds": stats.seconds, **{f"train_sel_{m}": r for m, r in stats.selection.items()}})
    if state.blend is not None:
        row.update({f"blend_weight_{h}": w for h, w in zip(state.blend.heads, state.blend.weights)})
    run.log.add(row)


def _write_logs(run: Run) -> None:
    run.log.write(run.out)
