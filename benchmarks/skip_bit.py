"""What the learned skipped logits of an AdaMML model do (``model.fusion.skipped_logits: learned``).

With ``segment_mean: modality`` a modality that no segment of a video computed adds ``w_m * b_m`` to the video's
logits: a learned vector per modality instead of the paper's zeros. Adding the same number to every class changes
nothing (softmax), so only how ``b_m`` varies across the classes can matter. This script measures, for a trained
checkpoint on a split of a store built by `adamml synth`:

- how often each modality is computed nowhere in a video (where ``b_m`` applies), at the recorded threshold;
- top-1 as trained, and with every ``b_m`` set to zero at evaluation (the same model otherwise): what the vectors
  carry in this model;
- the spread of ``b_m`` across the classes (std, in logits, beside the spread of the model's video logits), and
  which class attribute it follows: the share of its across-class variance explained by each modality's signature
  value (1.0: ``b_m`` is a function of that attribute alone). A ``b_rgb`` explained by the RGB attribute is a
  class cue: "no RGB computed" votes for the hues that need no RGB evidence.

    python benchmarks/skip_bit.py --checkpoint runs/demo/adamml/best.pt --data runs/demo/store \\
        --synth runs/demo/data --split val
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from adamml.inference.checkpoint import load_checkpoint, load_trained, save_checkpoint
from adamml.inference.evaluation import evaluate


def explained(values: np.ndarray, groups: np.ndarray) -> float:
    """Share of the variance of `values` (K,) explained by the group means of `groups` (K,)."""
    total = float(((values - values.mean()) ** 2).sum())
    if total == 0:
        return float("nan")
    means = {g: values[groups == g].mean() for g in np.unique(groups)}
    between = float(sum((means[g] - values.mean()) ** 2 for g in groups))
    return between / total


def analyse(checkpoint: Path, data: Path, split: str, synth: Path | None, console: Console) -> dict:
    trained = load_trained(checkpoint, fold=False)
    model = trained.model
    skipped = model.fusion.skipped
    if skipped is None:
        raise SystemExit(f"{checkpoint}: its fusion has no learned skipped logits (skipped_logits: zero)")
    b = skipped.detach().numpy()  # (M, K)
    weights = model.fusion.weights().detach().numpy()  # (M,)
    with tempfile.TemporaryDirectory() as tmp:
        trained = evaluate(checkpoint, data, split, Path(tmp) / "trained", console=console)
        payload = load_checkpoint(checkpoint)
        payload["model"]["fusion.skipped"] = torch.zeros_like(payload["model"]["fusion.skipped"])
        zeroed_path = Path(tmp) / "zeroed.pt"
        save_checkpoint(zeroed_path, payload)
        zeroed = evaluate(zeroed_path, data, split, Path(tmp) / "zeroed", console=console)
        decisions = json.loads((Path(tmp) / "trained" / "decisions.json").read_text())
    modalities = list(model.modalities)
    nowhere = {m: float(np.mean([all(m not in seg for seg in v["segments"]) for v in decisions])) for m in modalities}
    out = {"checkpoint": str(checkpoint), "split": split, "threshold": trained.threshold,
           "top1_trained": trained.top1, "top1_zeroed_at_eval": zeroed.top1, "computed_nowhere": nowhere,
           "fusion_weights": dict(zip(modalities, weights.tolist())), "vectors": {}}
    attributes = None
    if synth is not None:
        table = json.loads((synth / "synth.json").read_text())["classes"]
        attributes = {a: np.array([row[a]["value"] for row in table]) for a in ("rgb", "flow", "audio")}
    for i, m in enumerate(modalities):
        vec = weights[i] * b[i]  # what it adds to the video logits
        entry = {"std_across_classes": float(vec.std()), "values": np.round(vec - vec.mean(), 4).tolist()}
        if attributes is not None:
            entry["explained_by"] = {a: explained(vec, g) for a, g in attributes.items()}
        out["vectors"][m] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, nargs="+")
    parser.add_argument("--data", type=Path, required=True, nargs="+", help="one store per checkpoint (or one)")
    parser.add_argument("--synth", type=Path, nargs="+", help="the adamml synth folder of each store (synth.json)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    stores = args.data * len(args.checkpoint) if len(args.data) == 1 else args.data
    synths = (args.synth * len(args.checkpoint) if args.synth and len(args.synth) == 1 else args.synth) or [None] * len(
        args.checkpoint)
    results = [analyse(c, d, args.split, s, console) for c, d, s in zip(args.checkpoint, stores, synths)]
    for r in results:
        print(f"{r['checkpoint']} ({r['split']}, threshold {r['threshold']:g}): top-1 {r['top1_trained']:.2f} as "
              f"trained, {r['top1_zeroed_at_eval']:.2f} with the skipped logits zeroed")
        for m, v in r["vectors"].items():
            exp = ", ".join(f"{a} {100 * x:.0f} %" for a, x in v.get("explained_by", {}).items())
            print(f"  {m}: computed nowhere in {100 * r['computed_nowhere'][m]:.0f} % of videos; w*b spread "
                  f"{v['std_across_classes']:.3f} across classes" + (f"; explained by {exp}" if exp else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
