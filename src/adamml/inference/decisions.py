"""The decisions of the models that have no policy of their own: every cell (the always-on baselines) or random
cells at fixed rates (the random-policy baseline); `stage_decisions` says which a trained model uses."""

from __future__ import annotations

import numpy as np
import torch

from adamml.config import Config
from adamml.inference.predictions import DecisionFn
from adamml.models.build import Model
from adamml.stages import get_stage


def _videos_segments(batch: dict[str, torch.Tensor]) -> tuple[int, int, torch.device]:
    """(B, S, device) of a batch, from any of its per-segment inputs."""
    for key, value in batch.items():
        if key not in ("label", "target", "index") and value.dim() >= 3:
            return value.shape[0], value.shape[1], value.device
    raise ValueError(f"the batch has no per-segment input (keys: {sorted(batch)})")


def always_on(model: Model) -> DecisionFn:
    def fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        b, s, device = _videos_segments(batch)
        return torch.ones(b, s, len(model.modalities), device=device)

    return fn


def random_rates(cfg: Config) -> tuple[float, ...]:
    """Selection probability per modality of the random-policy baseline, in model order."""
    rates = dict(cfg.train.random_rates)
    unknown = set(rates) - set(cfg.model.modalities)
    if unknown:
        raise ValueError(f"train.random_rates names modalities not in the model: {sorted(unknown)}")
    return tuple(float(rates.get(m, 0.5)) for m in cfg.model.modalities)


def random_policy(model: Model, rates: tuple[float, ...], seed: int | None) -> DecisionFn:
    """Each cell used with probability rates[m]; with `seed`, decisions depend only on (seed, video index)
    (evaluation), else on the global torch RNG (training)."""
    p = torch.tensor(rates)

    def fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        b, s, device = _videos_segments(batch)
        if seed is None:
            u = torch.rand(b, s, len(rates))
        else:
            u = torch.from_numpy(np.stack([
                np.random.default_rng([seed, int(i)]).random((s, len(rates))) for i in batch["index"].cpu()
            ])).float()
        return (u < p).float().to(device)

    return fn


def stage_decisions(model: Model, stage: str, cfg: Config, training: bool = False) -> DecisionFn | None:
    """How a model of `stage` takes decisions (None: its policy). Random decisions are a pure function of the
    video at evaluation, and drawn afresh in training."""
    kind = get_stage(stage).decisions
    if kind == "all":
        return always_on(model)
    if kind == "random":
        return random_policy(model, random_rates(cfg), seed=None if training else cfg.train.seed)
    return None
