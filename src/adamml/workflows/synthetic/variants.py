"""Named variants (`adamml synth --variant NAME`): benchmarks unlike the demo where it matters, to check a recipe on
data it was not tuned for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from adamml.workflows.synthetic.design import SynthConfig, full_classes


@dataclass(frozen=True)
class Variant:
    """A named benchmark: a one-line description and the `SynthConfig` keyword arguments it sets (the others
    keep their defaults)."""

    name: str
    description: str
    kwargs: Mapping[str, Any]

    def config(self, seed: int = 0, **overrides: Any) -> SynthConfig:
        return variant_config(self.name, seed, **overrides)


def _variant(name: str, description: str, **kwargs: Any) -> tuple[str, Variant]:
    return name, Variant(name, description, MappingProxyType(kwargs))


# Training sets of 160-220 videos (a CPU budget), validation splits as large as test splits (recipes are chosen on
# validation: it must be able to tell them apart).
VARIANTS: Mapping[str, Variant] = MappingProxyType(dict([
    _variant("demo", "the default (the demo): 8 classes, each modality takes 2 values and all three are needed"),
    _variant("any-one", "10 classes, each modality alone names the class (code redundant), each informative in "
             "40 % of cells", code="redundant", classes=10, informative_rate=(0.4, 0.4, 0.4),
             train_per_class=16, val_per_class=8, test_per_class=8),
    _variant("all-needed", "27 classes = 3 hues x 3 motions x 3 pitches (code full): every modality is needed",
             code="full", values=(3, 3, 3), classes=27, train_per_class=8, val_per_class=4, test_per_class=4),
    _variant("mute-audio", "9 classes = 3 hues x 3 motions; audio never informative (a modality that never helps)",
             code="full", values=(3, 3, 1), classes=9, informative_rate=(0.5, 0.5, 0.0),
             train_per_class=20, val_per_class=10, test_per_class=10),
    _variant("uneven", "the demo's 8 classes, informative in 25 % (rgb), 75 % (flow), 50 % (audio) of cells",
             informative_rate=(0.25, 0.75, 0.5), train_per_class=24, val_per_class=10, test_per_class=10),
    _variant("distractors", "the demo's 8 classes; half the uninformative cells show another class's value "
             "(a misleading cue)", distractor_rate=(0.5, 0.5, 0.5),
             train_per_class=24, val_per_class=10, test_per_class=10),
]))


def variant_config(name: str, seed: int = 0, **overrides: Any) -> SynthConfig:
    """The config of variant `name` with `seed`, `overrides` (SynthConfig fields) replacing its settings.

    With code "full", `classes` follows `values` unless given; overriding `code` away from "full" drops the
    variant's `values`. ValueError for an unknown name (listing the known ones) or a bad config.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    kwargs = dict(VARIANTS[name].kwargs)
    if overrides.get("code", "full") != "full" and "values" not in overrides:
        kwargs.pop("values", None)
    kwargs.update(overrides)
    kwargs["seed"] = seed
    if kwargs.get("code") == "full" and kwargs.get("values") is not None and "classes" not in overrides:
        kwargs["classes"] = full_classes(kwargs["values"])
    return SynthConfig(**kwargs)
