"""The training stages as records: the phases each trains (with the `train.<section>` that sets a phase's
optimiser and schedule), how a model trained by it takes decisions at evaluation, and whether a policy runs
(and counts in the cost). Training, evaluation, prediction and the comparison commands read this table instead
of testing stage names.

- `unimodal`: one recognizer, every segment.
- `fusion`: every recognizer on every segment, learnable weighted late fusion (the main baseline).
- `random`: like `fusion`, each (segment, modality) cell used with a fixed probability (the random-policy
  baseline at a chosen selection rate).
- `adamml`: policy pre-training (0 epochs in the paper's recipe) -> warm-up (policy frozen at its random
  initialisation, recognizers trained with CE) -> alternating (a recognition part with the policy frozen, then a
  policy part with the recognizers frozen and CE + efficiency loss; Gumbel temperature decays) -> fine-tune (policy
  frozen, from the best checkpoint).
- the fusion baselines of the supplementary material (`BASELINE_STAGES`), trained like `fusion` with the fusion
  kind of their name; `gradient-blending` holds part of the training split out to weigh its heads' losses.

Each record also says what the commands ask of a stage: its label for people, whether it trains one modality,
which fusion kind it trains, whose selection rates it takes (the random policy: AdaMML's), and whether it starts
from the unimodal checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adamml.config import TrainConfig
from adamml.modalities import get_modality

Decisions = Literal["all", "random", "policy"]


@dataclass(frozen=True)
class Part:
    """One part of a phase's epoch: what it trains (the other networks are frozen meanwhile)."""

    name: str
    trains_recognizers: bool
    trains_policy: bool


SUPERVISED: tuple[Part, ...] = (Part("supervised", True, False),)
RECOGNITION: tuple[Part, ...] = (Part("recognition", True, False),)
POLICY_PART = Part("policy", False, True)
POLICY: tuple[Part, ...] = (POLICY_PART,)


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    section: str  # train.<section>: epochs, learning rate and schedule
    parts: tuple[Part, ...] = SUPERVISED
    pretrains_policy: bool = False  # the policy's extractors learn alone (a probe head on top)
    validates: bool = True  # each epoch ends with validation and model selection
    from_best: bool = False  # starts from the best checkpoint so far
    alternates: bool = False  # the policy learns too: its own optimiser, temperature decay, precise BN

    @property
    def trains_policy(self) -> bool:
        return any(part.trains_policy for part in self.parts)


@dataclass(frozen=True)
class Phase:
    """A phase of one run: its spec and its number of epochs in that run's configuration."""

    spec: PhaseSpec
    epochs: int

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Stage:
    """A training stage and everything the other code asks of it, so that nothing outside this table tests a
    stage's name."""

    name: str
    label: str  # for people: tables, figures, the report page (a one-modality stage: the modality's label)
    phases: tuple[PhaseSpec, ...]
    decisions: Decisions  # at evaluation: every cell, random cells at fixed rates, or the policy's
    one_modality: bool = False  # trains one recognizer (else: two or more modalities, fused)
    fusion_kind: str | None = None  # the `model.fusion.kind` it trains (None: AdaMML's late fusion, as configured)
    rates_from: str | None = None  # the stage whose validation selection rates set its random decisions
    holds_out: bool = False  # trains on the training split less a held-out part (gradient blending)

    @property
    def uses_policy(self) -> bool:
        """A policy takes the decisions: it runs on every segment and counts in the cost."""
        return self.decisions == "policy"

    @property
    def needs_init(self) -> bool:
        """The paper starts a multi-modal model's recognizers from the unimodal checkpoints."""
        return not self.one_modality

    def phases_for(self, train: TrainConfig) -> list[Phase]:
        return [Phase(spec, getattr(train, spec.section).epochs) for spec in self.phases]

    def method_label(self, modalities: tuple[str, ...] | list[str]) -> str:
        """The name of this stage on `modalities` for people: "RGB", "Weighted fusion", "AdaMML"."""
        if self.one_modality and len(modalities) == 1:
            return get_modality(modalities[0]).label
        return self.label


def _supervised(name: str, label: str, section: str, **kwargs) -> Stage:
    return Stage(name, label, (PhaseSpec(name, section),), kwargs.pop("decisions", "all"), **kwargs)


ADAMML_PHASES = (
    PhaseSpec("policy_pretrain", "policy_pretrain", parts=POLICY, pretrains_policy=True),
    PhaseSpec("warmup", "warmup", parts=RECOGNITION, validates=False),
    PhaseSpec("alternating", "alternating", parts=RECOGNITION + POLICY, alternates=True),
    PhaseSpec("finetune", "finetune", parts=RECOGNITION, from_best=True),
)
# the fusion baselines of the supplementary material, each trained like `fusion` with its own fusion kind
BASELINE_LABELS = {"average": "Average fusion", "gating": "Gating fusion",
                   "lateral-uni": "Mid-level fusion, unilateral", "lateral-bi": "Mid-level fusion, bilateral",
                   "context-gating": "Context gating", "gradient-blending": "Gradient blending"}
STAGE_TABLE: dict[str, Stage] = {
    "unimodal": _supervised("unimodal", "Unimodal", "unimodal", one_modality=True),
    "fusion": _supervised("fusion", "Weighted fusion", "fusion"),
    "random": _supervised("random", "Random policy", "fusion", decisions="random", rates_from="adamml"),
    "adamml": Stage("adamml", "AdaMML", ADAMML_PHASES, "policy"),
    **{name: _supervised(name, label, "fusion", fusion_kind=name, holds_out=name == "gradient-blending")
       for name, label in BASELINE_LABELS.items()},
}
STAGES: tuple[str, ...] = tuple(STAGE_TABLE)
BASELINE_STAGES: tuple[str, ...] = tuple(name for name, stage in STAGE_TABLE.items() if stage.fusion_kind)
UNIMODAL = "unimodal"  # the stage every multi-modal one starts from


def get_stage(name: str) -> Stage:
    try:
        return STAGE_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; choose one of {', '.join(STAGE_TABLE)}") from None
