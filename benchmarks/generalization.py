"""Does the recipe hold on data it was not made for? One fixed recipe over the built-in benchmark's variants
(`adamml synth --list-variants`) x training seeds, one table.

Per variant: generate it (data seed 0), prepare it (DIS flow, short side 64). Per training seed: the unimodal
models, weighted fusion, AdaMML (its operating point chosen on the variant's validation split at the end of its
training) and the random policy at AdaMML's validation selection rates, as `adamml compare` trains them; with
--zero-skip also AdaMML with ``model.fusion.skipped_logits=zero`` (the paper's zeros for a skipped modality). The
table gives, on the reported split, each method's top-1 and share of fusion's GFLOPs per video: fusion, AdaMML at
its recorded operating point, AdaMML at the paper's threshold 0.5 (the same model), the random policy.

Design on validation, report on test: `--split val` reports the validation split (for choosing a recipe); the test
split is read only to report a recipe fixed beforehand. Everything is reused when run again (an interrupted run
resumes), as `adamml compare` does.

    python benchmarks/generalization.py --out runs/generalization                      # 5 variants x seeds 0-2
    python benchmarks/generalization.py --variants any-one uneven --seeds 0 --zero-skip --out runs/gen
    python benchmarks/generalization.py --out runs/generalization --table-only          # print what is there
    python benchmarks/generalization.py --split val --eval-scale 5 --out runs/generalization  # splits 5x larger

With --eval-scale K the same trainings are read on validation and test splits K times larger (`data-xK/`,
`store-xK/`; the usual splits' videos are among them): AdaMML's operating point is chosen again on the larger
validation split (a copy of its checkpoint, `seed-N/xK/`) and each validation video's curve is kept for
`benchmarks/operating_rules.py`; the table is `generalization-SPLIT-xK.md`.

On 2 CPU cores one (variant, seed) takes about as long as `make demo` (13-25 min); the whole grid some hours.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from rich.console import Console

from adamml.config import load_config
from adamml.data.dataset import Store
from adamml.inference.calibration import calibrate
from adamml.inference.gflops import video_gmacs
from adamml.inference.operating_point import GRID, at_threshold
from adamml.inference.results import EvalReport
from adamml.prepare.importers import assign_classes, import_annotations
from adamml.prepare.runner import prepare_with_progress
from adamml.prepare.worker import PrepareSettings
from adamml.workflows.comparison import Method, run_compare
from adamml.workflows.steps import SWEEP, Steps, eval_once, train_once
from adamml.workflows.synthetic import VARIANTS, generate, variant_config

DEFAULT_VARIANTS = ("any-one", "all-needed", "mute-audio", "uneven", "distractors")
MODALITIES = ("rgb", "flow", "audio")
PAPER_THRESHOLD = 0.5


def prepare_variant(name: str, out: Path, workers: int, console: Console, scale: int | None = None) -> Path:
    """Generate and prepare one variant (both reused when done); returns the store. With `scale`, only its
    validation and test splits, `scale` times larger (`data-x{scale}`, `store-x{scale}`): a video depends only on
    its split, class and index, so the training store's validation and test videos are the first of each class
    there, and its training videos are the same."""
    config = variant_config(name, seed=0)
    suffix = ""
    if scale is not None:
        config = variant_config(name, seed=0, train_per_class=0, val_per_class=config.val_per_class * scale,
                                test_per_class=config.test_per_class * scale)
        suffix = f"-x{scale}"
    data, store = out / f"data{suffix}", out / f"store{suffix}"
    generate(config, data, workers=workers, console=console)
    imported = import_annotations("csv", data / "annotations.csv", data)
    classes, entries = assign_classes(imported.entries, None, None)
    summary = prepare_with_progress(entries, classes, data, store, PrepareSettings(flow="dis", short_side=64),
                                    workers=workers, console=console)
    if summary.failed:
        raise SystemExit(f"{name}: {summary.failed} videos failed to prepare ({store})")
    return store


def run_seed(config: str, store: Path, out: Path, seed: int, split: str, overrides: list[str], zero_skip: bool,
             console: Console) -> dict:
    """Fusion, AdaMML and the random policy (and their unimodal models) of one training seed; returns the row."""
    sets = [f"train.seed={seed}", *overrides]
    methods = [Method(stage, MODALITIES) for stage in ("fusion", "adamml", "random")]
    run_compare(config, store, out, methods, split, sets, console)
    reports = {m.stage: EvalReport.read(out / m.key(MODALITIES) / f"eval-{split}" / "report.json") for m in methods}
    if zero_skip:
        folder = out / "adamml-zero-skip"
        cfg = load_config(config, [f"model.num_classes={len(Store.open(store).classes)}", *sets,
                                   "model.fusion.skipped_logits=zero"])
        init = [out / Method("unimodal", (m,)).key() / "best.pt" for m in MODALITIES]
        steps = Steps(console)
        steps.run("train AdaMML, skipped logits zero", train_once, cfg, "adamml", store, folder, console, init)
        reports["zero-skip"] = steps.run("evaluate AdaMML, skipped logits zero", eval_once, folder / "best.pt",
                                         store, split, folder / f"eval-{split}", console, None, SWEEP)
    return row(reports)


def run_scaled(out: Path, train_store: Path, store: Path, scale: int, split: str, console: Console) -> dict:
    """The trained runs of one seed (`run_seed`) on the larger splits of `store`: AdaMML's operating point chosen
    again on its validation split (a copy of the checkpoint; the curves of every validation video are kept in
    `val-curves.npz` for studying threshold rules), then fusion, AdaMML and the random policy (at the rates it was
    trained at, from the training store's validation split) evaluated on `split`, and AdaMML with skipped logits
    zero where `--zero-skip` trained it; returns the row."""
    if Store.open(store).classes != Store.open(train_store).classes:
        raise SystemExit(f"{store} and {train_store} name their classes differently")
    folder = out / f"x{scale}"
    steps = Steps(console)
    policies = {"adamml": "adamml", "zero-skip": "adamml-zero-skip"}  # the zero-skip model where --zero-skip made it
    calibrated = {}
    for method, name in policies.items():
        trained, calibrated[method] = out / name / "best.pt", folder / name / "best.pt"
        if not trained.exists():
            continue
        if not calibrated[method].exists() or calibrated[method].stat().st_mtime < trained.stat().st_mtime:
            calibrated[method].parent.mkdir(parents=True, exist_ok=True)
            steps.run(f"calibrate {name} on the x{scale} validation split", calibrate, trained, store, "val",
                      out=calibrated[method], console=console,
                      on_dense=partial(save_curves, folder / name / "val-curves.npz"))
    checkpoints = {"fusion": out / "fusion" / "best.pt", **calibrated, "random": out / "random" / "best.pt"}
    reports = {}
    for method, checkpoint in checkpoints.items():
        if checkpoint.exists():  # evaluated into x{scale}/, never beside the smaller split's reports
            reports[method] = steps.run(f"evaluate {method} on the x{scale} {split} split", eval_once, checkpoint,
                                        store, split, folder / policies.get(method, method) / f"eval-{split}",
                                        console, None, (PAPER_THRESHOLD,) if method == "adamml" else ())
    return row(reports)


def save_curves(path: Path, model, dense, costs) -> None:
    """Per validation video and grid threshold: correct at top-1 and GFLOPs (what a threshold rule reads)."""
    correct, gflops = [], []
    for threshold in GRID:
        logits, decisions = at_threshold(model, dense, threshold)
        correct.append(logits.argmax(axis=1) == dense.labels)
        gflops.append(video_gmacs(decisions, costs, "conv", include_policy=True))
    np.savez_compressed(path, thresholds=np.array(GRID), correct=np.array(correct), gflops=np.array(gflops),
                        labels=dense.labels)


def row(reports: dict[str, EvalReport]) -> dict:
    """One seed's figures: top-1 and share of fusion's GFLOPs of each method."""
    fusion = reports["fusion"]
    ada = reports["adamml"]
    paper = next((p for p in ada.sweep if p.threshold == PAPER_THRESHOLD), None)

    def share(gflops: float) -> float:
        return gflops / fusion.gflops_per_video

    out = {"fusion": fusion.top1,
           "adamml": ada.top1, "adamml_share": share(ada.gflops_per_video), "threshold": ada.threshold,
           "threshold_source": ada.threshold_source,
           "adamml_0.5": paper.top1 if paper else math.nan,
           "adamml_0.5_share": share(paper.gflops_per_video) if paper else math.nan,
           "random": reports["random"].top1, "random_share": share(reports["random"].gflops_per_video)}
    if "zero-skip" in reports:
        zero = reports["zero-skip"]
        out.update({"zero_skip": zero.top1, "zero_skip_share": share(zero.gflops_per_video),
                    "zero_skip_threshold": zero.threshold})
    return out


COLUMNS = (("fusion", None), ("adamml", "adamml_share"), ("adamml_0.5", "adamml_0.5_share"),
           ("random", "random_share"), ("zero_skip", "zero_skip_share"))
HEADERS = {"fusion": "weighted fusion", "adamml": "AdaMML at its operating point",
           "adamml_0.5": "AdaMML at 0.5", "random": "random policy at AdaMML's rates",
           "zero_skip": "AdaMML, skipped logits zero"}


def table(results: dict[str, dict[str, dict]], split: str) -> str:
    """Markdown: one row per (variant, seed), a mean row per variant; top-1 (%) and share of fusion's GFLOPs."""
    present = [c for c in COLUMNS if any(c[0] in r for seeds in results.values() for r in seeds.values())]
    head = ["variant", "seed"] + [HEADERS[c[0]] for c in present] + ["threshold", "AdaMML - fusion",
                                                                      "AdaMML - random"]
    lines = [f"Top-1 (%) on the {split} and, in brackets, GFLOPs per video as a share of weighted fusion's.", "",
             "| " + " | ".join(head) + " |", "| --- | ---: |" + " ---: |" * (len(head) - 2)]

    def cells(r: dict) -> list[str]:
        out = []
        for key, share in present:
            value = r.get(key, math.nan)
            text = "-" if value is None or math.isnan(value) else f"{value:.2f}"
            if share and share in r and not math.isnan(r[share]):
                text += f" ({100 * r[share]:.0f} %)"
            out.append(text)
        return out

    for variant, seeds in results.items():
        for seed, r in sorted(seeds.items()):
            lines.append(f"| {variant} | {seed} | " + " | ".join(cells(r)) + f" | {r['threshold']:g} | "
                         f"{r['adamml'] - r['fusion']:+.2f} | {r['adamml'] - r['random']:+.2f} |")
        if len(seeds) > 1:
            keys = {k for r in seeds.values() for k in r if isinstance(r[k], (int, float))}
            mean = {k: sum(r.get(k, math.nan) for r in seeds.values()) / len(seeds) for k in keys}
            worst = min(r["adamml"] - r["fusion"] for r in seeds.values())
            lines.append(f"| **{variant}** | mean | " + " | ".join(cells(mean)) + f" | | {mean['adamml'] - mean['fusion']:+.2f} "
                         f"(worst seed {worst:+.2f}) | {mean['adamml'] - mean['random']:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/generalization"))
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    parser.add_argument("--config", default="tiny", help="the recipe (a preset or YAML file), fixed for every run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--split", default="test", help="the split reported (val while designing a recipe)")
    parser.add_argument("--zero-skip", action="store_true", help="also AdaMML with model.fusion.skipped_logits=zero")
    parser.add_argument("--eval-scale", type=int, metavar="K",
                        help="choose AdaMML's operating point and report on validation and test splits K times larger "
                             "(the same trainings; the videos of the usual splits included)")
    parser.add_argument("--workers", type=int, default=2, help="processes for synth and prepare")
    parser.add_argument("--table-only", action="store_true", help="print the table of what --out holds, run nothing")
    args = parser.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()
    name = f"generalization-{args.split}" + (f"-x{args.eval_scale}" if args.eval_scale else "")
    record = args.out / f"{name}.json"
    results: dict[str, dict[str, dict]] = json.loads(record.read_text()) if record.exists() else {}
    if not args.table_only:
        for variant in args.variants:
            store = prepare_variant(variant, args.out / variant, args.workers, console)
            larger = (prepare_variant(variant, args.out / variant, args.workers, console, args.eval_scale)
                      if args.eval_scale else None)
            for seed in args.seeds:
                console.rule(f"[bold]{variant}, training seed {seed}")
                results.setdefault(variant, {})[str(seed)] = run_seed(
                    args.config, store, args.out / variant / f"seed-{seed}", seed, args.split, args.set,
                    args.zero_skip, console)
                if larger is not None:
                    results[variant][str(seed)] = run_scaled(args.out / variant / f"seed-{seed}", store, larger,
                                                             args.eval_scale, args.split, console)
                args.out.mkdir(parents=True, exist_ok=True)
                record.write_text(json.dumps(results, indent=1), encoding="utf-8")
    text = table(results, f"{args.split} split" + (f" ({args.eval_scale} times larger)" if args.eval_scale else ""))
    (args.out / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    console.print(f"{sum(len(s) for s in results.values())} runs in the table; {time.perf_counter() - started:.0f} s "
                  f"this time -> {args.out / f'{name}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
