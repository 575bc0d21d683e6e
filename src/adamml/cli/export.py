"""`adamml export`: the policy and the recognizers as `torch.export` programs, for serving without adamml's code.

The per-segment routing stays in Python (it is data-dependent): a serving loop runs `policy.pt2` on the cheap
inputs, thresholds P(use), and calls `recognizer-<modality>.pt2` on the selected segments only, as
`adamml.inference.prediction` does, at the threshold in export.json (the checkpoint's recorded operating point unless
`--threshold`). Load with `torch.export.load(path).module()`. Recognizers take any number of packed
cells and the policy any number of videos; the policy steps its LSTM over exactly `model.num_segments`
segments. `torch.export` round-trips these networks exactly (tested); `--onnx` also writes `policy.onnx` and
`recognizer-<modality>.onnx` (dynamic videos / cells, opset of torch's dynamo exporter; needs the packages onnx,
onnxscript and onnxruntime) and checks each against the model with ONNX Runtime, writing the largest difference
into export.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from adamml.cli.arguments import output_folder, probability
from adamml.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="write the policy and the recognizers as torch.export programs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=output_folder)
    p.add_argument("--onnx", action="store_true", help="also write ONNX models, checked with ONNX Runtime")
    p.add_argument("--threshold", type=probability, help="the decision threshold written to export.json (default: "
                   "the checkpoint's recorded operating point, else model.policy.threshold)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from adamml.inference.checkpoint import load_trained
    from adamml.inference.exporter import export
    from adamml.models.adamml import AdaMML
    from adamml.models.folding import fold_batch_norms

    console = Console(stderr=True, soft_wrap=True)
    # batch norms folded, weights left in the default layout: a channels-last program warns on saving and
    # the serving runtime chooses its own layout
    trained = load_trained(args.checkpoint, fold=False)
    model = trained.model
    fold_batch_norms(model)
    if not isinstance(model, AdaMML) or not trained.uses_policy:
        raise UserError(f"{args.checkpoint} is a {trained.stage!r} checkpoint: adamml export writes AdaMML's trained "
                        "policy and recognizers (the routing stays in Python); this one has no trained policy to "
                        "route with")
    if args.threshold is not None:
        model.policy.threshold = args.threshold
    files = export(model, args.out, onnx=args.onnx)
    console.print(f"exported {', '.join(files.values())} and export.json to {args.out}")
    if args.onnx:
        import json

        checks = json.loads((args.out / "export.json").read_text(encoding="utf-8"))["onnx_max_abs_difference"]
        console.print("ONNX Runtime against the model, largest difference: "
                      + ", ".join(f"{k} {v:.2g}" for k, v in checks.items()))
    return 0
