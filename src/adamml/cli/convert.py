"""`adamml convert-official`: an official IBM/AdaMML checkpoint (Kinetics-Sounds: unimodal RGB, audio or flow;
AdaMML RGB+Audio, RGB+Flow, RGB+Flow+Audio) -> an adamml checkpoint that `eval`, `predict`, `bench` and `export`
take as they are.

The modalities are read from the file; the preset defaults to the matching paper preset (paper-rgb-audio,
paper-rgb-flow, paper-rgb-flow-audio; a unimodal file: paper-rgb-flow-audio with its one modality). The converted
config sets `data.conventions: official`, so the inputs are formed as those weights were trained on. Every
official key must find its place and every adamml parameter be filled, or nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adamml.cli.arguments import output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert-official", help="an official AdaMML checkpoint -> an adamml checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, metavar="CKPT", help="official checkpoint (.pth.tar)")
    p.add_argument("--out", required=True, type=output_file, help="the adamml checkpoint to write (e.g. runs/official/best.pt)")
    p.add_argument("--preset", help="preset name or YAML path (default: the one matching the file's modalities)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value of the converted model (repeatable)")
    p.add_argument("--classes", type=Path, metavar="FILE",
                   help="class names one a line, in the official label-id order (default: the 31 Kinetics-Sounds "
                        "classes in alphabetical order)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from adamml.data.layout import read_classes
    from adamml.interop.official import OfficialCheckpointError, convert_official, write_conversion

    classes = None
    if args.classes is not None:
        if not args.classes.is_file():
            raise OfficialCheckpointError(f"{args.classes}: class list not found")
        classes = read_classes(args.classes)
    conversion = convert_official(args.checkpoint, args.preset, args.overrides, classes)
    write_conversion(conversion, args.out)
    for note in conversion.notes:
        print(note)
    print(f"wrote {args.out} (stage {conversion.payload['stage']}, data.conventions official)")
    return 0
