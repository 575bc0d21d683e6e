"""The driver of the training stages (the table is `adamml.stages`; a run's model and data are set up in
`adamml.train.run`, each phase's optimisers in `adamml.train.optim`): one epoch of each phase, validation and model
selection, checkpoints and logs. Model selection uses the validation split
only. `last.pt` is written after every epoch with everything needed to resume; `best.pt` holds the best
validation model. Recognition SGD, policy Adam; every learning-rate schedule is attached to the optimiser that
is actually stepped, and stepped once per epoch of its phase.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from adamml.config import Config, dump_config
from adamml.data.dataset import SegmentDataset, sampling_config
from adamml.inference.calibration import calibrate_dataset
from adamml.inference.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    load_model_state,
    model_payload,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from adamml.inference.decisions import random_rates, stage_decisions
from adamml.inference.gflops import always_on_gmacs, measure_costs, video_gmacs
from adamml.inference.predictions import Metrics, predict, summarize
from adamml.models.adamml import AdaMML
from adamml.models.build import Model
from adamml.runtime.distributed import DistInfo, barrier, wrap
from adamml.runtime.jsonfile import write_json
from adamml.stages import POLICY_PART, Part, Phase, get_stage
from adamml.train.blending import HeadLosses
from adamml.train.logs import RunLog
from adamml.train.loop import (
    EpochStats,
    MemoryDataset,
    TrainingDiverged,
    distillation_teachers,
    mean_head_losses,
    pretrain_policy_epoch,
    recognizer_logits,
    recompute_batch_norm,
    train_epoch,
)
from adamml.train.optim import PhaseState, efficiency_terms, set_trainable
from adamml.train.run import Run, build_run, chance_score, stage_config, training_data

# the policy's inputs of an alternating epoch are kept in memory for its passes up to this size (the tiny preset's
# take about 130 MB; the paper's, some 38 MB a video, are read again each pass)
POLICY_INPUTS_BYTES = 2 << 30
# a run whose best validation top-1 is within this many points of always answering the most frequent class learnt
# nothing (reported as such)
CHANCE_MARGIN = 5.0


# ---------------------------------------------------------------------------------------------- the driver


def _estimate_blend(run: Run, state: PhaseState, epoch: int) -> None:
    """Measure the heads' losses and update gradient blending's weights (at the start of `epoch`)."""
    cfg, info = run.cfg, run.info
    losses = []
    for data in run.blend_sets:
        loader = run.loader(data, cfg.train.eval_batch_size, 0, train=False)
        losses.append(mean_head_losses(run.model, loader, info, run.multi_label, run.amp))
    entry = state.blend.update(HeadLosses(*losses), epoch, cfg.train.blend)
    if info.is_main:
        weights = " ".join(f"{h} {w:.3f}" for h, w in zip(state.blend.heads, entry["weights"]))
        note = "" if "gain" in entry else " (initial)"
        note = " (no head generalised: weights kept)" if entry.get("kept_previous") else note
        run.console.print(f"  gradient blending at epoch {epoch + 1}: weights {weights}{note}")


@dataclass
class TrainSummary:
    """What a training run did (also its `summary.json`, whose presence marks the run as complete)."""

    stage: str
    best_val_score: float  # the selected epoch's validation top-1 (mAP on multi-label stores), in %
    seconds: float
    out: str
    at_chance: bool = False  # the best validation score is no better than always answering the commonest class
    operating_point: dict[str, float] | None = None  # AdaMML: the threshold chosen on validation at the end

    def to_json(self) -> dict[str, Any]:
        out = {"stage": self.stage, "best_val_score": self.best_val_score, "seconds": self.seconds, "out": self.out}
        if self.at_chance:
            out["at_chance"] = True
        if self.operating_point is not None:
            out["operating_point"] = self.operating_point
        return out


def train(cfg: Config, stage: str, data: Path, out: Path, info: DistInfo | None = None, init: list[Path] = (),
          resume: bool = False, console: Console | None = None) -> TrainSummary:
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
    try:
        return _train_run(run, phases, payload, resume)
    finally:
        run.loaders.close()  # the loaders' workers, kept from epoch to epoch


def _train_run(run: Run, phases: list[Phase], payload: dict[str, Any] | None, resume: bool) -> TrainSummary:
    """The phases of `train` on the run built (resumed from `payload`, the run's last.pt, when given)."""
    cfg, stage, out, info, console = run.cfg, run.stage, run.out, run.info, run.console
    last = out / "last.pt"
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
            if info.is_main:
                save_checkpoint(last, {**model_payload(run.model, cfg, classes=run.classes, store=run.store_settings),
                                       **_progress(run, stage, index, epoch, state)})
            barrier(info)
    run.log.close()
    summary = TrainSummary(stage, run.best_score, time.perf_counter() - started, str(out))
    chance = chance_score(run.val_set, run.multi_label)
    if chance is not None and np.isfinite(run.best_score) and run.best_score <= chance + CHANCE_MARGIN:
        summary.at_chance = True
        if info.is_main:
            console.print(f"[yellow]warning:[/yellow] validation top-1 stayed at chance: best {run.best_score:.1f} % "
                          f"against {chance:.1f} % for always answering the most frequent class. The model learnt "
                          f"nothing usable from {len(run.train_set)} training videos; add videos (the tiny preset "
                          "wants some 20 per class), train longer (e.g. --set train.unimodal.epochs=...), or check the "
                          "labels.")
    if info.is_main and not (out / "best.pt").exists():  # no epoch selected (e.g. only warm-up epochs)
        save_checkpoint(out / "best.pt", {**model_payload(run.model, cfg, classes=run.classes, store=run.store_settings), "stage": stage})
    if run.record.uses_policy and cfg.train.operating_point.target != "fixed":
        barrier(info)  # best.pt is written
        if len(run.val_set):
            point = calibrate_dataset(out / "best.pt", run.val_set, run.multi_label, cfg.data.val_split, info=info,
                                      console=console)
            summary.operating_point = {"threshold": point.threshold, "val_score": point.score,
                                       "gflops_fraction": point.gflops_fraction}
        elif info.is_main:
            console.print(f"[yellow]warning:[/yellow] no {cfg.data.val_split!r} videos: no operating point chosen; "
                          f"evaluations decide at model.policy.threshold = {cfg.model.policy.threshold:g}")
        barrier(info)
    if info.is_main:  # marks the run as complete
        write_json(out / "summary.json", summary.to_json(), indent=1)
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
    if isinstance(model, AdaMML):
        model.policy.set_noise_scale(max(t.gumbel_noise_decay ** _alternating_epochs_before(run, phase, epoch),
                                         t.gumbel_noise_min))
    if state.blend is not None and epoch % t.blend.interval == 0:
        _estimate_blend(run, state, epoch)  # new loss weights for the heads (eval mode; the parts set modes)
    for part in parts:
        set_trainable(model, part.trains_recognizers, part.trains_policy, extractors=not t.freeze_policy_extractors)
        if part.trains_policy and t.policy_passes > 1:
            _policy_passes(run, state, phase, epoch)
            continue
        forward = wrap(model, info)
        optimizers = [state.rec_opt] if part.trains_recognizers else [state.pol_opt]
        decisions_fn = stage_decisions(model, run.stage, cfg, training=True)
        efficiency = efficiency_terms(cfg) if part.trains_policy else None
        head_weights = list(state.blend.weights) if state.blend is not None else None
        loader = run.loader(training_data(run), t.batch_size, t.seed * 1000 + _global_epoch(run, phase, epoch),
                            train=True)
        label = f"{phase.name} {epoch + 1}/{phase.epochs}" + (f" {part.name}" if len(parts) > 1 else "")
        stats = _with_progress(run, label, len(loader), lambda on_step: train_epoch(
            model, forward, loader, optimizers, info, decisions_fn=decisions_fn, efficiency=efficiency,
            multi_label=run.multi_label, clip_grad_norm=t.clip_grad_norm, head_weights=head_weights,
            on_step=on_step, amp=run.amp, scaler=state.scaler))
        _log(run, phase, epoch, part, stats, state)
    state.step_schedules()
    if phase.spec.alternates:
        model.policy.set_temperature(float(model.policy.temperature) * t.temperature_decay)
    set_trainable(model, True, True)
    if phase.spec.alternates:
        _precise_policy_bn(run, phase, epoch)
    if not phase.spec.validates:  # warm-up: the policy is still random, nothing to select yet
        if info.is_main:
            _write_logs(run)
        return
    val = validate(run)
    run.log.update_last({"val_top1": val.top1, "val_top5": val.top5, "val_mAP": val.mAP})
    run.log.update_last({f"val_sel_{m}": r for m, r in val.selection_rate.items()})
    eligible = not run.record.uses_policy or val.gflops_fraction <= cfg.train.select_max_gflops
    improved = eligible and val.score > run.best_score
    if improved:
        run.best_score = val.score
        if info.is_main:
            save_checkpoint(run.out / "best.pt", {**model_payload(model, cfg, classes=run.classes, store=run.store_settings), "stage": run.stage,
                                                  "val": val.to_json(), "phase": phase.name, "epoch": epoch,
                                                  "random_rates": _random_rates(run)})
    if info.is_main:
        sel = " ".join(f"{m} {100 * r:.0f}%" for m, r in val.selection_rate.items())
        run.console.print(f"  val: top1 {val.top1:.2f}  mAP {val.mAP:.2f}  selection {sel}  "
                          f"GFLOPs {100 * val.gflops_fraction:.0f} % of always-on"
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
    data = training_data(run)
    every = run.loader(data, t.batch_size, 0, train=False)
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
    efficiency = efficiency_terms(cfg)
    loader = run.loader(policy_data, t.batch_size, t.seed * 1000 + global_epoch, train=True, workers=workers)
    for index in range(t.policy_passes):
        loader.batch_sampler.set_epoch(index)
        label = f"{phase.name} {epoch + 1}/{phase.epochs} policy {index + 1}/{t.policy_passes}"
        stats = _with_progress(run, label, len(loader), lambda on_step: train_epoch(
            model, forward, loader, [state.pol_opt], info, decisions_fn=None, efficiency=efficiency,
            multi_label=run.multi_label, clip_grad_norm=t.clip_grad_norm, recognized=cached.recognized,
            on_step=on_step, amp=run.amp, scaler=state.scaler))
        _log(run, phase, epoch, POLICY_PART, stats, state)


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
    seed = cfg.train.seed * 1000 + 7919 + _global_epoch(run, phase, epoch)
    loader = run.loader(data, cfg.train.batch_size, seed, train=True)
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
    loader = run.loader(data, cfg.train.batch_size, cfg.train.seed * 1000 + _global_epoch(run, phase, epoch),
                        train=True)
    label = f"policy pre-training {epoch + 1}/{phase.epochs}"

    def body(on_step):
        return pretrain_policy_epoch(model, forward, loader, state.pol_opt, info, run.multi_label,
                                     cfg.train.clip_grad_norm, on_step,
                                     teachers=distillation_teachers(model) if distill else None,
                                     usefulness=cfg.train.policy_pretrain_target == "usefulness", amp=run.amp,
                                     scaler=state.scaler)

    stats = _with_progress(run, label, len(loader), body)
    _log(run, phase, epoch, POLICY_PART, stats, state)
    state.step_schedules()
    set_trainable(model, True, True)
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


def _alternating_epochs_before(run: Run, phase: Phase, epoch: int) -> int:
    """How many alternating epochs the stage has run before `epoch` of `phase` (the Gumbel noise decays with them;
    computed, not stored, so a resumed run continues with the same scale)."""
    done = 0
    for p in run.record.phases_for(run.cfg.train):
        if p.name == phase.name:
            return done + (epoch if p.spec.alternates else 0)
        done += p.epochs if p.spec.alternates else 0
    return done


def validate(run: Run) -> Metrics:
    loader = run.loader(run.val_set, run.cfg.train.eval_batch_size, 0, train=False)
    pred = predict(run.model, loader, run.info, stage_decisions(run.model, run.stage, run.cfg), amp=run.amp)
    if not np.isfinite(pred.logits).all():  # argmax of NaN is class 0: never a score, never a best.pt
        raise TrainingDiverged("validation: the model produces NaN or infinite logits; training stopped and this "
                               "state was not saved. Lower the learning rate or check the inputs")
    out = summarize(pred, run.model.modalities, run.multi_label)
    costs = measure_costs(run.cfg.model)
    gflops = video_gmacs(pred.decisions, costs, include_policy=run.record.uses_policy)
    out.gflops_fraction = float(gflops.mean()) / always_on_gmacs(costs, pred.decisions.shape[1])
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
        noise = _noise_scale(run.model)
        shown += f" noise {noise:.2f}" if noise is not None and noise != 1.0 else ""

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


def _noise_scale(model: Model) -> float | None:
    """The scale of the policy's Gumbel noise in training (None without a policy)."""
    return model.policy.noise_scale if isinstance(model, AdaMML) else None


def _log(run: Run, phase: Phase, epoch: int, part: Part, stats: EpochStats, state: PhaseState) -> None:
    optimizer = state.pol_opt if part.trains_policy else state.rec_opt
    row = {"phase": phase.name, "epoch": epoch + 1, "part": part.name, "lr": optimizer.param_groups[0]["lr"],
           "loss": stats.loss, "ce": stats.ce, "efficiency": stats.efficiency, "train_top1": stats.top1}
    temperature = _temperature(run.model)
    if temperature is not None:
        row["temperature"] = temperature
        row["gumbel_noise"] = _noise_scale(run.model)
    row.update({"seconds": stats.seconds, **{f"train_sel_{m}": r for m, r in stats.selection.items()}})
    if state.blend is not None:
        row.update({f"blend_weight_{h}": w for h, w in zip(state.blend.heads, state.blend.weights)})
    run.log.add(row)


def _write_logs(run: Run) -> None:
    run.log.write(run.out)
