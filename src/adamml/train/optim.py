"""The optimisers of a training phase, and what each phase trains: recognition SGD, policy Adam, each with the
learning-rate schedule of its phase; which side is frozen (modes included); the efficiency loss's weights."""

from __future__ import annotations

from typing import Any

import torch

from adamml.config import Config
from adamml.models.adamml import AdaMML
from adamml.models.baselines import BLEND_FUSED
from adamml.models.build import Model
from adamml.stages import Phase
from adamml.train.blending import BlendState
from adamml.train.loop import PolicyProbe
from adamml.train.run import Run


def set_trainable(model: Model, recognizers: bool, policy: bool, extractors: bool = True) -> None:
    """Freeze or unfreeze the two sides, modes included: a frozen side neither learns nor moves its batch-norm
    statistics (frozen recognizers also drop dropout); a frozen policy keeps sampling its Gumbel decisions.
    `extractors=False` keeps the policy's feature extractors frozen while the rest of a trained policy learns.
    A fusion baseline has no policy: its recognition side is everything."""
    model.train()
    for p in recognition_params(model):
        p.requires_grad_(recognizers)
    if not recognizers:
        model.recognizers.eval()
    if not isinstance(model, AdaMML):
        return
    for p in model.policy.parameters():
        p.requires_grad_(policy)
    if model.fusion.skipped is not None:  # what a skipped modality says belongs to the side that skips it
        model.fusion.skipped.requires_grad_(policy)
    frozen = model.policy if not policy else None if extractors else model.policy.extractors
    if frozen is not None:
        for p in frozen.parameters():
            p.requires_grad_(False)
        for module in frozen.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def trained_policy_params(model: AdaMML, cfg: Config) -> list[torch.nn.Parameter]:
    """What the alternating phase's policy optimiser trains: the whole policy, or all but its feature extractors
    (`train.freeze_policy_extractors`), and the fusion's learned skipped logits (`model.fusion.skipped_logits`)."""
    skipped = [model.fusion.skipped] if model.fusion.skipped is not None else []
    if not cfg.train.freeze_policy_extractors:
        return list(model.policy.parameters()) + skipped
    kept = {id(p) for p in model.policy.extractors.parameters()}
    return [p for p in model.policy.parameters() if id(p) not in kept] + skipped


def recognition_params(model: Model) -> list[torch.nn.Parameter]:
    """The recognizers and the fusion's weights (not its learned skipped logits: the policy side trains those, with
    Adam, so that they keep up with the recognizers' own biases; see adamml.models.fusion)."""
    skipped = getattr(model.fusion, "skipped", None)
    return list(model.recognizers.parameters()) + [p for p in model.fusion.parameters() if p is not skipped]


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
        self.rec_opt = _sgd(recognition_params(model), settings)
        self.rec_sched = _schedule(self.rec_opt, settings)
        if phase.spec.alternates:
            self.pol_opt = torch.optim.Adam(trained_policy_params(model, run.cfg), lr=cfg.policy_lr,
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


def efficiency_terms(cfg: Config) -> tuple[tuple[float, ...], float]:
    weights = dict(cfg.train.efficiency_weights)
    missing = [m for m in cfg.model.modalities if m not in weights]
    if missing:
        raise ValueError(f"train.efficiency_weights has no weight for {missing} (set e.g. "
                         f"--set train.efficiency_weights.{missing[0]}=1.0)")
    return tuple(float(weights[m]) for m in cfg.model.modalities), cfg.train.gamma
