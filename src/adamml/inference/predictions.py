"""One pass of a model over a split (the sparse inference path, each recognizer only on the cells that chose it),
gathered from every process in dataset order, and its metric summary: the evaluation pass that training's
validation and `adamml eval` share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from adamml.data.loader import to_device
from adamml.inference.metrics import mean_average_precision, softmax, topk_accuracy
from adamml.models.build import Model
from adamml.models.policy import DecisionRule
from adamml.runtime.distributed import DistInfo, all_gather_objects
from adamml.runtime.precision import FP32, Amp

DecisionFn = Callable[[dict[str, Tensor]], Tensor]  # batch -> (B, S, M) decisions


@dataclass
class Predictions:
    """Everything a pass over a split produced, in dataset order (gathered from all processes)."""

    logits: np.ndarray  # (N, K)
    decisions: np.ndarray  # (N, S, M)
    probs: np.ndarray  # (N, S, M)
    labels: np.ndarray  # (N,)
    targets: np.ndarray  # (N, K)
    indices: np.ndarray  # (N,)
    seconds: float  # network time (all processes in parallel)


@torch.no_grad()
def predict(model: Model, loader: DataLoader, info: DistInfo, decisions_fn: DecisionFn | None = None,
            on_batch: Callable[[int], None] | None = None, amp: Amp = FP32, rule: DecisionRule | None = None
            ) -> Predictions:
    """Run the sparse inference path over `loader` (each recognizer only on the cells that selected it); a policy
    decides by `rule` (default: its configured threshold)."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "decisions", "probs", "labels", "targets", "indices")}
    seconds = 0.0
    for batch in loader:
        batch = to_device(batch, info.device)
        if info.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        decisions = decisions_fn(batch) if decisions_fn is not None else None
        with amp.autocast():
            out = model.infer(batch, decisions, rule)
        if info.device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        parts["logits"].append(out.logits.float().cpu().numpy())
        parts["decisions"].append(out.decisions.float().cpu().numpy())
        parts["probs"].append(out.decision_probs.float().cpu().numpy())
        parts["labels"].append(batch["label"].cpu().numpy())
        parts["targets"].append(batch["target"].cpu().numpy())
        parts["indices"].append(batch["index"].cpu().numpy())
        if on_batch is not None:
            on_batch(int(batch["label"].shape[0]) * info.world)
    local = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()}
    gathered = all_gather_objects((local, seconds), info)
    merged = {k: np.concatenate([g[0][k] for g in gathered if len(g[0][k])]) for k in local}
    order = np.argsort(merged["indices"], kind="stable")
    return Predictions(**{k: v[order] for k, v in merged.items()}, seconds=max(g[1] for g in gathered))


@dataclass
class Metrics:
    """What a prediction pass scores (training's validation, `adamml eval`): percentages and selection rates."""

    videos: int
    top1: float
    top5: float
    mAP: float
    selection_rate: dict[str, float]
    score: float  # what model selection maximises: mAP on multi-label stores, else top-1
    gflops_fraction: float | None = None  # GFLOPs per video as a fraction of always-on (validation sets it)

    def to_json(self) -> dict[str, Any]:
        out = {"videos": self.videos, "top1": self.top1, "top5": self.top5, "mAP": self.mAP,
               "selection_rate": dict(self.selection_rate), "score": self.score}
        if self.gflops_fraction is not None:
            out["gflops_fraction"] = self.gflops_fraction
        return out


def summarize(pred: Predictions, modalities: tuple[str, ...], multi_label: bool) -> Metrics:
    """top1 / top5 / mAP and selection rates of a prediction pass."""
    scores = softmax(pred.logits)
    labelled = pred.labels >= 0
    top1 = topk_accuracy(scores[labelled], pred.labels[labelled], 1)
    mean_ap = mean_average_precision(scores, pred.targets)
    return Metrics(videos=len(pred.labels), top1=top1, top5=topk_accuracy(scores[labelled], pred.labels[labelled], 5),
                   mAP=mean_ap, selection_rate={m: float(pred.decisions[..., i].mean()) for i, m in enumerate(modalities)},
                   score=mean_ap if multi_label else top1)
