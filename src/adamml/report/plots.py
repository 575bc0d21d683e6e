"""Geometry of the report's inline SVG plots (the template draws them): accuracy against GFLOPs per video of every
method with AdaMML's threshold sweep, and the distribution of GFLOPs per video. Pixel positions are computed
here, so the page needs no chart library."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from adamml.stages import STAGE_TABLE

WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 58, 150, 14, 44  # margins; the right one holds the method names


@dataclass(frozen=True)
class Axis:
    """A linear map from data [lo, hi] to pixels [start, end]."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.hi - self.lo or 1.0
        return round(self.start + (value - self.lo) / span * (self.end - self.start), 1)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 5, 10) if s * power >= raw)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 12) for i in range(int(math.ceil((hi - first) / step)) + 1)]


def tick_text(value: float) -> str:
    return f"{value:g}"


def _axes(xs: list[float], ys: list[float]) -> tuple[Axis, Axis, list[float], list[float]]:
    xticks = nice_ticks(0.0, max(xs) * 1.05 if xs else 1.0)
    lo = min(ys) if ys else 0.0
    yticks = nice_ticks(max(0.0, lo - 5.0), min(100.0, max(ys) + 3.0) if ys else 100.0)
    x = Axis(xticks[0], xticks[-1], LEFT, WIDTH - RIGHT)
    y = Axis(yticks[0], yticks[-1], HEIGHT - BOTTOM, TOP)
    return x, y, xticks, yticks


def _frame(x: Axis, y: Axis, xticks: list[float], yticks: list[float]) -> dict[str, Any]:
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP,
            "bottom": HEIGHT - BOTTOM,
            "xticks": [{"px": x(t), "text": tick_text(t)} for t in xticks],
            "yticks": [{"px": y(t), "text": tick_text(t)} for t in yticks]}


def _marker_class(method: dict[str, Any]) -> str:
    """CSS classes of a method's point: its stage (k-STAGE); a unimodal model also its modality (u-MODALITY),
    drawn as a ring of that modality's colour so that the unimodal points are told apart."""
    css = f"k-{method['stage']}"
    record = STAGE_TABLE.get(method["stage"])
    if record is not None and record.one_modality and method.get("modalities"):
        css += f" u-{method['modalities']}"
    return css


def accuracy_gflops(methods: list[dict[str, Any]]) -> dict[str, Any]:
    """Points of the methods (`label`, `stage`, `gflops`, `top1`, `sweep` of {threshold, gflops, top1})."""
    sweeps = [s for m in methods for s in m.get("sweep", [])]
    xs = [m["gflops"] for m in methods] + [s["gflops"] for s in sweeps]
    ys = [m["top1"] for m in methods if m["top1"] is not None] + [s["top1"] for s in sweeps]
    x, y, xticks, yticks = _axes(xs, ys)
    points, lines = [], []
    for m in methods:
        sweep = sorted(m.get("sweep", []), key=lambda s: s["gflops"])
        if sweep:
            lines.append(" ".join(f"{x(s['gflops'])},{y(s['top1'])}" for s in sweep))
        for s in sweep:
            points.append({"x": x(s["gflops"]), "y": y(s["top1"]), "kind": "sweep", "css": "k-sweep",
                           "method": m["label"],
                           "tip": f"{m['label']}, threshold {s['threshold']:g}: {s['top1']:.2f} % at "
                                  f"{s['gflops']:.4g} GFLOPs"})
        threshold = (f", threshold {m['threshold']:g}" + (" (chosen on validation)" if m.get("chosen") else "")
                     if m.get("threshold") is not None else "")
        points.append({"x": x(m["gflops"]), "y": y(m["top1"]), "kind": m["stage"], "css": _marker_class(m),
                       "method": m["label"],
                       "tip": f"{m['label']}{threshold}: {m['top1']:.2f} % at {m['gflops']:.4g} GFLOPs"})
    return {**_frame(x, y, xticks, yticks), "points": points, "lines": lines,
            "legend": [{"label": m["label"], "kind": m["stage"], "css": _marker_class(m), "y": TOP + 8 + 18 * i}
                       for i, m in enumerate(methods)]}


def gflops_histogram(hist: dict[str, Any], always_on: float, mean: float) -> dict[str, Any]:
    """Bars of the GFLOPs distribution, with the mean and the always-on cost marked."""
    edges, counts = hist["edges"], hist["counts"]
    x = Axis(edges[0], edges[-1], LEFT, WIDTH - RIGHT)
    yticks = nice_ticks(0, max(counts) or 1, 4)
    y = Axis(0, yticks[-1], HEIGHT - BOTTOM, TOP)
    bars = [{"x": x(lo), "w": max(1.0, x(hi) - x(lo) - 1), "y": y(c), "h": round(y(0) - y(c), 1),
             "tip": f"{c} videos at {lo:.4g}-{hi:.4g} GFLOPs"} for lo, hi, c in zip(edges, edges[1:], counts)]
    marks = [{"px": x(mean), "y": TOP + 12, "text": f"mean {mean:.4g}", "kind": "mean"}]
    if always_on:
        marks.append({"px": x(always_on), "y": TOP + 26, "text": f"always on {always_on:.4g}", "kind": "always"})
    xticks = [t for t in nice_ticks(edges[0], edges[-1]) if t <= edges[-1] + 1e-12]
    return {**_frame(x, y, xticks, yticks), "bars": bars, "marks": marks}
