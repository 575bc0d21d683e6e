"""Which evaluations a folder holds, for the HTML report: an evaluation folder (`adamml eval`: report.json,
decisions.json), a training run (its eval-*/ folders), the demo folder (`adamml demo`: report.json with every
method's run beside it, the generator's ground truth in data/) or a comparison (`adamml compare`: compare.json).

A folder that is none of these is a `UserError`; a run without an evaluation, a missing decisions file or a store
that cannot be found are warnings, and the page is written without the missing parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adamml.errors import UserError
from adamml.inference.results import EvalReport
from adamml.modalities import MODALITIES
from adamml.stages import STAGE_TABLE

REPORT_NAME = "report.json"
DECISIONS_NAME = "decisions.json"
COMPARE_NAME = "compare.json"
TRUTH_PATH = Path("data") / "ground_truth.jsonl"  # the demo's generator truth: which cells were informative
DEMO_STORE = "store"
RUN_FILES = ("config.yaml", "summary.json", "best.pt", "last.pt")  # any of them: a training run


@dataclass
class Evaluation:
    """One evaluated method: its report (`adamml.inference.evaluation`) and the folder holding its decisions."""

    key: str
    label: str
    folder: Path
    report: EvalReport


@dataclass
class Source:
    """What a folder holds for the report. `focus` is the evaluation whose videos are listed (AdaMML when there
    is one); `extra` is the demo's report.json or compare.json."""

    kind: str  # evaluation | run | demo | compare
    folder: Path
    evaluations: list[Evaluation]
    store: Path | None = None
    truth: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def focus(self) -> Evaluation | None:
        policy = [e for e in self.evaluations if e.report.threshold is not None]  # a policy decided
        return (policy or self.evaluations or [None])[0]


def read_json(path: Path) -> Any:
    """The JSON in `path`; an error naming the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from error
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from error


def method_label(key: str, report: dict[str, Any]) -> str:
    """A method's name for people: the comparison's label, else from its stage and modalities."""
    if report.get("label"):
        return str(report["label"])
    stage, modalities = report.get("stage", key), report.get("modalities", [])
    record = STAGE_TABLE.get(stage) if isinstance(stage, str) else None
    if record is None or not all(isinstance(m, str) and m in MODALITIES for m in modalities):
        return str(stage)  # a report of another version: its own words
    return record.method_label(modalities)


def _evaluation(key: str, folder: Path, report: dict[str, Any] | None = None) -> Evaluation:
    """The evaluation in `folder`, from `report` (its JSON, as a demo or comparison holds it) or its report.json."""
    report = report if report is not None else read_json(folder / REPORT_NAME)
    if not isinstance(report, dict) or "top1" not in report:
        raise UserError(f"{folder / REPORT_NAME}: not an evaluation report (no top1)")
    return Evaluation(key, method_label(key, report), folder, EvalReport.from_json(report, folder / REPORT_NAME))


def find_source(folder: Path, store: Path | None = None) -> Source:
    """The evaluations in `folder` (see the module docstring); `store` overrides where the frames are."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (give an evaluation, run, demo or compare folder)")
    report = read_json(folder / REPORT_NAME) if (folder / REPORT_NAME).exists() else None
    if (folder / COMPARE_NAME).exists():
        source = _compare(folder)
    elif isinstance(report, dict) and "reports" in report:
        source = _demo(folder, report)
    elif report is not None:
        source = Source("evaluation", folder, [_evaluation(folder.name, folder, report)])
    else:
        source = _run(folder)
    source.store = _find_store(source, store)
    return source


def _demo(folder: Path, report: dict[str, Any]) -> Source:
    evaluations, warnings = [], []
    for key, method in report["reports"].items():
        eval_dir = folder / key / f"eval-{method.get('split', 'test')}"  # each run in the folder of its key
        evaluations.append(_evaluation(key, eval_dir, method))
    truth = folder / TRUTH_PATH
    if not truth.exists():
        warnings.append(f"{truth}: missing; the page shows no ground truth of the informative cells")
    return Source("demo", folder, evaluations, truth=truth if truth.exists() else None, extra=report,
                  warnings=warnings)


def _compare(folder: Path) -> Source:
    payload = read_json(folder / COMPARE_NAME)
    if not isinstance(payload, dict) or not isinstance(payload.get("methods"), dict):
        raise UserError(f"{folder / COMPARE_NAME}: no 'methods' (not written by `adamml compare`)")
    split = payload.get("split", "test")
    evaluations = [_evaluation(key, folder / key / f"eval-{split}", method)
                   for key, method in payload["methods"].items()]
    return Source("compare", folder, evaluations, extra=payload)


def _run(folder: Path) -> Source:
    evals = sorted(p.parent for p in folder.glob(f"eval-*/{REPORT_NAME}"))
    evals.sort(key=lambda p: p.name != "eval-test")  # the test split first: the one whose videos are listed
    if evals:
        return Source("run", folder, [_evaluation(p.name, p) for p in evals])
    if not any((folder / name).exists() for name in RUN_FILES):
        raise UserError(f"{folder}: not an evaluation, run, demo or compare folder (no {REPORT_NAME}, "
                        f"{COMPARE_NAME} or eval-*/{REPORT_NAME})")
    extra = read_json(folder / "summary.json") if (folder / "summary.json").exists() else {}
    return Source("run", folder, [], extra=extra, warnings=[
        f"{folder}: a training run without an evaluation; the page shows no results "
        f"(run `adamml eval --checkpoint {folder / 'best.pt'} --data STORE` first)"])


def _find_store(source: Source, given: Path | None) -> Path | None:
    """The prepared store the thumbnails come from: `given`, else the one the evaluation recorded, else the
    demo's own; a warning when there is none."""
    focus = source.focus
    if given is not None:
        candidates = [Path(given)]
    elif source.kind == "demo":
        candidates = [source.folder / DEMO_STORE]
    else:
        candidates = [Path(focus.report.data)] if focus is not None and focus.report.data else []
    for path in candidates:
        if (path / "manifest.jsonl").exists():
            return path
    if focus is not None:
        where = (f"store {candidates[0]} not found (moved?)" if candidates
                 else "the evaluation does not say which store it read")
        source.warnings.append(f"{where}: the page has no thumbnails (give the store with --data STORE)")
    return None
