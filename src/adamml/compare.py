"""`adamml compare`: train and evaluate a list of methods from one configuration, and write one table and one plot.

The supplementary material compares AdaMML with other fusion methods and RGBDiff with optical flow (Table 2).
This command runs such a comparison on any prepared store, every method trained and measured the same way:

    adamml compare --config tiny --data STORE --out runs/compare \\
        --methods rgb flow rgbdiff fusion:rgb+flow fusion:rgb+rgbdiff adamml:rgb+flow

A method is ``STAGE[:MODALITY+MODALITY...]`` (the stages of `adamml train`; without modalities, the config's),
or a bare modality name for its unimodal model. Every multi-modal method starts from the unimodal models of its
modalities, which are trained first (and listed in the table). `random` uses the selection rates that AdaMML
with the same modalities reached on the validation split when AdaMML is in the list (the paper's random-policy
baseline at the same rate), else ``train.random_rates``. `--preset baselines` (every fusion baseline, the
random policy and AdaMML on the config's modalities) and `--preset rgbdiff` (Table 2's RGB / Flow / RGBDiff
layout) name common lists.

Writes ``OUT/<method>/`` (each run with its checkpoints and ``eval-<split>/`` report), ``compare.md``,
``compare.json`` and ``compare.png`` (accuracy against GFLOPs per video with AdaMML's threshold sweep). Runs that
finished earlier are reused; an interrupted training resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from adamml.config import Config, load_config
from adamml.data.dataset import Store
from adamml.modalities import MODALITIES, check_modalities
from adamml.train.stages import STAGES
from adamml.viz import pareto_figure
from adamml.workflow import SWEEP, Steps, eval_once, train_once

LABELS = {
    "unimodal": "Unimodal", "fusion": "Weighted fusion", "average": "Average fusion", "gating": "Gating fusion",
    "lateral-uni": "Mid-level fusion, unilateral", "lateral-bi": "Mid-level fusion, bilateral",
    "context-gating": "Context gating", "gradient-blending": "Gradient blending", "random": "Random policy",
    "adamml": "AdaMML",
}
MODALITY_LABELS = {"rgb": "RGB", "flow": "Flow", "rgbdiff": "RGBDiff", "audio": "Audio"}
PRESETS = {
    "baselines": ["average", "fusion", "gating", "lateral-uni", "lateral-bi", "context-gating", "gradient-blending",
                  "adamml", "random"],
    "rgbdiff": ["rgb", "flow", "rgbdiff", "fusion:rgb+flow", "fusion:rgb+rgbdiff", "adamml:rgb+flow"],
}


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
    def label(self) -> str:
        if self.stage == "unimodal":
            return MODALITY_LABELS.get(self.modalities[0], self.modalities[0])
        return LABELS.get(self.stage, self.stage)


def parse_method(text: str, default_modalities: tuple[str, ...]) -> Method:
    """``rgb`` -> unimodal RGB; ``fusion`` -> fusion on the config's modalities; ``fusion:rgb+flow``."""
    text = text.strip()
    if text in MODALITIES:
        return Method("unimodal", (text,))
    stage, _, mods = text.partition(":")
    if stage not in STAGES:
        raise ValueError(f"unknown method {text!r}: the stage must be one of {', '.join(STAGES)} "
                         f"(or a modality name: {', '.join(MODALITIES)})")
    modalities = check_modalities(tuple(m for m in mods.split("+") if m)) if mods else default_modalities
    if stage == "unimodal" and len(modalities) != 1:
        raise ValueError(f"{text!r}: a unimodal method takes one modality (e.g. unimodal:rgb, or just rgb)")
    if stage != "unimodal" and len(modalities) < 2:
        raise ValueError(f"{text!r}: {stage} combines modalities; give at least two (e.g. {stage}:rgb+flow)")
    return Method(stage, modalities)


def plan(methods: list[Method]) -> list[Method]:
    """The methods in training order, without repeats: every needed unimodal model first, then the rest in the
    given order except that `random` comes after the `adamml` of the same modalities (it uses its rates)."""
    ordered: list[Method] = []
    for method in methods:
        for m in method.modalities:
            uni = Method("unimodal", (m,))
            if uni not in ordered:
                ordered.append(uni)
    rest = [m for m in dict.fromkeys(methods) if m.stage != "unimodal"]
    randoms = [m for m in rest if m.stage == "random" and Method("adamml", m.modalities) in rest]
    for method in rest:
        if method not in randoms:
            ordered.append(method)
        if method.stage == "adamml":
            ordered += [r for r in randoms if r.modalities == method.modalities]
    return ordered


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
    reports: dict[str, dict] = {}
    seconds: dict[str, dict[str, float]] = {}
    for method in plan(methods):
        folder = out / method.key
        extra: list[str] = []
        if method.stage == "random":
            source = out / Method("adamml", method.modalities).key
            if (source / "best.pt").exists():
                val = steps.run(f"{source.name}: selection rates (validation)", eval_once, source / "best.pt", data,
                                cfg.data.val_split, source / "eval-val", console)
                extra = [f"train.random_rates.{m}={val['selection_rate'][m]:.4f}" for m in method.modalities]
        run_cfg = method_config(load_config(config, overrides + extra) if extra else cfg, method)
        init = [out / Method("unimodal", (m,)).key / "best.pt" for m in method.modalities] \
            if method.stage != "unimodal" else []
        steps.run(f"train {method.key}", train_once, run_cfg, method.stage, data, folder, console, init)
        thresholds = list(SWEEP) if method.stage == "adamml" else None
        reports[method.key] = steps.run(f"evaluate {method.key}", eval_once, folder / "best.pt", data, split,
                                        folder / f"eval-{split}", console, thresholds)
        reports[method.key]["label"] = method.label
        seconds[method.key] = {"train": steps.times[f"train {method.key}"],
                               "evaluate": steps.times[f"evaluate {method.key}"]}
    result = write_comparison(out, reports, seconds, split, time.perf_counter() - started)
    console.print(comparison_table(reports, seconds))
    console.print(f"{len(reports)} methods in {time.perf_counter() - started:.0f} s -> {out / 'compare.md'}")
    return result


def _as_flow(modalities: list[str]) -> frozenset[str]:
    """A modality set with RGBDiff counted as flow (its stand-in, supplementary Table 2)."""
    return frozenset("flow" if m == "rgbdiff" else m for m in modalities)


def savings(reports: dict[str, dict]) -> list[dict[str, Any]]:
    """For every AdaMML run: accuracy difference and GFLOPs saving against each other multi-modal method on the
    same modalities (RGBDiff standing in for flow)."""
    rows = []
    for key, ada in reports.items():
        if ada["stage"] != "adamml":
            continue
        for other_key, other in reports.items():
            if (other_key == key or other["stage"] == "unimodal" or other["gflops_per_video"] <= 0
                    or _as_flow(other["modalities"]) != _as_flow(ada["modalities"])):
                continue
            rows.append({"adamml": key, "versus": other_key, "top1_difference": ada["top1"] - other["top1"],
                         "mAP_difference": ada["mAP"] - other["mAP"],
                         "gflops_saving": 1.0 - ada["gflops_per_video"] / other["gflops_per_video"]})
    return rows


def _selection(report: dict) -> str:
    return " / ".join(f"{m} {100 * r:.0f} %" for m, r in report["selection_rate"].items())


def comparison_table(reports: dict[str, dict], seconds: dict[str, dict[str, float]]) -> Table:
    table = Table(title="Comparison (test split)")
    for col in ("method", "modalities", "top-1 (%)", "mAP (%)", "GFLOPs / video", "selection", "train s"):
        table.add_column(col, justify="left" if col in ("method", "modalities", "selection") else "right")
    for key, r in reports.items():
        table.add_row(r["label"], "+".join(r["modalities"]), f"{r['top1']:.2f}", f"{r['mAP']:.2f}",
                      f"{r['gflops_per_video']:.4f}", _selection(r), f"{seconds[key]['train']:.0f}")
    return table


def write_comparison(out: Path, reports: dict[str, dict], seconds: dict[str, dict[str, float]], split: str,
                     total: float) -> dict[str, Any]:
    rows = savings(reports)
    lines = [f"# adamml compare ({split} split)", "",
             "Every method trained and evaluated the same way; GFLOPs are multiply-accumulates of conv and linear "
             "layers per video, counted on the real networks from the decisions actually taken.", "",
             "| method | modalities | top-1 (%) | mAP (%) | GFLOPs / video | selection | videos/s | train s | eval s |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for key, r in reports.items():
        lines.append(f"| {r['label']} | {'+'.join(r['modalities'])} | {r['top1']:.2f} | {r['mAP']:.2f} | "
                     f"{r['gflops_per_video']:.4f} | {_selection(r)} | {r['videos_per_second']:.1f} | "
                     f"{seconds[key]['train']:.1f} | {seconds[key]['evaluate']:.1f} |")
    if rows:
        lines += ["", "## AdaMML against each method on the same modalities", "",
                  "| AdaMML | versus | top-1 difference (points) | GFLOPs saved |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {r['adamml']} | {r['versus']} | {r['top1_difference']:+.2f} | {100 * r['gflops_saving']:.1f} % |"
                  for r in rows]
    sweeps = [(key, r) for key, r in reports.items() if r.get("sweep")]
    for key, r in sweeps:
        lines += ["", f"## Threshold sweep ({key})", "", "| threshold | top-1 (%) | GFLOPs / video |",
                  "| ---: | ---: | ---: |"]
        lines += [f"| {s['threshold']:g} | {s['top1']:.2f} | {s['gflops_per_video']:.4f} |" for s in r["sweep"]]
    lines += ["", f"Total wall time {total:.1f} s. Figure: `compare.png`."]
    (out / "compare.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    payload = {"split": split, "methods": reports, "seconds": seconds, "adamml_vs": rows, "total_seconds": total}
    (out / "compare.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    points = [{"name": f"{r['label']} ({'+'.join(r['modalities'])})", "gflops": r["gflops_per_video"],
               "top1": r["top1"], "marker": "*" if r["stage"] == "adamml" else "s" if r["stage"] == "unimodal" else "D"}
              for r in reports.values()]
    sweep = [{"threshold": s["threshold"], "gflops": s["gflops_per_video"], "top1": s["top1"]}
             for s in sweeps[0][1]["sweep"]] if sweeps else []
    pareto_figure(points, sweep, out / "compare.png", title=f"Accuracy vs GFLOPs ({split} split)")
    return payload


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="train and evaluate a list of methods; one table and one plot",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="preset name or YAML path shared by every method")
    p.add_argument("--data", type=Path, required=True, help="prepared store")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs and the comparison")
    p.add_argument("--methods", nargs="+", default=[], metavar="METHOD",
                   help="STAGE[:MOD+MOD...] or a modality name (unimodal)")
    p.add_argument("--preset", choices=sorted(PRESETS), action="append", default=[],
                   help="add a named list of methods (repeatable)")
    p.add_argument("--split", default="test", help="split to evaluate on (default test)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for every method (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    texts = [t for name in args.preset for t in PRESETS[name]] + list(args.methods)
    if not texts:
        raise SystemExit("adamml compare: give --methods and/or --preset")
    try:
        methods = [parse_method(t, cfg.model.modalities) for t in texts]
    except ValueError as error:
        raise SystemExit(f"adamml compare: {error}") from None
    run_compare(args.config, args.data, args.out, methods, args.split, args.overrides)
    return 0
