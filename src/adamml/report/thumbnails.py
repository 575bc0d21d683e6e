"""Segment thumbnails for the HTML report: the centre frame of each test segment, cut small out of the store's
frames and packed into one shared JPEG sprite that the page embeds once (each strip cell is a window on it).

The page's size stays under control: at most `MAX_CELLS` thumbnails in all (videos given first get theirs
first), each `CELL_WIDTH` x `CELL_HEIGHT` pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from adamml.data.layout import FRAMES_DIR, IMG_TEMPLATE, MANIFEST_NAME, StoreError, read_manifest
from adamml.data.sampling import eval_segment_starts

CELL_WIDTH, CELL_HEIGHT = 48, 36
SPRITE_COLUMNS = 40
MAX_CELLS = 4000  # ~1.5 MB of JPEG at most: strips of 1,000 videos of 4 segments, 400 of 10
JPEG_QUALITY = 72


@dataclass
class Sprite:
    """The thumbnails of the videos that have them: `first[video id]` is the index of its first segment's cell
    (cell i is at column i % columns, row i // columns)."""

    jpeg: bytes = b""
    columns: int = SPRITE_COLUMNS
    first: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # videos whose frames are not in the store
    left_out: int = 0  # videos without thumbnails because of the size limit


def segment_centres(num_frames: int, num_segments: int, span: int) -> list[int]:
    """0-based index of the middle frame of each test segment window (`adamml.data.sampling`)."""
    starts = eval_segment_starts(num_frames, num_segments, span)
    return np.clip(starts + span // 2, 0, num_frames - 1).tolist()


def _thumbnail(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.draft("RGB", (2 * CELL_WIDTH, 2 * CELL_HEIGHT))  # JPEG: decode at a reduced scale, much faster
        return ImageOps.fit(image.convert("RGB"), (CELL_WIDTH, CELL_HEIGHT), Image.Resampling.BILINEAR)


def _video_cells(store: Path, row: dict, num_segments: int, span: int) -> list[Image.Image] | None:
    """The thumbnails of one video's segments, or None when its frames cannot be read."""
    folder = store / row.get("frames_dir", f"{FRAMES_DIR}/{row['id']}")
    try:
        return [_thumbnail(folder / IMG_TEMPLATE.format(i + 1))
                for i in segment_centres(int(row["num_frames"]), num_segments, span)]
    except (OSError, KeyError, ValueError):
        return None


def build_sprite(store: Path, videos: list[str], num_segments: int, span: int, max_cells: int = MAX_CELLS) -> Sprite:
    """Thumbnails of `videos` (ids, in order of priority) from the prepared `store`, within `max_cells`."""
    try:
        manifest = read_manifest(store / MANIFEST_NAME)
    except StoreError:
        return Sprite(missing=list(videos))
    sprite, cells = Sprite(), []
    budget = max(0, max_cells) // max(1, num_segments)
    for vid in videos:
        if len(sprite.first) >= budget:
            sprite.left_out += 1
            continue
        strip = _video_cells(store, manifest[vid], num_segments, span) if vid in manifest else None
        if strip is None:
            sprite.missing.append(vid)
            continue
        sprite.first[vid] = len(cells)
        cells += strip
    sprite.jpeg = _pack(cells, sprite.columns)
    return sprite


def _pack(cells: list[Image.Image], columns: int) -> bytes:
    if not cells:
        return b""
    rows = math.ceil(len(cells) / columns)
    sheet = Image.new("RGB", (min(columns, len(cells)) * CELL_WIDTH, rows * CELL_HEIGHT), (240, 240, 240))
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % columns) * CELL_WIDTH, (i // columns) * CELL_HEIGHT))
    buffer = io.BytesIO()
    sheet.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()
