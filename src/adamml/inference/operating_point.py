"""The operating point of a trained AdaMML model: the decision threshold, chosen on the validation split for a
stated target and recorded in the checkpoint (`adamml calibrate`, and the end of every AdaMML training).

The threshold decides the cost: a cell is computed when P(use) >= threshold. A constant (the paper's 0.5) is
right for the data the recipe was tuned on and wrong elsewhere; here it is read off a validation curve instead:

- ``accuracy`` (default): the fewest GFLOPs per video whose validation score (top-1, or mAP on multi-label sets)
  is within ``margin`` points of the best the model does: with every cell computed (threshold 0), or at the best
  plateau of its curve when that is higher (a policy trained with its recognizers can beat computing everything);
- ``budget``: the best validation score whose GFLOPs per video are at most ``budget`` x the always-on cost.

One pass computes every recognizer on every validation cell and the policy's per-segment features; each
threshold then re-runs only the policy's LSTM and heads (its decisions feed the next segment) and the fusion,
so a curve of 24 thresholds costs about one always-on evaluation. The curve equals what ``adamml eval`` measures
at each threshold (the sparse path computes the same cells; tested).

Small validation sets make noisy choices. The rule copes three ways: the margin is applied in whole videos, the
nearest whole number (1 point of 80 videos allows one video, 1.25 points; of 40 videos, none); a threshold qualifies only if it and its neighbours on the
grid do (the worst of the three is compared: a lucky spike between two failing thresholds is not taken); and
a split too small to resolve the margin (one video worth more than it) gets a warning naming the size needed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from adamml.config import OperatingPointConfig
from adamml.data.loader import to_device
from adamml.inference.gflops import ModelCosts, always_on_gmacs, video_gmacs
from adamml.inference.metrics import mean_average_precision, softmax, topk_accuracy
from adamml.models.adamml import AdaMML
from adamml.models.policy import DecisionRule
from adamml.runtime.distributed import DistInfo, all_gather_objects

GRID = OperatingPointConfig().thresholds  # fine near 0, where a conservative choice lies; 0 is the reference


@dataclass(frozen=True)
class CurvePoint:
    """The model on the calibration split at one threshold."""

    threshold: float
    score: float  # top-1 or mAP, %
    worst_near: float  # the lowest score of this threshold and its grid neighbours (what the rule compares)
    gflops_per_video: float  # conv multiply-accumulates, the policy included
    selection_rate: dict[str, float]


@dataclass(frozen=True)
class OperatingPoint:
    """The recorded choice: the threshold, the target it meets, and the validation curve it was read from."""

    threshold: float
    target: str  # accuracy | budget
    margin: float | None  # points (accuracy target)
    budget: float | None  # fraction of the always-on GFLOPs (budget target)
    metric: str  # top1 | mAP
    split: str
    videos: int
    score: float  # validation score at the chosen threshold
    reference_score: float  # what the margin counts from: every cell computed, or the curve's best plateau if higher
    gflops_per_video: float
    gflops_always_on: float
    curve: list[CurvePoint]
    warnings: list[str] = field(default_factory=list)
    data: str | None = None  # the store calibrated on

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OperatingPoint:
        values = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        values["curve"] = [CurvePoint(**point) for point in data["curve"]]
        values["warnings"] = list(data.get("warnings") or [])
        return cls(**values)

    @property
    def gflops_fraction(self) -> float:
        return self.gflops_per_video / self.gflops_always_on if self.gflops_always_on else math.nan

    def describe(self) -> str:
        """One line: the threshold, what it meets, at what cost."""
        goal = (f"within {self.margin:g} points of the best ({self.reference_score:.2f} %)"
                if self.target == "accuracy" else f"the best within {100 * self.budget:g} % of the always-on GFLOPs")
        return (f"threshold {self.threshold:g}: {self.metric} {self.score:.2f} % at {self.gflops_per_video:.4g} "
                f"GFLOPs per video ({100 * self.gflops_fraction:.1f} % of always-on) on {self.videos} "
                f"{self.split} videos; target: {goal}")


def recorded_operating_point(payload: dict[str, Any]) -> OperatingPoint | None:
    """The operating point stored in a checkpoint payload, if any."""
    data = payload.get("operating_point")
    return OperatingPoint.from_json(data) if isinstance(data, dict) else None


@dataclass
class DenseOutputs:
    """What the policy's decisions are a function of, for every video of a split (dataset order)."""

    features: Tensor  # (N, S, D) the policy's per-segment MLP features
    modality_logits: Tensor  # (N, S, M, K) every recognizer on every cell
    labels: np.ndarray  # (N,)
    targets: np.ndarray  # (N, K)


@torch.no_grad()
def dense_outputs(model: AdaMML, loader, info: DistInfo, on_batch=None) -> DenseOutputs:
    """Every recognizer on every cell and the policy's features, gathered from every process (dataset order)."""
    model.eval()
    parts: dict[str, list] = {k: [] for k in ("features", "logits", "labels", "targets", "indices")}
    for batch in loader:
        batch = to_device(batch, info.device)
        parts["features"].append(model.policy.forward_features(model.policy_inputs(batch)).float().cpu())
        parts["logits"].append(model.recognize_all(batch).float().cpu())
        for key, batch_key in (("labels", "label"), ("targets", "target"), ("indices", "index")):
            parts[key].append(batch[batch_key].cpu().numpy())
        if on_batch is not None:
            on_batch(int(batch["label"].shape[0]) * info.world)
    local = {"features": torch.cat(parts["features"]), "logits": torch.cat(parts["logits"]),
             **{k: np.concatenate(parts[k]) for k in ("labels", "targets", "indices")}}
    gathered = all_gather_objects(local, info)
    indices = np.concatenate([g["indices"] for g in gathered])
    order = torch.from_numpy(np.argsort(indices, kind="stable"))
    return DenseOutputs(features=torch.cat([g["features"] for g in gathered])[order],
                        modality_logits=torch.cat([g["logits"] for g in gathered])[order],
                        labels=np.concatenate([g["labels"] for g in gathered])[order.numpy()],
                        targets=np.concatenate([g["targets"] for g in gathered])[order.numpy()])


@torch.no_grad()
def at_threshold(model: AdaMML, dense: DenseOutputs, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Video logits ``(N, K)`` and decisions ``(N, S, M)`` of the model at `threshold`, from the dense outputs."""
    policy = model.policy.decide_features(dense.features, DecisionRule(threshold))
    decisions = policy.decisions.to(dense.modality_logits.dtype)
    _segments, logits = model.fusion(dense.modality_logits, decisions)
    return logits.numpy(), decisions.numpy()


def score_of(logits: np.ndarray, dense: DenseOutputs, multi_label: bool) -> float:
    scores = softmax(logits)
    if multi_label:
        return mean_average_precision(scores, dense.targets)
    labelled = dense.labels >= 0
    return topk_accuracy(scores[labelled], dense.labels[labelled], 1)


def threshold_curve(model: AdaMML, dense: DenseOutputs, costs: ModelCosts, multi_label: bool,
                    thresholds: tuple[float, ...] = GRID) -> list[CurvePoint]:
    """Score, GFLOPs and selection rates at each threshold (0 always included: the reference)."""
    grid = sorted(set(thresholds) | {0.0})
    raw = []
    for t in grid:
        logits, decisions = at_threshold(model, dense, t)
        gflops = video_gmacs(decisions, costs, "conv", include_policy=True)
        raw.append((t, score_of(logits, dense, multi_label), float(gflops.mean()),
                    {m: float(decisions[..., i].mean()) for i, m in enumerate(model.modalities)}))
    scores = [s for _t, s, _g, _r in raw]
    return [CurvePoint(threshold=t, score=s, worst_near=min(scores[max(0, i - 1):i + 2]), gflops_per_video=g,
                       selection_rate=r) for i, (t, s, g, r) in enumerate(raw)]


def reference_score(curve: list[CurvePoint]) -> float:
    """What the accuracy target's margin is counted from: the model with every cell computed (threshold 0), or the
    best plateau of its curve when that is higher. A policy trained with its recognizers can beat the same model
    computing everything (measured on the demo's validation split: 98.75 % at some thresholds, 88.75 % with every
    cell), and a margin from the lower figure would give that accuracy away for cost."""
    every_cell = next(p for p in curve if p.threshold == 0.0).score
    return max(every_cell, max(p.worst_near for p in curve))


def allowed_videos(margin: float, videos: int) -> int:
    """The top-1 margin in whole videos: the nearest whole number (a half rounds up). Rounding down made a margin
    smaller than one video allow no loss at all, so that one unlucky video sent the operating point back to every
    cell computed (90 validation videos, margin 1 point: 107 % of fusion's GFLOPs where 0.5 lost one video at 24 %);
    to the nearest, the rule is never more than half a video away from the stated margin."""
    return math.floor(margin * videos / 100.0 + 0.5 + 1e-9)


def allowed_drop(margin: float, videos: int, multi_label: bool) -> float:
    """The margin as the rule applies it: in whole videos for top-1 (`allowed_videos`), as given for mAP."""
    if multi_label or videos == 0:
        return margin
    return allowed_videos(margin, videos) * 100.0 / videos


def choose(curve: list[CurvePoint], target: str, margin: float, budget: float, always_on: float, videos: int,
           multi_label: bool) -> tuple[CurvePoint, list[str]]:
    """The operating point of `target` on `curve`, and warnings about how far it can be trusted."""
    if target not in ("accuracy", "budget"):
        raise ValueError(f"operating point target must be accuracy or budget, got {target!r}")
    warnings = []
    metric = "mAP" if multi_label else "top-1"
    if target == "accuracy" and not multi_label and videos and margin > 0 and 100.0 / videos > margin:
        need = math.ceil(100.0 / margin)
        allowed = allowed_videos(margin, videos)
        applied = f"{allowed} video ({100.0 / videos:.2f} points)" if allowed else "no loss at all"
        warnings.append(f"{videos} validation videos cannot resolve a margin of {margin:g} points (one video is "
                        f"{100.0 / videos:.2f} points), so the nearest whole number of videos is allowed: "
                        f"{applied}, and the choice is noisy; a validation split of at least {need} videos "
                        "resolves it")
    if target == "accuracy":
        reference = reference_score(curve)
        floor = reference - allowed_drop(margin, videos, multi_label) - 1e-9
        eligible = [p for p in curve if p.threshold == 0.0 or p.worst_near >= floor]  # every cell: the fallback
        chosen = min(eligible, key=lambda p: (p.gflops_per_video, p.threshold))
        if chosen.threshold == 0.0:
            warnings.append(f"no threshold keeps the validation {metric} within {margin:g} points of the best: the "
                            "operating point computes every cell (no saving)")
        return chosen, warnings
    eligible = [p for p in curve if p.gflops_per_video <= budget * always_on + 1e-12]
    if not eligible:
        chosen = min(curve, key=lambda p: p.gflops_per_video)
        warnings.append(f"no threshold stays within {100 * budget:g} % of the always-on GFLOPs; the cheapest "
                        f"({100 * chosen.gflops_per_video / always_on:.1f} %) is taken")
        return chosen, warnings
    return max(eligible, key=lambda p: (p.worst_near, p.score, -p.gflops_per_video)), warnings


def calibrate_model(model: AdaMML, dense: DenseOutputs, costs: ModelCosts, multi_label: bool, split: str,
                    target: str = "accuracy", margin: float = 1.0, budget: float = 0.5,
                    thresholds: tuple[float, ...] = GRID, data: Path | str | None = None) -> OperatingPoint:
    """The operating point of `model` for `target`, read off its curve on the dense outputs of `split`."""
    curve = threshold_curve(model, dense, costs, multi_label, thresholds)
    num_segments = dense.modality_logits.shape[1]
    always_on = always_on_gmacs(costs, num_segments, "conv")
    videos = len(dense.labels)
    chosen, warnings = choose(curve, target, margin, budget, always_on, videos, multi_label)
    return OperatingPoint(
        threshold=chosen.threshold, target=target, margin=margin if target == "accuracy" else None,
        budget=budget if target == "budget" else None, metric="mAP" if multi_label else "top1", split=split,
        videos=videos, score=chosen.score, reference_score=reference_score(curve),
        gflops_per_video=chosen.gflops_per_video, gflops_always_on=always_on, curve=curve, warnings=warnings,
        data=str(data) if data is not None else None)


def curve_table(point: OperatingPoint) -> list[str]:
    """The curve as Markdown rows, the chosen threshold marked."""
    metric = "mAP" if point.metric == "mAP" else "top-1"
    lines = [f"| threshold | {metric} (%) | worst of it and its neighbours | GFLOPs / video | % of always-on | selection |",
             "| ---: | ---: | ---: | ---: | ---: | --- |"]
    for p in point.curve:
        mark = " **chosen**" if p.threshold == point.threshold else ""
        sel = ", ".join(f"{m} {100 * r:.0f} %" for m, r in p.selection_rate.items())
        lines.append(f"| {p.threshold:g}{mark} | {p.score:.2f} | {p.worst_near:.2f} | {p.gflops_per_video:.4g} | "
                     f"{100 * p.gflops_per_video / point.gflops_always_on:.1f} | {sel} |")
    return lines
