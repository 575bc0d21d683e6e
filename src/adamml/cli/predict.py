"""`adamml predict`: single videos, end to end, paying only for what the policy selects (paper Sec. 3-4).

Each video is decoded in memory (no store), the policy looks at its cheap inputs (RGB and RGB differences at the
policy's size, the audio spectrogram), and only then is optical flow computed — for the frames of the segments
whose policy chose flow, and no others — and each recognizer run on its selected segments. The preprocessing
is the evaluation's (short side `data.test_short_side`, centre crop, the same segments), so the predictions
match `adamml eval` on a store prepared at that short side with the same flow method.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adamml.cli.arguments import add_precision_argument, output_file, positive_int, probability
from adamml.errors import UserError
from adamml.prepare.flow import FLOW_METHODS

if TYPE_CHECKING:
    from rich.console import Console

    from adamml.inference.prediction import Predictor, VideoPrediction


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="predict videos end to end, computing flow only where the policy asks",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--threshold", type=probability, help="decision threshold in [0, 1] (default: the checkpoint's)")
    p.add_argument("--flow", default="dis", choices=[m for m in FLOW_METHODS if m != "none"],
                   help="optical flow method; use the one the training store was prepared with (default dis)")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--json", type=output_file, help="write every prediction, decision and timing to this file (a "
                   "video that failed: its path, status failed and the error)")
    p.add_argument("--viz", type=output_file, help="per-segment selection figure (PNG; one video: this path)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    add_precision_argument(p)
    p.add_argument("--threads", type=positive_int, help="torch's CPU threads (default: torch's choice); with small "
                   "models one video at a time, 1 can be faster: idle torch threads spin and slow the decoder's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from adamml.inference.prediction import load_predictor
    from adamml.prepare.decode import VideoError
    from adamml.runtime.devices import torch_device
    from adamml.runtime.jsonfile import write_json

    console = Console(stderr=False, soft_wrap=True)
    missing = [path for path in args.videos if not path.is_file()]
    if missing:  # before the model is loaded: an argument error, not a failed video
        raise UserError(f"{missing[0]}: no such video file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                               else ""))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch_device(args.device)
    predictor = load_predictor(args.checkpoint, args.flow, args.threshold, str(device), args.precision)
    for note in predictor.notes:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}")
    results, failures = [], 0
    for index, path in enumerate(args.videos):
        try:
            result, figure = predictor(path, args.top_k)
        except VideoError as error:
            console.print(f"[red]failed[/red] {escape(str(error))}")
            failures += 1
            results.append({"path": str(path), "status": "failed", "error": str(error)})
            continue
        print_prediction(result, console)
        notes = prediction_warnings(result)
        for note in notes:
            console.print(f"[yellow]warning:[/yellow] {escape(note)}")
        results.append({**result.to_dict(), "status": "ok", "warnings": notes})
        if args.viz is not None:
            out = args.viz if len(args.videos) == 1 else args.viz.with_name(f"{args.viz.stem}-{index}{args.viz.suffix}")
            _figure(result, figure, predictor, out)
            console.print(f"figure: {escape(str(out))}")
    if args.json is not None:
        write_json(args.json, results, indent=1, ensure_ascii=False)
    return 0 if failures == 0 else 1


def prediction_warnings(result: VideoPrediction) -> list[str]:
    """What a person should know before trusting `result`: a video too short to show motion, or a prediction
    made with no recognizer computed."""
    notes = []
    if result.num_frames < 2:
        notes.append(f"{result.path}: {result.num_frames} frame(s): no motion to see (optical flow and RGB "
                     "differences are zero), every segment shows the same picture")
    if not any(result.segments):
        notes.append(f"{result.path}: the policy computed no modality on any segment: the prediction rests on the "
                     "fusion's skipped-modality logits alone, not on the video")
    return notes


def escape(text: str) -> str:
    """`text` shown as is by rich (a file name like ``clip [hd].mp4`` is not markup)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def print_prediction(result: VideoPrediction, console: Console) -> None:
    from rich.table import Table

    table = Table(title=escape(result.path), show_header=True)
    table.add_column("class")
    table.add_column("probability", justify="right")
    for name, p in result.top:
        table.add_row(escape(name), f"{p:.3f}")
    console.print(table)
    segs = "  ".join(f"{i + 1}:{'+'.join(m) or '-'}" for i, m in enumerate(result.segments))
    console.print(f"segments  {segs}")
    console.print(f"GFLOPs {result.gflops:.4g} (always-on {result.gflops_always_on:.4g}); optical flow computed for "
                  f"{result.flow_pairs} of {result.flow_pairs_always_on} frame pairs")
    console.print("seconds   " + "  ".join(f"{k} {v:.3f}" for k, v in result.seconds.items()))


def _figure(result: VideoPrediction, figure: dict[str, Any], predictor: Predictor, out: Path) -> None:
    import numpy as np

    from adamml.report.viz import normalize_spectrogram, selection_figure

    frames, indices = figure["frames"], figure["indices"]
    specs = figure["audio"][0, :, 0].cpu().numpy() if figure["audio"] is not None else None
    segments = []
    for s, seg in enumerate(indices):
        thumb = frames[int(seg[len(seg) // 2])][..., ::-1]
        spec = normalize_spectrogram(specs[s][:128]) if specs is not None else np.zeros((128, 256))
        segments.append({"thumb": thumb, "spec": spec, "used": set(result.segments[s]), "informative": None})
    title = f"{Path(result.path).name}: {result.top[0][0]} ({result.top[0][1]:.2f}), {result.gflops:.3g} GFLOPs"
    selection_figure([{"title": title, "segments": segments}], predictor.model.modalities, out)
