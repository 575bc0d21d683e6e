"""AdaMML's spread over training seeds on the demo's data: the AdaMML stage (and the random-policy baseline at the
selection rates AdaMML reached on validation) trained with seeds 0, 1, 2 on the same store and unimodal models,
each evaluated on the test split, against weighted fusion.

Run `make demo` first (it makes the store, the unimodal models and weighted fusion); then

    .venv/bin/python benchmarks/adamml_seeds.py                      # seeds 0 1 2 into runs/seeds
    .venv/bin/python benchmarks/adamml_seeds.py --seeds 0 1 2 3 4 --set train.policy_passes=4 --out runs/seeds-p4

Prints one row per seed and the mean / min / max: top-1, GFLOPs per video and its fraction of fusion's, the gap to
fusion, the gap to the random policy at the same rates, and the share of the computed RGB and flow cells that were
informative (audio is left out of that share: it is always worth its small cost here, see the README). Finished
trainings and evaluations are reused, so an interrupted run picks up where it stopped. Writes seeds.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adamml.config import load_config
from adamml.demo import MODALITIES, policy_vs_truth
from adamml.prepare.layout import read_jsonl
from adamml.steps import SWEEP, Reused, eval_once, train_once


def _value(result):
    return result.value if isinstance(result, Reused) else result


def run_seed(seed: int, args: argparse.Namespace, store: Path, init: list[Path], classes: int,
             console: Console) -> dict:
    folder = args.out / f"seed{seed}"
    overrides = [f"model.num_classes={classes}", f"train.seed={seed}", *args.overrides]
    cfg = load_config(args.config, overrides)
    started = time.perf_counter()
    trained = train_once(cfg, "adamml", store, folder / "adamml", console, init)
    train_seconds = None if isinstance(trained, Reused) else time.perf_counter() - started
    val = _value(eval_once(folder / "adamml" / "best.pt", store, "val", folder / "adamml" / "eval-val", console))
    test = _value(eval_once(folder / "adamml" / "best.pt", store, "test", folder / "adamml" / "eval-test", console,
                            list(SWEEP)))
    rates = [f"train.random_rates.{m}={val.selection_rate[m]:.4f}" for m in MODALITIES]
    random_cfg = load_config(args.config, overrides + rates)
    train_once(random_cfg, "random", store, folder / "random", console, init)
    rnd = _value(eval_once(folder / "random" / "best.pt", store, "test", folder / "random" / "eval-test", console))
    truth = {row["id"]: row for row in read_jsonl(args.demo / "data" / "ground_truth.jsonl")}
    decisions = json.loads((folder / "adamml" / "eval-test" / "decisions.json").read_text())
    vs_truth = policy_vs_truth(decisions, truth)
    return {"seed": seed, "top1": test.top1, "gflops": test.gflops_per_video,
            "selection": test.selection_rate, "random_top1": rnd.top1, "random_gflops": rnd.gflops_per_video,
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
    args = parser.parse_args()
    console = Console(stderr=True, soft_wrap=True)
    store = args.demo / "store"
    fusion_report = args.demo / "fusion" / "eval-test" / "report.json"
    if not fusion_report.exists():
        raise SystemExit(f"{fusion_report} not found: run `make demo` (or `adamml demo --out {args.demo}`) first")
    fusion = json.loads(fusion_report.read_text())
    init = [args.demo / f"unimodal-{m}" / "best.pt" for m in MODALITIES]
    classes = len((store / "classes.txt").read_text().split("\n")) - 1
    rows = [run_seed(seed, args, store, init, classes, console) for seed in args.seeds]

    table = Table(title=f"AdaMML over seeds (test split; weighted fusion {fusion['top1']:.2f} % at "
                        f"{fusion['gflops_per_video']:.4f} GFLOPs)")
    for col in ("seed", "top-1 (%)", "vs fusion", "GFLOPs", "of fusion", "random (%)", "vs random",
                "rgb/flow cells informative", "train s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["seed"]), f"{r['top1']:.2f}", f"{r['top1'] - fusion['top1']:+.2f}", f"{r['gflops']:.4f}",
                      f"{100 * r['gflops'] / fusion['gflops_per_video']:.1f} %", f"{r['random_top1']:.2f}",
                      f"{r['top1'] - r['random_top1']:+.2f}", f"{100 * r['visual_precision']:.1f} %",
                      "reused" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}")
    for name, fn in (("mean", statistics.mean), ("min", min), ("max", max)):
        top1, gflops = fn(r["top1"] for r in rows), fn(r["gflops"] for r in rows)
        table.add_row(name, f"{top1:.2f}", f"{top1 - fusion['top1']:+.2f}", f"{gflops:.4f}",
                      f"{100 * gflops / fusion['gflops_per_video']:.1f} %",
                      f"{fn(r['random_top1'] for r in rows):.2f}",
                      f"{fn(r['top1'] - r['random_top1'] for r in rows):+.2f}",
                      f"{100 * fn(r['visual_precision'] for r in rows):.1f} %", "")
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps({"fusion": {"top1": fusion["top1"],
                                                                "gflops": fusion["gflops_per_video"]},
                                                     "overrides": args.overrides, "seeds": rows}, indent=1))


if __name__ == "__main__":
    main()
