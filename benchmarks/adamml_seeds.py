"""AdaMML's spread over training seeds on the demo's data: the AdaMML stage, the random-policy baseline at the
selection rates AdaMML reached on validation and weighted fusion, each trained with seeds 0, 1, 2 on the same store
and unimodal models and evaluated on the test split. Weighted fusion moves with the seed too, so each seed's AdaMML
is set against the same seed's fusion, and the means against each other.

Run `make demo` first (it makes the store, the unimodal models and weighted fusion); then

    .venv/bin/python benchmarks/adamml_seeds.py                      # seeds 0 1 2 into runs/seeds
    .venv/bin/python benchmarks/adamml_seeds.py --seeds 0 1 2 3 4 --set train.policy_passes=4 --out runs/seeds-p4

Prints one row per seed and the mean / min / max: top-1, GFLOPs per video and its fraction of fusion's, fusion's
top-1 and the gap to it, the gap to the random policy at the same rates, and the share of the computed RGB and
flow cells that were informative (audio is left out of that share: it is always worth its small cost here, see the
README). Finished trainings and evaluations are reused, so an interrupted run picks up where it stopped; so are the
demo's own runs where they were trained with the same configuration (its seed, no --set). Writes seeds.json.

`--no-baselines` trains the AdaMML stage alone (a third of a seed's time): for a variant that changes only AdaMML's
keys, copy each seed's `fusion` folder from an earlier run into OUT/seedN/ first and it is evaluated and compared;
where none is there, the fusion and random columns stay empty.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adamml.config import load_config
from adamml.data.layout import read_jsonl
from adamml.workflows.demo_pipeline import MODALITIES, policy_vs_truth
from adamml.workflows.steps import SWEEP, Reused, eval_once, train_once


def _value(result):
    return result.value if isinstance(result, Reused) else result


def reuse_demo_run(demo: Path, name: str, cfg, folder: Path) -> None:
    """Copy the demo's run `name` into `folder` when the demo trained it with exactly `cfg` (the demo's own seed, no
    overrides): the same training again would give the same checkpoint on this machine."""
    saved = demo / name / "config.yaml"
    if (folder / name).exists() or not (demo / name / "summary.json").exists() or not saved.exists():
        return
    if load_config(str(saved)) == cfg:
        shutil.copytree(demo / name, folder / name)


def run_seed(seed: int, args: argparse.Namespace, store: Path, init: list[Path], classes: int,
             console: Console) -> dict:
    folder = args.out / f"seed{seed}"
    overrides = [f"model.num_classes={classes}", f"train.seed={seed}", *args.overrides]
    cfg = load_config(args.config, overrides)
    reuse_demo_run(args.demo, "adamml", cfg, folder)
    reuse_demo_run(args.demo, "fusion", cfg, folder)
    started = time.perf_counter()
    trained = train_once(cfg, "adamml", store, folder / "adamml", console, init)
    train_seconds = None if isinstance(trained, Reused) else time.perf_counter() - started
    val = _value(eval_once(folder / "adamml" / "best.pt", store, "val", folder / "adamml" / "eval-val", console))
    test = _value(eval_once(folder / "adamml" / "best.pt", store, "test", folder / "adamml" / "eval-test", console,
                            list(SWEEP)))
    rnd = fusion = None
    if not args.no_baselines:
        rates = [f"train.random_rates.{m}={val.selection_rate[m]:.4f}" for m in MODALITIES]
        random_cfg = load_config(args.config, overrides + rates)
        reuse_demo_run(args.demo, "random", random_cfg, folder)
        train_once(random_cfg, "random", store, folder / "random", console, init)
        rnd = _value(eval_once(folder / "random" / "best.pt", store, "test", folder / "random" / "eval-test",
                               console))
    if not args.no_baselines:
        train_once(cfg, "fusion", store, folder / "fusion", console, init)
    if (folder / "fusion" / "summary.json").exists():  # trained above, or copied in from an earlier run
        fusion = _value(eval_once(folder / "fusion" / "best.pt", store, "test", folder / "fusion" / "eval-test",
                                  console))
    truth = {row["id"]: row for row in read_jsonl(args.demo / "data" / "ground_truth.jsonl")}
    decisions = json.loads((folder / "adamml" / "eval-test" / "decisions.json").read_text())
    vs_truth = policy_vs_truth(decisions, truth)
    return {"seed": seed, "top1": test.top1, "gflops": test.gflops_per_video,
            "selection": test.selection_rate,
            "random_top1": rnd and rnd.top1, "random_gflops": rnd and rnd.gflops_per_video,
            "fusion_top1": fusion and fusion.top1, "fusion_gflops": fusion and fusion.gflops_per_video,
            "visual_precision": vs_truth["visual_precision"],
            "coverage": {m: v["covered"] for m, v in vs_truth["per_modality"].items()},
            "val_top1": val.top1, "train_seconds": train_seconds,
            "sweep": [{k: getattr(r, k) for k in ("threshold", "top1", "gflops_per_video")} for r in test.sweep]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="a finished `adamml demo` folder")
    parser.add_argument("--out", type=Path, default=Path("runs/seeds"))
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-baselines", action="store_true",
                        help="train only the AdaMML stage: no random policy, and weighted fusion only where a "
                             "finished one is already in OUT/seedN/fusion (copy it from an earlier run: always-on "
                             "fusion does not depend on the AdaMML-only keys)")
    args = parser.parse_args()
    console = Console(stderr=True, soft_wrap=True)
    store = args.demo / "store"
    init = [args.demo / f"unimodal-{m}" / "best.pt" for m in MODALITIES]
    missing = [str(p) for p in [store / "manifest.jsonl", *init] if not p.exists()]
    if missing:
        raise SystemExit(f"{missing[0]} not found: run `make demo` (or `adamml demo --out {args.demo}`) first")
    classes = len((store / "classes.txt").read_text().split("\n")) - 1
    rows = [run_seed(seed, args, store, init, classes, console) for seed in args.seeds]

    table = Table(title="AdaMML and weighted fusion over seeds (test split)")
    for col in ("seed", "top-1 (%)", "GFLOPs", "fusion (%)", "vs fusion", "of fusion's GFLOPs", "random (%)",
                "vs random", "rgb/flow cells informative", "train s"):
        table.add_column(col, justify="right")

    def show(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def gap(a, b):
        return None if a is None or b is None else a - b

    def cells(top1, gflops, fusion, gap_fusion, fusion_gflops, rnd, gap_random, precision, seconds):
        share = None if fusion_gflops is None else 100 * gflops / fusion_gflops
        return [f"{top1:.2f}", f"{gflops:.4f}", show(fusion, ".2f"), show(gap_fusion, "+.2f"),
                show(share, ".1f") + (" %" if share is not None else ""), show(rnd, ".2f"), show(gap_random, "+.2f"),
                f"{100 * precision:.1f} %", seconds]

    for r in rows:
        table.add_row(str(r["seed"]), *cells(r["top1"], r["gflops"], r["fusion_top1"], gap(r["top1"], r["fusion_top1"]),
                                             r["fusion_gflops"],
                                             r["random_top1"], gap(r["top1"], r["random_top1"]), r["visual_precision"],
                                             "reused" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"))
    for name, fn in (("mean", statistics.mean), ("min", min), ("max", max)):
        def over(values):
            known = [v for v in values if v is not None]
            return fn(known) if len(known) == len(rows) else None  # a baseline missing in any seed: no summary

        table.add_row(name, *cells(*(over(r[k] for r in rows) for k in ("top1", "gflops", "fusion_top1")),
                                   over(gap(r["top1"], r["fusion_top1"]) for r in rows),
                                   *(over(r[k] for r in rows) for k in ("fusion_gflops", "random_top1")),
                                   over(gap(r["top1"], r["random_top1"]) for r in rows),
                                   over(r["visual_precision"] for r in rows), ""))
    console.print(table)
    console.print("min and max are taken per column; \"vs fusion\" and \"vs random\" pair each seed's AdaMML with the "
                  "same seed's baseline")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps({"overrides": args.overrides, "seeds": rows}, indent=1))


if __name__ == "__main__":
    main()
