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
- the fusion baselines of the supplementary material (`BASELINE_STAGES`), trained like `fusion`;
  `gradient-blending` holds part of the training split out to weigh its heads' losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adamml.config import BASELINE_STAGES, TrainConfig

Decisions = Literal["all", "random", "policy"]
# (part, trains the recognizers, trains the policy): one epoch of a phase trains these parts in turn
Part = tuple[str, bool, bool]
SUPERVISED: tuple[Part, ...] = (("supervised", True, False),)
RECOGNITION: tuple[Part, ...] = (("recognition", True, False),)


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
        return any(policy for _part, _rec, policy in self.parts)


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
    name: str
    phases: tuple[PhaseSpec, ...]
    decisions: Decisions  # at evaluation: every cell, random cells at fixed rates, or the policy's
    holds_out: bool = False  # trains on the training split less a held-out part (gradient blending)

    @property
    def uses_policy(self) -> bool:
        """A policy takes the decisions: it runs on every segment and counts in the cost."""
        return self.decisions == "policy"

    @property
    def needs_init(self) -> bool:
        """The paper starts the recognizers from unimodal checkpoints."""
        return self.name != "unimodal"

    def phases_for(self, train: TrainConfig) -> list[Phase]:
        return [Phase(spec, getattr(train, spec.section).epochs) for spec in self.phases]


def _supervised(name: str, section: str, decisions: Decisions = "all", holds_out: bool = False) -> Stage:
    return Stage(name, (PhaseSpec(name, section),), decisions, holds_out)


ADAMML_PHASES = (
    PhaseSpec("policy_pretrain", "policy_pretrain", parts=(("policy", False, True),), pretrains_policy=True),
    PhaseSpec("warmup", "warmup", parts=RECOGNITION, validates=False),
    PhaseSpec("alternating", "alternating", parts=RECOGNITION + (("policy", False, True),), alternates=True),
    PhaseSpec("finetune", "finetune", parts=RECOGNITION, from_best=True),
)
STAGE_TABLE: dict[str, Stage] = {
    "unimodal": _supervised("unimodal", "unimodal"),
    "fusion": _supervised("fusion", "fusion"),
    "random": _supervised("random", "fusion", decisions="random"),
    "adamml": Stage("adamml", ADAMML_PHASES, "policy"),
    **{name: _supervised(name, "fusion", holds_out=name == "gradient-blending") for name in BASELINE_STAGES},
}


def get_stage(name: str) -> Stage:
    try:
        return STAGE_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; choose one of {', '.join(STAGE_TABLE)}") from None
