"""`adamml export`: the policy and the recognizers as `torch.export` programs, for serving without adamml's code.

The per-segment routing stays in Python (it is data-dependent): a serving loop runs `policy.pt2` on the cheap
inputs, thresholds P(use), and calls `recognizer-<modality>.pt2` on the selected segments only, as
`adamml.predict` does. Load with `torch.export.load(path).module()`. Recognizers take any number of packed
cells and the policy any number of videos; the policy steps its LSTM over exactly `model.num_segments`
segments. `torch.export` was chosen over ONNX (which needs extra packages here) and TorchScript (deprecated in
this torch); it round-trips these networks exactly (tested).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adamml.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="write the policy and the recognizers as torch.export programs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from adamml.evaluate import load_trained
    from adamml.export import export
    from adamml.models.adamml import AdaMML
    from adamml.models.inference import fold_batch_norms

    console = Console(stderr=True, soft_wrap=True)
    # batch norms folded, weights left in the default layout: a channels-last program warns on saving and
    # the serving runtime chooses its own layout
    model, _cfg, payload = load_trained(args.checkpoint, fold=False)
    fold_batch_norms(model)
    if not isinstance(model, AdaMML):
        raise UserError(f"{args.checkpoint} is a {payload.get('stage')!r} baseline: adamml export writes AdaMML's "
                        "policy and recognizers (the routing stays in Python); a baseline's fusion has no policy "
                        "to route with")
    files = export(model, args.out)
    console.print(f"exported {', '.join(files.values())} and export.json to {args.out}")
    return 0
