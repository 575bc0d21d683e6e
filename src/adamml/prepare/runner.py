"""Preparing a store, as `adamml prepare` and `adamml demo` do it: from a folder of videos or an annotation file,
with a progress bar and a closing summary table (`adamml.prepare.pipeline` does the work)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from adamml.data.layout import CLASSES_NAME
from adamml.prepare.importers import (
    AnnotationError,
    VideoEntry,
    assign_classes,
    guess_format,
    import_annotations,
)
from adamml.prepare.pipeline import (
    PrepareSummary,
    check_known_labels,
    check_store_folder,
    parse_shard,
    run_prepare,
    store_classes,
)
from adamml.prepare.worker import STAGES, PrepareSettings


def prepare_store(source: Path, out: Path, settings: PrepareSettings = PrepareSettings(), *,
                  list_format: str | None = "auto", root: Path | None = None, subset: str | None = None,
                  split: str | None = None, classes: Path | None = None, label_file: Path | None = None,
                  workers: int = 1, shard: str | None = None, overwrite: bool = False,
                  console: Console | None = None, quiet: bool = False, wait: bool = False) -> PrepareSummary:
    """Prepare the videos of `source` into the store `out`; a run stopped half-way resumes.

    `source` is a folder of videos (``DIR/<label>/<video>`` or ``DIR/<split>/<label>/<video>``) when `list_format`
    is None, else an annotation file (`list_format` "auto" guesses it; paths in it are relative to `root`, by
    default its folder). `classes` (a file, one name a line) fixes the class ids; `shard` ("I/N") prepares one
    part of a sharded run."""
    console = console or Console(stderr=True, soft_wrap=True)
    source, out = Path(source), Path(out)
    if list_format is None:
        fmt, root = "folder", source
    else:
        if not source.exists():
            raise AnnotationError(f"{source}: annotation file not found")
        fmt = guess_format(source) if list_format == "auto" else list_format
        root = Path(root) if root is not None else source.parent
    check_store_folder(out)
    imported = import_annotations(fmt, source, root, subset=subset, default_split=split, label_file=label_file)
    fixed = imported.classes
    have = store_classes(out) if not overwrite else None
    if have is not None and fixed is None and classes is None:
        check_known_labels(imported.entries, have, out / CLASSES_NAME)
        fixed = have  # a store prepared before: its class ids stay
    names, entries = assign_classes(imported.entries, fixed, classes)
    part = parse_shard(shard) if shard else None
    console.print(escape(
        f"prepare: {len(entries)} videos ({fmt}), {len(names)} classes, flow={settings.flow}, "
        f"short side {settings.short_side}, {workers} worker(s)"
        + (f", shard {part[0]}/{part[1]}" if part else "")
        + f" -> {out}"
    ))
    unlabelled = [e for e in entries if not e.labels and not e.error]
    if unlabelled:
        console.print(escape(f"warning: {len(unlabelled)} videos have no label (e.g. {unlabelled[0].origin}); "
                             "they are prepared, but training and evaluation refuse unlabelled videos"))
    return prepare_with_progress(entries, names, root, out, settings, workers, part, overwrite, console,
                                 quiet=quiet, wait=wait)


def prepare_with_progress(entries: list[VideoEntry], classes: list[str], root: Path, out: Path,
                          settings: PrepareSettings, workers: int = 1, shard: tuple[int, int] | None = None,
                          overwrite: bool = False, console: Console | None = None, quiet: bool = False,
                          wait: bool = False) -> PrepareSummary:
    """`run_prepare` with a rich progress bar (videos done, ok / failed so far)."""
    console = console or Console(stderr=True, soft_wrap=True)
    progress = Progress(
        TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet,
    )
    counts = {"ok": 0, "failed": 0}
    task = progress.add_task("prepare", total=None, status="")

    def on_start(total: int, skipped: int) -> None:
        progress.update(task, total=total, completed=skipped, status=f"skipped {skipped}")

    def on_row(row: dict) -> None:
        counts[row["status"]] += 1
        status = f"ok {counts['ok']} failed {counts['failed']}"
        if row["status"] == "failed":
            progress.console.print(f"[yellow]failed[/yellow] {escape(row['id'])}: {escape(str(row['error']))}")
        progress.update(task, advance=1, status=status)

    with progress:
        return run_prepare(entries, classes, root, out, settings, workers=workers, shard=shard,
                           overwrite=overwrite, on_start=on_start, on_row=on_row, wait=wait,
                           on_wait=lambda message: progress.console.print(escape(message)))


def print_summary(summary: PrepareSummary, console: Console) -> None:
    table = Table(title="prepare summary", show_header=False)
    table.add_row("videos ok / failed / skipped", f"{summary.ok} / {summary.failed} / {summary.skipped}")
    table.add_row("frames written", str(summary.frames))
    table.add_row("wall time", f"{summary.wall_seconds:.1f} s")
    table.add_row("frames / s (wall)", f"{summary.frames_per_second:.1f}")
    for stage in STAGES:
        table.add_row(f"time in {stage} (all workers)", f"{summary.stage_seconds[stage]:.1f} s")
    table.add_row("manifest", escape(str(summary.manifest)))
    console.print(table)
    for vid, warning in summary.warnings[:10]:
        console.print(f"[yellow]warning[/yellow] {escape(vid)}: {escape(warning)}")
    if len(summary.warnings) > 10:
        console.print(f"... and {len(summary.warnings) - 10} more warnings (see the manifest)")
    if summary.failures:
        console.print(f"[red]{summary.failed} failed[/red] (reasons in the manifest):")
        for vid, error in summary.failures[:10]:
            console.print(escape(f"  {vid}: {error}"))

