"""`adamml bench`: how much of AdaMML's GFLOPs saving turns into time (supplementary Sec. F, runtime analysis).

In one run on one machine, for AdaMML and the baselines (weighted fusion, unimodal models):
  (a) network only: videos/s of the evaluation pass over prepared inputs (the sparse inference path: each
      recognizer only on the segments that selected it);
  (b) end to end: videos/s of `adamml predict` on the raw video files (decoding, the policy, optical flow for
      the selected segments only, the recognizers).
It prints each speed-up over weighted fusion and the speed-up divided by the GFLOPs ratio (1.0 = the whole
theoretical saving shows up as time). The paper: 1.96x (Kinetics-Sounds) and 1.42x (ActivityNet) over weighted
fusion on one V100.

--synthetic CONFIG measures (a) at any model size without data or training (e.g. the paper's ResNet-50 presets):
random weights and random inputs at the configured sizes; AdaMML runs its policy on every segment and then each
recognizer on exactly --rates of the cells (chosen at random, the same for every pass), weighted fusion every
recognizer on every cell, each unimodal model its recognizer on every cell. Speed does not depend on the weights.
With --videos (a folder or video files) it measures (b) instead, at those sizes: `adamml predict`'s whole path on
each file (decoding, the policy's inputs, the policy, --flow only for the segments that chose flow, the
recognizers), AdaMML's decisions replaced by exactly --rates of each video's segments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adamml.cli.arguments import add_precision_argument, output_file, positive_int, probability
from adamml.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="videos/s of AdaMML against the baselines, network only and end to end",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", dest="checkpoints", action="append", metavar="NAME=PATH",
                   help="a trained model (repeatable), e.g. adamml=runs/demo/adamml/best.pt")
    p.add_argument("--data", type=Path, help="prepared store (network-only pass)")
    p.add_argument("--videos", type=Path, nargs="+", help="folder the store's sources are relative to (end-to-end "
                   "pass); with --synthetic, video files or folders of them")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=positive_int, help="end to end: at most this many videos")
    p.add_argument("--flow", default="dis", help="end to end: the optical flow method of the store")
    p.add_argument("--baseline", default="fusion", help="the NAME speed-ups are relative to")
    p.add_argument("--threshold", type=probability, help="AdaMML checkpoints' decision threshold (default: each "
                   "one's recorded operating point)")
    p.add_argument("--repeats", type=positive_int, default=1, help="network pass: keep the fastest of N")
    p.add_argument("--batch-size", type=positive_int, help="network pass: videos per batch (default: each checkpoint's "
                   "train.eval_batch_size); larger batches spread the fixed cost of each layer call")
    p.add_argument("--threads", type=positive_int, help="torch's CPU threads for every pass (default: torch's choice)")
    p.add_argument("--json", type=output_file, help="write the measurements here")
    add_precision_argument(p)
    g = p.add_argument_group("synthetic (no checkpoints, no data)")
    g.add_argument("--synthetic", metavar="CONFIG", help="a preset or YAML file: random weights and inputs at its "
                   "sizes, e.g. paper-rgb-flow-audio")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    g.add_argument("--num-videos", type=positive_int, default=8, help="videos per pass (default 8)")
    g.add_argument("--rates", help="AdaMML's selection rate of each modality, e.g. rgb=0.4,flow=0.3,audio=0.9 "
                   "(default 0.5 each)")
    g.add_argument("--no-unimodal", action="store_true", help="skip the unimodal rows")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from adamml.inference.speed import (
        bench,
        bench_synthetic,
        bench_synthetic_end_to_end,
        bench_table,
        parse_named,
        video_files,
    )
    from adamml.runtime.jsonfile import write_json

    console = Console(stderr=True, soft_wrap=True)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        if args.synthetic:
            if args.checkpoints or args.data:
                raise UserError("--synthetic measures random models: give it no --checkpoint or --data")
            if args.videos:
                result = bench_synthetic_end_to_end(args.synthetic, args.set, video_files(args.videos, args.limit),
                                                    args.flow, args.rates, args.device, unimodal=not args.no_unimodal,
                                                    console=console, precision=args.precision)
            else:
                result = bench_synthetic(args.synthetic, args.set, args.num_videos, args.batch_size or 2, args.rates,
                                         args.device, args.repeats, unimodal=not args.no_unimodal, console=console,
                                         precision=args.precision)
        else:
            if not args.checkpoints or args.data is None:
                raise UserError("give --checkpoint NAME=PATH (repeatable) and --data STORE, or --synthetic CONFIG")
            if args.videos is not None and len(args.videos) > 1:
                raise UserError("--videos takes one folder (the store's sources are relative to it)")
            result = bench(parse_named(args.checkpoints), args.data, args.videos[0] if args.videos else None,
                           args.split, args.limit,
                           args.flow, args.baseline, console, args.repeats, args.batch_size, args.precision,
                           args.threshold)
    except ValueError as error:
        raise UserError(str(error)) from error
    Console(width=200).print(bench_table(result))
    if args.json is not None:
        write_json(args.json, result, indent=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m adamml.cli.bench ...``: the bench command without the other commands' imports (PyAV,
    matplotlib), for machines that only have torch, e.g. a GPU box for ``--synthetic``."""
    parser = argparse.ArgumentParser(prog="adamml")
    register(parser.add_subparsers())
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
