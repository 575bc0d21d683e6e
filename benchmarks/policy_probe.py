"""Where a trained policy loses the information its RGB decisions need, on the demo's data.

For each checkpoint, three stages of the policy are probed against the generator's ground truth, on the test
split's cells: the RGB extractor's features, the MLP's output (the LSTM's input) and the LSTM state that the
decision heads read (for `head_input: lstm+features` the heads read the MLP output too). Each stage gets the best
single feature's AUC and a linear probe's AUC (least squares fitted on the training split's cells, scored on the
test split's) against two targets: coloured cells (either hue) and first-hue cells (the coloured segments of the
videos whose hue needs RGB). The last line is the RGB decision itself: P(use)'s AUC against the same targets.
A policy whose extractor and MLP tell the first hue but whose LSTM state does not has failed in its LSTM
(CHANGELOG.md, "Why the fifth seed failed").

    .venv/bin/python benchmarks/policy_probe.py runs/demo/adamml/best.pt runs/seeds/seed1/adamml/best.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from adamml.data.dataset import SegmentDataset, Store, sampling_config
from adamml.data.loader import make_loader
from adamml.inference.checkpoint import load_trained
from adamml.runtime.distributed import DistInfo

STAGES = ("rgb extractor", "mlp output", "lstm state", "rgb P(use)")


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (ties count half), by ranks."""
    positive = positive.astype(bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if not n1 or not n0:
        return float("nan")
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@torch.no_grad()
def cells(model, cfg, store: Store, split: str, truth: dict[str, dict], batch_size: int) -> dict[str, np.ndarray]:
    """Every stage's values on every cell of `split`, and the two targets."""
    dataset = SegmentDataset(store, split, model.modalities, train=False, sampling=sampling_config(cfg))
    loader = make_loader(dataset, batch_size, DistInfo(), 0, train=False, workers=0)
    policy = model.policy
    out: dict[str, list] = {name: [] for name in (*STAGES, "coloured", "first hue")}
    rgb = model.modalities.index("rgb")
    for batch in loader:
        inputs = model.policy_inputs(batch)
        b, s = inputs["rgb"].shape[:2]
        extracted = policy.extractors["rgb"](inputs["rgb"].flatten(0, 1)).view(b, s, -1)
        states: list[torch.Tensor] = []
        hook = policy.heads["rgb"].register_forward_hook(lambda _m, args, _o: states.append(args[0]))
        try:
            output = policy(inputs)
        finally:
            hook.remove()
        values = {"rgb extractor": extracted, "mlp output": policy.forward_features(inputs),
                  "lstm state": torch.stack(states, dim=1), "rgb P(use)": output.probs[..., rgb:rgb + 1]}
        for i, index in enumerate(batch["index"].tolist()):
            row = truth[dataset.rows[index]["id"]]
            first = row["signature"]["rgb"]["value"] == 0
            for j in range(s):
                coloured = bool(row["segments"][j]["rgb"])
                out["coloured"].append(coloured)
                out["first hue"].append(coloured and first)
                for name in STAGES:
                    out[name].append(values[name][i, j].float().numpy())
    return {name: np.asarray(v) for name, v in out.items()}


def probe(train: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    result = {}
    for stage in STAGES:
        x, xt = train[stage], test[stage]
        result[stage] = {}
        for target in ("coloured", "first hue"):
            y, yt = train[target], test[target]
            single = max((abs(auc(xt[:, k], yt) - 0.5) + 0.5 for k in range(xt.shape[1]) if xt[:, k].std() > 0),
                         default=float("nan"))
            entry = {"best single feature": single}
            if stage != "rgb P(use)":
                mean, std = x.mean(0), x.std(0) + 1e-6
                design = np.c_[(x - mean) / std, np.ones(len(x))]
                weights = np.linalg.lstsq(design, y.astype(float), rcond=None)[0]
                entry["linear probe"] = auc(np.c_[(xt - mean) / std, np.ones(len(xt))] @ weights, yt)
            else:
                entry = {"P(use)": auc(xt[:, 0], yt)}
            result[stage][target] = entry
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="AdaMML checkpoints (best.pt) trained on the demo")
    parser.add_argument("--store", type=Path, default=Path("runs/demo/store"), help="the demo's prepared store")
    parser.add_argument("--data", type=Path, default=Path("runs/demo/data"), help="the generator's folder")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write every checkpoint's probes here")
    args = parser.parse_args(argv)
    truth_path = args.data / "ground_truth.jsonl"
    if not truth_path.exists():
        raise SystemExit(f"{truth_path}: not found; --data must be the folder that `adamml synth` (or `make demo`) wrote")
    with truth_path.open(encoding="utf-8") as handle:
        truth = {row["id"]: row for row in map(json.loads, filter(str.strip, handle))}
    store = Store.open(args.store)
    results = {}
    for checkpoint in args.checkpoints:
        trained = load_trained(checkpoint, "cpu", fold=False)
        model, cfg = trained.model, trained.config
        found = probe(cells(model, cfg, store, "train", truth, args.batch_size),
                      cells(model, cfg, store, "test", truth, args.batch_size))
        results[str(checkpoint)] = found
        print(checkpoint)
        for stage, targets in found.items():
            print(f"  {stage:14s} " + "; ".join(
                f"{target}: " + ", ".join(f"{k} {v:.3f}" for k, v in entry.items()) for target, entry in targets.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
