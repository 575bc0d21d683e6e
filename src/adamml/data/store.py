"""A prepared store as training and evaluation read it: its ok videos (manifest rows), classes and settings,
with the checks that name the file and line of a bad row, and the warnings about how it was prepared."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from adamml.data.layout import (
    CLASSES_NAME,
    MANIFEST_NAME,
    SETTINGS_NAME,
    StoreError,
    check_video_row,
    iter_jsonl,
    read_classes,
)

PREPARED_KEYS = ("flow", "short_side", "flow_bound", "audio_rate")  # store settings a model's inputs depend on


@dataclass
class Store:
    """What a prepared store holds: its ok videos, classes and settings."""

    root: Path
    rows: list[dict]
    classes: list[str]
    settings: dict
    lines: dict[str, int] = field(default_factory=dict)  # video id -> its line in the manifest

    @classmethod
    def open(cls, root: Path) -> Store:
        root = Path(root)
        manifest = root / MANIFEST_NAME
        if not manifest.exists():
            parts = sorted(root.glob("manifest.shard-*.jsonl"))
            hint = " (shard parts found: run `adamml prepare --merge`)" if parts else ""
            raise StoreError(f"{root}: no {MANIFEST_NAME}, not a prepared store{hint}")
        classes_path = root / CLASSES_NAME
        if not classes_path.exists():
            raise StoreError(f"{classes_path}: missing")
        settings_path = root / SETTINGS_NAME
        try:
            settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.exists() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{settings_path}: not valid JSON ({exc})") from exc
        classes = read_classes(classes_path)
        rows, lines = [], {}
        for number, row in iter_jsonl(manifest):
            if row.get("status", "ok") == "ok":
                check_video_row(row, f"{manifest}:{number}", len(classes))
                if row["id"] in lines:  # it would be evaluated twice
                    raise StoreError(f"{manifest}:{number}: video {row['id']!r} again (first at line "
                                     f"{lines[row['id']]}); each video once")
                rows.append(row)
                lines[row["id"]] = number
        return cls(root, rows, classes, settings, lines)

    def where(self, row: dict) -> str:
        """"manifest:line" of a row, for messages."""
        return f"{self.root / MANIFEST_NAME}:{self.lines.get(row['id'], '?')}"

    def split(self, name: str) -> list[dict]:
        return [r for r in self.rows if r.get("split") == name]

    @property
    def multi_label(self) -> bool:
        return any(len(r.get("label_ids", [])) > 1 for r in self.rows)

    def settings_note(self, trained_on: dict | None) -> str | None:
        """A warning when this store was prepared otherwise than the store a checkpoint was trained on
        (`trained_on`: its `store` entry; None for checkpoints that do not record it): another flow method or short
        side gives the recognizers inputs they never saw."""
        if not trained_on:
            return None
        differ = [f"{key} {trained_on[key]!r} there, {self.settings.get(key)!r} here" for key in PREPARED_KEYS
                  if trained_on.get(key) is not None and self.settings.get(key) is not None
                  and trained_on[key] != self.settings[key]]
        if not differ:
            return None
        return (f"{self.root} was prepared otherwise than the store the checkpoint was trained on ("
                + "; ".join(differ) + "): its inputs are not what the model learned from; prepare the videos "
                "with the training store's settings")

    def size_note(self, short_side: int) -> str | None:
        """A warning when the stored frames are smaller than the model reads them (`short_side`:
        ``data.test_short_side``): they are upscaled, and the model sees blurred frames."""
        stored = self.settings.get("short_side")
        if not isinstance(stored, int) or stored <= 0 or stored >= short_side:
            return None
        return (f"{self.root} holds frames at short side {stored} and the model reads them at {short_side} "
                f"(data.test_short_side): they are upscaled and blurred; prepare the videos with --short-side "
                f"{short_side} or set data.test_short_side and data.train_scale to the store's size")

    def stale_note(self) -> str | None:
        """A warning when some videos were prepared before variable-frame-rate videos were read at a constant rate
        (their manifest rows have no ``source_frames``): such a video's frames were sampled by index, so a segment
        of a video whose rate drops covers more time than its neighbours and its audio is cut at the wrong time.
        Constant-rate videos came out the same, so this is a "may": re-preparing is the one way to be sure."""
        old = [r for r in self.rows if "source_frames" not in r]
        if not old:
            return None
        first = self.where(old[0])
        return (f"{len(old)} of the {len(self.rows)} videos of {self.root} were prepared by an adamml that read "
                f"variable-frame-rate videos by frame index (no source_frames in their manifest rows, e.g. {first}); "
                "if any source video has a variable frame rate (phone or screen recordings), prepare the list again "
                "with --overwrite")
