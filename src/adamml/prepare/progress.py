"""`run_prepare` with a progress bar and the summary table, for the commands that prepare a store (prepare, demo)."""

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

from adamml.prepare.importers import VideoEntry
from adamml.prepare.pipeline import PrepareSummary, run_prepare
from adamml.prepare.worker import STAGES, PrepareSettings


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

