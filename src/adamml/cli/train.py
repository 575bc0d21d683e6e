"""`adamml train`: one stage of the paper's recipe, or one of the always-on fusion baselines, on a prepared store.

Stages: unimodal, fusion (weighted late fusion), random (random policy), adamml; the baselines of the
supplementary material: average, gating, lateral-uni, lateral-bi, context-gating, gradient-blending (initialise
their recognizers from unimodal checkpoints with --init, as for fusion).

Several processes: `torchrun --nproc_per_node N -m adamml.cli train ...` (the global batch stays
`train.batch_size`; batch norm is synchronised).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adamml.cli.arguments import output_folder
from adamml.config import load_config
from adamml.errors import UserError
from adamml.stages import STAGES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train one stage (unimodal, fusion, random, adamml) or a fusion "
                                           "baseline on a store",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="preset name (e.g. tiny, paper-rgb-audio) or YAML path")
    p.add_argument("--stage", required=True, choices=STAGES)
    p.add_argument("--modalities", help="comma-separated modalities (overrides model.modalities)")
    p.add_argument("--data", required=True, type=Path, help="prepared store (adamml prepare)")
    p.add_argument("--out", required=True, type=output_folder, help="run folder: best.pt, last.pt, config.yaml, log.csv")
    p.add_argument("--init", nargs="+", type=Path, default=[], metavar="CKPT",
                   help="checkpoints whose recognizers initialise this model's (matched by modality name); "
                        "MODALITY=FILE.pth: an mmaction2 TSN checkpoint for that modality's ResNet "
                        "(model.resnet.mmaction2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.batch_size=16 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from adamml.runtime.distributed import setup, teardown
    from adamml.train.trainer import train

    console = Console(stderr=True, soft_wrap=True)
    overrides = list(args.overrides)
    if args.modalities:
        names = [m.strip() for m in args.modalities.split(",") if m.strip()]
        overrides.append(f"model.modalities=[{','.join(names)}]")
    init = [path for path in args.init if "=" not in str(path)]
    overrides += [f"model.resnet.mmaction2.{item}" for item in map(str, args.init) if "=" in item]
    cfg = load_config(args.config, overrides)
    if any(item.partition("=")[0].strip() == "model.num_classes" for item in overrides):
        from adamml.data.dataset import Store

        classes = len(Store.open(args.data).classes)
        if cfg.model.num_classes != classes:
            raise UserError(f"--set model.num_classes={cfg.model.num_classes}: the store {args.data} has {classes} "
                            "classes (its classes.txt); a model has as many outputs as the store has classes, so "
                            "leave model.num_classes out")
    info = setup(args.device)
    try:
        summary = train(cfg, args.stage, args.data, args.out, info, init=init, resume=args.resume,
                        console=console)
    except ValueError as error:
        if isinstance(error, UserError):
            raise
        raise UserError(str(error)) from error
    finally:
        teardown(info)
    if info.is_main:
        console.print(f"trained {summary.stage} in {summary.seconds:.1f} s; best validation score "
                      f"{summary.best_val_score:.2f}; checkpoints in {summary.out}")
    return 0
