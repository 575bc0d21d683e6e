"""The numbers the HTML report shows that no report file holds: one compact record per video for the page's
script, accuracy and GFLOPs per class, and the distribution of GFLOPs per video."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

PROBABILITY_DIGITS = 3  # top-5 probabilities in the page
GFLOPS_DIGITS = 6


def class_names(decisions: list[dict], store_classes: list[str] | None = None) -> list[str]:
    """The class names in the store's order when known, else sorted; every name the decisions use is there."""
    used = {name for v in decisions for name in [*v.get("labels", []), *(c for c, _p in v.get("top5", []))]}
    known = list(store_classes or [])
    return known + sorted(used - set(known))


def _bits(flags: list[bool]) -> int:
    return sum(1 << i for i, flag in enumerate(flags) if flag)


def video_record(video: dict, modalities: list[str], index: dict[str, int], truth: dict | None,
                 thumbnail: int) -> dict[str, Any]:
    """One video for the page's script, in short keys (10,000 of them stay a few MB): y labels, p top-5
    [class, probability], ok right, g GFLOPs, d modalities computed per segment (bit m = modality m), u P(use) per
    segment and modality in percent, t first thumbnail cell (-1: none), i informative cells (the demo's truth)."""
    record = {
        "id": video["id"],
        "y": [index[name] for name in video.get("labels", [])],
        "p": [[index[name], round(float(p), PROBABILITY_DIGITS)] for name, p in video.get("top5", [])],
        "ok": int(bool(video.get("correct"))),
        "g": round(float(video.get("gflops", 0.0)), GFLOPS_DIGITS),
        "d": [_bits([m in used for m in modalities]) for used in video.get("segments", [])],
        "u": [[round(100 * float(p)) for p in row] for row in video.get("p_use", [])],
        "t": thumbnail,
    }
    if truth is not None:
        record["i"] = [_bits([bool(cell.get(m)) for m in modalities]) for cell in truth.get("segments", [])]
    return record


def per_class(decisions: list[dict], modalities: list[str], classes: list[str]) -> list[dict[str, Any]]:
    """Videos, top-1 accuracy (%), mean GFLOPs and selection rate per modality of each class (by label)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for video in decisions:
        for label in video.get("labels", []):
            groups[label].append(video)
    rows = []
    for name in classes:
        videos = groups.get(name)
        if not videos:
            continue
        cells = [used for v in videos for used in v.get("segments", [])]
        rows.append({
            "name": name,
            "videos": len(videos),
            "top1": 100.0 * sum(bool(v.get("correct")) for v in videos) / len(videos),
            "gflops": float(np.mean([v.get("gflops", 0.0) for v in videos])),
            "selection": {m: sum(m in used for used in cells) / max(1, len(cells)) for m in modalities},
        })
    return rows


def histogram(values: list[float], upper: float, bins: int = 24) -> dict[str, Any]:
    """Counts of `values` in `bins` equal bins from 0 to `upper` (or their maximum when larger)."""
    values_array = np.asarray(values, dtype=float)
    top = max(float(upper), float(values_array.max()) if len(values_array) else 0.0) or 1.0
    counts, edges = np.histogram(values_array, bins=bins, range=(0.0, top))
    return {"counts": counts.tolist(), "edges": edges.tolist()}
