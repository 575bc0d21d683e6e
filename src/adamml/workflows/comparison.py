"""Training and evaluating a list of methods from one configuration: the library behind `adamml compare`
(`adamml.cli.compare` says what it runs and writes)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from adamml.config import Config, load_config
from adamml.data.dataset import Store
from adamml.inference.results import EvalReport
from adamml.modalities import MODALITIES, check_modalities
from adamml.report.page import write_page_after
from adamml.report.viz import pareto_figure
from adamml.runtime.jsonfile import write_json
from adamml.stages import STAGES, UNIMODAL, Stage, get_stage
from adamml.workflows.steps import SWEEP, Steps, eval_once, train_once

@dataclass(frozen=True)
class Method:
    """One row of the comparison: a training stage on a set of modalities."""

    stage: str
    modalities: tuple[str, ...]

    @property
    def key(self) -> str:
        """Folder and JSON key, e.g. ``fusion-rgb+flow`` or ``unimodal-rgb``."""
        return f"{self.stage}-{'+'.join(self.modalities)}"

    @property
    def record(self) -> Stage:
        return get_stage(self.stage)

    @property
    def label(self) -> str:
        return self.record.method_label(self.modalities)


def parse_method(text: str, default_modalities: tuple[str, ...]) -> Method:
    """``rgb`` -> unimodal RGB; ``fusion`` -> fusion on the config's modalities; ``fusion:rgb+flow``."""
    text = text.strip()
    if text in MODALITIES:
        return Method(UNIMODAL, (text,))
    stage, _, mods = text.partition(":")
    if stage not in STAGES:
        raise ValueError(f"unknown method {text!r}: the stage must be one of {', '.join(STAGES)} "
                         f"(or a modality name: {', '.join(MODALITIES)})")
    modalities = check_modalities(tuple(m for m in mods.split("+") if m)) if mods else default_modalities
    if get_stage(stage).one_modality and len(modalities) != 1:
        raise ValueError(f"{text!r}: a {stage} method takes one modality (e.g. {stage}:rgb, or just rgb)")
    if not get_stage(stage).one_modality and len(modalities) < 2:
        raise ValueError(f"{text!r}: {stage} combines modalities; give at least two (e.g. {stage}:rgb+flow)")
    return Method(stage, modalities)


def plan(methods: list[Method]) -> list[Method]:
    """The methods in training order, without repeats: every needed unimodal model first, then the rest in the
    given order except that a method whose rates come from another (the random policy's, from AdaMML's) comes
    right after that one on the same modalities."""
    ordered: list[Method] = []
    for method in methods:
        for m in method.modalities:
            uni = Method(UNIMODAL, (m,))
            if uni not in ordered:
                ordered.append(uni)
    rest = [m for m in dict.fromkeys(methods) if not m.record.one_modality]
    followers = [m for m in rest if m.record.rates_from and rates_source(m) in rest]
    for method in rest:
        if method not in followers:
            ordered.append(method)
        ordered += [f for f in followers if rates_source(f) == method]
    return ordered


def rates_source(method: Method) -> Method | None:
    """The method whose validation selection rates `method` decides at (AdaMML's, for the random policy)."""
    source = method.record.rates_from
    return Method(source, method.modalities) if source else None


def method_config(cfg: Config, method: Method) -> Config:
    """The comparison's config with the method's modalities."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, modalities=method.modalities))


def run_compare(config: str, data: Path, out: Path, methods: list[Method], split: str = "test",
                overrides: list[str] = (), console: Console | None = None) -> dict[str, Any]:
    """Train / evaluate `methods` (plus the unimodal models they need) and write the comparison into `out`."""
    console = console or Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()
    store = Store.open(data)
    num_classes = len(store.classes)
    overrides = [f"model.num_classes={num_classes}", *overrides]
    cfg = load_config(config, overrides)
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(console, record=out / "steps.json")
    reports: dict[str, EvalReport] = {}
    labels: dict[str, str] = {}
    seconds: dict[str, dict[str, float]] = {}
    for method in plan(methods):
        folder = out / method.key
        extra: list[str] = []
        if method.record.rates_from:
            source = out / rates_source(method).key
            if (source / "best.pt").exists():
                val = steps.run(f"{source.name}: selection rates (validation)", eval_once, source / "best.pt", data,
                                cfg.data.val_split, source / "eval-val", console)
                extra = [f"train.random_rates.{m}={val.selection_rate[m]:.4f}" for m in method.modalities]
        run_cfg = method_config(load_config(config, overrides + extra) if extra else cfg, method)
        init = [out / Method(UNIMODAL, (m,)).key / "best.pt" for m in method.modalities] \
            if method.record.needs_init else []
        steps.run(f"train {method.key}", train_once, run_cfg, method.stage, data, folder, console, init)
        sweep = SWEEP if get_stage(method.stage).uses_policy else ()
        reports[method.key] = steps.run(f"evaluate {method.key}", eval_once, folder / "best.pt", data, split,
                                        folder / f"eval-{split}", console, None, sweep)
        labels[method.key] = method.label
        seconds[method.key] = {"train": steps.times[f"train {method.key}"],
                               "evaluate": steps.times[f"evaluate {method.key}"]}
    result = write_comparison(out, reports, labels, seconds, split, time.perf_counter() - started)
    console.print(comparison_table(reports, labels, seconds))
    console.print(f"{len(reports)} methods in {time.perf_counter() - started:.0f} s -> {out / 'compare.md'}")
    write_page_after(out, console)
    return result


def _as_flow(modalities: list[str]) -> frozenset[str]:
    """A modality set with RGBDiff counted as flow (its stand-in, supplementary Table 2)."""
    return frozenset("flow" if m == "rgbdiff" else m for m in modalities)


def savings(reports: dict[str, EvalReport]) -> list[dict[str, Any]]:
    """For every AdaMML run: accuracy difference and GFLOPs saving against each other multi-modal method on the
    same modalities (RGBDiff standing in for flow)."""
    rows = []
    for key, ada in reports.items():
        if not get_stage(ada.stage).uses_policy:
            continue
        for other_key, other in reports.items():
            if (other_key == key or get_stage(other.stage).one_modality or other.gflops_per_video <= 0
                    or _as_flow(other.modalities) != _as_flow(ada.modalities)):
                continue
            rows.append({"adamml": key, "versus": other_key, "top1_difference": ada.top1 - other.top1,
                         "mAP_difference": ada.mAP - other.mAP,
                         "gflops_saving": 1.0 - ada.gflops_per_video / other.gflops_per_video})
    return rows


def _marker(stage: Stage) -> str:
    """The figure's marker of a stage: a star for a policy, a square for one modality, a diamond for fusion."""
    return "*" if stage.uses_policy else "s" if stage.one_modality else "D"


def _selection(report: EvalReport) -> str:
    return " / ".join(f"{m} {100 * r:.0f} %" for m, r in report.selection_rate.items())


def comparison_table(reports: dict[str, EvalReport], labels: dict[str, str], seconds: dict[str, dict[str, float]]) -> Table:
    table = Table(title="Comparison (test split)")
    for col in ("method", "modalities", "top-1 (%)", "mAP (%)", "GFLOPs / video", "selection", "train s"):
        table.add_column(col, justify="left" if col in ("method", "modalities", "selection") else "right")
    for key, r in reports.items():
        table.add_row(labels[key], "+".join(r.modalities), f"{r.top1:.2f}", f"{r.mAP:.2f}",
                      f"{r.gflops_per_video:.4f}", _selection(r), f"{seconds[key]['train']:.0f}")
    return table


def write_comparison(out: Path, reports: dict[str, EvalReport], labels: dict[str, str], seconds: dict[str, dict[str, float]], split: str,
                     total: float) -> dict[str, Any]:
    rows = savings(reports)
    lines = [f"# adamml compare ({split} split)", "",
             "Every method trained and evaluated the same way; GFLOPs are multiply-accumulates of conv and linear "
             "layers per video, counted on the real networks from the decisions actually taken.", "",
             "| method | modalities | top-1 (%) | mAP (%) | GFLOPs / video | selection | videos/s | train s | eval s |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for key, r in reports.items():
        lines.append(f"| {labels[key]} | {'+'.join(r.modalities)} | {r.top1:.2f} | {r.mAP:.2f} | "
                     f"{r.gflops_per_video:.4f} | {_selection(r)} | {r.videos_per_second:.1f} | "
                     f"{seconds[key]['train']:.1f} | {seconds[key]['evaluate']:.1f} |")
    if rows:
        lines += ["", "## AdaMML against each method on the same modalities", "",
                  "| AdaMML | versus | top-1 difference (points) | GFLOPs saved |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {r['adamml']} | {r['versus']} | {r['top1_difference']:+.2f} | {100 * r['gflops_saving']:.1f} % |"
                  for r in rows]
    sweeps = [(key, r) for key, r in reports.items() if r.sweep]
    for key, r in sweeps:
        lines += ["", f"## Threshold sweep ({key})", "", "| threshold | top-1 (%) | GFLOPs / video |",
                  "| ---: | ---: | ---: |"]
        lines += [f"| {s.threshold:g} | {s.top1:.2f} | {s.gflops_per_video:.4f} |" for s in r.sweep]
    lines += ["", f"Total wall time {total:.1f} s. Figure: `compare.png`."]
    (out / "compare.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    methods = {key: {**r.to_json(), "label": labels[key]} for key, r in reports.items()}
    payload = {"split": split, "methods": methods, "seconds": seconds, "adamml_vs": rows, "total_seconds": total}
    write_json(out / "compare.json", payload, indent=1, default=str)
    points = [{"name": f"{labels[key]} ({'+'.join(r.modalities)})", "gflops": r.gflops_per_video,
               "top1": r.top1, "marker": _marker(get_stage(r.stage))}
              for key, r in reports.items()]
    sweep = [{"threshold": s.threshold, "gflops": s.gflops_per_video, "top1": s.top1}
             for s in sweeps[0][1].sweep] if sweeps else []
    pareto_figure(points, sweep, out / "compare.png", title=f"Accuracy vs GFLOPs ({split} split)")
    return payload
