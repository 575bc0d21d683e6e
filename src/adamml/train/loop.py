"""One epoch of training and one pass of evaluation, written out (no framework hooks).

The AdaMML specifics — which parts are frozen, which decisions are used, whether the efficiency loss is added,
gradient blending's weights of its heads — are arguments set explicitly by the stage driver, `trainer.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from adamml.data.batch import policy_key
from adamml.data.loader import to_device
from adamml.errors import UserError
from adamml.inference.predictions import DecisionFn
from adamml.modalities import get_modality
from adamml.models.adamml import AdaMML
from adamml.models.build import Model
from adamml.runtime.distributed import DistInfo, all_gather_objects, reduce_mean
from adamml.runtime.precision import FP32, Amp
from adamml.train.losses import classification_loss, correctness, efficiency_loss, head_losses


class TrainingDiverged(UserError, RuntimeError):
    """The loss or the model's outputs became NaN or infinite: training stops before anything of that state is
    saved (neither best.pt nor last.pt)."""


def check_finite_loss(loss: Tensor, step: int) -> None:
    """Stop at the first non-finite loss: a step on it would turn the weights into NaN."""
    if not bool(torch.isfinite(loss.detach())):
        raise TrainingDiverged(f"the training loss became {loss.item()} at step {step} of the epoch; training stopped "
                               "and this state was not saved. Lower the learning rate (train.<phase>.lr, "
                               "train.policy_lr) or check the inputs")


@dataclass
class EpochStats:
    loss: float = 0.0
    ce: float = 0.0
    efficiency: float = 0.0
    top1: float = 0.0
    selection: dict[str, float] = field(default_factory=dict)
    videos: int = 0
    seconds: float = 0.0


def train_epoch(
    model: Model,
    forward: torch.nn.Module,
    loader: DataLoader,
    optimizers: list[torch.optim.Optimizer],
    info: DistInfo,
    *,
    decisions_fn: DecisionFn | None,
    efficiency: tuple[tuple[float, ...], float] | None,
    multi_label: bool,
    clip_grad_norm: float = 0.0,
    head_weights: Sequence[float] | None = None,
    recognized: Tensor | None = None,
    on_step: Callable[[EpochStats], None] | None = None,
    amp: Amp = FP32,
    scaler: torch.amp.GradScaler | None = None,
) -> EpochStats:
    """Train for one pass over `loader`; the caller sets the modes (train / frozen parts) beforehand.

    `forward` is the (possibly DDP-wrapped) model; `decisions_fn` gives fixed decisions (always-on, random)
    instead of the policy's; `efficiency` = (lambdas in model order, gamma) adds the efficiency loss;
    `clip_grad_norm` > 0 clips each optimiser's gradient norm; `head_weights` (one per modality, then the fused
    head) makes the loss gradient blending's weighted sum of its heads' losses (`ce` stays the fused head's);
    `recognized` (N, S, M, K), indexed by the batch's `index`, stands in for frozen recognizers (policy epochs);
    `amp` runs the forward passes and losses in its precision, `scaler` (fp16: the phase's gradient scaler, kept
    across epochs) scales the loss.
    """
    scaler = scaler or amp.scaler()
    stats = EpochStats()
    sums = torch.zeros(4 + len(model.modalities), dtype=torch.float64)
    start = time.perf_counter()
    for step, batch in enumerate(loader, 1):
        batch = to_device(batch, info.device)
        decisions = decisions_fn(batch) if decisions_fn is not None else None
        with amp.autocast():
            if recognized is None:
                out = forward(batch, decisions)
            else:
                out = forward(batch, decisions, recognized.index_select(0, batch["index"]))
            ce = classification_loss(out.logits.float(), batch["label"], batch["target"], multi_label)
            loss = ce
            if head_weights is not None:
                heads = head_losses(out.modality_logits.float(), out.logits.float(), batch["label"], batch["target"],
                                    multi_label)
                loss = (heads * torch.as_tensor(list(head_weights), dtype=heads.dtype, device=heads.device)).sum()
            right = correctness(out.logits, batch["label"], batch["target"] if multi_label else None)
            eff = torch.zeros((), device=ce.device)
            if efficiency is not None:
                eff = efficiency_loss(out.decisions.float(), right, efficiency[0], efficiency[1])
                loss = loss + eff
        check_finite_loss(loss, step)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        for optimizer in optimizers:
            if clip_grad_norm > 0:
                scaler.unscale_(optimizer)  # clip the true gradients
                params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
            scaler.step(optimizer)
        scaler.update()
        n = batch["label"].shape[0]
        values = torch.tensor([loss.item(), ce.item(), eff.item(), right.sum().item() / n]
                              + out.decisions.detach().float().mean(dim=(0, 1)).cpu().tolist(), dtype=torch.float64)
        sums += reduce_mean(values, info)
        stats = _stats(sums / step, model.modalities, step * n * info.world, time.perf_counter() - start)
        if on_step is not None:
            on_step(stats)
    return stats


def _stats(mean: Tensor, modalities: tuple[str, ...], videos: int, seconds: float) -> EpochStats:
    values = mean.tolist()
    return EpochStats(loss=values[0], ce=values[1], efficiency=values[2], top1=100.0 * values[3],
                      selection=dict(zip(modalities, values[4:])), videos=videos, seconds=seconds)


@dataclass
class PolicyEpoch:
    """One alternating epoch's training samples as the policy's passes need them."""

    recognized: Tensor  # (N, S, M, K) every frozen recognizer's logits on every cell, by dataset index
    inputs: dict[str, Tensor] | None  # the policy's inputs (N, S, ...) and labels, when kept in memory


class MemoryDataset(Dataset):
    """Items of equal-length tensors kept in memory: item i is ``{key: tensor[i]}``."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = tensors
        self.size = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


@torch.no_grad()
def recognizer_logits(model: AdaMML, loader: DataLoader, info: DistInfo, size: int, keep_inputs_bytes: int = 0,
                      on_step: Callable[[int], None] | None = None, amp: Amp = FP32) -> PolicyEpoch:
    """Every recognizer's logits on every cell of every video of `loader`'s dataset (`size` videos), as the model
    is now (call with the recognizers in eval mode), gathered from all processes. Frozen recognizers give the same
    logits each time a policy pass sees these very samples, so the policy can be trained for several passes at the
    cost of its own network only. The policy's inputs (at its size) and the labels are kept too when they take at
    most `keep_inputs_bytes`, so those passes need not read the videos again."""
    local: list[tuple[np.ndarray, np.ndarray, dict[str, Tensor] | None]] = []
    keep = keep_inputs_bytes > 0
    for step, batch in enumerate(loader, 1):
        batch = to_device(batch, info.device)
        with amp.autocast():
            logits = model.recognize_all(batch)  # (B, S, M, K)
        kept = None
        if keep:
            kept = {policy_key(k): v.cpu() for k, v in model.policy_inputs(batch).items()}
            kept.update({k: batch[k].cpu() for k in ("label", "target", "index")})
            per_video = sum(v[0].numel() * v.element_size() for v in kept.values())
            keep = per_video * size <= keep_inputs_bytes
            kept = kept if keep else None
        local.append((batch["index"].cpu().numpy(), logits.float().cpu().numpy(), kept))
        if on_step is not None:
            on_step(step)
    table: Tensor | None = None
    filled = torch.zeros(size, dtype=torch.bool)
    inputs: dict[str, Tensor] | None = {} if keep else None
    for part in all_gather_objects(local, info):
        for indices, logits, kept in part:
            if table is None:
                table = torch.zeros((size, *logits.shape[1:]))
            rows = torch.from_numpy(indices)
            table[rows] = torch.from_numpy(logits)
            filled[rows] = True
            if inputs is not None and kept is not None:
                for key, value in kept.items():
                    if key not in inputs:
                        inputs[key] = value.new_zeros((size, *value.shape[1:]))
                    inputs[key][rows] = value
            elif inputs is not None:  # another process's inputs did not fit: read them again
                inputs = None
    if table is None or not filled.all():
        raise RuntimeError(f"recognizer logits are missing for {int((~filled).sum())} of {size} videos (the loader "
                           "must cover the whole dataset)")
    return PolicyEpoch(table.to(info.device), inputs)


@torch.no_grad()
def mean_head_losses(model: Model, loader: DataLoader, info: DistInfo, multi_label: bool, amp: Amp = FP32
                     ) -> np.ndarray:
    """Mean loss of every head (each modality, then the fused one) of a gradient-blending model over `loader`,
    in eval mode, over all processes: (M + 1,) float64."""
    model.eval()
    sums = torch.zeros(len(model.modalities) + 2, dtype=torch.float64)  # head losses x videos, then videos
    for batch in loader:
        batch = to_device(batch, info.device)
        with amp.autocast():
            out = model(batch)
        n = batch["label"].shape[0]
        losses = head_losses(out.modality_logits.float(), out.logits.float(), batch["label"], batch["target"],
                             multi_label)
        sums += torch.cat([losses.detach().double().cpu() * n, torch.tensor([float(n)], dtype=torch.float64)])
    sums = reduce_mean(sums, info)  # means of sums: their ratio is the mean over every video
    return (sums[:-1] / sums[-1]).numpy()


class PolicyProbe(torch.nn.Module):
    """The policy's feature extractors with one linear classifier each, for their supervised pre-training on the
    video labels. Each segment is classified on its own (the video's label for every segment), not the average of
    the segments: the policy decides per segment, so its features must tell a segment that shows the class from
    one that does not, and a per-segment loss asks exactly that of them. The heads are discarded afterwards."""

    def __init__(self, policy: torch.nn.Module, outputs: int) -> None:
        super().__init__()
        self.inputs = policy.inputs
        self.extractors = policy.extractors  # shared with the policy: this is what is trained
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(self.extractors[name].num_features, outputs)
                                          for name in self.inputs})

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Policy inputs ``(B, S, ...)`` -> per-segment logits ``(B, S, K)`` of each extractor."""
        out = {}
        for name in self.inputs:
            x = inputs[name]  # (B, S, ...)
            b, s = x.shape[:2]
            features = self.extractors[name](x.flatten(0, 1))  # (B * S, F)
            out[name] = self.heads[name](features).view(b, s, -1)  # (B, S, K)
        return out


def distillation_teachers(model: AdaMML) -> dict[str, str]:
    """For each policy input, the recognizer modality it decides about (its own name when it is one, else the
    first recognizer it stands in for: rgbdiff -> flow)."""
    teachers = {}
    for name in model.policy.inputs:
        teachers[name] = name if name in model.modalities else next(
            m for m in model.modalities if get_modality(m).policy_proxy == name)
    return teachers


def pretrain_policy_epoch(model: AdaMML, forward: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                          info: DistInfo, multi_label: bool, clip_grad_norm: float = 0.0,
                          on_step: Callable[[EpochStats], None] | None = None,
                          teachers: dict[str, str] | None = None, usefulness: bool = False, amp: Amp = FP32,
                          scaler: torch.amp.GradScaler | None = None) -> EpochStats:
    """One pass of the policy extractors' pre-training: each extractor classifies every segment from its own input
    (reported accuracy: of the segment-averaged logits). With `teachers` (policy input -> recognizer modality, the
    batch then holds the recognizers' inputs), the target of each segment is instead the class distribution that
    recognizer (kept as it is, in eval mode) gives that segment: KL divergence, per segment; with `usefulness`
    too, it is how much that segment alone tells that recognizer (the confidence of its class distribution, see
    `confidence`, standardised over the batch's segments): squared error of the probe's one output (reported
    accuracy: share of segments on the right side of the batch's median). `amp` and `scaler` as in `train_epoch`."""
    scaler = scaler or amp.scaler()
    sums = torch.zeros(2, dtype=torch.float64)
    start = time.perf_counter()
    stats = EpochStats()
    for step, batch in enumerate(loader, 1):
        batch = to_device(batch, info.device)
        with amp.autocast():
            logits = forward(model.policy_inputs(batch))
        logits = {name: v.float() for name, v in logits.items()}
        segments = next(iter(logits.values())).shape[1]
        right = None
        if teachers is None:
            label = batch["label"].repeat_interleave(segments)
            target = batch["target"].repeat_interleave(segments, dim=0)
            losses = [classification_loss(v.flatten(0, 1), label, target, multi_label) for v in logits.values()]
        elif usefulness:
            with torch.no_grad():
                with amp.autocast():
                    recognized = {m: model.recognize(m, batch[m].flatten(0, 1)) for m in set(teachers.values())}
                useful = {m: confidence(z.float()) for m, z in recognized.items()}
                useful = {m: (u - u.mean()) / u.std().clamp_min(1e-6) for m, u in useful.items()}
            outputs = {name: v.flatten(0, 1).squeeze(1) for name, v in logits.items()}  # (B * S,)
            losses = [F.mse_loss(outputs[name], useful[teachers[name]]) for name in logits]
            right = np.mean([((outputs[name] > outputs[name].median()) == (useful[teachers[name]] > 0)).float()
                             .mean().item() for name in logits])
        else:
            with torch.no_grad():
                with amp.autocast():
                    recognized = {m: model.recognize(m, batch[m].flatten(0, 1)) for m in set(teachers.values())}
                soft = {m: z.float().softmax(-1) for m, z in recognized.items()}
            losses = [F.kl_div(v.flatten(0, 1).log_softmax(-1), soft[teachers[name]], reduction="batchmean")
                      for name, v in logits.items()]
        loss = torch.stack(losses).sum()
        check_finite_loss(loss, step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad_norm > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        if right is None:
            right = np.mean([(v.mean(1).argmax(1) == batch["label"]).float().mean().item() for v in logits.values()])
        sums += reduce_mean(torch.tensor([loss.item(), right], dtype=torch.float64), info)
        mean = (sums / step).tolist()
        stats = EpochStats(loss=mean[0], ce=mean[0], top1=100.0 * mean[1],
                           videos=step * int(batch["label"].shape[0]) * info.world,
                           seconds=time.perf_counter() - start)
        if on_step is not None:
            on_step(stats)
    return stats


def confidence(logits: Tensor) -> Tensor:
    """(N,) how much a classifier's logits ``(N, K)`` commit to some classes: the negative entropy of its class
    distribution (0 when certain, -log K when uniform)."""
    log_probs = logits.log_softmax(-1)
    return (log_probs.exp() * log_probs).sum(-1)


@torch.no_grad()
def recompute_batch_norm(module: torch.nn.Module, forward: Callable[[dict[str, Tensor]], object], loader: DataLoader,
                         info: DistInfo, max_batches: int) -> int:
    """Replace the running statistics of `module`'s batch norms by their plain average over up to `max_batches`
    batches of `loader` (forward(batch) runs the module); returns the batches used."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or max_batches <= 0:
        return 0
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    used = 0
    for batch in loader:
        if used >= max_batches:
            break
        forward(to_device(batch, info.device))
        used += 1
    for m, (momentum, training) in zip(norms, saved):
        m.momentum = momentum
        m.train(training)
    return used
