"""`adamml compare`: train and evaluate a list of methods from one configuration, and write one table and one plot.

The supplementary material compares AdaMML with other fusion methods and RGBDiff with optical flow (Table 2).
This command runs such a comparison on any prepared store, every method trained and measured the same way:

    adamml compare --config tiny --data STORE --out runs/compare \\
        --methods rgb flow rgbdiff fusion:rgb+flow fusion:rgb+rgbdiff adamml:rgb+flow

A method is ``STAGE[:MODALITY+MODALITY...]`` (the stages of `adamml train`; without modalities, the config's),
or a bare modality name for its unimodal model. Every multi-modal method starts from the unimodal models of its
modalities, which are trained first (and listed in the table). `random` uses the selection rates that AdaMML
with the same modalities reached on the validation split when AdaMML is in the list (the paper's random-policy
baseline at the same rate), else ``train.random_rates``. `--preset baselines` (every fusion baseline, the
random policy and AdaMML on the config's modalities) and `--preset rgbdiff` (Table 2's RGB / Flow / RGBDiff
layout) name common lists.

Writes ``OUT/<key>/`` (each run with its checkpoints and ``eval-<split>/`` report; the key is ``unimodal-rgb``,
``fusion`` on the config's modalities, ``fusion-rgb+flow`` on others), ``compare.md``,
``compare.json`` and ``compare.png`` (accuracy against GFLOPs per video with AdaMML's threshold sweep). Runs that
finished earlier are reused; an interrupted training resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adamml.cli.arguments import output_folder
from adamml.errors import UserError

# named lists of methods (--preset)
PRESETS = {
    "baselines": ["average", "fusion", "gating", "lateral-uni", "lateral-bi", "context-gating", "gradient-blending",
                  "adamml", "random"],
    "rgbdiff": ["rgb", "flow", "rgbdiff", "fusion:rgb+flow", "fusion:rgb+rgbdiff", "adamml:rgb+flow"],
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="train and evaluate a list of methods; one table and one plot",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="preset name or YAML path shared by every method")
    p.add_argument("--data", type=Path, required=True, help="prepared store")
    p.add_argument("--out", type=output_folder, required=True, help="folder for the runs and the comparison")
    p.add_argument("--methods", nargs="+", default=[], metavar="METHOD",
                   help="STAGE[:MOD+MOD...] or a modality name (unimodal)")
    p.add_argument("--preset", choices=sorted(PRESETS), action="append", default=[],
                   help="add a named list of methods (repeatable)")
    p.add_argument("--split", default="test", help="split to evaluate on (default test)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for every method (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from adamml.config import load_config
    from adamml.workflows.comparison import parse_method, run_compare

    cfg = load_config(args.config, args.overrides)
    texts = [t for name in args.preset for t in PRESETS[name]] + list(args.methods)
    if not texts:
        raise UserError("compare: give --methods and/or --preset")
    try:
        methods = [parse_method(t, cfg.model.modalities) for t in texts]
    except ValueError as error:
        raise UserError(f"compare: {error}") from None
    run_compare(args.config, args.data, args.out, methods, args.split, args.overrides)
    return 0
