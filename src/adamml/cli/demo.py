"""`adamml demo`: the whole job on the built-in audio-visual benchmark, on a CPU.

synth -> prepare (DIS flow, short side 64) -> train the unimodal models (RGB, flow, audio), the weighted-fusion
baseline and AdaMML (`tiny` preset, all three modalities, recognizers initialised from the unimodal models)
-> the random-policy baseline at AdaMML's selection rates (measured on the validation split) -> evaluate
everything on the test split -> `runs/demo/`: report.md / report.json, selections.png, pareto.png and each
model's checkpoint. Every step reuses what an earlier run finished (an interrupted training resumes) when it
was trained with the same configuration (else the demo stops and names the keys that differ); `--fresh` starts
over.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from adamml.cli.arguments import output_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the whole job on the built-in benchmark: synth, prepare, train, "
                              "evaluate, report and figures", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=output_folder, default=Path("runs/demo"), help="demo folder (default runs/demo)")
    p.add_argument("--config", default="tiny", help="model/training preset (default tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    p.add_argument("--flow", default="dis", choices=("tvl1", "dis", "farneback"),
                   help="flow method (default dis: fast; tvl1 is the paper's)")
    p.add_argument("--workers", type=int, default=2, help="processes for synth and prepare")
    p.add_argument("--informative-rate", type=float, default=0.5, help="synth: informative rate of each modality")
    p.add_argument("--classes", type=int, default=8, help="synth: number of classes")
    p.add_argument("--train-per-class", type=int, default=24)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--test-per-class", type=int, default=10)
    p.add_argument("--size", type=int, default=64, help="synth: frame size")
    p.add_argument("--short-side", type=int, default=64, help="prepare: short side of the stored frames")
    p.add_argument("--fresh", action="store_true", help="start over instead of reusing earlier results")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from adamml.workflows.demo_pipeline import DemoSettings, run_demo

    fields = {f.name for f in dataclasses.fields(DemoSettings)}
    settings = {k: v for k, v in vars(args).items() if k in fields}
    return run_demo(DemoSettings(**{**settings, "overrides": tuple(args.overrides)}))
