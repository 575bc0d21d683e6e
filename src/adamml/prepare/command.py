"""`adamml prepare`: raw videos (a folder or an annotation file) to a prepared store."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from adamml.prepare.decode import DEFAULT_AUDIO_RATE, DEFAULT_SHORT_SIDE
from adamml.prepare.flow import DEFAULT_BOUND, FLOW_METHODS
from adamml.prepare.importers import (
    FORMATS,
    SUBSETS,
    AnnotationError,
    assign_classes,
    guess_format,
    import_annotations,
)
from adamml.prepare.layout import StoreError

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
    p.add_argument("--out", type=Path, help="the store folder to write")
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


def number(kind: type, low: float, high: float | None = None, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite `kind` (int or float) >= `low` (> `low` with `above`) and <= `high`."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or (high is not None and value > high):
            bounds = f"{'above' if above else 'at least'} {low:g}" + (f" and at most {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def run(args: argparse.Namespace) -> int:
    from adamml.prepare.pipeline import merge_manifests

    console = Console(stderr=True, soft_wrap=True)
    try:
        if args.merge is not None:
            path, rows, parts = merge_manifests(args.merge, wait=args.wait)
            console.print(escape(f"merged {parts} shard parts: {rows} videos -> {path}"))
            return 0
        if args.out is None:
            console.print("[red]error:[/red] --out STORE is required")
            return 2
        summary = prepare_from_args(args, console)
    except (AnnotationError, StoreError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    print_summary(summary, console)
    return 0


def prepare_from_args(args: argparse.Namespace, console: Console) -> PrepareSummary:
    from adamml.prepare.layout import CLASSES_NAME
    from adamml.prepare.pipeline import check_known_labels, check_store_folder, parse_shard, store_classes
    from adamml.prepare.worker import PrepareSettings

    if args.videos is not None:
        fmt, source, root = "folder", args.videos, args.videos
    else:
        source = args.list
        if not source.exists():
            raise AnnotationError(f"{source}: annotation file not found")
        fmt = guess_format(source) if args.format == "auto" else args.format
        root = args.root if args.root is not None else source.parent
    check_store_folder(args.out)
    imported = import_annotations(fmt, source, root, subset=args.subset, default_split=args.split,
                                  label_file=args.label_file)
    fixed = imported.classes
    have = store_classes(args.out) if not args.overwrite else None
    if have is not None and fixed is None and args.classes is None:
        check_known_labels(imported.entries, have, args.out / CLASSES_NAME)
        fixed = have  # a store prepared before: its class ids stay
    classes, entries = assign_classes(imported.entries, fixed, args.classes)
    settings = PrepareSettings(
        short_side=args.short_side, flow=args.flow, flow_bound=args.flow_bound, audio_rate=args.audio_rate,
        jpeg_quality=args.jpeg_quality, frames_fps=args.frames_fps, existing_flow=args.existing_flow,
        existing_flow_bound=args.existing_flow_bound, existing_flow_base=args.existing_flow_base,
        existing_flow_root=str(args.existing_flow_root) if args.existing_flow_root is not None else None,
    )
    shard = parse_shard(args.shard) if args.shard else None
    console.print(escape(
        f"prepare: {len(entries)} videos ({fmt}), {len(classes)} classes, flow={settings.flow}, "
        f"short side {settings.short_side}, {args.workers} worker(s)"
        + (f", shard {shard[0]}/{shard[1]}" if shard else "")
        + f" -> {args.out}"
    ))
    unlabelled = [e for e in entries if not e.labels and not e.error]
    if unlabelled:
        console.print(escape(f"warning: {len(unlabelled)} videos have no label (e.g. {unlabelled[0].origin}); "
                             "they are prepared, but training and evaluation refuse unlabelled videos"))
    return prepare_with_progress(entries, classes, root, args.out, settings, args.workers, shard,
                                 args.overwrite, console, quiet=args.quiet, wait=args.wait)


def prepare_with_progress(entries, classes, root, out, settings, workers=1, shard=None, overwrite=False,
                          console: Console | None = None, quiet: bool = False, wait: bool = False) -> PrepareSummary:
    """run_prepare with a rich progress bar (videos done, ok / failed so far)."""
    from adamml.prepare.pipeline import run_prepare

    console = console or Console(stderr=True, soft_wrap=True)
    progress = Progress(
        TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet,
    )
    counts = {"ok": 0, "failed": 0}
    task = progress.add_task("prepare", total=None, status="")

    def on_start(total: int, skipped: int) -> None:
        progress.update(task, total=total, completed=skipped, status=f"skipped {skipped}")

    def on_row(row: dict) -> None:
        counts[row["status"]] += 1
        status = f"ok {counts['ok']} failed {counts['failed']}"
        if row["status"] == "failed":
            progress.console.print(f"[yellow]failed[/yellow] {escape(row['id'])}: {escape(str(row['error']))}")
        progress.update(task, advance=1, status=status)

    with progress:
        return run_prepare(entries, classes, root, out, settings, workers=workers, shard=shard,
                           overwrite=overwrite, on_start=on_start, on_row=on_row, wait=wait,
                           on_wait=lambda message: progress.console.print(escape(message)))


def print_summary(summary: PrepareSummary, console: Console) -> None:
    from adamml.prepare.worker import STAGES

    table = Table(title="prepare summary", show_header=False)
    table.add_row("videos ok / failed / skipped", f"{summary.ok} / {summary.failed} / {summary.skipped}")
    table.add_row("frames written", str(summary.frames))
    table.add_row("wall time", f"{summary.wall_seconds:.1f} s")
    table.add_row("frames / s (wall)", f"{summary.frames_per_second:.1f}")
    for stage in STAGES:
        table.add_row(f"time in {stage} (all workers)", f"{summary.stage_seconds[stage]:.1f} s")
    table.add_row("manifest", escape(str(summary.manifest)))
    console.print(table)
    for vid, warning in summary.warnings[:10]:
        console.print(f"[yellow]warning[/yellow] {escape(vid)}: {escape(warning)}")
    if len(summary.warnings) > 10:
        console.print(f"... and {len(summary.warnings) - 10} more warnings (see the manifest)")
    if summary.failures:
        console.print(f"[red]{summary.failed} failed[/red] (reasons in the manifest):")
        for vid, error in summary.failures[:10]:
            console.print(escape(f"  {vid}: {error}"))

