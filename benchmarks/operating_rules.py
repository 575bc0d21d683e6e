"""Which threshold rule carries over to videos it did not see? Split-half cross-validation on validation splits only.

`benchmarks/generalization.py --eval-scale K` keeps, for every (variant, seed), each validation video's top-1
correctness and GFLOPs at every threshold of the operating point's grid (`x{K}/adamml/val-curves.npz`). Here each
rule chooses a threshold on a random half of those videos and is scored on the other half, many times over:

- held-out top-1 against computing every cell: the other half's top-1 at the chosen threshold minus its top-1
  at threshold 0 (a fixed reference, so the figure has no selection bias; positive where the policy's model beats
  itself computing everything, as it often does);
- held-out cost: GFLOPs per video at the chosen threshold, as a share of computing every cell.

A rule is (margin in points, neighbourhood half-width in grid steps): the fewest GFLOPs whose worst score over
the threshold and its neighbours stays within the margin of the reference (`operating_point.choose`); "fixed t" is
a constant threshold. No test split is read.

How the default was to be chosen, written before the first table over every (variant, seed) was computed: the
cheapest rule (mean held-out cost) whose mean held-out top-1 is within 0.5 point of the most accurate rule's, and
whose worst (variant, seed) is within 1.5 points of that rule's worst.

    python benchmarks/operating_rules.py runs/generalization --scale 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from adamml.inference.operating_point import CurvePoint, choose

RULES = ((1.0, 1), (0.5, 1), (0.0, 1), (2.0, 1), (1.0, 0), (1.0, 2), (0.5, 2), (0.0, 2), (1.0, 3))
FIXED = (0.5,)


def curve(thresholds: np.ndarray, correct: np.ndarray, gflops: np.ndarray, window: int) -> list[CurvePoint]:
    """The curve of a subset of videos (`correct`, `gflops`: thresholds x videos), worst over +-`window` steps."""
    scores = 100.0 * correct.mean(axis=1)
    return [CurvePoint(threshold=float(t), score=float(scores[i]),
                       worst_near=float(scores[max(0, i - window):i + window + 1].min()),
                       gflops_per_video=float(gflops[i].mean()), selection_rate={})
            for i, t in enumerate(thresholds)]


def cross_validate(path: Path, repeats: int, rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Rule -> (mean held-out top-1 minus every cell's, in points; mean held-out share of the every-cell GFLOPs)."""
    data = np.load(path)
    thresholds, correct, gflops = data["thresholds"], data["correct"].astype(float), data["gflops"]
    always_on = gflops[list(thresholds).index(0.0)].mean()
    videos = correct.shape[1]
    out: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeats):
        order = rng.permutation(videos)
        choose_on, score_on = order[: videos // 2], order[videos // 2:]
        held = curve(thresholds, correct[:, score_on], gflops[:, score_on], 0)
        every_cell = held[list(thresholds).index(0.0)].score
        for margin, window in RULES:
            chosen, _ = choose(curve(thresholds, correct[:, choose_on], gflops[:, choose_on], window), "accuracy",
                               margin, 0.5, always_on, len(choose_on), False)
            i = list(thresholds).index(chosen.threshold)
            out.setdefault(f"margin {margin:g}, +-{window}", []).append(
                (held[i].score - every_cell, held[i].gflops_per_video / always_on))
        for t in FIXED:
            i = list(thresholds).index(t)
            out.setdefault(f"fixed {t:g}", []).append(
                (held[i].score - every_cell, held[i].gflops_per_video / always_on))
    return {rule: tuple(np.mean(values, axis=0)) for rule, values in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="generalization.py's --out folder")
    parser.add_argument("--scale", type=int, default=5, help="the --eval-scale the curves were kept at")
    parser.add_argument("--repeats", type=int, default=200, help="random halvings per (variant, seed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = sorted(args.root.glob(f"*/seed-*/x{args.scale}/adamml/val-curves.npz"))
    if not paths:
        raise SystemExit(f"no {args.root}/*/seed-*/x{args.scale}/adamml/val-curves.npz: run generalization.py "
                         f"--eval-scale {args.scale} first")
    rng = np.random.default_rng(args.seed)
    results = {f"{p.parents[3].name} {p.parents[2].name}": cross_validate(p, args.repeats, rng) for p in paths}
    rules = list(next(iter(results.values())))
    print(f"Split-half cross-validation on the validation splits ({args.repeats} halvings each): held-out top-1 "
          "minus the same half's top-1 with every cell computed, in points, and (in brackets) the share of the "
          "every-cell GFLOPs.\n")
    print("| rule | " + " | ".join(results) + " | mean | worst |")
    print("| --- |" + " ---: |" * (len(results) + 2))
    for rule in rules:
        cells = [results[run][rule] for run in results]
        mean = np.mean(cells, axis=0)
        worst = min(c[0] for c in cells)
        print(f"| {rule} | " + " | ".join(f"{s:+.2f} ({100 * g:.0f} %)" for s, g in cells)
              + f" | {mean[0]:+.2f} ({100 * mean[1]:.0f} %) | {worst:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
