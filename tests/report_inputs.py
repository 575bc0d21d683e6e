"""Made-up evaluations for the HTML report's tests and benchmark: the files `adamml eval` and `adamml demo` write
(report.json, decisions.json, the demo's report.json and ground truth) and a store holding only what the
thumbnails read (manifest, classes, coloured frames), of any size, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

MODALITIES = ("rgb", "flow", "audio")
COST = {"rgb": 0.03, "flow": 0.05, "audio": 0.008}  # GFLOPs of each recognizer on one segment
POLICY = 0.004  # GFLOPs of the policy on one segment


def made_up_store(root: Path, ids: list[str], classes: list[str], frames: int = 8, size: int = 32) -> Path:
    """A store with `frames` frames of one colour per video (its hue), classes.txt and a manifest."""
    rows = []
    for i, vid in enumerate(ids):
        folder = root / "rawframes" / vid
        folder.mkdir(parents=True, exist_ok=True)
        hue = int(255 * i / max(1, len(ids)))
        for f in range(frames):
            image = Image.new("HSV", (size, size), (hue, 200, 80 + 170 * f // frames)).convert("RGB")
            image.save(folder / f"img_{f + 1:05d}.jpg", quality=80)
        rows.append({"id": vid, "frames_dir": f"rawframes/{vid}", "num_frames": frames, "status": "ok"})
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _video(rng: np.random.Generator, vid: str, classes: list[str], segments: int, threshold: float) -> dict:
    label = int(rng.integers(len(classes)))
    p_use = np.round(rng.beta(0.6, 0.6, size=(segments, len(MODALITIES))), 4)
    p_use[:, -1] = 1.0  # audio, cheap, always
    used = p_use >= threshold
    scores = rng.dirichlet(np.ones(len(classes)) * 0.5)
    if rng.random() < 0.75:  # right three times in four
        scores[label] += 1.0
        scores /= scores.sum()
    top = np.argsort(-scores)[:5]
    return {"id": vid, "labels": [classes[label]], "prediction": classes[int(top[0])],
            "top5": [[classes[int(c)], float(scores[c])] for c in top], "correct": bool(top[0] == label),
            "gflops": float(segments * POLICY + sum(COST[m] * used[:, j].sum() for j, m in enumerate(MODALITIES))),
            "segments": [[m for j, m in enumerate(MODALITIES) if used[s, j]] for s in range(segments)],
            "p_use": p_use.tolist()}


def made_up_evaluation(folder: Path, videos: int, classes: int = 5, segments: int = 4, store: Path | None = None,
                       stage: str = "adamml", seed: int = 0) -> Path:
    """An evaluation folder as `adamml eval` writes it (report.json, decisions.json) of `videos` videos."""
    rng = np.random.default_rng(seed)
    names = [f"class {c}" for c in range(classes)]
    threshold = 0.5 if stage == "adamml" else 0.0
    decisions = [_video(rng, f"videos/test/{i % classes}/{i:06d}", names, segments, threshold) for i in range(videos)]
    gflops = np.array([v["gflops"] for v in decisions])
    always = segments * sum(COST.values())
    rates = {m: float(np.mean([m in used for v in decisions for used in v["segments"]])) for m in MODALITIES}
    top1 = 100.0 * float(np.mean([v["correct"] for v in decisions]))
    report = {
        "checkpoint": str(folder.parent / "best.pt"), "data": str(store) if store else None, "stage": stage,
        "fusion": "weighted", "modalities": list(MODALITIES), "split": "test", "videos": videos,
        "segments": segments, "threshold": threshold if stage == "adamml" else None, "top1": top1, "top5": 100.0,
        "mAP": top1 + 3.0, "gflops_per_video": float(gflops.mean()),
        "gflops": {"mean": float(gflops.mean()), "median": float(np.median(gflops)),
                   "p10": float(np.percentile(gflops, 10)), "p90": float(np.percentile(gflops, 90)),
                   "min": float(gflops.min()), "max": float(gflops.max())},
        "gflops_all_layers_per_video": float(gflops.mean()) * 1.01, "gflops_always_on": always,
        "saving_vs_always_on": 1.0 - float(gflops.mean()) / always, "selection_rate": rates,
        "videos_per_second": 50.0, "wall_seconds": 1.0, "device": "cpu", "precision": "fp32",
        "sweep": [{"threshold": t, "top1": top1 - 10 * (t - 0.5) ** 2, "mAP": top1,
                   "gflops_per_video": float(gflops.mean()) * (1.5 - t), "selection_rate": rates}
                  for t in (0.5, 0.3, 0.7)] if stage == "adamml" else [],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    (folder / "decisions.json").write_text(json.dumps(decisions))
    if store is not None:
        made_up_store(store, [v["id"] for v in decisions], names)
    return folder


def made_up_demo(folder: Path, videos: int = 12) -> Path:
    """A demo folder (`adamml demo`): AdaMML and weighted fusion evaluated, the store, the ground truth."""
    reports = {}
    for key, stage in (("fusion", "fusion"), ("adamml", "adamml")):
        made_up_evaluation(folder / key / "eval-test", videos, store=folder / "store" if key == "adamml" else None,
                           stage=stage, seed=len(reports))
        reports[key] = json.loads((folder / key / "eval-test" / "report.json").read_text())
    decisions = json.loads((folder / "adamml" / "eval-test" / "decisions.json").read_text())
    truth = [{"id": v["id"], "segments": [{m: (i + s + j) % 2 == 0 for j, m in enumerate(MODALITIES)}
                                          for s in range(len(v["segments"]))]} for i, v in enumerate(decisions)]
    (folder / "data").mkdir()
    (folder / "data" / "ground_truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
    (folder / "report.json").write_text(json.dumps({"reports": reports, "targets": [
        {"target": "AdaMML within 1 point of fusion", "measured": "made up", "met": True}]}))
    return folder
