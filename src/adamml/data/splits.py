"""Which videos a split names: the store's own splits, and ``holdout``, a seeded held-out part of the training
split that selects the model in place of a validation split (``data.val_split: holdout``).

Why: Kinetics-Sounds, ActivityNet and the paper's other sets report their `val` list, and the paper and the
official code select ``best.pt``, fine-tune from it and choose the operating point on that same list. A number
chosen on the split it is reported on says how well the selection fitted that split. ``holdout`` takes about
``data.holdout_fraction`` of each class of the training list out of training (the same videos on every run
whatever ``train.seed``: ``data.holdout_seed`` alone draws them), selects on it, and leaves the reported split to
be read once. With it, the split ``train`` means the rest of the training list everywhere (training, the policy's
passes, gradient blending's own held-out part, `adamml eval --split train`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adamml.data.layout import StoreError

HOLDOUT = "holdout"  # the split name of the held-out part of the training list
TRAIN = "train"


@dataclass(frozen=True)
class Holdout:
    """The held-out part of the training split: about `fraction` of each class, drawn with `seed`."""

    fraction: float
    seed: int

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"the held-out fraction must be between 0 and 1, got {self.fraction}")


def holdout_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (training part, held-out part) of a split whose videos have ``labels``: about ``fraction`` of each
    class held out (seeded), at least one video in each part."""
    if len(labels) < 2:
        raise ValueError(f"holding out part of a split needs at least 2 videos; it has {len(labels)}")
    rng = np.random.default_rng([seed, 7717])
    held: list[int] = []
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    for label in sorted(groups):
        members = rng.permutation(groups[label]).tolist()
        held += members[: round(fraction * len(members))]
    if not held:  # tiny splits: hold out one video of the largest class
        largest = max(groups.values(), key=len)
        held = [largest[int(rng.integers(len(largest)))]]
    if len(held) == len(labels):
        held = held[:-1]
    chosen = set(held)
    return [i for i in range(len(labels)) if i not in chosen], sorted(held)


def split_rows(rows: list[dict], name: str, holdout: Holdout | None, where: str) -> list[dict]:
    """The rows of split `name` among a store's `rows` (`where` names the store in errors). With `holdout`, the
    split ``holdout`` is the held-out part of the training split and ``train`` the rest; without, ``holdout`` is
    refused unless the store has a split of that name."""
    own = [r for r in rows if r.get("split") == name]
    if name not in (TRAIN, HOLDOUT) or holdout is None:
        if name == HOLDOUT and not own:
            raise StoreError(f"{where}: no split {HOLDOUT!r}: it is the held-out part of the training split when "
                             f"the model was trained with data.val_split: {HOLDOUT}, and this one was not")
        return own
    if any(r.get("split") == HOLDOUT for r in rows):
        raise StoreError(f"{where}: the store has a split of its own called {HOLDOUT!r}; data.val_split: {HOLDOUT} "
                         "holds out part of the training split under that name: rename the store's split")
    train = [r for r in rows if r.get("split") == TRAIN]
    labels = [(r.get("label_ids") or [-1])[0] for r in train]
    train_part, held_out = holdout_split(labels, holdout.fraction, holdout.seed)
    return [train[i] for i in (held_out if name == HOLDOUT else train_part)]
