"""`adamml synth`: write the embedded audio-visual benchmark (`adamml.workflows.synthetic` explains its design).

Videos go to DIR/videos/<split>/<class>/<index>.mp4 (H.264 + AAC); DIR/annotations.csv (`path,label,split`,
paths relative to DIR) feeds `adamml prepare --list`, whose video ids are these paths without extension;
DIR/ground_truth.jsonl says, per video and segment, which modalities are informative (and, with distractors,
which show a misleading cue); DIR/synth.json holds the arguments and the class table. `--variant NAME`
starts from a named benchmark (`adamml.workflows.synthetic.VARIANTS`, listed by `--list-variants`) and the flags
given replace its settings. Re-running with the same arguments keeps the videos already written.
"""

from __future__ import annotations

import argparse
import os

from rich.console import Console
from rich.table import Table

from adamml.cli.arguments import output_folder
from adamml.data.spectrogram import AUDIO_RATE, WINDOW_SAMPLES
from adamml.modalities import modality_rates
from adamml.workflows.synthetic import (
    CODES,
    FORMAT_VERSION,
    MODALITIES,
    SPLITS,
    VARIANTS,
    SynthConfig,
    class_design,
    config_signature_table,
    generate,
    variant_config,
)

DEFAULTS = SynthConfig()
DEFAULT_VARIANT = "demo"


def parse_rates(text: str, flag: str = "--informative-rate") -> dict[str, float]:
    """`0.5` (every modality) or `rgb=0.5,flow=0.4,audio=0.6`: the rates given, by modality (modalities not
    named keep the variant's)."""
    try:
        rates = modality_rates(text, MODALITIES, dict.fromkeys(MODALITIES, 0.0))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{flag}: {error}") from None
    if "=" not in text:
        return rates
    named = {item.partition("=")[0].strip().lower() for item in text.split(",")}
    return {m: rates[m] for m in MODALITIES if m in named}


def parse_distractor_rates(text: str) -> dict[str, float]:
    return parse_rates(text, "--distractor-rate")


def parse_values(text: str) -> tuple[int, int, int]:
    """`3,3,3` (or `3x3x1`): how many values rgb, flow and audio take (code full)."""
    parts = text.replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != len(MODALITIES) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--values: expected three whole numbers >= 1 (rgb,flow,audio), e.g. 3,3,3; "
                                         f"got {text!r}")
    return values  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write the built-in audio-visual benchmark (videos, annotations, ground truth)",
        description="Write the built-in audio-visual benchmark: each class is a (hue, motion, pitch) triple and "
        "per segment each modality is informative or not (ground truth saved). By default (the demo) each "
        "modality alone narrows the class down only to a subset; --variant picks another benchmark of the "
        "family (--list-variants), and the flags given replace its settings. Re-running with the same "
        "arguments keeps the videos already written.",
    )
    d = DEFAULTS
    p.add_argument("--out", type=output_folder, metavar="DIR", help="dataset folder to write (required)")
    p.add_argument("--variant", default=DEFAULT_VARIANT, metavar="NAME",
                   help=f"named benchmark to start from (default {DEFAULT_VARIANT}: the default config); "
                   f"one of {', '.join(VARIANTS)}")
    p.add_argument("--list-variants", action="store_true", help="print the named variants and exit")
    # default None: a flag not given keeps the variant's setting
    p.add_argument("--classes", type=int, help=f"number of classes (demo {d.classes}; with --code full, the "
                   "product of --values unless given)")
    p.add_argument("--code", choices=CODES,
                   help="how classes map to (hue, motion, pitch) values: product (demo: a few values per modality, "
                   "each alone narrows the class down to a subset), redundant (each modality alone names the "
                   "class), full (every combination of --values)")
    p.add_argument("--values", type=parse_values, metavar="R,F,A",
                   help="with --code full: how many values rgb, flow and audio take, e.g. 3,3,3 (27 classes) or "
                   "3,3,1 (9 classes, audio says nothing)")
    p.add_argument("--train-per-class", type=int, help=f"training videos per class (demo {d.train_per_class})")
    p.add_argument("--val-per-class", type=int, help=f"validation videos per class (demo {d.val_per_class})")
    p.add_argument("--test-per-class", type=int, help=f"test videos per class (demo {d.test_per_class})")
    p.add_argument("--segments", type=int,
                   help=f"cells per video (demo {d.segments}); use the same number of segments when training and "
                   "testing")
    p.add_argument("--frames-per-segment", type=int,
                   help=f"frames per cell (demo {d.frames_per_segment} = one 8-frame window at stride 4)")
    p.add_argument("--fps", type=float, help=f"frame rate (demo {d.fps:g})")
    p.add_argument("--size", type=int, help=f"frame width and height in pixels, even (demo {d.size})")
    p.add_argument("--informative-rate", type=parse_rates, metavar="RATE",
                   help="chance a modality is informative in a cell: one value, or per modality as "
                   "rgb=0.5,flow=0.4,audio=0.6, modalities not named keeping the variant's (demo 0.5; each "
                   "modality is informative in at least one cell of every video, so a rate must be 0 or at "
                   "least 1/segments)")
    p.add_argument("--distractor-rate", type=parse_distractor_rates, metavar="RATE",
                   help="chance that a cell where a modality is not informative shows a misleading cue (another "
                   "value: another hue, motion or pitch) instead; same syntax as --informative-rate (demo 0)")
    p.add_argument("--chroma", type=float,
                   help=f"strength of the object's colour in informative RGB cells, 0..40 (demo {d.chroma:g})")
    p.add_argument("--crf", type=int, help=f"x264 quality, 0..51 (demo {d.crf}: lossless, so the decoded frames "
                   "are the same on every run; 18: visually lossless, 4-5x smaller files)")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed}; the whole content follows from it)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="videos written in parallel")
    p.add_argument("--overwrite", action="store_true", help="write every video again, even if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar or class table")
    p.set_defaults(func=run)


_OVERRIDES = ("classes", "code", "values", "train_per_class", "val_per_class", "test_per_class", "segments",
              "frames_per_segment", "fps", "size", "chroma", "crf")


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The variant's config with the flags given replacing its settings; ValueError for a bad combination."""
    name = getattr(args, "variant", None) or DEFAULT_VARIANT
    base = variant_config(name)  # ValueError for an unknown name
    overrides = {key: getattr(args, key) for key in _OVERRIDES if getattr(args, key, None) is not None}
    for key, flag in (("informative_rate", "informative_rate"), ("distractor_rate", "distractor_rate")):
        given = getattr(args, flag, None)
        if given is not None:
            rates = dict(zip(MODALITIES, getattr(base, key)))
            rates.update(given)
            overrides[key] = tuple(rates[m] for m in MODALITIES)
    seed = args.seed if getattr(args, "seed", None) is not None else base.seed
    return variant_config(name, seed, **overrides)


def variants_table() -> Table:
    table = Table(title="synth variants (adamml synth --variant NAME)")
    for column in ("variant", "classes", "videos train / val / test", "description"):
        table.add_column(column)
    for name, variant in VARIANTS.items():
        config = variant_config(name)
        sizes = " / ".join(str(config.classes * config.per_class(s)) for s in SPLITS)
        table.add_row(name, str(config.classes), sizes, variant.description)
    return table


def class_table(config: SynthConfig) -> Table:
    table = Table(title=f"synth classes (format {FORMAT_VERSION}, code {config.code}): {class_design(config)}")
    for column in ("class", "rgb: hue", "flow: motion", "audio: pitch"):
        table.add_column(column)
    never = {m: config.rate(m) == 0 and config.distractor(m) == 0 for m in MODALITIES}
    for row in config_signature_table(config):
        flow = row["flow"]
        cells = [f"{row['rgb']['hue_deg']:.0f} deg", f"{flow['direction']} {flow['speed_px_per_frame']} px/frame",
                 f"{row['audio']['pitch_hz']:.0f} Hz"]
        cells = [f"({text}: never shown)" if never[m] else text for m, text in zip(MODALITIES, cells)]
        table.add_row(row["label"], *cells)
    return table


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True, soft_wrap=True)
    if args.list_variants:
        Console(soft_wrap=True).print(variants_table())
        return 0
    if args.variant not in VARIANTS:
        console.print(f"[red]adamml: error:[/red] unknown variant {args.variant!r}; known: {', '.join(VARIANTS)}")
        return 2
    if args.out is None:
        console.print("[red]adamml: error:[/red] --out DIR is required (the dataset folder to write)")
        return 2
    try:
        config = config_from_args(args)
    except ValueError as exc:
        console.print(f"[red]adamml: error:[/red] {exc}")
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
        console.print(f"[red]adamml: error:[/red] {exc}")
        return 2
    rates = ", ".join(f"{m} {100 * r:.1f} %" for m, r in result["rates"].items())
    if config.has_distractors:
        rates += "; distractors in uninformative cells: " + ", ".join(
            f"{m} {100 * r:.1f} %" for m, r in result["distractor_rates"].items())
    console.print(
        f"synth ({args.variant}): {result['videos']} videos ({result['written']} written, {result['reused']} "
        f"reused) in {result['seconds']:.1f} s; {config.classes} classes (code {config.code}), {config.segments} "
        f"x {config.frames_per_segment} frames at {config.fps:g} fps ({config.duration:.2f} s), {config.size} x "
        f"{config.size}; informative cells: {rates} -> {result['annotations']}, {result['ground_truth']}"
    )
    return 0
