"""Running `prepare` over a video list: sharding, parallel workers, resume, manifest, progress, summary."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from adamml.prepare.importers import VideoEntry
from adamml.prepare.layout import (
    CLASSES_NAME,
    MANIFEST_NAME,
    META_NAME,
    SETTINGS_NAME,
    STORE_FORMAT,
    STORE_VERSION,
    TMP_DIR,
    StoreError,
    atomic_write_text,
    read_classes,
    read_jsonl,
    shard_manifest_name,
    video_dir,
    write_jsonl,
)
from adamml.prepare.worker import STAGES, PrepareSettings, init_worker, prepare_video

MANIFEST_FLUSH_SECONDS = 2.0


@dataclass
class PrepareSummary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    frames: int = 0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, error)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), zero-based I."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return index, count


def select_shard(entries: list[VideoEntry], index: int, count: int) -> list[VideoEntry]:
    """Every count-th entry starting at index, after sorting by id, so shards never overlap."""
    ordered = sorted(entries, key=lambda e: e.id)
    return ordered[index::count]


def check_store_settings(store: Path, settings: PrepareSettings) -> None:
    """Create store.json, or check that an existing store was prepared with the same settings."""
    path = store / SETTINGS_NAME
    wanted = {"format": STORE_FORMAT, "version": STORE_VERSION, **settings.to_dict()}
    if path.exists():
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}: not valid JSON ({exc.msg})") from exc
        diff = {k: (have.get(k), v) for k, v in wanted.items() if have.get(k) != v}
        if diff:
            details = ", ".join(f"{k}: store has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
            raise StoreError(
                f"{store} was prepared with other settings ({details}); use another --out, or --overwrite"
            )
        return
    atomic_write_text(path, json.dumps(wanted, indent=1) + "\n")


def write_classes(store: Path, classes: list[str]) -> None:
    """Write classes.txt, or check that the existing one is the same list."""
    path = store / CLASSES_NAME
    if path.exists():
        have = read_classes(path)
        if have != classes:
            raise StoreError(
                f"{path} holds {len(have)} classes that differ from the {len(classes)} of this list; "
                "prepare into another --out, or --overwrite"
            )
        return
    atomic_write_text(path, "".join(c + "\n" for c in classes))


class ManifestWriter:
    """Rows of one manifest (part), rewritten atomically at most every few seconds and at the end."""

    def __init__(self, path: Path, order: list[str]) -> None:
        self.path = path
        self.order = {vid: i for i, vid in enumerate(order)}
        self.rows: dict[str, dict] = {}
        self._last = 0.0

    def add(self, row: dict) -> None:
        self.rows[row["id"]] = row

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= MANIFEST_FLUSH_SECONDS:
            rows = sorted(self.rows.values(), key=lambda r: self.order.get(r["id"], len(self.order)))
            write_jsonl(self.path, rows)
            self._last = now


def _recover(store: Path, entry: VideoEntry, manifest_rows: dict[str, dict]) -> dict | None:
    """The finished row of `entry` when its folder is complete in the store, else None."""
    if entry.error:
        return None
    meta = video_dir(store, entry.id) / META_NAME
    row = manifest_rows.get(entry.id)
    if row is not None and row.get("status") == "ok" and meta.exists():
        return row
    if meta.exists():
        try:
            return json.loads(meta.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            return None
    return None


Progress = Callable[[dict], None]


def run_prepare(
    entries: list[VideoEntry],
    classes: list[str],
    root: Path,
    store: Path,
    settings: PrepareSettings,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Progress | None = None,
) -> PrepareSummary:
    """Prepare `entries` (or one shard of them) into `store`; resumes what an earlier run left.

    `on_start(total, skipped)` and `on_row(row)` report progress.
    """
    start = time.perf_counter()
    if overwrite and store.exists():
        for name in (SETTINGS_NAME, CLASSES_NAME, MANIFEST_NAME):
            (store / name).unlink(missing_ok=True)
    store.mkdir(parents=True, exist_ok=True)
    check_store_settings(store, settings)
    write_classes(store, classes)
    duplicates = sorted(i for i, n in Counter(e.id for e in entries).items() if n > 1)
    if duplicates:
        raise StoreError(f"{len(duplicates)} videos share an id (same path without extension): {duplicates[:5]}")
    if shard is not None:
        entries = select_shard(entries, *shard)
        manifest_path = store / shard_manifest_name(*shard)
        tmp_name = f"shard-{shard[0]}-of-{shard[1]}"
    else:
        manifest_path = store / MANIFEST_NAME
        tmp_name = "all"
    shutil.rmtree(store / TMP_DIR / tmp_name, ignore_errors=True)  # half-written videos of a killed run

    position = {name: i for i, name in enumerate(classes)}
    previous = {}
    if manifest_path.exists() and not overwrite:
        previous = {r["id"]: r for r in read_jsonl(manifest_path)}
    writer = ManifestWriter(manifest_path, [e.id for e in entries])
    summary = PrepareSummary(manifest=manifest_path)
    todo: list[VideoEntry] = []
    for entry in entries:
        done = None if overwrite else _recover(store, entry, previous)
        if done is not None:
            writer.add(done)
            summary.skipped += 1
        else:
            todo.append(entry)
    writer.flush(force=True)
    if on_start:
        on_start(len(entries), summary.skipped)

    def label_ids(entry: VideoEntry) -> list[int]:
        return [position[label] for label in entry.labels if label in position]

    def finish(row: dict) -> None:
        if row["status"] == "ok":
            summary.ok += 1
            summary.frames += row["num_frames"]
            if row.get("warning"):
                summary.warnings.append((row["id"], row["warning"]))
        else:
            summary.failed += 1
            summary.failures.append((row["id"], row["error"]))
        for stage, seconds in row["stage_seconds"].items():
            summary.stage_seconds[stage] += seconds
        writer.add(row)
        writer.flush()
        if on_row:
            on_row(row)

    try:
        if workers <= 1 or len(todo) <= 1:
            for entry in todo:
                finish(prepare_video(entry, root, store, settings, tmp_name, label_ids(entry)))
        else:
            _run_pool(todo, root, store, settings, tmp_name, workers, finish, label_ids)
    finally:
        writer.flush(force=True)
    shutil.rmtree(store / TMP_DIR / tmp_name, ignore_errors=True)
    _remove_if_empty(store / TMP_DIR)
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _run_pool(todo, root, store, settings, tmp_name, workers, finish, label_ids) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(1,)) as pool:
        pending = set()
        queue = iter(todo)
        # keep a bounded number of videos in flight, so a huge list is not submitted at once
        for entry in queue:
            pending.add(pool.submit(prepare_video, entry, root, store, settings, tmp_name, label_ids(entry)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                finish(future.result())
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(prepare_video, nxt, root, store, settings, tmp_name, label_ids(nxt)))


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def merge_manifests(store: Path) -> tuple[Path, int, int]:
    """Join `manifest.shard-I-of-N.jsonl` parts into manifest.jsonl; returns (path, rows, parts).

    All N parts must be present and no video may appear twice.
    """
    parts = sorted(store.glob("manifest.shard-*-of-*.jsonl"))
    if not parts:
        raise StoreError(f"{store}: no manifest.shard-I-of-N.jsonl parts to merge")
    counts = {}
    for part in parts:
        stem = part.name[len("manifest.shard-"):-len(".jsonl")]
        index, count = (int(x) for x in stem.split("-of-"))
        counts.setdefault(count, set()).add(index)
    if len(counts) != 1:
        raise StoreError(f"{store}: manifest parts of different shard counts {sorted(counts)}; remove the stale ones")
    (count, indices), = counts.items()
    missing = sorted(set(range(count)) - indices)
    if missing:
        raise StoreError(f"{store}: shard parts {missing} of {count} are missing; run those shards first")
    rows: list[dict] = []
    seen: set[str] = set()
    for part in sorted(parts, key=lambda p: int(p.name.split("-")[1])):
        for row in read_jsonl(part):
            if row["id"] in seen:
                raise StoreError(f"{part}: video {row['id']!r} appears in more than one shard part")
            seen.add(row["id"])
            rows.append(row)
    rows.sort(key=lambda r: r["id"])
    path = store / MANIFEST_NAME
    write_jsonl(path, rows)
    return path, len(rows), count
