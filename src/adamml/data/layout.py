"""The store layout: one folder per video, in the naming mmaction2 and denseflow users already have.

```
STORE/
  store.json                 settings the store was prepared with (short side, flow method, ...)
  classes.txt                class names, line i is class id i
  manifest.jsonl             one JSON object per video (or manifest.shard-I-of-N.jsonl parts)
  rawframes/<video id>/      img_00001.jpg ..., flow_x_00001.jpg ..., flow_y_00001.jpg ...,
                             audio.wav (mono 16-bit), meta.json (this video's manifest row)
  .lock                      held by the `prepare` run writing the store (`adamml.prepare.lock`)
  .tmp/<run>/                videos being written, renamed into rawframes/ when complete
```
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from adamml.runtime.atomic_file import atomic_write_text

STORE_FORMAT = "adamml-store"
STORE_VERSION = 1
FRAMES_DIR = "rawframes"
TMP_DIR = ".tmp"
IMG_TEMPLATE = "img_{:05d}.jpg"
FLOW_X_TEMPLATE = "flow_x_{:05d}.jpg"
FLOW_Y_TEMPLATE = "flow_y_{:05d}.jpg"
AUDIO_NAME = "audio.wav"
META_NAME = "meta.json"
MANIFEST_NAME = "manifest.jsonl"
CLASSES_NAME = "classes.txt"
SETTINGS_NAME = "store.json"
LOCK_NAME = ".lock"


class StoreError(Exception):
    """A store that cannot be used as asked; the message names the file and the problem."""


def shard_manifest_name(index: int, count: int) -> str:
    return f"manifest.shard-{index}-of-{count}.jsonl"


def check_relative(path: str) -> PurePosixPath:
    """`path` as a relative POSIX path that stays inside the folder it is relative to.

    Raises ValueError for absolute paths, drive letters, empty paths and any `..` component.
    """
    text = path.replace("\\", "/").strip()
    if not text:
        raise ValueError("empty path")
    pure = PurePosixPath(text)
    if pure.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise ValueError(f"absolute path {path!r} is not allowed")
    if any(part == ".." for part in pure.parts):
        raise ValueError(f"path {path!r} leaves its folder ('..')")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        raise ValueError(f"path {path!r} names no file")
    return PurePosixPath(*parts)


def video_dir(store: Path, video_id: str) -> Path:
    return store / FRAMES_DIR / check_relative(video_id)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    # a message quoting a file name in another encoding must not stop the run: such bytes are written as \xNN
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write_text(path, text, errors="backslashreplace")


def read_jsonl(path: Path) -> list[dict]:
    return [row for _number, row in iter_jsonl(path)]


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line; anything but a JSON object is a StoreError naming the line."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with handle:
        number = 0
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise StoreError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise StoreError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
                yield number, row
        except UnicodeDecodeError as exc:
            raise StoreError(f"{path}:{number + 1}: not UTF-8 text ({exc.reason})") from exc


def read_manifest(path: Path) -> dict[str, dict]:
    """The rows of a manifest (part) by video id, in file order; a row without an id names its line."""
    rows: dict[str, dict] = {}
    for number, row in iter_jsonl(path):
        vid = row.get("id")
        if not isinstance(vid, str):
            raise StoreError(f"{path}:{number}: no video 'id' (a string) in this row")
        rows[vid] = row
    return rows


def check_video_row(row: dict, where: str, num_classes: int) -> None:
    """Refuse a manifest row of a prepared ("ok") video that readers cannot use: missing or mistyped keys, a
    path that leaves the store, a class id out of range. `where` is "manifest:line" for the message."""

    def bad(message: str) -> StoreError:
        return StoreError(f"{where}: {message}")

    for key, kinds in _ROW_KEYS.items():
        if key not in row:
            raise bad(f"no {key!r} key (a prepared video needs {', '.join(_ROW_KEYS)})")
        value = row[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise bad(f"{key!r} is {value!r}, expected {' or '.join(k.__name__ for k in kinds)}")
    if row["num_frames"] < 1 or row["width"] < 1 or row["height"] < 1:
        raise bad("num_frames, width and height must be at least 1")
    if not (math.isfinite(row["fps"]) and row["fps"] > 0):
        raise bad(f"fps {row['fps']!r} is not a positive number")
    num_flow = row.get("num_flow", 0)
    if not isinstance(num_flow, int) or isinstance(num_flow, bool) or num_flow < 0:
        raise bad(f"num_flow {num_flow!r} is not a count")
    for key in ("frames_dir", "audio"):
        value = row.get(key)
        if value is None and key == "audio":
            continue
        if not isinstance(value, str):
            raise bad(f"{key!r} is {value!r}, expected a path inside the store")
        try:
            check_relative(value)
        except ValueError as exc:
            raise bad(f"{key!r}: {exc}; a store only reads inside its folder") from None
    label_ids = row.get("label_ids", [])
    if not isinstance(label_ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_classes for i in label_ids
    ):
        raise bad(f"label_ids {label_ids!r} are not class ids of the {num_classes} classes")


# keys a prepared video's manifest row must have, and their types
_ROW_KEYS: dict[str, tuple[type, ...]] = {
    "id": (str,), "frames_dir": (str,), "num_frames": (int,), "width": (int,), "height": (int,),
    "fps": (int, float),
}


def read_classes(path: Path) -> list[str]:
    """Class names, line i is class i; a class listed twice is an error naming the file and line."""
    # split on "\n" only (splitlines() would also split on \x1c, \x85, \u2028, ...)
    names: list[str] = []
    first: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        name = line.rstrip("\r")
        if not name.strip():
            continue
        if name in first:
            raise StoreError(f"{path}:{number}: class {name!r} is listed again (first at line {first[name]})")
        first[name] = number
        names.append(name)
    return names
