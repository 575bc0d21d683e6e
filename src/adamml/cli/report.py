"""`adamml report`: one self-contained HTML page (`report.html`) to browse an evaluation, a run, the demo or a
comparison: opens from disk, no server, nothing fetched.

    adamml report runs/demo                 # the demo: every method, AdaMML's videos, the ground truth
    adamml report runs/adamml/eval-test     # one evaluation (`adamml eval` writes this page itself)
    adamml report runs/compare --screenshot compare.png

The page holds the summary (accuracy, mAP, GFLOPs per video and their distribution, the saving against the
always-on cost, selection rates, the threshold sweep and, with several methods, accuracy against GFLOPs), one row
per video (thumbnails of its segments, the modalities computed with P(use), the top-5, right or wrong, GFLOPs;
sortable and filterable, also from the URL: report.html#filter=wrong&sort=gflops-desc&class=NAME&modality=flow)
and accuracy and GFLOPs per class. Thumbnails come from the store the evaluation read; give --data when it has
moved. A missing part (no evaluation, no store, no decisions) is a warning and the page is written without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adamml.cli.arguments import output_file, positive_int

DEFAULT_CELLS = 4000  # adamml.report.thumbnails.MAX_CELLS, not imported here: parsing stays light


def thumbnail_count(text: str) -> int:
    """0 (no thumbnails) or a positive number of thumbnails."""
    if text.strip() == "0":
        return 0
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number, 0 (no thumbnails) or more") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="an HTML page to browse an evaluation, a run, the demo or a comparison",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, metavar="RUN_OR_EVAL_DIR",
                   help="an evaluation, training run, demo or compare folder")
    p.add_argument("--data", type=Path, help="prepared store with the frames (default: the one the evaluation read)")
    p.add_argument("--out", type=output_file, help="page to write (default FOLDER/report.html)")
    p.add_argument("--thumbnails", type=thumbnail_count, default=DEFAULT_CELLS, metavar="N",
                   help=f"at most N segment thumbnails in the page, the wrong videos' first (default {DEFAULT_CELLS})")
    p.add_argument("--screenshot", type=output_file, metavar="PNG",
                   help="also save a screenshot of the page, taken with the system's headless Chromium")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from adamml.report.page import write_page

    result = write_page(args.folder, args.data, args.out, args.thumbnails)
    print_result(result)
    if args.screenshot:
        from adamml.report.browser import Browser

        with Browser() as browser:
            browser.open(result.path.resolve().as_uri(), "document.body.dataset.ready")
            browser.screenshot(args.screenshot, full_page=True)
        print(f"screenshot: {args.screenshot}")
    return 0


def print_result(result) -> None:
    """The page's path and size; its warnings on stderr."""
    for warning in result.warnings:
        print(f"adamml: warning: {warning}", file=sys.stderr)
    print(f"report page: {result.path} ({result.bytes / 1e6:.2f} MB, {result.videos} videos, "
          f"{result.thumbnails} with thumbnails)")
