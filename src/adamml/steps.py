"""Running several trainings and evaluations as one job (`adamml demo`, `adamml compare`): timed steps, and
steps that reuse what an earlier run finished (a completed training is kept, an interrupted one resumes, a
report newer than its checkpoint is read back instead of evaluated again)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from adamml.config import Config
from adamml.distributed import DistInfo
from adamml.evaluation import evaluate
from adamml.results import EvalReport
from adamml.train.stages import train

# decision thresholds at which AdaMML runs are evaluated (the first is the reported one)
SWEEP = (0.5, 0.3, 0.4, 0.6, 0.7, 0.8)


@dataclass
class Reused:
    """What a step returns when it reused an earlier result instead of doing the work (`value`: that result)."""

    value: Any = None


class Steps:
    """Wall time per step, for the closing summary. With `record` (a JSON file), the times are kept across runs:
    a step that reuses an earlier result reports the time it took when it was done (and is listed in `reused`)."""

    def __init__(self, console: Console, record: Path | None = None) -> None:
        self.console = console
        self.times: dict[str, float] = {}
        self.reused: set[str] = set()
        self.record = record
        self.earlier: dict[str, float] = {}
        if record is not None and record.exists():
            self.earlier = json.loads(record.read_text(encoding="utf-8"))

    def run(self, name: str, fn, *args, **kwargs):
        self.console.rule(f"[bold]{name}")
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        if isinstance(result, Reused):
            self.reused.add(name)
            seconds, result = self.earlier.get(name, seconds), result.value
        self.times[name] = seconds
        if self.record is not None:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            self.record.write_text(json.dumps({**self.earlier, **self.times}, indent=1), encoding="utf-8")
        return result

    def label(self, name: str) -> str:
        """The step's name, marked when its time is from the earlier run that did the work."""
        return f"{name} (earlier run, reused)" if name in self.reused else name


def train_once(cfg: Config, stage: str, store: Path, out: Path, console: Console,
               init: list[Path] = ()) -> Reused | None:
    """Train `stage` into `out` unless a completed run is there (summary.json); resume an interrupted one."""
    if (out / "summary.json").exists():
        console.print(f"{out}: trained earlier, reused")
        return Reused()
    train(cfg, stage, store, out, DistInfo(), init=list(init), resume=(out / "last.pt").exists(), console=console)


def eval_once(checkpoint: Path, store: Path, split: str, out: Path, console: Console,
              thresholds: list[float] | None = None) -> EvalReport | Reused:
    """Evaluate `checkpoint` on `split` into `out`, or read back (as `Reused`) a report written after the
    checkpoint."""
    report = out / "report.json"
    if report.exists() and report.stat().st_mtime >= checkpoint.stat().st_mtime:
        cached = EvalReport.read(report)
        if thresholds is None or len(cached.sweep) == len(thresholds):
            return Reused(cached)
    return evaluate(checkpoint, store, split, out, thresholds, console=console)
