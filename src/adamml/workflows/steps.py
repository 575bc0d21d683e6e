"""Running several trainings and evaluations as one job (`adamml demo`, `adamml compare`): timed steps, and
steps that reuse what an earlier run finished (a completed training is kept, an interrupted one resumes, a
report newer than its checkpoint is read back instead of evaluated again). A run trained with another
configuration is neither reused nor resumed: the job stops and names the keys that differ."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from adamml.config import Config, config_changes, load_config
from adamml.errors import UserError
from adamml.inference.evaluation import evaluate
from adamml.inference.results import EvalReport
from adamml.runtime.distributed import DistInfo
from adamml.train.run import stage_config
from adamml.train.trainer import train

# decision thresholds at which AdaMML runs are evaluated besides their operating point (the reported one)
SWEEP = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_CHANGES_SHOWN = 6  # differing keys named in a RunMismatchError


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


class RunMismatchError(UserError):
    """A folder holds a run (finished or interrupted) that was trained with another configuration."""


def check_same_run(cfg: Config, stage: str, out: Path) -> None:
    """Refuse to reuse or resume the run in `out` when its config.yaml differs from what `stage` would train
    with `cfg` now (a changed preset, another --set): its figures would be reported as this configuration's."""
    saved = out / "config.yaml"
    if not saved.exists():
        return
    changes = config_changes(load_config(str(saved)), stage_config(cfg, stage))
    if changes:
        shown = "; ".join(changes[:_CHANGES_SHOWN]) + (f"; and {len(changes) - _CHANGES_SHOWN} more"
                                                        if len(changes) > _CHANGES_SHOWN else "")
        raise RunMismatchError(f"{out} holds a run of the {stage} stage trained with another configuration "
                               f"({saved} -> now: {shown}); remove {out} to train it again with this one, or "
                               "write to another output folder")


def train_once(cfg: Config, stage: str, store: Path, out: Path, console: Console,
               init: list[Path] = ()) -> Reused | None:
    """Train `stage` into `out` unless a completed run is there (summary.json); resume an interrupted one. Either
    must have been trained with the same configuration (`check_same_run`)."""
    done, started = (out / "summary.json").exists(), (out / "last.pt").exists()
    if done or started:
        check_same_run(cfg, stage, out)
    if done:
        console.print(f"{out}: trained earlier, reused")
        return Reused()
    train(cfg, stage, store, out, DistInfo(), init=list(init), resume=started, console=console)


def eval_once(checkpoint: Path, store: Path, split: str, out: Path, console: Console,
              thresholds: list[float] | None = None, sweep: tuple[float, ...] = ()) -> EvalReport | Reused:
    """Evaluate `checkpoint` on `split` into `out` (at `thresholds[0]`, else its recorded operating point; the rest
    and `sweep` beside), or read back (as `Reused`) a report written after the checkpoint that holds them."""
    report = out / "report.json"
    if report.exists() and report.stat().st_mtime >= checkpoint.stat().st_mtime:
        cached = EvalReport.read(report)
        swept = {point.threshold for point in cached.sweep}
        if not cached.uses_policy or (set(thresholds or ()) | set(sweep) <= swept
                                      and (not thresholds or cached.threshold == thresholds[0])):
            return Reused(cached)
    return evaluate(checkpoint, store, split, out, thresholds, console=console, sweep=sweep)
