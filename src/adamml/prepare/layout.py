"""The store layout: one folder per video, in the naming mmaction2 and denseflow users already have.

```
STORE/
  store.json                 settings the store was prepared with (short side, flow method, ...)
  classes.txt                class names, line i is class id i
  manifest.jsonl             one JSON object per video (or manifest.shard-I-of-N.jsonl parts)
  rawframes/<video id>/      img_00001.jpg ..., flow_x_00001.jpg ..., flow_y_00001.jpg ...,
                             audio.wav (mono 16-bit), meta.json (this video's manifest row)
```
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath

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


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise StoreError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    return rows


def read_classes(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
