"""Running several trainings and evaluations as one job (`adamml demo`, `adamml compare`): timed steps, and
steps that reuse what an earlier run finished (a completed training is kept, an interrupted one resumes, a
report newer than its checkpoint is read back instead of evaluated again)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from adamml.config import Config
from adamml.evaluate import evaluate
from adamml.train.distributed import DistInfo
from adamml.train.stages import train


class Steps:
    """Wall time per step, for the closing summary."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.times: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        self.console.rule(f"[bold]{name}")
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.times[name] = time.perf_counter() - start
        return result


def train_once(cfg: Config, stage: str, store: Path, out: Path, console: Console, init: list[Path] = ()) -> None:
    """Train `stage` into `out` unless a completed run is there (summary.json); resume an interrupted one."""
    if (out / "summary.json").exists():
        console.print(f"{out}: trained earlier, reused")
        return
    train(cfg, stage, store, out, DistInfo(), init=list(init), resume=(out / "last.pt").exists(), console=console)


def eval_once(checkpoint: Path, store: Path, split: str, out: Path, console: Console,
              thresholds: list[float] | None = None) -> dict[str, Any]:
    """Evaluate `checkpoint` on `split` into `out`, or read back a report written after the checkpoint."""
    report = out / "report.json"
    if report.exists() and report.stat().st_mtime >= checkpoint.stat().st_mtime:
        cached = json.loads(report.read_text())
        if thresholds is None or len(cached.get("sweep", [])) == len(thresholds):
            return cached
    return evaluate(checkpoint, store, split, out, thresholds, console=console)
