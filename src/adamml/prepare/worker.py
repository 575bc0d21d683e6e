"""Preparing one video: decode, write frames, flow and audio into a temporary folder, then rename it into
place, so that a half-written video is never visible in the store."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
import wave
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from adamml.data.layout import (
    AUDIO_NAME,
    FLOW_X_TEMPLATE,
    FLOW_Y_TEMPLATE,
    FRAMES_DIR,
    IMG_TEMPLATE,
    META_NAME,
    TMP_DIR,
    video_dir,
)
from adamml.prepare.decode import (
    DEFAULT_AUDIO_RATE,
    DEFAULT_SHORT_SIDE,
    FrameSource,
    VideoError,
    VideoReader,
    resized_size,
)
from adamml.prepare.existing_flow import check_flow_count, find_existing_flow, flow_folder, reuse_flow
from adamml.prepare.flow import DEFAULT_BOUND, make_flow, quantize, to_gray
from adamml.prepare.importers import IMAGE_EXTENSIONS, VideoEntry

STAGES = ("decode", "write", "flow", "audio")
# A video with fewer frames than one segment window (8 frames at stride 4) is kept, with a warning:
# readers clamp indices, so it still yields segments.
SEGMENT_WINDOW = 32
PARENT_POLL_SECONDS = 0.5  # how often a pool worker checks that the run that started it is alive


@dataclass(frozen=True)
class PrepareSettings:
    """How videos are prepared; recorded in store.json so every video of a store agrees."""

    short_side: int = DEFAULT_SHORT_SIDE
    flow: str = "tvl1"
    flow_bound: float = DEFAULT_BOUND
    audio_rate: int = DEFAULT_AUDIO_RATE
    jpeg_quality: int = 95
    frames_fps: float = 30.0  # frame rate assumed for folders of frames, which do not record one
    # flow images a frame folder already holds (denseflow, mmaction2, TSN; `adamml.prepare.existing_flow`):
    # "reuse" them or "recompute"; their bound, the number of the first (None: detected), the tree they are in
    # (None: the frame folder itself)
    existing_flow: str = "reuse"
    existing_flow_bound: float = DEFAULT_BOUND
    existing_flow_base: int | None = None
    existing_flow_root: str | None = None

    def to_dict(self) -> dict:
        """The settings store.json records; those of existing flow only when set, so stores prepared before
        they existed still match."""
        out = asdict(self)
        for key, default in _EXISTING_FLOW_DEFAULTS.items():
            if out[key] == default:
                del out[key]
        return out


_EXISTING_FLOW_DEFAULTS = {"existing_flow": "reuse", "existing_flow_bound": DEFAULT_BOUND, "existing_flow_base": None,
                           "existing_flow_root": None}


def _new_row(entry: VideoEntry, settings: PrepareSettings) -> dict:
    return {
        "id": entry.id,
        "source": entry.source,
        "frames_dir": None if entry.error else f"{FRAMES_DIR}/{entry.id}",
        "audio": None,
        "labels": list(entry.labels),
        "label_ids": [],
        "split": entry.split,
        "fps": None,
        "num_frames": 0,
        "source_frames": 0,  # frames decoded; num_frames differs where a variable frame rate was made constant
        "num_flow": 0,
        "duration": None,
        "width": None,
        "height": None,
        "rotation": 0,  # degrees counter-clockwise the frames were turned to be upright (display matrix)
        "has_audio": False,
        "audio_samples": 0,
        "flow": settings.flow,
        "status": "failed",
        "error": None,
        "warning": None,
        "seconds": 0.0,
        "stage_seconds": {s: 0.0 for s in STAGES},
    }


class FrameFolderReader:
    """A folder of frame images read like a video (for mmaction2 rawframe and AdaMML frame lists).

    A JPEG frame that needs no resizing is kept as it is (`encoded` holds its bytes while it is the current
    frame): stored without a second lossy encoding, and the optical flow is computed from exactly the pixels
    that will be read back."""

    def __init__(self, path: Path, short_side: int, fps: float) -> None:
        self.path = path
        names = sorted(
            n for n in os.listdir(path)
            if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS and not n.startswith(("flow_", "x_", "y_"))
        )
        if not names:
            raise VideoError(f"{path}: frame folder holds no images")
        self.names = names
        self.short_side = short_side
        self.fps = fps
        self.audio = None
        self.rotation = 0
        self.declared_frames = len(names)
        self.source_frames = 0
        self.frame_times: list[float] = []
        self.encoded: bytes | None = None  # the current frame's JPEG bytes when they can be stored as they are

    def __iter__(self) -> Iterator[np.ndarray]:
        for i, name in enumerate(self.names):
            data = (self.path / name).read_bytes()
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise VideoError(f"{self.path / name}: not a readable image")
            h, w = image.shape[:2]
            size = resized_size(w, h, self.short_side)
            jpeg = os.path.splitext(name)[1].lower() in (".jpg", ".jpeg")
            self.encoded = data if jpeg and size == (w, h) and _upright(data) else None
            if size != (w, h):
                image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            self.frame_times.append(i / self.fps)
            self.source_frames = len(self.frame_times)
            yield image

    @property
    def num_frames(self) -> int:
        return len(self.frame_times)

    def measured_fps(self) -> float:
        return self.fps

    def measured_duration(self) -> float:
        return len(self.frame_times) / self.fps

    def close(self) -> None:
        pass


def _upright(jpeg: bytes) -> bool:
    """False when a JPEG's EXIF orientation asks readers to turn it: such a file is stored re-encoded upright,
    so every reader (OpenCV or not) sees the same pixels."""
    if b"Exif" not in jpeg[:65536]:
        return True
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    turned = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return image is not None and turned is not None and image.shape == turned.shape and np.array_equal(image, turned)


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())


def _write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    path.write_bytes(data.tobytes())


def _fill(row: dict, reader: FrameSource, tmp: Path, settings: PrepareSettings) -> None:
    """Decode `reader` into `tmp`, recording what was done in `row`."""
    stage = row["stage_seconds"]
    flow_fn = make_flow(settings.flow) if settings.flow != "none" else None
    prev_gray = None
    index = 0
    frames = iter(reader)
    while True:
        t0 = time.perf_counter()
        try:
            image = next(frames)
        except StopIteration:
            stage["decode"] += time.perf_counter() - t0
            break
        t1 = time.perf_counter()
        stage["decode"] += t1 - t0
        index += 1
        if reader.encoded is not None:  # a source JPEG at the right size: kept as it is
            (tmp / IMG_TEMPLATE.format(index)).write_bytes(reader.encoded)
        else:
            _write_jpeg(tmp / IMG_TEMPLATE.format(index), image, settings.jpeg_quality)
        t2 = time.perf_counter()
        stage["write"] += t2 - t1
        if flow_fn is not None:
            gray = to_gray(image)
            if prev_gray is not None:
                fx, fy = quantize(flow_fn(prev_gray, gray), settings.flow_bound)
                t3 = time.perf_counter()
                stage["flow"] += t3 - t2
                n = index - 1
                _write_jpeg(tmp / FLOW_X_TEMPLATE.format(n), fx, settings.jpeg_quality)
                _write_jpeg(tmp / FLOW_Y_TEMPLATE.format(n), fy, settings.jpeg_quality)
                stage["write"] += time.perf_counter() - t3
            prev_gray = gray
    height, width = image.shape[:2]
    row.update(
        num_frames=index,
        source_frames=int(reader.source_frames),
        num_flow=index - 1 if flow_fn is not None else 0,
        width=int(width),
        height=int(height),
        rotation=int(reader.rotation),
        fps=round(float(reader.measured_fps()), 6),
        duration=round(float(reader.measured_duration()), 6),
    )
    if reader.audio is not None:
        t0 = time.perf_counter()
        _write_wav(tmp / AUDIO_NAME, reader.audio.samples, reader.audio.rate)
        row.update(audio=f"{row['frames_dir']}/{AUDIO_NAME}", has_audio=True,
                   audio_samples=int(reader.audio.samples.size))
        stage["audio"] += time.perf_counter() - t0
    warnings = []
    if index < SEGMENT_WINDOW:
        warnings.append(f"only {index} frames, shorter than one segment window ({SEGMENT_WINDOW})")
    declared = reader.declared_frames
    if declared and index < 0.9 * declared:
        warnings.append(f"decoded {index} of the {declared} frames the container declares")
    row["warning"] = "; ".join(warnings) or None


def prepare_video(
    entry: VideoEntry,
    root: Path,
    store: Path,
    settings: PrepareSettings,
    tmp_name: str,
    label_ids: list[int] | None = None,
) -> dict:
    """Prepare one video into `store`; returns its manifest row (status ok or failed, never raises for
    a bad video)."""
    start = time.perf_counter()
    row = _new_row(entry, settings)
    row["label_ids"] = list(label_ids or [])
    if entry.error:
        row["error"] = entry.error
        return row
    tmp = store / TMP_DIR / tmp_name / uuid.uuid4().hex
    try:
        source = root / entry.source
        outside = _outside(source, root)
        if outside:
            row["error"] = f"{entry.origin or source}: {outside}"
            _finish_timing(row, start)
            return row
        tmp.mkdir(parents=True)
        existing = None
        if entry.kind == "frames":
            reader = FrameFolderReader(source, settings.short_side, settings.frames_fps)
            if settings.flow != "none" and settings.existing_flow == "reuse":
                folder = flow_folder(source, entry.source, settings.existing_flow_root)
                existing = find_existing_flow(folder, settings.existing_flow_base) if folder.is_dir() else None
                if existing is not None:
                    check_flow_count(existing, len(reader.names))  # before decoding anything
        else:
            t0 = time.perf_counter()
            reader = VideoReader(source, settings.short_side, settings.audio_rate)
            row["stage_seconds"]["decode"] += time.perf_counter() - t0
        try:
            _fill(row, reader, tmp, settings if existing is None else replace(settings, flow="none"))
            if existing is not None:
                reuse_flow(row, source, reader.names[0], existing, tmp, settings)
        finally:
            reader.close()
        row["status"] = "ok"
        _finish_timing(row, start)
        (tmp / META_NAME).write_text(json.dumps(row, ensure_ascii=False, indent=1), encoding="utf-8",
                                     errors="backslashreplace")
        final = video_dir(store, entry.id)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except (VideoError, OSError, cv2.error, MemoryError) as exc:
        row.update(status="failed", error=str(exc) if isinstance(exc, VideoError) else f"{root / entry.source}: {type(exc).__name__}: {exc}")
        row.update(num_frames=0, num_flow=0, audio=None, has_audio=False, audio_samples=0)
        shutil.rmtree(tmp, ignore_errors=True)
    _finish_timing(row, start)
    return row


def _outside(source: Path, root: Path) -> str | None:
    """Why `source` (a video, or a frame folder and its images) may not be read: a symbolic link leading out of
    the video root. None when it may."""
    base = root.resolve()
    paths = [source]
    if source.is_dir():
        paths += sorted(source.iterdir())
    for path in paths:
        try:
            real = path.resolve(strict=False)
        except (RuntimeError, OSError) as error:  # a symbolic link loop (RuntimeError before Python 3.13)
            return f"{path}: cannot be resolved ({error}); a symbolic link loop? not read"
        if real != base and base not in real.parents:
            return f"{path} resolves to {real}, outside the video root {base} (a symbolic link); not read"
    return None


def _finish_timing(row: dict, start: float) -> None:
    row["seconds"] = round(time.perf_counter() - start, 4)
    row["stage_seconds"] = {k: round(v, 4) for k, v in row["stage_seconds"].items()}


def init_worker(threads: int, parent: int) -> None:
    """Per-process set-up for a pool worker: keep OpenCV from oversubscribing the cores, and exit when the
    parent process `parent` is gone (killed with -9, it cannot stop its pool; orphans would wait forever)."""
    cv2.setNumThreads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)
