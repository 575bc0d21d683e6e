"""`adamml calibrate`: choose an AdaMML checkpoint's operating point (its decision threshold) on a validation split
and record it in the checkpoint; `eval`, `predict`, `bench` and `export` then decide at it unless `--threshold`
says otherwise. An AdaMML training does this by itself at its end (``train.operating_point``); use the command to
choose for another target, on another split, or for a checkpoint trained before.

Targets: `--target accuracy` (default) takes the fewest GFLOPs per video whose validation top-1 (mAP on
multi-label sets) is within `--margin` points of the best the model does (computing every cell, or the best plateau
of its threshold curve when that is higher); `--target budget` the best
validation score within `--budget` x the always-on GFLOPs. How the rule copes with small validation splits:
`adamml.inference.operating_point`. Prints the validation curve with the chosen threshold marked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adamml.cli.arguments import number, output_file, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate", help="choose and record an AdaMML checkpoint's decision threshold on "
                              "a validation split", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="an AdaMML checkpoint (rewritten unless --out)")
    p.add_argument("--data", required=True, type=Path, help="prepared store")
    p.add_argument("--split", default=None, help="the split to choose on (default: the checkpoint's data.val_split)")
    p.add_argument("--target", choices=("accuracy", "budget"), help="default: the checkpoint's "
                   "train.operating_point.target (accuracy unless set)")
    p.add_argument("--margin", type=number(float, 0.0), help="accuracy target: points of top-1 (mAP) allowed below "
                   "the best (default: the checkpoint's, 1)")
    p.add_argument("--budget", type=number(float, 0.0, 1.0, above=True),
                   help="budget target: GFLOPs per video as a fraction of always-on (default: the checkpoint's, 0.5)")
    p.add_argument("--out", type=output_file, help="write the calibrated checkpoint here instead of rewriting --checkpoint")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from rich.console import Console

    from adamml.errors import UserError
    from adamml.inference.calibration import calibrate
    from adamml.inference.checkpoint import checkpoint_config, load_checkpoint
    from adamml.inference.operating_point import curve_table
    from adamml.runtime.distributed import setup, teardown

    console = Console(stderr=True, soft_wrap=True)
    if args.out is not None and args.out.resolve() == args.checkpoint.resolve():
        args.out = None
    if args.out is not None and args.out.is_dir():
        raise UserError(f"--out {args.out} is a folder, not a checkpoint file")
    cfg = checkpoint_config(load_checkpoint(args.checkpoint), args.checkpoint)
    settings = cfg.train.operating_point
    changes = {k: v for k, v in (("target", args.target), ("margin", args.margin), ("budget", args.budget))
               if v is not None}
    if settings.target == "fixed" and "target" not in changes:
        changes["target"] = "accuracy"
    settings = dataclasses.replace(settings, **changes)
    info = setup(args.device)
    try:
        point = calibrate(args.checkpoint, args.data, args.split or cfg.data.val_split, settings, args.out, info,
                          args.batch_size, console)
    except ValueError as error:
        raise UserError(str(error)) from error
    finally:
        teardown(info)
    if info.is_main:
        console.print("\n".join(curve_table(point)))
    return 0
