"""Who outvotes whom in AdaMML's fused prediction, on the demo's data: each modality's share of the video logits.

The built-in benchmark's classes are a hue x a direction of motion x a pitch (one bit each), and the demo's policy
computes RGB mostly for one hue (hue 0) and leaves the other to the absence of RGB evidence. With the paper's
fusion a skipped modality adds zero logits, so telling hue 1 from hue 0 without RGB needs a bias toward the hue-1
classes somewhere else: the flow and audio recognizers, fine-tuned with the policy, learn it, and it then works
against the RGB cell of every hue-0 video. This script measures that, per checkpoint, on one split:

- flow / audio: the mean of ``w_m * (z_hue1 - z_hue0)`` over the videos that computed the modality, with z the
  modality's logits as fused (its mean over the computed cells) and hue1 / hue0 the two classes that share the
  video's motion and pitch: the bias toward hue 1 that each modality carries;
- RGB: the same margin for the true class against its hue partner, in the videos of each hue that computed RGB;
- every error: each modality's weighted margin (true class - predicted class) and its computed / informative cells;
- skipped vectors: for `model.fusion.skipped_logits: learned`, the hue-1 margin of each modality's vector.

    .venv/bin/python benchmarks/fusion_votes.py --data runs/demo/data --store runs/demo/store \\
        runs/demo/adamml/best.pt runs/seeds/seed3/adamml/best.pt [--json votes.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from adamml.data.dataset import SegmentDataset, Store, sampling_config
from adamml.data.layout import read_jsonl
from adamml.data.loader import make_loader
from adamml.inference.checkpoint import load_trained
from adamml.runtime.distributed import DistInfo

SIGNATURE = ("rgb", "flow", "audio")  # the order of a class's bits


@torch.no_grad()
def video_parts(checkpoint: Path, store: Store, split: str, truth: dict[str, dict]) -> tuple[list[dict], dict]:
    """Each video's per-modality weighted contribution to its logits, with the policy's decisions at the
    checkpoint's threshold."""
    trained = load_trained(checkpoint, "cpu")
    model, cfg = trained.model, trained.config
    model.eval()
    if tuple(model.modalities) != SIGNATURE:
        raise SystemExit(f"{checkpoint}: expected the demo's modalities {list(SIGNATURE)}, got "
                         f"{list(model.modalities)}")
    fusion = model.fusion
    if fusion.segment_mean != "modality":
        raise SystemExit(f"{checkpoint}: this script decomposes segment_mean modality, the checkpoint uses "
                         f"{fusion.segment_mean!r}")
    weights = fusion.weights().float()
    skipped = fusion.skipped.detach().float() if fusion.skipped is not None else None
    dataset = SegmentDataset(store, split, model.modalities, train=False, sampling=sampling_config(cfg))
    loader = make_loader(dataset, cfg.train.eval_batch_size, DistInfo(), 0, train=False, workers=0)
    videos = []
    for batch in loader:
        out = model.infer(batch)
        d = out.decisions.float()  # (B, S, M)
        count = d.sum(dim=1)  # (B, M)
        mean = out.modality_logits.float().sum(dim=1) / count.clamp(min=1.0).unsqueeze(-1)  # (B, M, K)
        if skipped is not None:
            mean = torch.where(count.unsqueeze(-1) > 0, mean, skipped.expand_as(mean))
        parts = mean * weights[None, :, None]
        # the decomposition adds up to the model's video logits
        torch.testing.assert_close(parts.sum(dim=1), out.logits.float(), rtol=1e-4, atol=1e-4)
        for i, index in enumerate(batch["index"].tolist()):
            row = truth[dataset.rows[index]["id"]]
            videos.append({"id": row["id"], "label": store.classes.index(row["label"]), "parts": parts[i].numpy(),
                           "decisions": d[i].numpy(),
                           "informative": np.array([[seg[m] for m in SIGNATURE] for seg in row["segments"]],
                                                   dtype=float)})
    return videos, {"weights": weights.tolist(), "skipped": None if skipped is None else skipped.numpy()}


def analyse(videos: list[dict], fusion: dict, classes: list[str], bits: dict[str, tuple[int, ...]]) -> dict:
    index = {name: i for i, name in enumerate(classes)}
    partner = {}  # class -> the class with the other hue, same motion and pitch
    for name, b in bits.items():
        partner[index[name]] = next(index[o] for o, ob in bits.items() if ob[1:] == b[1:] and ob[0] != b[0])
    hue = {index[name]: b[0] for name, b in bits.items()}
    result: dict = {"videos": len(videos), "top1": 100.0 * np.mean([v["parts"].sum(0).argmax() == v["label"]
                                                                    for v in videos])}
    for m, name in enumerate(SIGNATURE):
        if name == "rgb":
            continue
        bias = [v["parts"][m][c1] - v["parts"][m][c0] for v in videos if v["decisions"][:, m].sum() > 0
                for c1, c0 in [(v["label"], partner[v["label"]]) if hue[v["label"]] == 1
                               else (partner[v["label"]], v["label"])]]
        result[f"{name} hue-1 bias"] = {"mean": float(np.mean(bias)), "sd": float(np.std(bias)), "videos": len(bias)}
    for h in (0, 1):
        margin = [v["parts"][0][v["label"]] - v["parts"][0][partner[v["label"]]] for v in videos
                  if hue[v["label"]] == h and v["decisions"][:, 0].sum() > 0]
        margin = np.array(margin) if margin else np.full(1, np.nan)  # nan: no video of this hue computed RGB
        result[f"rgb margin, hue {h}"] = {"mean": float(margin.mean()), "min": float(margin.min()),
                                          "below 0.5": int(np.sum(margin < 0.5)),
                                          "videos": int(np.isfinite(margin).sum())}
    if fusion["skipped"] is not None:
        hue1 = [i for i in range(len(classes)) if hue[i] == 1]
        hue0 = [i for i in range(len(classes)) if hue[i] == 0]
        result["skipped vectors, weighted hue-1 margin"] = {
            name: float(fusion["weights"][m] * (fusion["skipped"][m][hue1].mean() - fusion["skipped"][m][hue0].mean()))
            for m, name in enumerate(SIGNATURE)}
    errors = []
    for v in videos:
        predicted = int(v["parts"].sum(0).argmax())
        if predicted == v["label"]:
            continue
        errors.append({"id": v["id"], "label": classes[v["label"]], "prediction": classes[predicted],
                       "margin": {name: float(v["parts"][m][v["label"]] - v["parts"][m][predicted])
                                  for m, name in enumerate(SIGNATURE)},
                       "computed": {name: int(v["decisions"][:, m].sum()) for m, name in enumerate(SIGNATURE)},
                       "informative computed": {name: int((v["decisions"][:, m] * v["informative"][:, m]).sum())
                                                for m, name in enumerate(SIGNATURE)}})
    result["errors"] = errors
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=Path("runs/demo/data"), help="`adamml synth` output")
    parser.add_argument("--store", type=Path, default=Path("runs/demo/store"), help="its prepared store")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    truth = {row["id"]: row for row in read_jsonl(args.data / "ground_truth.jsonl")}
    bits = {row["label"]: tuple(row["signature"][m]["value"] for m in SIGNATURE) for row in truth.values()}
    store = Store.open(args.store)
    results = {}
    for checkpoint in args.checkpoints:
        videos, fusion = video_parts(checkpoint, store, args.split, truth)
        r = analyse(videos, fusion, list(store.classes), bits)
        results[str(checkpoint)] = r
        hue0, hue1 = r["rgb margin, hue 0"], r["rgb margin, hue 1"]
        print(f"{checkpoint}: top-1 {r['top1']:.2f} %, {len(r['errors'])} errors; weighted hue-1 bias flow "
              f"{r['flow hue-1 bias']['mean']:+.2f}, audio {r['audio hue-1 bias']['mean']:+.2f}; RGB margin for the "
              f"true hue, hue 0 {hue0['mean']:+.2f} (below 0.5 in {hue0['below 0.5']} of {hue0['videos']}), "
              f"hue 1 {hue1['mean']:+.2f}"
              + ("; skipped vectors' hue-1 margin " + ", ".join(
                  f"{k} {v:+.2f}" for k, v in r["skipped vectors, weighted hue-1 margin"].items())
                 if "skipped vectors, weighted hue-1 margin" in r else ""))
        for e in r["errors"]:
            print(f"  {e['id']}: {e['label']} taken for {e['prediction']}; margin "
                  + ", ".join(f"{m} {v:+.2f}" for m, v in e["margin"].items()) + "; cells computed (informative) "
                  + ", ".join(f"{m} {e['computed'][m]} ({e['informative computed'][m]})" for m in SIGNATURE))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
