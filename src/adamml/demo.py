"""`adamml demo`: the main job on built-in generated data.

For now it writes a few generated clips (two classes: a square moving right with a low tone, a square
moving down with a high tone; one clip without an audio track) and prepares them into a store, printing
the summary. Training and evaluation join it as they land.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rich.console import Console

from adamml.prepare.command import prepare_with_progress, print_summary
from adamml.prepare.importers import assign_classes, import_folder
from adamml.prepare.worker import PrepareSettings
from adamml.synth import moving_square_clip, tone, write_video

CLASSES = {"moving-right": ((3.0, 0.0), 330.0), "moving-down": ((0.0, 3.0), 880.0)}


def write_demo_clips(folder: Path, per_class: int = 3, num_frames: int = 48, fps: float = 24.0) -> int:
    """Generated clips under folder/<class>/; returns how many were written (existing ones are kept)."""
    written = 0
    for c, (name, (velocity, pitch)) in enumerate(CLASSES.items()):
        for i in range(per_class):
            path = folder / name / f"clip_{i:02d}.mp4"
            if path.exists():
                continue
            frames = moving_square_clip(num_frames, 96, 64, velocity, seed=100 * c + i)
            audio = None if i == per_class - 1 else tone(num_frames / fps, pitch)
            write_video(path, frames, fps, audio)
            written += 1
    return written


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the whole job on built-in generated videos")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="demo folder (default runs/demo)")
    p.add_argument("--flow", default="dis", choices=("tvl1", "dis", "farneback"),
                   help="flow method (default dis: fast; tvl1 is the paper's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fresh", action="store_true", help="start over instead of reusing earlier results")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True, soft_wrap=True)
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    videos, store = args.out / "videos", args.out / "store"
    written = write_demo_clips(videos)
    console.print(f"demo: {written} clips generated in {videos}")
    imported = import_folder(videos)
    classes, entries = assign_classes(imported.entries, None, None)
    settings = PrepareSettings(flow=args.flow)
    summary = prepare_with_progress(entries, classes, videos, store, settings, workers=args.workers,
                                    console=console)
    print_summary(summary, console)
    return 0 if summary.failed == 0 else 1
