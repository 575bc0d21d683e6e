"""Running `prepare` over a video list: sharding, parallel workers, resume, manifest, progress, summary."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
import wave
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as wait_any
from dataclasses import dataclass, field
from pathlib import Path

from adamml.data.layout import (
    AUDIO_NAME,
    CLASSES_NAME,
    FLOW_X_TEMPLATE,
    FLOW_Y_TEMPLATE,
    IMG_TEMPLATE,
    MANIFEST_NAME,
    META_NAME,
    SETTINGS_NAME,
    STORE_FORMAT,
    STORE_VERSION,
    TMP_DIR,
    StoreError,
    read_classes,
    read_manifest,
    shard_manifest_name,
    video_dir,
    write_jsonl,
)
from adamml.prepare.importers import VideoEntry
from adamml.prepare.lock import store_lock
from adamml.prepare.worker import STAGES, PrepareSettings, init_worker, prepare_video
from adamml.runtime.atomic_file import atomic_write_text

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
    wanted = _settings_record(settings)
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


def _settings_record(settings: PrepareSettings) -> dict:
    """What store.json holds for a store prepared with `settings`."""
    return {"format": STORE_FORMAT, "version": STORE_VERSION, **settings.to_dict()}


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


def check_store_folder(store: Path) -> None:
    """Refuse a store path that names something other than a folder (before any work is done)."""
    if store.exists() and not store.is_dir():
        raise StoreError(f"{store}: exists and is not a folder (--out names the store folder to write)")


def store_classes(store: Path) -> list[str] | None:
    """The classes of a store prepared before (its classes.txt), or None."""
    path = store / CLASSES_NAME
    if not path.is_file():
        return None
    try:
        return read_classes(path)
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path}: not UTF-8 text ({exc.reason})") from exc


def check_known_labels(entries: list[VideoEntry], classes: list[str], where: Path) -> None:
    """Refuse a list adding classes to a store prepared before: class ids already used would change."""
    known = set(classes)
    new = sorted({label for e in entries if not e.error for label in e.labels} - known)
    if new:
        first = next(e for e in entries if not e.error and set(e.labels) - known)
        raise StoreError(
            f"{first.origin}: label(s) {new[:5]}{' ...' if len(new) > 5 else ''} are not among the {len(classes)} "
            f"classes of {where}; give --classes with every class and prepare into another --out, or --overwrite"
        )


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


def _recover(store: Path, entry: VideoEntry, manifest_rows: dict[str, dict]) -> tuple[dict | None, str | None]:
    """(the finished row of `entry`, None) when its folder is complete in the store, else (None, what is
    missing when a finished row was found)."""
    if entry.error:
        return None, None
    meta = video_dir(store, entry.id) / META_NAME
    row = manifest_rows.get(entry.id)
    if row is None or row.get("status") != "ok":
        try:
            row = json.loads(meta.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            return None, None
    if not isinstance(row, dict) or row.get("status") != "ok":
        return None, None
    missing = f"{meta}: missing" if not meta.exists() else incomplete(store, row)
    return (None, missing) if missing else (row, None)


def incomplete(store: Path, row: dict) -> str | None:
    """What is missing on disk for the "ok" manifest `row` (frames, flow, audio), or None when it is all there."""
    folder = video_dir(store, row["id"])
    try:
        names = set(os.listdir(folder))
        num_frames, num_flow = int(row.get("num_frames", 0)), int(row.get("num_flow", 0))
    except (OSError, TypeError, ValueError) as exc:
        return f"{folder}: {exc}"
    if num_frames < 1:
        return f"{folder}: no frames recorded"
    for template, count in ((IMG_TEMPLATE, num_frames), (FLOW_X_TEMPLATE, num_flow), (FLOW_Y_TEMPLATE, num_flow)):
        missing = sum(template.format(i) not in names for i in range(1, count + 1))
        if missing:
            return f"{folder}: {missing} of {count} {template.split('{')[0]}* files missing"
    if row.get("has_audio"):
        try:
            with wave.open(str(folder / AUDIO_NAME), "rb") as handle:
                samples = handle.getnframes()
        except (OSError, EOFError, wave.Error) as exc:
            return f"{folder / AUDIO_NAME}: {exc}"
        if samples != row.get("audio_samples"):
            return f"{folder / AUDIO_NAME}: {samples} samples, the manifest says {row.get('audio_samples')}"
    return None


def _refreshed(row: dict, entry: VideoEntry, label_ids: list[int]) -> tuple[dict, str | None]:
    """A finished row with this list's labels, split and source (the latest list says what a video is)."""
    new = {**row, "labels": list(entry.labels), "label_ids": label_ids, "split": entry.split, "source": entry.source}
    changed = [f"{key} {row.get(key)!r} -> {new[key]!r}" for key in ("split", "labels") if row.get(key) != new[key]]
    return new, ("; ".join(changed) + " (from this list)") if changed else None


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
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> PrepareSummary:
    """Prepare `entries` (or one shard of them) into `store`; resumes what an earlier run left.

    The store may already hold videos of other lists: they stay in the manifest, and a video prepared before
    is checked on disk and skipped. One run at a time writes a store (or a shard): see `adamml.prepare.lock`;
    `wait` waits for the lock instead of refusing. `on_start(total, skipped)` and `on_row(row)` report progress.
    """
    start = time.perf_counter()
    check_store_folder(store)
    duplicates = sorted(i for i, n in Counter(e.id for e in entries).items() if n > 1)
    if duplicates:
        raise StoreError(f"{len(duplicates)} videos share an id (same path without extension): {duplicates[:5]}")
    store.mkdir(parents=True, exist_ok=True)
    with store_lock(store, shard, wait, on_wait):
        summary = _prepare_locked(entries, classes, root, store, settings, workers, shard, overwrite, on_start,
                                  on_row)
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _prepare_locked(entries, classes, root, store, settings, workers, shard, overwrite, on_start, on_row):
    if shard is not None:
        entries = select_shard(entries, *shard)
        manifest_path = store / shard_manifest_name(*shard)
        tmp_prefix = f"shard-{shard[0]}-of-{shard[1]}-"
    else:
        manifest_path = store / MANIFEST_NAME
        tmp_prefix = ""  # this run holds the store alone: every leftover in .tmp is a killed run's
    summary = PrepareSummary(manifest=manifest_path)
    if overwrite:
        previous, dropped = _other_lists_on_overwrite(store, manifest_path, settings, classes, {e.id for e in entries})
        if dropped:
            summary.warnings.append((str(manifest_path), dropped))
        for name in (SETTINGS_NAME, CLASSES_NAME, MANIFEST_NAME):
            (store / name).unlink(missing_ok=True)
    else:
        previous = read_manifest(manifest_path) if manifest_path.exists() else {}
    check_store_settings(store, settings)
    write_classes(store, classes)
    _remove_leftovers(store / TMP_DIR, tmp_prefix)
    tmp_name = f"{tmp_prefix or 'run-'}{os.getpid()}"

    position = {name: i for i, name in enumerate(classes)}
    writer = ManifestWriter(manifest_path, list(previous) + [e.id for e in entries if e.id not in previous])
    writer.rows.update(previous)  # videos of other lists stay listed

    def label_ids(entry: VideoEntry) -> list[int]:
        return [position[label] for label in entry.labels if label in position]

    todo: list[VideoEntry] = []
    for entry in entries:
        done, missing = (None, None) if overwrite else _recover(store, entry, previous)
        if missing:
            summary.warnings.append((entry.id, f"prepared again, the store was incomplete: {missing}"))
        if done is not None:
            done, change = _refreshed(done, entry, label_ids(entry))
            if change:
                summary.warnings.append((entry.id, change))
            writer.add(done)
            summary.skipped += 1
        else:
            writer.rows.pop(entry.id, None)  # listed again when done
            todo.append(entry)
    writer.flush(force=True)
    if on_start:
        on_start(len(entries), summary.skipped)

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
    return summary


def _other_lists_on_overwrite(store: Path, manifest_path: Path, settings: PrepareSettings, classes: list[str],
                              ids: set[str]) -> tuple[dict[str, dict], str | None]:
    """With --overwrite, the rows of videos outside this list that stay listed: prepared with the settings asked now,
    their labels among this list's classes (class ids renumbered to them). Returns them and, when some must go, a
    warning saying how many and why."""
    if not manifest_path.exists():
        return {}, None
    try:
        others = {i: r for i, r in read_manifest(manifest_path).items() if i not in ids}
    except StoreError as exc:
        return {}, f"the videos it listed before are no longer listed: {exc}"
    if not others:
        return {}, None
    try:
        have = json.loads((store / SETTINGS_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        have = None
    if have != _settings_record(settings):
        return {}, (f"{len(others)} videos of other lists are no longer listed: they were prepared with other "
                    "settings; prepare their lists again")
    position = {name: i for i, name in enumerate(classes)}
    kept = {i: {**r, "label_ids": [position[label] for label in r.get("labels", [])]} for i, r in others.items()
            if all(label in position for label in r.get("labels", []))}
    if len(kept) == len(others):
        return kept, None
    return kept, (f"{len(others) - len(kept)} videos of other lists are no longer listed: their labels are not "
                  "among this list's classes; prepare their lists again")


def _remove_leftovers(tmp: Path, prefix: str) -> None:
    """Remove the temporary folders of killed runs that this run's lock covers (names starting with `prefix`)."""
    if not tmp.is_dir():
        return
    for folder in tmp.iterdir():
        if folder.name.startswith(prefix):
            shutil.rmtree(folder, ignore_errors=True)


def _run_pool(todo, root, store, settings, tmp_name, workers, finish, label_ids) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                             initargs=(1, os.getpid())) as pool:
        pending = set()
        queue = iter(todo)
        # keep a bounded number of videos in flight, so a huge list is not submitted at once
        for entry in queue:
            pending.add(pool.submit(prepare_video, entry, root, store, settings, tmp_name, label_ids(entry)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait_any(pending, return_when=FIRST_COMPLETED)
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


def merge_manifests(store: Path, wait: bool = False) -> tuple[Path, int, int]:
    """Join `manifest.shard-I-of-N.jsonl` parts into manifest.jsonl; returns (path, rows, parts).

    All N parts must be present and no video may appear twice among them; videos already in manifest.jsonl
    (other lists prepared into the store) stay, a part's row replacing an older one of the same video.
    """
    if not store.is_dir():
        raise StoreError(f"{store}: not a store folder")
    with store_lock(store, None, wait):
        return _merge_locked(store)


def _merge_locked(store: Path) -> tuple[Path, int, int]:
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
    path = store / MANIFEST_NAME
    merged = read_manifest(path) if path.exists() else {}
    seen: set[str] = set()
    for part in sorted(parts, key=lambda p: int(p.name.split("-")[1])):
        rows = read_manifest(part)
        twice = sorted(seen & set(rows))
        if twice:
            raise StoreError(f"{part}: video {twice[0]!r} appears in more than one shard part")
        seen.update(rows)
        merged.update(rows)
    rows = sorted(merged.values(), key=lambda r: r["id"])
    write_jsonl(path, rows)
    return path, len(rows), count
