"""The HTML report page: everything `collect`, `tables`, `thumbnails` and `plots` produce, rendered by Jinja2 into
one self-contained `report.html` (styles, script, thumbnails and data inline; nothing fetched, no server).

The summary, plots and per-class table are rendered here; the video rows are drawn by the page's own small script
(`templates/report.js`) from the data embedded as JSON, a page at a time, so that 10,000 videos load quickly and
can be sorted and filtered. The script reads its starting filter and sort from the URL fragment, e.g.
``report.html#filter=wrong&sort=gflops-desc&class=c3&modality=flow``.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup

from adamml.data.layout import CLASSES_NAME, read_classes, read_jsonl
from adamml.errors import UserError
from adamml.report.collect import DECISIONS_NAME, Evaluation, Source, find_source, read_json
from adamml.report.plots import accuracy_gflops, gflops_histogram
from adamml.report.tables import class_names, histogram, per_class, video_record
from adamml.report.thumbnails import CELL_HEIGHT, CELL_WIDTH, MAX_CELLS, Sprite, build_sprite
from adamml.runtime.atomic_file import atomic_write_text
from adamml.runtime.jsonfile import finite_or_none

PAGE_NAME = "report.html"
MODALITY_LETTERS = {"rgb": "R", "flow": "F", "rgbdiff": "D", "audio": "A"}


@dataclass
class PageResult:
    """The page written: its path, size in bytes, videos listed, and what was left out and why."""

    path: Path
    bytes: int
    videos: int
    thumbnails: int
    warnings: list[str] = field(default_factory=list)


def write_page(folder: Path, store: Path | None = None, out: Path | None = None,
               max_thumbnails: int = MAX_CELLS) -> PageResult:
    """Write the report page of `folder` (an evaluation, run, demo or compare folder) to `out` (default
    `folder/report.html`); `store` is where the frames are when the evaluation's own store has moved."""
    source = find_source(Path(folder), store)
    context = page_context(source, max_thumbnails)
    html = render(context)
    path = Path(out) if out is not None else source.folder / PAGE_NAME
    atomic_write_text(path, html)
    return PageResult(path, len(html.encode("utf-8")), len(context["data"]["videos"]), context["thumbnails"],
                      source.warnings)


def _environment():
    import jinja2  # imported here: `adamml --version` must not pay for it

    # a key that an older report file lacks shows as a dash, not an error
    env = jinja2.Environment(loader=jinja2.PackageLoader("adamml.report", "templates"),
                             autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "allow_nan": False, "ensure_ascii": False}
    env.filters.update(pct=lambda v, d=1: _number(100 * v if _is_number(v) else None, d, " %"),
                       num=lambda v, d=2: _number(v, d), gf=lambda v: _number(v, None))
    return env


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any, digits: int | None, unit: str = "") -> str:
    """`value` with `digits` decimals (None: 4 significant digits), or a dash when it is missing."""
    if not _is_number(value):
        return "–"
    return (f"{value:.4g}" if digits is None else f"{value:.{digits}f}") + unit


def _static(name: str) -> Markup:
    text = resources.files("adamml.report").joinpath("templates", name).read_text(encoding="utf-8")
    return Markup(text)  # our own file, shipped with the package


def render(context: dict[str, Any]) -> str:
    """The page's HTML from a `page_context`."""
    env = _environment()
    return env.get_template("report.html.j2").render(**context, style=_static("report.css"),
                                                     script=_static("report.js"))


def _segment_span(eval_folder: Path) -> int:
    """Frames one test segment window covers (frames x stride), from the run's config beside the evaluation;
    1 (the centre of each region) when there is none."""
    config = eval_folder.parent / "config.yaml"
    try:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        return int(cfg["model"]["frames_per_segment"]) * int(cfg["data"]["stride"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return 1


def _decisions(source: Source, focus: Evaluation | None) -> list[dict]:
    if focus is None:
        return []
    path = focus.folder / DECISIONS_NAME
    if not path.exists():
        source.warnings.append(f"{path}: missing; the page lists no videos")
        return []
    decisions = read_json(path)
    return decisions if isinstance(decisions, list) else []


def _truth(source: Source) -> dict[str, dict]:
    return {row["id"]: row for row in read_jsonl(source.truth)} if source.truth is not None else {}


def _sprite(source: Source, focus: Evaluation | None, decisions: list[dict], max_cells: int) -> Sprite:
    if source.store is None or not decisions or max_cells == 0:  # 0: the user asked for none
        return Sprite()
    ordered = [v["id"] for v in decisions if not v.get("correct")] + [v["id"] for v in decisions if v.get("correct")]
    sprite = build_sprite(source.store, ordered, len(decisions[0].get("segments", [])) or 1,
                          _segment_span(focus.folder), max_cells)
    if sprite.missing:
        source.warnings.append(f"{len(sprite.missing)} of {len(decisions)} videos have no frames in the store "
                               f"{source.store} (first: {sprite.missing[0]}); their rows have no thumbnails")
    if sprite.left_out:
        source.warnings.append(f"thumbnails for {len(sprite.first)} videos, the wrong ones first; "
                               f"{sprite.left_out} left out to keep the page small (--thumbnails)")
    return sprite


def _method_row(evaluation: Evaluation) -> dict[str, Any]:
    r = evaluation.report
    return {"key": evaluation.key, "label": evaluation.label, "stage": r.stage,
            "modalities": "+".join(r.modalities), "top1": r.top1, "mAP": r.mAP,
            "gflops": r.gflops_per_video, "saving": r.saving_vs_always_on,
            "threshold": r.threshold, "selection": r.selection_rate,
            "chosen": r.threshold_source == "validation", "split": r.split,
            "sweep": [{"threshold": s.threshold, "gflops": s.gflops_per_video, "top1": s.top1}
                      for s in r.sweep if _is_number(s.top1) and _is_number(s.gflops_per_video)]}


def _title(source: Source, focus: Evaluation | None) -> str:
    if source.kind == "demo":
        return "adamml demo: the built-in audio-visual benchmark"
    if source.kind == "compare":
        return f"adamml compare ({source.extra.get('split', 'test')} split)"
    if focus is None:
        return f"Training run {source.folder.name}"
    return f"Evaluation: {focus.label} ({'+'.join(focus.report.modalities)}) on {focus.report.split}"


def page_context(source: Source, max_thumbnails: int = MAX_CELLS) -> dict[str, Any]:
    """Everything the template shows, from what `source` holds."""
    focus = source.focus
    decisions = _decisions(source, focus)
    store_classes = (read_classes(source.store / CLASSES_NAME)
                     if source.store is not None and (source.store / CLASSES_NAME).exists() else None)
    classes = class_names(decisions, store_classes)
    index = {name: i for i, name in enumerate(classes)}
    modalities = list(focus.report.modalities) if focus else []
    truth = _truth(source)
    sprite = _sprite(source, focus, decisions, max_thumbnails)
    videos = [video_record(v, modalities, index, truth.get(v["id"]) if truth else None, sprite.first.get(v["id"], -1))
              for v in decisions]
    methods = [_method_row(e) for e in source.evaluations]
    report = focus.report if focus else None
    always_on = (report.gflops_always_on if report else 0.0) or 0.0
    gflops = [v["g"] for v in videos]
    data = {"classes": classes, "modalities": modalities,
            "letters": [MODALITY_LETTERS.get(m, m[:1].upper()) for m in modalities],
            "always_on": always_on, "truth": bool(truth), "videos": videos,
            "sprite": {"columns": sprite.columns, "width": CELL_WIDTH, "height": CELL_HEIGHT}}
    plotted = [m for m in methods if _is_number(m["gflops"]) and _is_number(m["top1"])]  # NaN is no point
    return {
        "title": _title(source, focus),
        "source": source,
        "focus": focus,
        "report": report,
        "methods": methods,
        "scatter": accuracy_gflops(plotted) if len(plotted) > 1 or any(m["sweep"] for m in plotted) else None,
        "histogram": (gflops_histogram(histogram(gflops, always_on), always_on, sum(gflops) / len(gflops))
                      if gflops else None),
        "classes": per_class(decisions, modalities, classes),
        "modalities": modalities,
        "letters": MODALITY_LETTERS,
        "data": finite_or_none(data),
        "sprite_uri": ("data:image/jpeg;base64," + base64.b64encode(sprite.jpeg).decode("ascii")) if sprite.jpeg else "",
        "thumbnails": len(sprite.first),
        "warnings": source.warnings,
        "generated": time.strftime("%Y-%m-%d %H:%M"),
    }


def write_page_after(folder: Path, console) -> PageResult | None:
    """The page at the end of `adamml eval`, `demo` and `compare`: what it lacks, or an input it cannot read, is
    a warning there (the evaluation itself is done and written), printed on `console` with the page's path."""
    try:
        result = write_page(folder)
    except (UserError, OSError) as error:
        stale = Path(folder) / PAGE_NAME
        removed = ""
        try:  # the page of an earlier run would show that run's figures beside this run's report.json
            stale.unlink()
            removed = f"; the earlier run's {stale} was removed"
        except OSError:
            pass
        console.print(f"[yellow]warning:[/yellow] no report page: {error}{removed}")
        return None
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"report page: {result.path} ({result.bytes / 1e6:.2f} MB)")
    return result
