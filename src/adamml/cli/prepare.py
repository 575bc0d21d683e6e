"""`adamml prepare`: raw videos (a folder or an annotation file) to a prepared store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from adamml.cli.arguments import number, output_folder
from adamml.data.layout import StoreError
from adamml.prepare.decode import DEFAULT_AUDIO_RATE, DEFAULT_SHORT_SIDE
from adamml.prepare.flow import DEFAULT_BOUND, FLOW_METHODS
from adamml.prepare.importers import (
    FORMATS,
    SUBSETS,
    AnnotationError,
)

if TYPE_CHECKING:
    from adamml.prepare.pipeline import PrepareSummary
# the pipeline and its workers (OpenCV) are imported by the functions that run them: `adamml prepare --help`
# and the other commands' parsers load none of it


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="decode videos into a store: frames, audio, optical flow, manifest",
        description="Decode raw videos into a prepared store (RGB frames, mono audio, optical flow, manifest). "
        "Re-running the same command resumes: finished videos are skipped.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", type=Path, metavar="DIR",
                     help="a folder of videos (DIR/<label>/<video> or DIR/<split>/<label>/<video>)")
    src.add_argument("--list", type=Path, metavar="FILE", help="an annotation file (see --format)")
    src.add_argument("--merge", type=Path, metavar="STORE",
                     help="join the manifest parts of a sharded run in STORE into manifest.jsonl")
    p.add_argument("--root", type=Path, help="folder the paths of --list are relative to (default: the list's folder)")
    p.add_argument("--out", type=output_folder, help="the store folder to write")
    p.add_argument("--format", choices=("auto",) + FORMATS, default="auto", help="annotation format of --list")
    p.add_argument("--subset", choices=sorted(SUBSETS), help="keep only the classes of this subset")
    p.add_argument("--split", choices=("train", "val", "test"), help="split for entries that do not name one")
    p.add_argument("--classes", type=Path, metavar="FILE", help="class names, one a line (fixes the class ids)")
    p.add_argument("--label-file", type=Path, help="FCVID label matrix (default: FCVID_Label.txt beside --list)")
    p.add_argument("--flow", choices=FLOW_METHODS, default="tvl1", help="optical flow method (default tvl1)")
    p.add_argument("--flow-bound", type=number(float, 0, above=True), default=DEFAULT_BOUND,
                   help="flow is clipped to [-B, B] pixels")
    p.add_argument("--existing-flow", choices=("reuse", "recompute"), default="reuse",
                   help="flow images a frame folder already holds (flow_x_/flow_y_ of denseflow and mmaction2, x_/y_ "
                        "of the TSN tools): reuse them (default) or compute the flow again")
    p.add_argument("--existing-flow-bound", type=number(float, 0, above=True), default=DEFAULT_BOUND,
                   help="the bound those flow images were quantised with (default 20)")
    p.add_argument("--existing-flow-base", type=int, choices=(0, 1),
                   help="number of the first flow image (default: detected)")
    p.add_argument("--existing-flow-root", type=Path, metavar="DIR",
                   help="a tree holding the flow images at the frame folders' relative paths (default: the frame "
                        "folders themselves)")
    p.add_argument("--short-side", type=number(int, 0), default=DEFAULT_SHORT_SIDE,
                   help="resize frames to this short side (0 keeps)")
    p.add_argument("--audio-rate", type=number(int, 0, above=True), default=DEFAULT_AUDIO_RATE,
                   help="audio sample rate (Hz)")
    p.add_argument("--jpeg-quality", type=number(int, 1, 100), default=95)
    p.add_argument("--frames-fps", type=number(float, 0, above=True), default=30.0,
                   help="frame rate assumed for folders of frames")
    p.add_argument("--workers", type=number(int, 1), default=1, help="videos prepared in parallel")
    p.add_argument("--shard", metavar="I/N", help="prepare only shard I of N (zero-based); merge with --merge")
    p.add_argument("--overwrite", action="store_true", help="prepare everything again instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--wait", action="store_true",
                   help="when another run is writing the store, wait for it instead of stopping")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from adamml.prepare.pipeline import merge_manifests
    from adamml.prepare.runner import print_summary

    console = Console(stderr=True, soft_wrap=True)
    try:
        if args.merge is not None:
            path, rows, parts = merge_manifests(args.merge, wait=args.wait)
            console.print(escape(f"merged {parts} shard parts: {rows} videos -> {path}"))
            return 0
        if args.out is None:
            console.print("[red]adamml: error:[/red] --out STORE is required")
            return 2
        summary = prepare_from_args(args, console)
    except (AnnotationError, StoreError, ValueError, OSError) as exc:
        console.print(f"[red]adamml: error:[/red] {escape(str(exc))}")
        return 2
    print_summary(summary, console)
    source = args.videos if args.videos is not None else args.list
    if summary.ok + summary.skipped + summary.failed == 0:  # "nothing done" is never a success
        console.print(f"[red]adamml: error:[/red] {escape(str(source))} gives no videos to prepare (an empty list, "
                      "a header only, or no video files under the folder)")
        return 2
    if summary.ok + summary.skipped == 0:
        console.print(f"[red]adamml: error:[/red] every video of {escape(str(source))} failed to prepare "
                      f"({summary.failed}; the reasons are in the manifest)")
        return 1
    return 0


def prepare_from_args(args: argparse.Namespace, console: Console) -> PrepareSummary:
    from adamml.prepare.runner import prepare_store
    from adamml.prepare.worker import PrepareSettings

    settings = PrepareSettings(
        short_side=args.short_side, flow=args.flow, flow_bound=args.flow_bound, audio_rate=args.audio_rate,
        jpeg_quality=args.jpeg_quality, frames_fps=args.frames_fps, existing_flow=args.existing_flow,
        existing_flow_bound=args.existing_flow_bound, existing_flow_base=args.existing_flow_base,
        existing_flow_root=str(args.existing_flow_root) if args.existing_flow_root is not None else None,
    )
    source = args.videos if args.videos is not None else args.list
    return prepare_store(source, args.out, settings, list_format=None if args.videos is not None else args.format,
                         root=args.root, subset=args.subset, split=args.split, classes=args.classes,
                         label_file=args.label_file, workers=args.workers, shard=args.shard,
                         overwrite=args.overwrite, console=console, quiet=args.quiet, wait=args.wait)
