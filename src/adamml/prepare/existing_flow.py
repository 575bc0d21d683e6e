"""Optical flow a frame folder already holds, reused instead of computed again.

Two namings are recognised: denseflow / mmaction2 (``flow_x_00001.jpg``, ``flow_y_00001.jpg``, beside
``img_00001.jpg``) and the TSN docker image the official AdaMML code used (``x_00001.jpg``, ``y_00001.jpg``). Flow
image ``i`` is the motion from frame ``i`` to frame ``i + 1``: a folder of N frames holds N - 1 of them (some tools
write N; the last is then left out). The numbering starts at 0 or 1 (detected from the files, or given), the
values are quantised as ``(v + bound) * 255 / (2 bound)`` with bound 20 unless given. Every x image needs its y
image and the numbering must have no hole: a missing file is an error naming it.

Stored as the store's own ``flow_x_NNNNN.jpg`` (1-based): copied byte for byte when the frames keep their size
and the bounds agree, else resized with the frames and re-quantised (flow in pixels scales with the image).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from adamml.data.layout import FLOW_X_TEMPLATE, FLOW_Y_TEMPLATE
from adamml.prepare.decode import VideoError
from adamml.prepare.flow import dequantize, quantize

# tool -> (x prefix, y prefix)
NAMINGS: dict[str, tuple[str, str]] = {"denseflow": ("flow_x_", "flow_y_"), "tsn": ("x_", "y_")}
_NAME = re.compile(r"^(flow_x_|flow_y_|x_|y_)(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class ExistingFlow:
    """The flow images of one folder, in order: ``x[i]``, ``y[i]`` is the flow from frame i to frame i + 1."""

    folder: Path
    tool: str  # "denseflow" or "tsn"
    base: int  # number of the first flow image (0 or 1)
    x: tuple[Path, ...]
    y: tuple[Path, ...]

    def describe(self, bound: float) -> str:
        return f"existing ({self.tool}, numbered from {self.base}, bound {bound:g})"


def find_existing_flow(folder: Path, base: int | None = None) -> ExistingFlow | None:
    """The flow images in `folder`, or None when it holds none; a folder with holes or unpaired images, or with
    both namings, is a `VideoError` naming the first missing file."""
    found: dict[str, dict[int, str]] = {}
    for name in os.listdir(folder):
        match = _NAME.match(name)
        if match:
            found.setdefault(match.group(1).lower(), {})[int(match.group(2))] = name
    tools = [tool for tool, (x, y) in NAMINGS.items() if x in found or y in found]
    if not tools:
        return None
    if len(tools) > 1:
        raise VideoError(f"{folder}: holds flow images of both namings (flow_x_ and x_); keep one")
    tool = tools[0]
    xp, yp = NAMINGS[tool]
    xs, ys = found.get(xp, {}), found.get(yp, {})
    numbers = sorted(set(xs) | set(ys))
    first = numbers[0] if base is None else base
    if base is None and first not in (0, 1):
        raise VideoError(f"{folder}: flow images start at {xp}{first:05d}; expected 0 or 1 (give the base)")
    width = len(next(iter((xs or ys).values())).split("_")[-1].split(".")[0])
    ext = os.path.splitext(next(iter((xs or ys).values())))[1]
    for i in range(first, first + len(numbers)):
        for prefix, have in ((xp, xs), (yp, ys)):
            if i not in have:
                raise VideoError(f"{folder / f'{prefix}{i:0{width}d}{ext}'}: missing ({len(xs)} x and {len(ys)} y "
                                 f"flow images, numbered {numbers[0]}..{numbers[-1]}, from {first})")
    if numbers[0] != first:
        raise VideoError(f"{folder}: flow images start at {xp}{numbers[0]:0{width}d}, not at {first}")
    order = range(first, first + len(numbers))
    return ExistingFlow(folder, tool, first, tuple(folder / xs[i] for i in order), tuple(folder / ys[i] for i in order))


def check_flow_count(flow: ExistingFlow, num_frames: int) -> int:
    """How many flow images the store keeps for `num_frames` frames (N - 1); any other count than N - 1 or N is
    a `VideoError` naming the folder and both counts."""
    count = len(flow.x)
    if count not in (num_frames - 1, num_frames):
        raise VideoError(f"{flow.folder}: {num_frames} frames but {count} flow images ({flow.x[0].name} .. "
                         f"{flow.x[-1].name}); expected {num_frames - 1} (flow i is frame i to i + 1)")
    return max(0, num_frames - 1)


def store_existing_flow(flow: ExistingFlow, count: int, out: Path, source_size: tuple[int, int],
                        stored_size: tuple[int, int], bound: float, store_bound: float, jpeg_quality: int) -> None:
    """Write the first `count` flow pairs into `out` under the store's names; every image must be of the frames'
    `source_size` (width, height), else a `VideoError` naming it."""
    scale = stored_size[0] / source_size[0]
    as_is = stored_size == source_size and bound == store_bound
    for n in range(count):
        for path, template in ((flow.x[n], FLOW_X_TEMPLATE), (flow.y[n], FLOW_Y_TEMPLATE)):
            target = out / template.format(n + 1)
            if as_is and path.suffix.lower() in (".jpg", ".jpeg"):
                with Image.open(path) as image:  # reads the header only
                    size = image.size
                if size != source_size:
                    raise VideoError(f"{path}: {size[0]} x {size[1]}, the frames are {source_size[0]} x {source_size[1]}")
                shutil.copyfile(path, target)
                continue
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise VideoError(f"{path}: not a readable image")
            if (image.shape[1], image.shape[0]) != source_size:
                raise VideoError(f"{path}: {image.shape[1]} x {image.shape[0]}, the frames are "
                                 f"{source_size[0]} x {source_size[1]}")
            if stored_size != source_size:
                image = cv2.resize(image, stored_size, interpolation=cv2.INTER_LINEAR)
            v = dequantize(image, bound) * scale
            q, _ = quantize(np.stack([v, v], axis=-1), store_bound)
            ok, data = cv2.imencode(".jpg", q, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise OSError(f"{target}: JPEG encoding failed")
            target.write_bytes(data.tobytes())


def flow_folder(source: Path, relative: str, flow_root: str | None) -> Path:
    """Where a frame folder's flow images are: in it, or under `flow_root` at the same relative path (the official
    AdaMML code keeps frames and flow in two trees)."""
    return source if flow_root is None else Path(flow_root) / relative


def reuse_flow(row: dict, frames_folder: Path, first_frame: str, flow: ExistingFlow, out: Path, settings) -> None:
    """Store `flow` for the video of `row` (its frames already written to `out`): counts checked, images copied or
    re-quantised; `row` records the count, the source and the time (stage "flow")."""
    import time

    start = time.perf_counter()
    count = check_flow_count(flow, row["num_frames"])
    with Image.open(frames_folder / first_frame) as image:
        source_size = image.size
    store_existing_flow(flow, count, out, source_size, (row["width"], row["height"]), settings.existing_flow_bound,
                        settings.flow_bound, settings.jpeg_quality)
    row.update(num_flow=count, flow=flow.describe(settings.existing_flow_bound))
    row["stage_seconds"]["flow"] += time.perf_counter() - start
