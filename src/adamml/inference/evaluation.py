"""Evaluation of a trained checkpoint on a prepared store: the library behind `adamml eval` (`adamml.cli.evaluate`
says what is measured)."""

from __future__ import annotations

import math

import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from adamml.data.dataset import SegmentDataset, Store, sampling_config
from adamml.data.layout import StoreError
from adamml.data.loader import make_loader
from adamml.errors import UserError
from adamml.inference.checkpoint import load_trained
from adamml.inference.decisions import stage_decisions
from adamml.inference.gflops import always_on_gmacs, measure_costs, video_gmacs
from adamml.inference.metrics import softmax
from adamml.inference.predictions import predict, summarize
from adamml.inference.results import EvalReport, SweepPoint
from adamml.models.policy import DecisionRule
from adamml.runtime.distributed import DistInfo
from adamml.runtime.jsonfile import write_json
from adamml.runtime.precision import amp_for


def _gflops_stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "median": float(np.median(values)), "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90)), "min": float(values.min()), "max": float(values.max())}


def evaluate(checkpoint: Path, data: Path, split: str = "test", out: Path | None = None, thresholds: list[float] | None = None,
             info: DistInfo | None = None, batch_size: int | None = None, random_at_test: bool = False,
             console: Console | None = None, precision: str = "fp32", sweep: list[float] | tuple[float, ...] = ()
             ) -> EvalReport:
    """Evaluate `checkpoint` on `split` of the store `data`; writes the report into `out` (main process).
    A policy decides at `thresholds[0]` (given), else at the operating point recorded in the checkpoint, else at
    ``model.policy.threshold``; the other `thresholds` and those of `sweep` are evaluated too (the report's sweep).
    `precision` (fp32, bf16, fp16) is the networks' arithmetic (`adamml.runtime.precision`)."""
    console = console or Console(stderr=True, soft_wrap=True)
    info = info or DistInfo()
    trained = load_trained(checkpoint, str(info.device))
    model, cfg, stage = trained.model, trained.config, trained.stage
    store = Store.open(data)
    if len(store.classes) != cfg.model.num_classes:
        raise StoreError(f"{data} has {len(store.classes)} classes, the checkpoint {checkpoint} was trained for "
                         f"{cfg.model.num_classes}")
    dataset = SegmentDataset(store, split, cfg.model.modalities, train=False, sampling=sampling_config(cfg))
    for note in (store.settings_note(trained.metadata.get("store")), store.size_note(cfg.data.test_short_side),
                 dataset.silent_note(), store.stale_note()):
        if note and info.is_main:
            console.print(f"[yellow]warning:[/yellow] {escape(note)}")
    loader = make_loader(dataset, batch_size or cfg.train.eval_batch_size, info, 0, train=False,
                         workers=cfg.data.workers)
    costs = measure_costs(cfg.model)
    uses_policy = trained.uses_policy
    if not uses_policy and (thresholds or random_at_test):
        given = "--threshold" if thresholds else "--random-at-test"
        raise UserError(f"{checkpoint}: {given} applies to a model with a policy (AdaMML); this {stage} checkpoint "
                        "has none and computes what its stage computes whatever the threshold")
    recorded = trained.operating_point if uses_policy else None
    source = ("given" if thresholds else "validation" if recorded else "config") if uses_policy else None
    thresholds = list(thresholds or [cfg.model.policy.threshold])  # load_trained applied a recorded point
    thresholds += [t for t in sweep if t not in thresholds]
    runs = []
    for threshold in (thresholds if uses_policy else thresholds[:1]):
        rule = DecisionRule(threshold, sample=random_at_test) if uses_policy else None
        started = time.perf_counter()
        progress = Progress(TextColumn(f"[bold]eval {split}" + (f" threshold {threshold:g}" if uses_policy else "")),
                            BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                            disable=not info.is_main)
        with progress:
            task = progress.add_task("eval", total=len(dataset))
            pred = predict(model, loader, info, stage_decisions(model, stage, cfg),
                           on_batch=lambda n: progress.update(task, advance=n), amp=amp_for(precision, info.device),
                           rule=rule)
        wall = time.perf_counter() - started
        check_finite_logits(pred.logits, [dataset.rows[int(i)]["id"] for i in pred.indices], checkpoint)
        metrics = summarize(pred, model.modalities, store.multi_label)
        gflops = video_gmacs(pred.decisions, costs, "conv", include_policy=uses_policy)
        gflops_all = video_gmacs(pred.decisions, costs, "all", include_policy=uses_policy)
        runs.append((threshold, pred, metrics, gflops, gflops_all, wall))
    threshold, pred, metrics, gflops, gflops_all, wall = runs[0]  # the first threshold is the one reported
    if math.isnan(metrics.mAP) and info.is_main:
        console.print(f"[yellow]warning:[/yellow] no mAP on split {split!r} of {data}: no class has both videos "
                      "that show it and videos that do not (one class), so there is nothing to rank")
    num_segments = pred.decisions.shape[1]
    always = always_on_gmacs(costs, num_segments, "conv")
    report = EvalReport(
        checkpoint=str(checkpoint), data=str(Path(data).resolve()), stage=stage, fusion=cfg.model.fusion.kind, modalities=list(model.modalities),
        split=split, videos=metrics.videos, segments=int(num_segments),
        threshold=threshold if uses_policy else None, top1=metrics.top1, top5=metrics.top5, mAP=metrics.mAP,
        gflops_per_video=float(gflops.mean()), gflops=_gflops_stats(gflops),
        gflops_all_layers_per_video=float(gflops_all.mean()), gflops_always_on=always,
        saving_vs_always_on=1.0 - float(gflops.mean()) / always if always else 0.0,
        selection_rate=metrics.selection_rate,
        videos_per_second=metrics.videos / pred.seconds if pred.seconds else float("nan"),
        wall_seconds=wall, device=str(info.device), precision=precision,
        sweep=[SweepPoint(threshold=t, top1=m.top1, mAP=m.mAP, gflops_per_video=float(g.mean()),
                          selection_rate=m.selection_rate) for t, _p, m, g, _ga, _w in runs] if uses_policy else [],
        threshold_source=source, operating_point=recorded,
    )
    if info.is_main and out is not None:
        write_report(report, pred, dataset, store, gflops, Path(out))
    return report


def check_finite_logits(logits: np.ndarray, videos: list[str], checkpoint: Path) -> None:
    """A model that produced NaN or infinite logits is broken: an error naming the first such video, never an
    accuracy (argmax of NaN is class 0, counted right wherever the label is 0)."""
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if len(bad):
        raise UserError(f"{checkpoint}: the model produced non-finite (NaN or infinite) logits for video "
                        f"{videos[bad[0]]!r} ({len(bad)} of {len(videos)} videos); its weights or inputs are broken")


def write_report(report: EvalReport, pred, dataset: SegmentDataset, store: Store, gflops: np.ndarray,
                 out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report.to_json(), indent=1)
    scores = softmax(pred.logits)
    modalities = report.modalities
    videos = []
    for row, index in enumerate(pred.indices):
        meta = dataset.rows[int(index)]
        top = np.argsort(-scores[row])[:5]
        videos.append({
            "id": meta["id"],
            "labels": meta.get("labels", []),
            "prediction": store.classes[int(top[0])],
            "top5": [[store.classes[int(c)], float(scores[row, c])] for c in top],
            "correct": bool(int(top[0]) in meta.get("label_ids", [])),
            "gflops": float(gflops[row]),
            "segments": [[m for i, m in enumerate(modalities) if pred.decisions[row, s, i] > 0.5]
                         for s in range(pred.decisions.shape[1])],
            "p_use": np.round(pred.probs[row], 4).tolist(),
        })
    write_json(out / "decisions.json", videos, indent=1, ensure_ascii=False)
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")


_SOURCES = {"validation": "the operating point chosen on validation", "given": "given",
            "config": "model.policy.threshold: no operating point recorded"}


def report_markdown(report: EvalReport) -> str:
    sel = ", ".join(f"{m} {100 * r:.1f} %" for m, r in report.selection_rate.items())
    lines = [
        f"# Evaluation: {report.stage} ({'+'.join(report.modalities)}) on {report.split}",
        "",
        f"Checkpoint `{report.checkpoint}`, {report.videos} videos x {report.segments} segments"
        + (f", threshold {report.threshold:g} ({_SOURCES.get(report.threshold_source, 'configured')})"
           if report.threshold is not None else "") + ".",
        "",
        "| top-1 (%) | top-5 (%) | mAP (%) | GFLOPs / video | always-on GFLOPs | saving | selection | videos/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        f"| {report.top1:.2f} | {report.top5:.2f} | {report.mAP:.2f} | {report.gflops_per_video:.4g} "
        f"| {report.gflops_always_on:.4g} | {100 * report.saving_vs_always_on:.1f} % | {sel} "
        f"| {report.videos_per_second:.1f} |",
        "",
        f"GFLOPs are multiply-accumulates of conv layers (the paper's count); all layers: "
        f"{report.gflops_all_layers_per_video:.4g} per video. Per-video GFLOPs: median {report.gflops['median']:.4g}, "
        f"10-90 % {report.gflops['p10']:.4g}-{report.gflops['p90']:.4g}. videos/s counts network time on "
        f"{report.device}.",
    ]
    if report.operating_point:
        op = report.operating_point
        goal = (f"the fewest GFLOPs within {op['margin']:g} points of the best"
                if op["target"] == "accuracy" else f"the best {op['metric']} within {100 * op['budget']:g} % of the "
                "always-on GFLOPs")
        lines += ["", "## Operating point", "",
                  f"Recorded in the checkpoint: threshold {op['threshold']:g}, chosen on {op['videos']} "
                  f"{op['split']} videos for {goal}: {op['metric']} {op['score']:.2f} % (the best: "
                  f"{op['reference_score']:.2f} %) at {op['gflops_per_video']:.4g} GFLOPs per video."]
        lines += [f"Warning: {w}" for w in op.get("warnings", [])]
    if report.sweep:
        lines += ["", "## Threshold sweep", "", "| threshold | top-1 (%) | mAP (%) | GFLOPs / video | selection |",
                  "| ---: | ---: | ---: | ---: | --- |"]
        for row in report.sweep:
            s = ", ".join(f"{m} {100 * r:.0f} %" for m, r in row.selection_rate.items())
            lines.append(f"| {row.threshold:g} | {row.top1:.2f} | {row.mAP:.2f} | {row.gflops_per_video:.4g} | {s} |")
    return "\n".join(lines) + "\n"
