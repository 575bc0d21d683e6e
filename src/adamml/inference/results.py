"""The evaluation report as a type: what `adamml eval` writes to report.json and what the commands built on it
(compare, bench, demo, the HTML report) read back. The JSON keys are the field names."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adamml.errors import UserError


@dataclass(frozen=True)
class SweepPoint:
    """AdaMML evaluated at one decision threshold."""

    threshold: float
    top1: float
    mAP: float
    gflops_per_video: float
    selection_rate: dict[str, float]


@dataclass(frozen=True)
class EvalReport:
    checkpoint: str
    data: str | None  # the store evaluated on (where the HTML report finds the frames); None in older reports
    stage: str
    fusion: str
    modalities: list[str]
    split: str
    videos: int
    segments: int
    threshold: float | None  # AdaMML's decision threshold (None: a model without a policy)
    top1: float  # %
    top5: float
    mAP: float
    gflops_per_video: float  # mean multiply-accumulates of conv layers (the paper's count)
    gflops: dict[str, float]  # their distribution over videos: mean, median, p10, p90, min, max
    gflops_all_layers_per_video: float
    gflops_always_on: float  # every recognizer on every segment
    saving_vs_always_on: float  # fraction
    selection_rate: dict[str, float]  # fraction of cells computed, per modality
    videos_per_second: float  # network time
    wall_seconds: float
    device: str
    precision: str
    sweep: list[SweepPoint]  # AdaMML at each threshold asked (the first is the one reported); empty otherwise
    # where the reported threshold came from: "validation" (the operating point recorded in the checkpoint),
    # "given" (--threshold), "config" (model.policy.threshold; nothing recorded); None without a policy
    threshold_source: str | None = None
    operating_point: dict[str, Any] | None = None  # the recorded choice with its validation curve (OperatingPoint)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path | str = "<report>") -> EvalReport:
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data and n not in _OPTIONAL]
        if missing:
            raise UserError(f"{source}: not an evaluation report of this version (missing {', '.join(missing)}); "
                            "evaluate the checkpoint again")
        values = {n: data.get(n) for n in names}
        values["sweep"] = [SweepPoint(**{f.name: point[f.name] for f in dataclasses.fields(SweepPoint)})
                           for point in data["sweep"]]
        values["videos_per_second"] = _number(data["videos_per_second"])
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> EvalReport:
        import json

        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: cannot read the evaluation report ({error})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not an evaluation report (a JSON object is expected)")
        return cls.from_json(data, path)

    @property
    def uses_policy(self) -> bool:
        return self.threshold is not None


_OPTIONAL = {"data", "threshold_source", "operating_point"}  # fields that reports of earlier versions lack


def _number(value: Any) -> float:
    """JSON has no NaN: reports write null for a figure that could not be measured."""
    return math.nan if value is None else float(value)
