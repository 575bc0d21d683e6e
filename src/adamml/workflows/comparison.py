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
from adamml.data.dataset import Store, sampling_config
from adamml.data.layout import StoreError
from adamml.data.splits import TRAIN, split_rows
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

    def key(self, default: tuple[str, ...] = ()) -> str:
        """The run's folder and JSON key: ``unimodal-rgb``; ``fusion`` on the job's own modalities (`default`: the
        config's), ``fusion-rgb+flow`` on others. `adamml demo` and `adamml compare` lay their runs out this way."""
        if self.modalities == tuple(default) and not self.record.one_modality:
            return self.stage
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


def with_random_rates(cfg: Config, rates: dict[str, float]) -> Config:
    """`cfg` with the random policy deciding at `rates` (per modality, to 4 decimals: as `config.yaml` shows them)."""
    rounded = {m: round(float(r), 4) for m, r in rates.items()}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, random_rates=rounded))


@dataclass
class PlanRun:
    """What `run_plan` did for one method: where, its report on the split evaluated, and how long each took."""

    method: Method
    key: str
    folder: Path
    report: EvalReport
    seconds: dict[str, float]


def run_plan(cfg: Config, data: Path, out: Path, methods: list[Method], split: str, steps: Steps,
             console: Console) -> list[PlanRun]:
    """Train and evaluate `methods` and the unimodal models they need, in `plan` order, each in `out / key`:
    the recognizers of a fused method start from its unimodal models; a method whose rates come from another
    (the random policy) decides at that one's selection rates on `cfg.data.val_split`; a policy is evaluated at
    its operating point with the `SWEEP` thresholds beside. Finished steps are reused (`adamml.workflows.steps`)."""
    store = Store.open(data)
    holdout = sampling_config(cfg).holdout
    for name in dict.fromkeys((TRAIN, cfg.data.val_split, split)):  # before the first training, not after it
        if not split_rows(store.rows, name, holdout, str(data)):
            have = sorted({str(r.get("split")) for r in store.rows})
            raise StoreError(f"{data}: no prepared videos in split {name!r} (it has {', '.join(have) or 'none'})")
    default = cfg.model.modalities
    runs: list[PlanRun] = []
    for method in plan(methods):
        key = method.key(default)
        folder = out / key
        run_cfg = method_config(cfg, method)
        source = rates_source(method)
        if source is not None and (out / source.key(default) / "best.pt").exists():
            source_folder = out / source.key(default)
            val = steps.run(f"{source_folder.name}: selection rates ({cfg.data.val_split})", eval_once,
                            source_folder / "best.pt", data, cfg.data.val_split,
                            source_folder / f"eval-{cfg.data.val_split}", console)
            run_cfg = with_random_rates(run_cfg, {m: val.selection_rate[m] for m in method.modalities})
        init = [out / Method(UNIMODAL, (m,)).key() / "best.pt" for m in method.modalities] \
            if method.record.needs_init else []
        steps.run(f"train {key}", train_once, run_cfg, method.stage, data, folder, console, init)
        sweep = SWEEP if method.record.uses_policy else ()
        report = steps.run(f"evaluate {key}", eval_once, folder / "best.pt", data, split, folder / f"eval-{split}",
                           console, None, sweep)
        runs.append(PlanRun(method, key, folder, report, {"train": steps.times[f"train {key}"],
                                                          "evaluate": steps.times[f"evaluate {key}"]}))
    return runs


def run_compare(config: str, data: Path, out: Path, methods: list[Method], split: str = "test",
                overrides: list[str] = (), console: Console | None = None) -> dict[str, Any]:
    """Train / evaluate `methods` (plus the unimodal models they need) and write the comparison into `out`."""
    console = console or Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()
    num_classes = len(Store.open(data).classes)
    if num_classes < 2:  # else the config would say "model.num_classes must be positive"
        raise StoreError(f"{data}: {num_classes} class(es) in its classes.txt; a comparison trains on labelled "
                         "videos of at least 2 classes (prepare a list with labels, or --classes FILE)")
    cfg = load_config(config, [f"model.num_classes={num_classes}", *overrides])
    out.mkdir(parents=True, exist_ok=True)
    runs = run_plan(cfg, data, out, methods, split, Steps(console, record=out / "steps.json"), console)
    reports = {r.key: r.report for r in runs}
    labels = {r.key: r.method.label for r in runs}
    seconds = {r.key: r.seconds for r in runs}
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
