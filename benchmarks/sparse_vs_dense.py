"""CPU time of AdaMML's sparse inference path against the dense masked path (paper Sec. 4 / supplementary F).

The dense path (what the official code does) runs every recognizer on every (video, segment) cell and masks the
logits; the sparse path runs each recognizer only on the cells that selected it. For selection fractions of
25 %, 50 % and 75 % (exactly that fraction of the cells of every modality, chosen at random, the same cells for
both paths) this prints the median wall time of both, the measured speed-up, the GMACs ratio (dense / sparse
recognizer cost, from ``adamml.inference.gflops``) and their quotient (1.0 = the speed-up follows the GMACs exactly).
Decisions are given, so the policy (identical in both paths) is not timed.

    python benchmarks/sparse_vs_dense.py --config paper-rgb-flow-audio --videos 2 --segments 4
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from adamml.config import load_config
from adamml.inference.gflops import measure_costs, video_gmacs
from adamml.inference.speed import exact_decisions, random_inputs
from adamml.models import AdaMMLOutput, build_model


def timed(fn: Callable[[], AdaMMLOutput], repeats: int) -> tuple[float, AdaMMLOutput]:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run, and the warm-up's output."""
    output = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper-rgb-flow-audio")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = load_config(args.config, args.set).model
    model = build_model(cfg).eval()
    costs = measure_costs(cfg)
    batch = random_inputs(dataclasses.replace(cfg, num_segments=args.segments), args.videos, policy=False)
    cells = args.videos * args.segments
    dense_gmacs = cells * costs.always_on().conv
    print(f"{args.config}: modalities {', '.join(cfg.modalities)}; {args.videos} videos x {args.segments} segments; "
          f"input {cfg.input_size}; ResNet-{cfg.resnet.depth}; {args.threads} CPU threads; "
          f"median of {args.repeats} runs")
    print(f"{'selected':>8}  {'dense s':>8}  {'sparse s':>8}  {'speed-up':>8}  {'GMACs ratio':>11}  "
          f"{'speed-up / GMACs ratio':>22}")
    with torch.inference_mode():
        for i, fraction in enumerate(args.fractions):
            decisions = exact_decisions(args.videos, args.segments, [fraction] * len(cfg.modalities), seed=i)
            sparse_gmacs = float(video_gmacs(decisions, costs, include_policy=False).sum())
            t_dense, dense = timed(lambda: model(batch, decisions), args.repeats)
            t_sparse, sparse = timed(lambda: model.infer(batch, decisions), args.repeats)
            torch.testing.assert_close(sparse.logits, dense.logits, atol=1e-4, rtol=1e-3)
            speedup, ratio = t_dense / t_sparse, dense_gmacs / sparse_gmacs
            print(f"{fraction:>8.0%}  {t_dense:>8.3f}  {t_sparse:>8.3f}  {speedup:>7.2f}x  {ratio:>10.2f}x  "
                  f"{speedup / ratio:>22.2f}")


if __name__ == "__main__":
    main()
