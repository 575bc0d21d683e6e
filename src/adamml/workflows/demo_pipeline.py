"""The whole job on the built-in benchmark: the library behind `adamml demo` (`adamml.cli.demo` lists the steps)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from adamml.config import Config, load_config
from adamml.data.dataset import read_wav_window
from adamml.data.layout import IMG_TEMPLATE, read_jsonl
from adamml.data.spectrogram import WINDOW_SAMPLES, log_spectrogram, silence
from adamml.errors import UserError
from adamml.inference.results import EvalReport
from adamml.prepare.importers import assign_classes, import_annotations
from adamml.prepare.runner import prepare_with_progress, print_summary
from adamml.prepare.worker import PrepareSettings
from adamml.report.page import write_page_after
from adamml.report.viz import normalize_spectrogram, pareto_figure, selection_figure
from adamml.runtime.devices import machine_info
from adamml.runtime.jsonfile import write_json
from adamml.stages import UNIMODAL
from adamml.workflows.comparison import Method, run_plan
from adamml.workflows.steps import Reused, Steps
from adamml.workflows.synthetic import SynthConfig, generate

MODALITIES = ("rgb", "flow", "audio")
VISUAL = ("rgb", "flow")  # the expensive recognizers, whose cells the policy must choose well
# the demo's methods (`adamml compare`'s plan: their unimodal models first, the random policy after AdaMML);
# each run is in the folder of its key (`Method.key`): unimodal-rgb, ..., fusion, adamml, random
METHODS = [Method("fusion", MODALITIES), Method("adamml", MODALITIES), Method("random", MODALITIES)]
UNIMODAL_KEYS = {m: Method(UNIMODAL, (m,)).key() for m in MODALITIES}
FUSION, ADAMML, RANDOM = (m.key(MODALITIES) for m in METHODS)
TABLE_ORDER = [*UNIMODAL_KEYS.values(), FUSION, RANDOM, ADAMML]  # the rows of the demo's tables


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What `adamml demo` can change: the folder, the preset, and the built-in dataset's size."""

    out: Path = Path("runs/demo")
    config: str = "tiny"  # model / training preset
    overrides: tuple[str, ...] = ()  # KEY=VALUE config overrides
    flow: str = "dis"
    workers: int = 2  # processes for synth and prepare
    informative_rate: float = 0.5  # of each modality
    classes: int = 8
    train_per_class: int = 24
    val_per_class: int = 10  # as large as test: recipes and the operating point are chosen on it
    test_per_class: int = 10
    size: int = 64  # frame size of the generated videos
    short_side: int = 64  # of the stored frames
    fresh: bool = False  # start over instead of reusing earlier results


def _unless_nothing_new(count: str, fn, *args, **kwargs):
    """Run a step that skips finished items; `Reused` when it made nothing new (its `count` is zero)."""
    result = fn(*args, **kwargs)
    made = result[count] if isinstance(result, dict) else getattr(result, count)
    return Reused(result) if made == 0 else result


def policy_vs_truth(decisions: list[dict], truth: dict[str, dict]) -> dict[str, Any]:
    """How the decisions taken compare with which cells were informative.

    precision: of the cells computed, the fraction that were informative (`visual_precision`: of the RGB and flow
    cells, the expensive ones; audio costs a tenth of RGB here and is worth computing everywhere); recall: of the
    informative cells, the fraction computed; covered: fraction of videos where each modality was computed on at least one
    informative cell (all a model needs on this benchmark)."""
    counts = {m: {"computed": 0, "computed_informative": 0, "informative": 0, "covered": 0} for m in MODALITIES}
    videos = 0
    for video in decisions:
        gt = truth.get(video["id"])
        if gt is None:
            continue
        videos += 1
        for m in MODALITIES:
            covered = False
            for used, cell in zip(video["segments"], gt["segments"]):
                c = counts[m]
                c["informative"] += bool(cell[m])
                if m in used:
                    c["computed"] += 1
                    c["computed_informative"] += bool(cell[m])
                    covered = covered or bool(cell[m])
            counts[m]["covered"] += covered
    total_computed = sum(c["computed"] for c in counts.values())
    total_good = sum(c["computed_informative"] for c in counts.values())
    visual_computed = sum(counts[m]["computed"] for m in VISUAL)
    visual_good = sum(counts[m]["computed_informative"] for m in VISUAL)
    return {
        "videos": videos,
        "precision": total_good / total_computed if total_computed else float("nan"),
        "visual_precision": visual_good / visual_computed if visual_computed else float("nan"),
        "recall": total_good / max(1, sum(c["informative"] for c in counts.values())),
        "per_modality": {m: {"precision": c["computed_informative"] / c["computed"] if c["computed"] else float("nan"),
                             "recall": c["computed_informative"] / max(1, c["informative"]),
                             "covered": c["covered"] / max(1, videos)} for m, c in counts.items()},
    }


def _selection_videos(decisions: list[dict], truth: dict[str, dict], store: Path, count: int) -> list[dict]:
    """Thumbnails (middle frame of each segment) and spectrogram strips of a few test videos."""
    manifest = {r["id"]: r for r in read_jsonl(store / "manifest.jsonl")}
    chosen = [v for v in decisions if v["correct"]][: count - 1] + [v for v in decisions if not v["correct"]][:1]
    chosen = chosen[:count] if len(chosen) >= count else decisions[:count]
    out = []
    for video in chosen:
        row = manifest[video["id"]]
        n, segments = row["num_frames"], len(video["segments"])
        gt = truth.get(video["id"])
        items = []
        for s in range(segments):
            frame = int((s + 0.5) * n / segments)
            image = cv2.imread(str(store / row["frames_dir"] / IMG_TEMPLATE.format(frame + 1)))[..., ::-1]
            centre = (frame + 0.5) / row["fps"]
            spec = (log_spectrogram(read_wav_window(store / row["audio"], centre, WINDOW_SAMPLES))
                    if row.get("has_audio") else silence())
            items.append({"thumb": image, "spec": spec[:128], "used": set(video["segments"][s]),
                          "informative": gt["segments"][s] if gt else None})
        scale = normalize_spectrogram(np.concatenate([item["spec"] for item in items], axis=1))  # one scale a video
        for s, item in enumerate(items):
            item["spec"] = scale[:, s * 256:(s + 1) * 256]
        label = ", ".join(video["labels"])
        title = f"{video['id']}  label {label}, predicted {video['prediction']}" + ("" if video["correct"] else "  (wrong)")
        out.append({"title": title, "segments": items})
    return out


def check_settings(settings: DemoSettings) -> tuple[SynthConfig, Config]:
    """The benchmark's and the training's settings, checked before any work: a bad value is a `UserError` naming
    it, never a traceback after the videos are made."""
    if settings.workers < 1:
        raise UserError(f"--workers must be at least 1, got {settings.workers}")
    if settings.short_side < 16:
        raise UserError(f"--short-side must be at least 16, got {settings.short_side}")
    for split in ("train", "val", "test"):  # the demo trains, chooses on validation and reports on test
        count = getattr(settings, f"{split}_per_class")
        if count < 1:
            raise UserError(f"--{split}-per-class must be at least 1 (the demo uses every split), got {count}")
    try:
        synth = SynthConfig(classes=settings.classes, train_per_class=settings.train_per_class,
                            val_per_class=settings.val_per_class, test_per_class=settings.test_per_class,
                            size=settings.size, informative_rate=(settings.informative_rate,) * 3)
    except ValueError as error:
        raise UserError(f"the demo's benchmark: {error}") from None
    try:
        cfg = load_config(settings.config, [f"model.num_classes={settings.classes}", *settings.overrides])
    except ValueError as error:  # ConfigError is a UserError already; a dataclass check is a ValueError
        raise UserError(f"--config {settings.config}: {error}") from None
    return synth, cfg


def run_demo(settings: DemoSettings) -> int:
    """Every step of `adamml demo` (see `adamml.cli.demo`), reusing what an earlier run finished."""
    console = Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()
    synth, _cfg = check_settings(settings)  # before anything is generated or removed
    out: Path = settings.out
    if settings.fresh and out.exists():
        shutil.rmtree(out)
    steps = Steps(console, record=out / "steps.json")
    data, store = out / "data", out / "store"
    try:
        made = steps.run("synth", _unless_nothing_new, "written", generate, synth, data, workers=settings.workers,
                         console=console)
    except ValueError as error:  # a dataset of another generator version or other arguments
        console.print(f"[red]error:[/red] {error}\n`adamml demo --fresh` starts over in {out}")
        return 2
    console.print(f"{made['videos']} videos ({made['written']} written, {made['reused']} reused)")

    imported = import_annotations("csv", data / "annotations.csv", data)
    classes, entries = assign_classes(imported.entries, None, None)
    summary = steps.run("prepare", _unless_nothing_new, "ok", prepare_with_progress, entries, classes, data, store,
                        PrepareSettings(flow=settings.flow, short_side=settings.short_side), workers=settings.workers,
                        console=console)
    print_summary(summary, console)
    if summary.failed:
        console.print(f"[red]{summary.failed} videos failed to prepare[/red]")
        return 1

    cfg = load_config(settings.config, [f"model.num_classes={len(classes)}", *settings.overrides])
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, modalities=MODALITIES))
    runs = {run.key: run for run in run_plan(cfg, store, out, METHODS, "test", steps, console)}
    reports = {key: runs[key].report for key in TABLE_ORDER}
    labels = {key: runs[key].method.label for key in TABLE_ORDER}

    truth = {row["id"]: row for row in read_jsonl(data / "ground_truth.jsonl")}
    decisions = json.loads((runs[ADAMML].folder / "eval-test" / "decisions.json").read_text())
    random_decisions = json.loads((runs[RANDOM].folder / "eval-test" / "decisions.json").read_text())
    vs_truth = {"adamml": policy_vs_truth(decisions, truth), "random": policy_vs_truth(random_decisions, truth)}

    selection_figure(_selection_videos(decisions, truth, store, 4), MODALITIES, out / "selections.png")
    points = [{"name": labels[k], "gflops": r.gflops_per_video, "top1": r.top1,
               "marker": "s" if runs[k].method.record.one_modality else "D"} for k, r in reports.items()
              if not r.uses_policy]
    points.append({"name": f"AdaMML (threshold {reports[ADAMML].threshold:g}, chosen on validation)",
                   "gflops": reports[ADAMML].gflops_per_video,
                   "top1": reports[ADAMML].top1, "marker": "*"})
    sweep = sorted(({"threshold": r.threshold, "gflops": r.gflops_per_video, "top1": r.top1}
                    for r in reports[ADAMML].sweep), key=lambda r: r["threshold"])
    pareto_figure(points, sweep, out / "pareto.png", title="Built-in benchmark (test split)")

    times = {steps.label(name): seconds for name, seconds in steps.times.items()}
    text = write_demo_report(out, reports, labels, vs_truth, times, time.perf_counter() - started, made, summary)
    console.print(demo_table(reports, labels))
    console.print(text)
    write_page_after(out, console)
    return 0


def _targets(reports: dict[str, EvalReport], vs_truth: dict[str, dict]) -> list[tuple[str, str, bool]]:
    fusion, ada, rnd = reports[FUSION], reports[ADAMML], reports[RANDOM]
    best_uni = max(reports[key].top1 for key in UNIMODAL_KEYS.values())
    ratio = ada.gflops_per_video / fusion.gflops_per_video
    return [
        ("weighted fusion beats every unimodal model by >= 10 points",
         f"{fusion.top1:.1f} vs best unimodal {best_uni:.1f} ({fusion.top1 - best_uni:+.1f})",
         fusion.top1 - best_uni >= 10),
        ("AdaMML within 1 point of weighted fusion (or above) at <= 50 % of its GFLOPs",
         f"{ada.top1:.1f} vs {fusion.top1:.1f} ({ada.top1 - fusion.top1:+.1f}) at {100 * ratio:.1f} %",
         ada.top1 >= fusion.top1 - 1 and ratio <= 0.5),
        ("AdaMML beats the random policy at the same selection rate by >= 5 points",
         f"{ada.top1:.1f} vs {rnd.top1:.1f} ({ada.top1 - rnd.top1:+.1f})", ada.top1 - rnd.top1 >= 5),
        (">= 80 % of the RGB and flow cells AdaMML computes are informative (audio: all its cells counted apart)",
         f"{100 * vs_truth['adamml']['visual_precision']:.1f} % (all cells, audio included: "
         f"{100 * vs_truth['adamml']['precision']:.1f} %)", vs_truth["adamml"]["visual_precision"] >= 0.8),
    ]


def demo_table(reports: dict[str, EvalReport], labels: dict[str, str]) -> Table:
    table = Table(title="Built-in benchmark, test split (the paper's table form)")
    for col in ("method", "modalities", "top-1 (%)", "GFLOPs / video", "rgb", "flow", "audio", "videos/s"):
        table.add_column(col, justify="right" if col not in ("method", "modalities") else "left")
    for name, r in reports.items():
        sel = [f"{100 * r.selection_rate[m]:.0f} %" if m in r.selection_rate else "-" for m in MODALITIES]
        table.add_row(labels[name], "+".join(r.modalities), f"{r.top1:.2f}", f"{r.gflops_per_video:.4f}", *sel,
                      f"{r.videos_per_second:.1f}")
    return table


def write_demo_report(out: Path, reports: dict[str, EvalReport], labels: dict[str, str], vs_truth: dict[str, dict],
                      times: dict[str, float], total: float, synth: dict, prepared) -> str:
    """`out/report.md` and `report.json` (every method's report under its run folder's name); returns the
    one-line summary."""
    fusion, ada = reports[FUSION], reports[ADAMML]
    saving = 1.0 - ada.gflops_per_video / fusion.gflops_per_video
    targets = _targets(reports, vs_truth)
    lines = ["# adamml demo: the built-in audio-visual benchmark", "",
             f"{synth['videos']} generated videos (each class = hue x motion direction x pitch; each modality "
             "informative in some of the 4 segments of a video), prepared with DIS flow; test split. GFLOPs are "
             "multiply-accumulates of conv layers per video counted on the real networks from the decisions "
             "actually taken; videos/s is network time on this machine's CPU.", "",
             "| method | modalities | top-1 (%) | mAP (%) | GFLOPs / video | selection rgb / flow / audio | videos/s |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: |"]
    for name, r in reports.items():
        sel = " / ".join(f"{100 * r.selection_rate[m]:.0f} %" if m in r.selection_rate else "-" for m in MODALITIES)
        lines.append(f"| {labels[name]} | {'+'.join(r.modalities)} | {r.top1:.2f} | {r.mAP:.2f} | "
                     f"{r.gflops_per_video:.4f} | {sel} | {r.videos_per_second:.1f} |")
    op = ada.operating_point
    chosen = (f" It decides at threshold {ada.threshold:g}, chosen on the {op['videos']} validation videos "
              f"(validation top-1 {op['score']:.2f} %, the best {op['reference_score']:.2f} %)." if op else "")
    lines += ["", f"AdaMML saves {100 * saving:.1f} % of the GFLOPs of weighted fusion "
                  f"({ada.gflops_per_video:.4f} vs {fusion.gflops_per_video:.4f}).{chosen}", "",
              "## The policy against the ground truth", "",
              "| policy | computed cells that were informative (rgb + flow / all) | informative cells computed | "
              "videos with an informative cell of rgb / flow / audio |", "| --- | ---: | ---: | --- |"]
    for name in ("adamml", "random"):
        v = vs_truth[name]
        cov = " / ".join(f"{100 * v['per_modality'][m]['covered']:.0f} %" for m in MODALITIES)
        lines.append(f"| {name} | {100 * v['visual_precision']:.1f} % / {100 * v['precision']:.1f} % | "
                     f"{100 * v['recall']:.1f} % | {cov} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets]
    lines += ["", "## Threshold sweep (AdaMML)", "", "| threshold | top-1 (%) | GFLOPs / video |", "| ---: | ---: | ---: |"]
    lines += [f"| {r.threshold:g}{' (chosen)' if r.threshold == ada.threshold else ''} | {r.top1:.2f} | "
              f"{r.gflops_per_video:.4f} |" for r in sorted(ada.sweep, key=lambda r: r.threshold)]
    lines += ["", "## Wall time", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in times.items()]
    lines += [f"| total, this run | {total:.1f} |", ""]
    machine = machine_info()
    lines += ["## Machine", "",
              "The trainings amplify float rounding, and PyTorch picks its CPU kernels by instruction set and splits "
              "its sums by thread count: the same code and data on another machine give other figures (by a few "
              "points; bit for bit on the same machine). This table was made on:", "",
              "| " + " | ".join(machine) + " |", "| " + " | ".join("---" for _ in machine) + " |",
              "| " + " | ".join(str(v) for v in machine.values()) + " |", "",
              "Figures: `selections.png`, `pareto.png`."]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    payload = {"reports": {name: r.to_json() for name, r in reports.items()}, "policy_vs_truth": vs_truth, "saving_vs_fusion": saving,
               "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets],
               "seconds": times, "total_seconds": total, "prepare_frames_per_second": prepared.frames_per_second,
               "machine": machine}
    write_json(out / "report.json", payload, indent=1, default=str)
    summary = (f"AdaMML {ada.top1:.1f} % at {ada.gflops_per_video:.4f} GFLOPs vs weighted fusion "
               f"{fusion.top1:.1f} % at {fusion.gflops_per_video:.4f} ({100 * saving:.1f} % saved); "
               f"{100 * vs_truth['adamml']['visual_precision']:.0f} % of computed RGB and flow cells informative; "
               f"targets met {sum(ok for *_x, ok in targets)}/{len(targets)}; {total:.0f} s in all -> {out}/report.md")
    return summary
