"""Figures a person wants to look at: which modalities the policy used on which segment (supplementary Sec. E,
Fig. 1), and accuracy against GFLOPs for the baselines and a sweep of AdaMML's decision threshold."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

COLORS = {"rgb": "#d62728", "flow": "#1f77b4", "rgbdiff": "#9467bd", "audio": "#2ca02c"}


def selection_figure(videos: list[dict], modalities: tuple[str, ...], out: Path) -> Path:
    """One block per video: a thumbnail and a spectrogram strip per segment, with the modalities the policy
    used marked (filled box = used; with ground truth, a dot = the modality was informative there).

    Each video: {"title": str, "segments": [{"thumb": (H, W, 3) uint8 RGB, "spec": (F, T) float,
    "used": set[str], "informative": dict[str, bool] | None}]}.
    """
    rows = len(videos)
    cols = max(len(v["segments"]) for v in videos)
    fig, axes = plt.subplots(rows * 3, cols, figsize=(2.1 * cols, 3.3 * rows),
                             gridspec_kw={"height_ratios": [3, 1.4, 0.7] * rows}, squeeze=False)
    for r, video in enumerate(videos):
        for c in range(cols):
            thumb_ax, spec_ax, mark_ax = axes[3 * r, c], axes[3 * r + 1, c], axes[3 * r + 2, c]
            for ax in (thumb_ax, spec_ax, mark_ax):
                ax.set_xticks([])
                ax.set_yticks([])
            if c >= len(video["segments"]):
                for ax in (thumb_ax, spec_ax, mark_ax):
                    ax.axis("off")
                continue
            seg = video["segments"][c]
            thumb_ax.imshow(seg["thumb"])
            spec_ax.imshow(seg["spec"], origin="lower", aspect="auto", cmap="magma")
            if c == 0:
                thumb_ax.set_title(video["title"], loc="left", fontsize=9)
            thumb_ax.set_xlabel(f"segment {c + 1}", fontsize=7)
            mark_ax.set_xlim(0, len(modalities))
            mark_ax.set_ylim(0, 1)
            for i, m in enumerate(modalities):
                used = m in seg["used"]
                mark_ax.add_patch(plt.Rectangle((i + 0.05, 0.1), 0.9, 0.8, color=COLORS.get(m, "grey"),
                                                alpha=0.9 if used else 0.12))
                mark_ax.text(i + 0.5, 0.5, m, ha="center", va="center", fontsize=7,
                             color="white" if used else "black")
                informative = (seg.get("informative") or {}).get(m)
                if informative:
                    mark_ax.plot(i + 0.88, 0.78, marker="o", markersize=3, color="gold", markeredgecolor="black",
                                 markeredgewidth=0.4)
            for spine in mark_ax.spines.values():
                spine.set_visible(False)
    fig.suptitle("Modalities the policy used per segment (filled = computed; dot = informative in the ground truth)",
                 fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def pareto_figure(points: list[dict], sweep: list[dict], out: Path, metric: str = "top1",
                  title: str = "Accuracy vs computation") -> Path:
    """Accuracy against GFLOPs per video: one marker per method (`points`: name, gflops, top1) and AdaMML's
    threshold sweep as a line (`sweep`: threshold, gflops, top1)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for p in points:
        ax.scatter(p["gflops"], p[metric], s=45, zorder=3, label=p["name"], marker=p.get("marker", "o"))
    if sweep:
        rows = sorted(sweep, key=lambda r: r["gflops"])
        ax.plot([r["gflops"] for r in rows], [r[metric] for r in rows], "-o", color="black", markersize=3,
                linewidth=1, zorder=2, label="AdaMML, threshold sweep")
        labels: dict[tuple[float, float], list[float]] = {}  # thresholds that land on the same point share a label
        for r in rows:
            labels.setdefault((r["gflops"], r[metric]), []).append(r["threshold"])
        for (x, y), thresholds in labels.items():
            ax.annotate("t = " + ", ".join(f"{t:g}" for t in sorted(thresholds)), (x, y), textcoords="offset points",
                        xytext=(4, -10), fontsize=6)
    ax.set_xlabel("GFLOPs per video (multiply-accumulates, conv layers)")
    ax.set_ylabel("top-1 accuracy (%)" if metric == "top1" else "mAP (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def normalize_spectrogram(spec: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(spec, 2), np.percentile(spec, 99.5)
    return np.clip((spec - lo) / max(hi - lo, 1e-6), 0, 1)
