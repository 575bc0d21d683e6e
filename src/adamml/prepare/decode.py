"""Decoding with PyAV: RGB frames resized to a short side, audio resampled to mono 24 kHz.

Used by `adamml prepare` (frames written to a store) and by single-video prediction (frames kept in
memory). Supplementary material, Sec. B "Input": frames are decoded with the shorter side resized to 256,
aspect ratio kept; audio is mono 24 kHz.

Frames come out upright: a video whose container carries a display rotation (phones store portrait video as
landscape pictures with a 90-degree display matrix) is turned by that many quarter turns, as players and the
ffmpeg command line do, so its stored frames have the width and height it is shown at. Mirroring in the
display matrix and angles that are not quarter turns are rounded to the nearest quarter turn.

Frames come out at the shape they are shown at, too: an anamorphic video (non-square pixels: DVD-sourced 720 x 480
pictures shown at 4:3 or 16:9, HDV's 1440 x 1080 shown at 1920 x 1080) is scaled by its sample aspect ratio before
the short side is resized, as players show it, so a circle stays a circle in the store. (ffmpeg's scale filter
keeps the coded shape and flags the aspect; a store of JPEGs has no such flag.)

Frames come out at a constant rate: a variable-frame-rate video (phones lower the rate in dim light, screen
recorders write a frame only when the screen changes) is put on an even grid of its own frame count over its own
time span, each grid point taking the frame shown at that moment (the nearest one, as ffmpeg's ``fps`` filter
does), so frame index i is at time i / fps everywhere downstream: segments sampled by index are evenly spread in
time and the audio cut for a segment is the one heard with its frames. A video whose frames all lie within half a
frame interval of that grid (every constant-rate file, with its rounding and jitter) is passed through untouched.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from adamml.data.spectrogram import AUDIO_RATE

DEFAULT_SHORT_SIDE = 256
DEFAULT_AUDIO_RATE = AUDIO_RATE  # the paper's audio rate
# A frame whose long side would exceed this after resizing is refused: such a video (1 x N pixels, say)
# carries no usable picture, and its JPEGs would be enormous.
MAX_RESIZED_SIDE = 4096


class VideoError(Exception):
    """A video that cannot be decoded; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video before decoding."""

    width: int
    height: int
    fps: float  # average frame rate (frames / duration), also right for variable-frame-rate files
    declared_frames: int  # 0 when the container does not say
    duration: float  # seconds, 0.0 when unknown
    has_audio: bool
    audio_rate: int  # of the source audio stream, 0 without audio
    sample_aspect: float = 1.0  # width / height of one pixel as shown (1.0: square pixels, or not said)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a player shows the picture before any rotation: the coded width scaled by the
        sample aspect ratio."""
        return max(1, round(self.width * self.sample_aspect)), self.height


@dataclass
class DecodedAudio:
    """Mono 16-bit audio, resampled."""

    samples: np.ndarray  # (N,) int16
    rate: int


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `short_side`, aspect kept; 0 keeps the size."""
    if short_side <= 0:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def quarter_turns(rotation: float | None) -> int:
    """Counter-clockwise quarter turns (0-3) that show a picture upright, from PyAV's ``VideoFrame.rotation``
    (degrees the display matrix turns the picture counter-clockwise, e.g. -90 for a portrait phone video)."""
    if not rotation:
        return 0
    return int(round(float(rotation) / 90.0)) % 4


def _rate(value: Fraction | None) -> float:
    return float(value) if value else 0.0


# Sample aspect ratios outside this range are taken for broken headers and ignored: those in use stay near 1
# (HDV 4:3, NTSC DVD 8:9 to 40:33, PAL DVD 16:15 to 64:45, some web encodes 2:1).
_SAR_RANGE = (0.25, 4.0)


def sample_aspect(stream: av.video.stream.VideoStream) -> float:
    """The stream's sample aspect ratio (pixel width / height as shown) from the container or the codec, 1.0 when
    unset (0/1, 0/0) or outside 1:4 - 4:1."""
    for source in (stream, stream.codec_context):
        try:
            value = _rate(getattr(source, "sample_aspect_ratio", None))
        except (ZeroDivisionError, ValueError):
            value = 0.0
        if value > 0:
            return value if _SAR_RANGE[0] <= value <= _SAR_RANGE[1] else 1.0
    return 1.0


def probe(path: Path) -> VideoInfo:
    """Open `path` and read its stream information, without decoding."""
    with open_container(path) as container:
        return _info(container, path)


def open_container(path: Path) -> av.container.InputContainer:
    """av.open with errors turned into VideoError naming the file."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{path}: cannot open as a video container ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _info(container: av.container.InputContainer, path: Path) -> VideoInfo:
    if not container.streams.video:
        raise VideoError(f"{path}: no video stream")
    vs = container.streams.video[0]
    width, height = vs.codec_context.width, vs.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoError(f"{path}: video stream has no frame size ({width} x {height})")
    duration = 0.0
    if vs.duration is not None and vs.time_base is not None:
        duration = float(vs.duration * vs.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    fps = _rate(vs.average_rate) or _rate(vs.guessed_rate) or _rate(vs.base_rate)
    audio = container.streams.audio[0] if container.streams.audio else None
    return VideoInfo(
        width=width,
        height=height,
        fps=fps,
        declared_frames=int(vs.frames or 0),
        duration=duration,
        has_audio=audio is not None,
        audio_rate=int(audio.rate or 0) if audio is not None else 0,
        sample_aspect=sample_aspect(vs),
    )


def packet_times(path: Path) -> tuple[int, list[float]]:
    """The video stream's packet count and their presentation times (seconds, sorted), read without decoding
    (about one frame a packet); the times are empty when a packet carries no timestamp (then nothing can be
    said about the frame rate before decoding)."""
    with open_container(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        count, times, timed = 0, [], True
        try:
            for packet in container.demux(stream):
                if packet.size <= 0:
                    continue
                count += 1
                if packet.pts is None or packet.time_base is None:
                    timed = False
                elif timed:
                    times.append(float(packet.pts * packet.time_base))
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: reading failed ({_reason(exc)}); the file is corrupt or truncated") from exc
    return count, sorted(times) if timed else []


@dataclass(frozen=True)
class FrameGrid:
    """An even time grid for a variable-frame-rate video: `count` frames from `start`, `step` seconds apart."""

    start: float
    step: float
    count: int

    def time(self, index: int) -> float:
        return self.start + index * self.step


def constant_rate_grid(times: list[float]) -> FrameGrid | None:
    """The grid a video with frames at `times` (sorted seconds) is resampled onto, or None when it needs none:
    as many points as frames, evenly over the same span. None when every frame lies within half a step of its
    grid point (resampling would then give every frame its own index back) or when there are too few frames or
    timestamps to tell."""
    n = len(times)
    if n < 3:
        return None
    step = (times[-1] - times[0]) / (n - 1)
    if not step > 0 or not math.isfinite(step):
        return None
    worst = max(abs(t - (times[0] + i * step)) for i, t in enumerate(times))
    if worst <= 0.5 * step:
        return None
    return FrameGrid(start=times[0], step=step, count=n)


class FrameSource(Protocol):
    """What `adamml.prepare.worker` reads a video through: a video file (`VideoReader`) or a folder of frame
    images (`adamml.prepare.worker.FrameFolderReader`)."""

    audio: DecodedAudio | None  # available once the frames have been read (None: no audio)
    rotation: int  # degrees counter-clockwise the frames were turned to show upright
    declared_frames: int  # what the source says it holds (0: unknown)
    source_frames: int  # frames read so far (a video file resampled to a constant rate hands out more or fewer)
    encoded: bytes | None  # the current frame's JPEG bytes when they can be stored as they are

    def __iter__(self) -> Iterator[np.ndarray]: ...  # (H, W, 3) uint8 BGR frames at the store's size
    def measured_fps(self) -> float: ...
    def measured_duration(self) -> float: ...
    def close(self) -> None: ...


class DeferredFrame:
    """A decoded picture, resized and converted the first time `array()` is called: (H, W, 3) uint8 at the
    reader's size and pixel format, turned upright. It holds the decoder's picture (its full size) until then."""

    __slots__ = ("_frame", "_size", "_format", "turns", "_array")

    def __init__(self, frame: av.VideoFrame, size: tuple[int, int], pixel_format: str) -> None:
        self._frame: av.VideoFrame | None = frame
        self._size, self._format = size, pixel_format
        self.turns = quarter_turns(getattr(frame, "rotation", 0))
        self._array: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self._array is None:
            assert self._frame is not None
            width, height = self._size
            image = self._frame.reformat(width=width, height=height, format=self._format,
                                         interpolation="BILINEAR").to_ndarray()
            if self.turns:
                image = np.ascontiguousarray(np.rot90(image, self.turns))  # upright, as it is shown
            self._array, self._frame = image, None
        return self._array


class VideoReader:
    """Decodes one video in a single demuxing pass.

    Iterating yields resized frames as (H, W, 3) uint8 arrays in BGR order (OpenCV's), while the audio
    track is resampled on the way and available as `audio` once the iteration ends. `frame_times` holds
    each frame's presentation time in seconds. A variable-frame-rate video is resampled onto a constant-rate
    grid (`grid`, found from the packets' timestamps before decoding; `constant_rate=False` keeps the decoded
    frames as they are): frames are then repeated or dropped as ffmpeg's ``fps`` filter would, `frame_times`
    holds the grid's times and `source_frames` the count decoded.
    """

    def __init__(
        self,
        path: Path,
        short_side: int = DEFAULT_SHORT_SIDE,
        audio_rate: int = DEFAULT_AUDIO_RATE,
        with_audio: bool = True,
        pixel_format: str = "bgr24",
        constant_rate: bool = True,
    ) -> None:
        self.path = Path(path)
        self.short_side = short_side
        self.audio_rate = audio_rate
        self.with_audio = with_audio
        self.pixel_format = pixel_format
        self._container = open_container(self.path)
        try:
            self.info = _info(self._container, self.path)
        except Exception:
            self._container.close()
            raise
        self.size = resized_size(*self.info.display_size, short_side)
        if max(self.size) > MAX_RESIZED_SIDE:
            self._container.close()
            raise VideoError(
                f"{self.path}: frame size {self.info.width} x {self.info.height} is too elongated: "
                f"resizing the short side to {short_side} gives {self.size[0]} x {self.size[1]} "
                f"(limit {MAX_RESIZED_SIDE} px)"
            )
        try:
            # frames the video will give, as its packets say (decoding checks it: `num_frames`)
            self.expected_frames, times = packet_times(self.path)
        except VideoError:  # decoding says how far a corrupt file can be read
            self.expected_frames, times = 0, []
        self.grid = constant_rate_grid(times) if constant_rate else None
        self.frame_times: list[float] = []
        self.source_frames = 0  # frames decoded (differs from `num_frames` when resampled onto `grid`)
        self.audio: DecodedAudio | None = None
        self.rotation = 0  # degrees counter-clockwise applied to every frame (the container's display rotation)
        self.declared_frames = self.info.declared_frames
        self.encoded: bytes | None = None  # decoded frames are always encoded again

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        for _index, image in self._decode(None):
            yield image if isinstance(image, np.ndarray) else image.array()

    def frames_at(self, keep: Container[int],
                  defer_bytes: int = 0) -> Iterator[tuple[int, np.ndarray | DeferredFrame]]:
        """(index, frame) of the frames whose index is in `keep`, decoding the whole video (frame times and
        audio as `__iter__` gives them) but handing out only those: a caller that holds what it gets holds
        `len(keep)` frames, whatever the video's length. While the pictures handed out take at most
        `defer_bytes`, they come decoded but not yet resized and converted (`DeferredFrame`: `array()` gives the
        same pixels), so a caller that turns out to need only some of them (prediction, once the policy has
        decided) converts only those; past that, and with the default 0, converted arrays."""
        return self._decode(keep, defer_bytes)

    def _decode(self, keep: Container[int] | None,
                defer_bytes: int = 0) -> Iterator[tuple[int, np.ndarray | DeferredFrame]]:
        width, height = self.size
        deferred = 0  # bytes of the decoded pictures handed out unconverted
        for index, time, frame in self._on_grid(self._demux()):
            self.frame_times.append(time)
            if keep is not None and index not in keep:
                continue
            picture = DeferredFrame(frame, (width, height), self.pixel_format)
            self.rotation = 90 * picture.turns
            size = sum(plane.buffer_size for plane in frame.planes)
            if deferred + size <= defer_bytes:
                deferred += size
                yield index, picture
            else:
                yield index, picture.array()

    def _on_grid(self, frames: Iterator[tuple[float, av.VideoFrame]]) -> Iterator[tuple[int, float, av.VideoFrame]]:
        """(index, time, frame) as handed out: the decoded frames as they are, or on `grid` the frame shown at
        each grid point (the one nearest to it; a grid point past the last frame by more than half a step, where
        decoding stopped early, gets none)."""
        grid = self.grid
        if grid is None:
            for index, (time, frame) in enumerate(frames):
                yield index, time, frame
            return
        index, held = 0, None
        for time, frame in frames:
            if held is not None:
                middle = (held[0] + time) / 2.0
                while index < grid.count and grid.time(index) < middle:
                    yield index, grid.time(index), held[1]
                    index += 1
            held = (time, frame)
        if held is not None:
            while index < grid.count and grid.time(index) <= held[0] + 0.5 * grid.step:
                yield index, grid.time(index), held[1]
                index += 1

    def _demux(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """(time, frame) of every decoded picture in presentation order; the audio is resampled on the way and
        set once the last picture has been handed out."""
        container = self._container
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        astream = None
        if self.with_audio and container.streams.audio:
            astream = container.streams.audio[0]
        streams = [vstream] + ([astream] if astream is not None else [])
        resampler = (
            av.AudioResampler(format="s16", layout="mono", rate=self.audio_rate)
            if astream is not None
            else None
        )
        chunks: list[np.ndarray] = []
        audio_start: float | None = None
        first_time: float | None = None
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        time = frame.time if frame.time is not None else self.source_frames / (self.info.fps or 30.0)
                        self.source_frames += 1
                        if first_time is None:
                            first_time = float(time)
                        yield float(time), frame
                    elif resampler is not None:
                        if audio_start is None and frame.time is not None:
                            audio_start = float(frame.time)
                        for out in resampler.resample(frame):
                            chunks.append(out.to_ndarray().reshape(-1))
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"{self.path}: decoding failed after {self.source_frames} frames ({_reason(exc)}); "
                "the file is corrupt or truncated"
            ) from exc
        if self.source_frames == 0:
            raise VideoError(f"{self.path}: no frame could be decoded")
        if astream is not None:
            samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
            samples = self._align(samples, audio_start, first_time)
            self.audio = DecodedAudio(samples=samples.astype(np.int16, copy=False), rate=self.audio_rate)

    def _align(self, samples: np.ndarray, audio_start: float | None, video_start: float | None) -> np.ndarray:
        """Shift the audio so that sample 0 plays with the first video frame (pads or trims)."""
        if audio_start is None or video_start is None:
            return samples
        offset = int(round((audio_start - video_start) * self.audio_rate))
        if offset > 0:
            return np.concatenate([np.zeros(offset, samples.dtype), samples])
        return samples[-offset:]

    @property
    def num_frames(self) -> int:
        return len(self.frame_times)

    def measured_duration(self) -> float:
        """Duration from the decoded timestamps (last frame time + one average frame interval)."""
        if not self.frame_times:
            return 0.0
        span = self.frame_times[-1] - self.frame_times[0]
        n = len(self.frame_times)
        step = span / (n - 1) if n > 1 else (1.0 / self.info.fps if self.info.fps else 0.0)
        return span + step

    def measured_fps(self) -> float:
        """Frames per second as decoded: frames / duration, falling back to the container's rate."""
        duration = self.measured_duration()
        if len(self.frame_times) > 1 and duration > 0 and math.isfinite(duration):
            return len(self.frame_times) / duration
        return self.info.fps
