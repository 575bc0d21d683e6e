"""`adamml eval`: accuracy, mAP and the GFLOPs each video actually cost, from the decisions actually taken.

GFLOPs (multiply-accumulates, as the field counts them; conv layers as the paper counts, all layers beside
it) per video = the policy on every segment (AdaMML only) + each recognizer on each segment that selected it
+ a fusion baseline's own modules (`adamml.inference.gflops.video_gmacs`), measured on the model's real networks. The
model is rebuilt from the checkpoint's stored configuration (AdaMML, or the fusion baseline of its
`fusion.kind`). Writes `report.json`, `report.md` and `decisions.json`; `--threshold 0.3,0.5,0.7` sweeps the
policy's decision threshold (accuracy vs GFLOPs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adamml.cli.arguments import add_precision_argument, output_folder, positive_int, probabilities
from adamml.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="accuracy, mAP and GFLOPs per video of a trained checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path, help="prepared store")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=output_folder, help="report folder (default: next to the checkpoint, eval-SPLIT/)")
    p.add_argument("--threshold", type=probabilities,
                   help="decision threshold in [0, 1], or a comma-separated sweep (e.g. 0.3,0.5,0.7)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--random-at-test", action="store_true",
                   help="sample decisions like the official code instead of thresholding (for comparison)")
    p.add_argument("--device", default="auto")
    add_precision_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from adamml.inference.evaluation import evaluate, report_markdown
    from adamml.report.page import write_page_after
    from adamml.runtime.distributed import setup, teardown

    console = Console(stderr=True, soft_wrap=True)
    out = args.out or args.checkpoint.parent / f"eval-{args.split}"
    info = setup(args.device)
    try:
        report = evaluate(args.checkpoint, args.data, args.split, out, args.threshold, info, args.batch_size,
                          args.random_at_test, console, args.precision)
    except ValueError as error:
        raise UserError(str(error)) from error
    finally:
        teardown(info)
    if info.is_main:
        console.print(report_markdown(report))
        console.print(f"report: {out / 'report.json'}")
        write_page_after(out, console)
    return 0
