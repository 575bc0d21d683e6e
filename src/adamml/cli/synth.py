"""`adamml synth`: write the embedded audio-visual benchmark (`adamml.synth` explains its design).

Videos go to DIR/videos/<split>/<class>/<index>.mp4 (H.264 + AAC); DIR/annotations.csv (`path,label,split`,
paths relative to DIR) feeds `adamml prepare --list`, whose video ids are these paths without extension;
DIR/ground_truth.jsonl says, per video and segment, which modalities are informative; DIR/synth.json holds
the arguments and the class table. Re-running with the same arguments keeps the videos already written.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adamml.data.spectrogram import AUDIO_RATE, WINDOW_SAMPLES
from adamml.modalities import modality_rates
from adamml.synth import (
    FORMAT_VERSION,
    MODALITIES,
    SynthConfig,
    generate,
    signature_table,
)

DEFAULTS = SynthConfig()


def parse_rates(text: str) -> tuple[float, float, float]:
    """`0.5` (every modality) or `rgb=0.5,flow=0.4,audio=0.6` (modalities not named keep the default)."""
    try:
        rates = modality_rates(text, MODALITIES, dict(zip(MODALITIES, DEFAULTS.informative_rate)))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--informative-rate: {error}") from None
    return tuple(rates.values())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write the built-in audio-visual benchmark (videos, annotations, ground truth)",
        description="Write the built-in audio-visual benchmark: each class is a (hue, motion, pitch) triple, "
        "each modality alone narrows it down only to a subset, and per segment each modality is informative "
        "or not (ground truth saved). Re-running with the same arguments keeps the videos already written.",
    )
    d = DEFAULTS
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset folder to write")
    p.add_argument("--classes", type=int, default=d.classes, help=f"number of classes (default {d.classes})")
    p.add_argument("--train-per-class", type=int, default=d.train_per_class, help="training videos per class")
    p.add_argument("--val-per-class", type=int, default=d.val_per_class, help="validation videos per class")
    p.add_argument("--test-per-class", type=int, default=d.test_per_class, help="test videos per class")
    p.add_argument("--segments", type=int, default=d.segments,
                   help="cells per video; use the same number of segments when training and testing")
    p.add_argument("--frames-per-segment", type=int, default=d.frames_per_segment,
                   help="frames per cell (32 = one 8-frame window at stride 4)")
    p.add_argument("--fps", type=float, default=d.fps, help="frame rate")
    p.add_argument("--size", type=int, default=d.size, help="frame width and height in pixels (even)")
    p.add_argument("--informative-rate", type=parse_rates, default=d.informative_rate, metavar="RATE",
                   help="chance a modality is informative in a cell: one value, or per modality as "
                   "rgb=0.5,flow=0.4,audio=0.6 (each modality is informative in at least one cell of every "
                   "video, so a rate must be 0 or at least 1/segments)")
    p.add_argument("--chroma", type=float, default=d.chroma,
                   help=f"strength of the object's colour in informative RGB cells, 0..40 (default {d.chroma:g})")
    p.add_argument("--crf", type=int, default=d.crf, help=f"x264 quality, 0..51 (default {d.crf}: lossless, so the "
                   "decoded frames are the same on every run; 18: visually lossless, 4-5x smaller files)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (the whole content follows from it)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="videos written in parallel")
    p.add_argument("--overwrite", action="store_true", help="write every video again, even if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar or class table")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    return SynthConfig(
        classes=args.classes, train_per_class=args.train_per_class, val_per_class=args.val_per_class,
        test_per_class=args.test_per_class, segments=args.segments, frames_per_segment=args.frames_per_segment,
        fps=args.fps, size=args.size, informative_rate=tuple(args.informative_rate), seed=args.seed,
        chroma=args.chroma, crf=args.crf,
    )


def class_table(config: SynthConfig) -> Table:
    table = Table(title=f"synth classes (format {FORMAT_VERSION}): each modality alone narrows the class down to a subset")
    for column in ("class", "rgb: hue", "flow: motion", "audio: pitch"):
        table.add_column(column)
    for row in signature_table(config.classes, config.size):
        flow = row["flow"]
        table.add_row(row["label"], f"{row['rgb']['hue_deg']:.0f} deg",
                      f"{flow['direction']} {flow['speed_px_per_frame']} px/frame", f"{row['audio']['pitch_hz']:.0f} Hz")
    return table


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True, soft_wrap=True)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    window = WINDOW_SAMPLES / AUDIO_RATE
    if config.cell_seconds < window:
        console.print(f"[yellow]warning:[/yellow] a cell lasts {config.cell_seconds:.2f} s, less than the "
                      f"{window:.2f} s audio window: audio windows will reach into neighbouring cells")
    if not args.quiet:
        console.print(class_table(config))
    try:
        result = generate(config, args.out, workers=args.workers, overwrite=args.overwrite, console=console,
                          quiet=args.quiet)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    rates = ", ".join(f"{m} {100 * r:.1f} %" for m, r in result["rates"].items())
    console.print(
        f"synth: {result['videos']} videos ({result['written']} written, {result['reused']} reused) in "
        f"{result['seconds']:.1f} s; {config.classes} classes, {config.segments} x {config.frames_per_segment} "
        f"frames at {config.fps:g} fps ({config.duration:.2f} s), {config.size} x {config.size}; informative "
        f"cells: {rates} -> {result['annotations']}, {result['ground_truth']}"
    )
    return 0
