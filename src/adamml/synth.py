"""The embedded audio-visual benchmark (`adamml synth`), and writing real video files from arrays.

Each class is a triple of signature values, one per modality: a hue (RGB), a motion (flow: direction and speed)
and a pitch (audio). How classes map to values is the config's `code`: "product" (the default and the demo:
distinct triples over a few values, so each modality alone narrows the class down to a subset and with 8 classes
all three are needed), "redundant" (class k has value k everywhere: each modality alone names the class) or
"full" (every combination of `values` per modality, e.g. 3 x 3 x 3; a modality with one value carries nothing).
Each modality is informative in some cells (segments) of a video and the ground truth says which, so the policy's
choices can be checked; with `distractor_rate`, an uninformative cell may instead show a misleading cue (another
value of that modality), which the ground truth flags too. `VARIANTS` names a family of such benchmarks
(`variant_config`), so that a recipe tuned on the demo can be checked on data it was not tuned for. Everything is
a pure function of `SynthConfig` and the seed: `plan_dataset` plans, `render_cell_frames` / `render_cell_audio`
render, `generate` writes. Why it is built this way: docs/design.md, "The built-in benchmark".
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

import av
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adamml.atomic_file import atomic_path
from adamml.data.spectrogram import AUDIO_RATE

MODALITIES = ("rgb", "flow", "audio")
SPLITS = ("train", "val", "test")
FORMAT_VERSION = 1

# Rendering constants (luma in 0..255; chroma as U/V offsets, Rec. 601).
_OBJECT_LUMA = (120.0, 24.0, 85.0, 154.0)  # mean, std, clip low, clip high (in gamut up to chroma 40)
_BACKGROUND_LUMA = (75.0, 18.0, 40.0, 110.0)
_MAX_CHROMA = 40.0  # the largest class chroma that keeps every object pixel inside the RGB gamut
_CHROMA_NOISE = (6.0, 12.0)  # per-pixel chroma noise on the object: std, clip
_SENSOR_NOISE = (2.0, 6.0)  # per-frame luma noise: std, clip
_HUE_JITTER_DEG = 12.0
_PITCH_BASE_HZ = 330.0
_PITCH_JITTER_SEMITONES = 1.0
_TONE_MARGIN_S = 0.08  # silence (of the tone) kept at each cell edge
_TONE_FADE_S = 0.01
CODES = ("product", "redundant", "full")  # how classes map to signature values (SynthConfig.code)
MAX_CODE_VALUES = 12  # values one modality may take with codes "redundant" / "full" (motion: 3 directions x 4 speeds)
_PITCH_SPAN_SEMITONES = 60.0  # codes "redundant" / "full": the pitches stay within 5 octaves (330 Hz .. 10.6 kHz)
_DISTRACTOR_STREAM = 0x64697374  # ("dist") the tag of the random stream that draws distractors, apart from the plan's


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    audio_rate: int = AUDIO_RATE,
    codec: str = "libx264",
    crf: int = 18,
    frame_times: list[float] | None = None,
) -> Path:
    """Write `frames` ((T, H, W, 3) uint8 RGB) and optional mono `audio` ((N,) float in [-1, 1]).

    H.264 needs even frame sizes; `frame_times` (seconds) gives each frame its own timestamp, for
    variable-frame-rate files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    _t, height, width, _c = frames.shape
    with av.open(str(path), mode="w") as container:
        rate = Fraction(fps).limit_denominator(1001)
        vstream = container.add_stream(codec, rate=rate)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p"
        if codec == "libx264":
            vstream.options = {"crf": str(crf), "preset": "veryfast"}
        # One encoder thread: x264's frame threads made the same frames encode to different bytes from run
        # to run on a loaded machine, and with them every figure downstream.
        vstream.codec_context.thread_count = 1
        time_base = Fraction(1, 90_000) if frame_times is not None else None
        if time_base is not None:
            vstream.codec_context.time_base = time_base
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=audio_rate, layout="mono")
        for i, image in enumerate(frames):
            frame = _encoder_frame(image, vstream.pix_fmt)
            if frame_times is not None:
                frame.pts = int(round(frame_times[i] / time_base))
                frame.time_base = time_base
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)
        if astream is not None:
            samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0).reshape(1, -1)
            chunk = 1024
            for start in range(0, samples.shape[1], chunk):
                piece = np.ascontiguousarray(samples[:, start:start + chunk])
                aframe = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
                aframe.sample_rate = audio_rate
                aframe.pts = start
                aframe.time_base = Fraction(1, audio_rate)
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
    return path


def _encoder_frame(image: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """`image` (RGB) converted to the encoder's pixel format here, as a new frame whose bytes past each line's end
    are zero. Handing the encoder RGB frames to convert itself made the same frames encode to different bytes
    depending on which videos the process had written before (measured: 2 of 4 write orders changed a demo
    video; two demo videos in 320 differed between fresh clones); converted here, 10 of 10 orders agree."""
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)  # 8-bit planes (yuv420p)
    for plane in frame.planes:
        if plane.line_size > plane.width:
            lines = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
            lines[:, plane.width:] = 0
    return frame


def moving_square_clip(
    num_frames: int = 16,
    width: int = 64,
    height: int = 48,
    velocity: tuple[float, float] = (2.0, 0.0),
    seed: int = 0,
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames: a textured square moving at `velocity` pixels/frame over a
    textured background, so optical flow has something to track."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    side = max(4, min(width, height) // 3)
    patch = rng.integers(120, 255, size=(side, side, 3), dtype=np.uint8)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    x0, y0 = (width - side) / 4, (height - side) / 2
    for t in range(num_frames):
        frame = background.copy()
        x = int(round(x0 + velocity[0] * t)) % max(1, width - side)
        y = int(round(y0 + velocity[1] * t)) % max(1, height - side)
        frame[y:y + side, x:x + side] = patch
        frames[t] = frame
    return frames


def tone(duration: float, frequency: float = 440.0, rate: int = AUDIO_RATE, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, (N,) float32."""
    t = np.arange(int(round(duration * rate)), dtype=np.float64) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------
# Configuration and class signatures


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the generated dataset (with `seed`, its whole content)."""

    classes: int = 8
    train_per_class: int = 24
    val_per_class: int = 10  # as large as test: recipes and operating points are chosen on it
    test_per_class: int = 10
    segments: int = 4
    frames_per_segment: int = 32
    fps: float = 24.0
    size: int = 64
    informative_rate: tuple[float, float, float] = (0.5, 0.5, 0.5)  # rgb, flow, audio
    seed: int = 0
    audio_rate: int = AUDIO_RATE
    chroma: float = 40.0  # class hue: length of the object's (U, V) offset (0..40; grey objects have none)
    # x264's quality; 0 is lossless: the decoded frames are then the rendered ones (through yuv420p) exactly,
    # whatever the encoder decides, and x264's decisions are not always the same from run to run (measured: 2 of
    # the demo's 320 videos decoded differently between two fresh clones at 18, which moved the demo's table by
    # several points). 18 is visually lossless and 4-5x smaller.
    crf: int = 0
    # How classes map to signature values: "product", "redundant" or "full" (`class_signatures`).
    code: str = "product"
    # code "full" only: how many values each modality takes (rgb, flow, audio); `classes` is their product.
    values: tuple[int, int, int] | None = None
    # Chance that a cell where a modality is NOT informative shows a misleading cue instead (another value).
    distractor_rate: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rgb, flow, audio

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"need at least 2 classes, got {self.classes}")
        for name in ("train_per_class", "val_per_class", "test_per_class"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.segments < 1 or self.frames_per_segment < 2:
            raise ValueError("need at least 1 segment of at least 2 frames")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be even and >= 16 (H.264), got {self.size}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51 (x264's scale; 0 is lossless), got {self.crf}")
        if not 0.0 <= self.chroma <= _MAX_CHROMA:
            raise ValueError(f"chroma must be in [0, {_MAX_CHROMA:g}] (larger leaves the RGB gamut and the hues "
                             f"stop being isoluminant), got {self.chroma}")
        if len(self.informative_rate) != len(MODALITIES):
            raise ValueError("informative_rate needs one rate per modality (rgb, flow, audio)")
        for name, rate in zip(MODALITIES, self.informative_rate):
            forced_draw_probability(rate, self.segments, name)  # validates
        self._check_code()
        if len(self.distractor_rate) != len(MODALITIES):
            raise ValueError("distractor_rate needs one rate per modality (rgb, flow, audio)")
        object.__setattr__(self, "distractor_rate", tuple(float(r) for r in self.distractor_rate))
        for name, rate, count in zip(MODALITIES, self.distractor_rate, self.num_values):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}: distractor rate must be in [0, 1], got {rate}")
            if rate > 0 and count < 2:
                raise ValueError(f"{name}: a distractor rate needs at least 2 {name} values to mislead with (a value "
                                 f"other than the class's own), but code {self.code!r} gives {name} {count}")

    def _check_code(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown code {self.code!r}; known: {', '.join(CODES)}")
        if self.code != "full":
            if self.values is not None:
                raise ValueError(f"values (per-modality value counts) is only used with code 'full', not with code "
                                 f"{self.code!r}")
        else:
            if self.values is None:
                raise ValueError("code 'full' needs values: how many values rgb, flow and audio take, e.g. (3, 3, 3)")
            values = tuple(self.values)
            if len(values) != len(MODALITIES) or any(isinstance(v, bool) or int(v) != v or v < 1 for v in values):
                raise ValueError(f"values needs one whole number >= 1 per modality (rgb, flow, audio), got {values}")
            values = tuple(int(v) for v in values)
            object.__setattr__(self, "values", values)
            if self.classes != full_classes(values):
                raise ValueError(f"code 'full' with values {values} makes {full_classes(values)} classes (every "
                                 f"combination): use classes={full_classes(values)}, not {self.classes}")
        if self.code != "product":
            for name, count in zip(MODALITIES, self.num_values):
                if count > MAX_CODE_VALUES:
                    raise ValueError(f"code {self.code!r} gives {name} {count} values; at most {MAX_CODE_VALUES} stay "
                                     "distinct and learnable (motion: 3 directions x 4 speeds)")
            top = pitch_hz(self.num_values[2] - 1, self.num_values[2], self.code) * 2 ** (_PITCH_JITTER_SEMITONES / 12)
            if top >= self.audio_rate / 2:
                raise ValueError(f"the highest pitch ({top:.0f} Hz) is not below the Nyquist frequency of "
                                 f"{self.audio_rate} Hz audio; use fewer audio values or a higher audio rate")

    def rate(self, modality: str) -> float:
        return self.informative_rate[MODALITIES.index(modality)]

    def distractor(self, modality: str) -> float:
        return self.distractor_rate[MODALITIES.index(modality)]

    @property
    def num_values(self) -> tuple[int, int, int]:
        """How many signature values each modality (rgb, flow, audio) takes."""
        return modality_values(self.classes, self.code, self.values)

    @property
    def has_distractors(self) -> bool:
        return any(r > 0 for r in self.distractor_rate)

    def per_class(self, split: str) -> int:
        return {"train": self.train_per_class, "val": self.val_per_class, "test": self.test_per_class}[split]

    @property
    def num_frames(self) -> int:
        return self.segments * self.frames_per_segment

    @property
    def cell_seconds(self) -> float:
        return self.frames_per_segment / self.fps

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def to_dict(self) -> dict:
        """The config as JSON; the fields added after the first format appear only when not at their default, so
        the dict of every config that could be written before is what it was (`generate` compares it)."""
        out = dataclasses.asdict(self)
        out["informative_rate"] = dict(zip(MODALITIES, self.informative_rate))
        for name in _LATER_FIELDS:
            if getattr(self, name) == _FIELD_DEFAULTS[name]:
                del out[name]
        if "values" in out:
            out["values"] = list(self.values)
        if "distractor_rate" in out:
            out["distractor_rate"] = dict(zip(MODALITIES, self.distractor_rate))
        return out


_LATER_FIELDS = ("code", "values", "distractor_rate")
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SynthConfig)}


def full_classes(values: Iterable[int]) -> int:
    """The number of classes of code "full": every combination of the per-modality values."""
    return math.prod(int(v) for v in values)


def class_name(index: int, num_classes: int) -> str:
    """`c3`, zero-padded so that sorted names keep numeric order (`c03` with 10 or more classes)."""
    return f"c{index:0{len(str(num_classes - 1))}d}"


@dataclass(frozen=True)
class ClassSignature:
    """A class's signature value per modality (indices into `hue_deg` / `motion` / `pitch_hz`)."""

    index: int
    name: str
    rgb: int
    flow: int
    audio: int

    def value(self, modality: str) -> int:
        return getattr(self, modality)


def signature_values(num_classes: int) -> int:
    """How many distinct values each modality's signature takes: the smallest n >= 2 with n^3 >= K."""
    n = 2
    while n ** 3 < num_classes:
        n += 1
    return n


def modality_values(num_classes: int, code: str = "product",
                    values: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """How many signature values each modality (rgb, flow, audio) takes under `code`."""
    if code == "product":
        n = 2 if num_classes == 2 else signature_values(num_classes)
        return (n, n, n)
    if code == "redundant":
        return (num_classes,) * 3
    if code == "full":
        if values is None:
            raise ValueError("code 'full' needs values (rgb, flow, audio)")
        return tuple(int(v) for v in values)  # type: ignore[return-value]
    raise ValueError(f"unknown code {code!r}; known: {', '.join(CODES)}")


def class_signatures(num_classes: int, code: str = "product",
                     values: tuple[int, int, int] | None = None) -> list[ClassSignature]:
    """Each class's (rgb, flow, audio) values under `code`.

    "product" (the default): distinct triples, each modality with fewer values than classes. Triples are taken
    in order of (a + b + c) mod n, then lexicographically: the first n^2 form a Latin square (any two
    modalities tell the class, one tells n^2 / n), and with 8 classes all 2^3 triples are used, so every
    modality is needed. Two classes get (0, 0, 0) and (1, 1, 1): any modality is enough.
    "redundant": class k is (k, k, k): each modality alone names the class.
    "full": every combination of `values` (rgb, flow, audio) value counts, in lexicographic order: with
    (3, 3, 3) every modality is needed; a modality with one value says nothing about the class.
    """
    if num_classes < 2:
        raise ValueError("need at least 2 classes")
    if code == "redundant":
        codes = [(k, k, k) for k in range(num_classes)]
    elif code == "full":
        counts = modality_values(num_classes, code, values)
        if full_classes(counts) != num_classes:
            raise ValueError(f"code 'full' with values {counts} makes {full_classes(counts)} classes, "
                             f"not {num_classes}")
        codes = [(a, b, c) for a in range(counts[0]) for b in range(counts[1]) for c in range(counts[2])]
    elif code != "product":
        raise ValueError(f"unknown code {code!r}; known: {', '.join(CODES)}")
    elif num_classes == 2:
        codes = [(0, 0, 0), (1, 1, 1)]
    else:
        n = signature_values(num_classes)
        triples = [(a, b, c) for a in range(n) for b in range(n) for c in range(n)]
        codes = sorted(triples, key=lambda t: (sum(t) % n, t))[:num_classes]
    return [ClassSignature(i, class_name(i, num_classes), *code) for i, code in enumerate(codes)]


def _whole_circle(num_values: int, code: str) -> bool:
    """Hues over the whole colour circle: codes other than "product" with more than 3 values (up to 3, and
    always with "product", over half of it, as the demo has them)."""
    return code != "product" and num_values > 3


def hue_deg(value: int, num_values: int, code: str = "product") -> float:
    """Appearance: the object's hue (degrees in the U/V plane) for a signature value, spread over half the
    colour circle (two values: 90 degrees apart); codes other than "product" with more than 3 values spread
    them over the whole circle (360 / n apart), so that many values stay apart."""
    if _whole_circle(num_values, code):
        return (30.0 + 360.0 * value / num_values) % 360.0
    return (30.0 + 180.0 * value / num_values) % 360.0


def hue_jitter_deg(num_values: int, code: str = "product") -> float:
    """The largest per-video hue offset (uniform in +-this): 12 degrees, or a third of the spacing between
    neighbouring hues when that is less (codes other than "product"), so neighbours never overlap."""
    if code == "product":
        return _HUE_JITTER_DEG
    spacing = (360.0 if _whole_circle(num_values, code) else 180.0) / num_values
    return min(_HUE_JITTER_DEG, spacing / 3)


_DIRECTIONS = (("up", (0, -1)), ("down", (0, 1)), ("horizontal", (0, 0)))


def motion(value: int, size: int) -> tuple[str, int]:
    """Motion: (direction, speed in pixels per frame at `size`) for a signature value.

    Vertical directions first (horizontal flips keep them); "horizontal" moves left or right at random per
    cell. Every three values the speed steps up.
    """
    direction = _DIRECTIONS[value % 3][0]
    base = max(1, round(size / 32))
    return direction, base * (1 + value // 3)


def _pitch_step_semitones(num_values: int | None, code: str) -> float:
    if code == "product" or num_values is None or num_values < 2:
        return 6.0
    return min(6.0, _PITCH_SPAN_SEMITONES / (num_values - 1))


def pitch_hz(value: int, num_values: int | None = None, code: str = "product") -> float:
    """Sound: the tone's fundamental for a signature value (half-octave steps from 330 Hz). Codes other than
    "product" with more than 11 values step less, so that the highest stays within 5 octaves (10.6 kHz), below
    the 12 kHz Nyquist frequency of 24 kHz audio."""
    step = _pitch_step_semitones(num_values, code)
    if step == 6.0:
        return _PITCH_BASE_HZ * 2.0 ** (value / 2.0)
    return _PITCH_BASE_HZ * 2.0 ** (value * step / 12.0)


def pitch_jitter_semitones(num_values: int | None = None, code: str = "product") -> float:
    """The largest per-video pitch offset (uniform in +-this, semitones): 1, or a third of the step between
    neighbouring pitches when that is less."""
    return min(_PITCH_JITTER_SEMITONES, _pitch_step_semitones(num_values, code) / 3)


def signature_table(num_classes: int, size: int, code: str = "product",
                    values: tuple[int, int, int] | None = None) -> list[dict]:
    """One row per class: its name and what each modality shows (for reports and the ground truth)."""
    n_rgb, _n_flow, n_audio = modality_values(num_classes, code, values)
    rows = []
    for sig in class_signatures(num_classes, code, values):
        direction, speed = motion(sig.flow, size)
        rows.append({
            "label": sig.name, "label_index": sig.index,
            "rgb": {"value": sig.rgb, "hue_deg": hue_deg(sig.rgb, n_rgb, code)},
            "flow": {"value": sig.flow, "direction": direction, "speed_px_per_frame": speed},
            "audio": {"value": sig.audio, "pitch_hz": round(pitch_hz(sig.audio, n_audio, code), 2)},
        })
    return rows


def config_signature_table(config: SynthConfig) -> list[dict]:
    """`signature_table` of a config (its classes, size, code and values)."""
    return signature_table(config.classes, config.size, config.code, config.values)


def class_design(config: SynthConfig) -> str:
    """One line saying what each modality alone tells about the class (for the class table's title)."""
    sigs = class_signatures(config.classes, config.code, config.values)
    k = len(sigs)
    parts = []
    for m in MODALITIES:
        groups = np.bincount([s.value(m) for s in sigs])
        groups = groups[groups > 0]
        largest = int(groups.max())
        if largest == 1:
            parts.append((m, "names the class"))
        elif largest == k:
            parts.append((m, "tells nothing about the class"))
        else:
            bound = "" if groups.min() == largest else "at most "
            parts.append((m, f"narrows the class down to {bound}{largest} of {k}"))
    if len({text for _m, text in parts}) == 1:
        return f"each modality alone {parts[0][1]}"
    return "; ".join(f"{m} alone {text}" for m, text in parts)


# --------------------------------------------------------------------------------------------------------
# Named variants: benchmarks unlike the demo where it matters, to check a recipe on data it was not tuned for


@dataclass(frozen=True)
class Variant:
    """A named benchmark: a one-line description and the `SynthConfig` keyword arguments it sets (the others
    keep their defaults)."""

    name: str
    description: str
    kwargs: Mapping[str, Any]

    def config(self, seed: int = 0, **overrides: Any) -> SynthConfig:
        return variant_config(self.name, seed, **overrides)


def _variant(name: str, description: str, **kwargs: Any) -> tuple[str, Variant]:
    return name, Variant(name, description, MappingProxyType(kwargs))


# Training sets of 160-220 videos (a CPU budget), validation splits as large as test splits (recipes are chosen on
# validation: it must be able to tell them apart).
VARIANTS: Mapping[str, Variant] = MappingProxyType(dict([
    _variant("demo", "the default (the demo): 8 classes, each modality takes 2 values and all three are needed"),
    _variant("any-one", "10 classes, each modality alone names the class (code redundant), each informative in "
             "40 % of cells", code="redundant", classes=10, informative_rate=(0.4, 0.4, 0.4),
             train_per_class=16, val_per_class=8, test_per_class=8),
    _variant("all-needed", "27 classes = 3 hues x 3 motions x 3 pitches (code full): every modality is needed",
             code="full", values=(3, 3, 3), classes=27, train_per_class=8, val_per_class=4, test_per_class=4),
    _variant("mute-audio", "9 classes = 3 hues x 3 motions; audio never informative (a modality that never helps)",
             code="full", values=(3, 3, 1), classes=9, informative_rate=(0.5, 0.5, 0.0),
             train_per_class=20, val_per_class=10, test_per_class=10),
    _variant("uneven", "the demo's 8 classes, informative in 25 % (rgb), 75 % (flow), 50 % (audio) of cells",
             informative_rate=(0.25, 0.75, 0.5), train_per_class=24, val_per_class=10, test_per_class=10),
    _variant("distractors", "the demo's 8 classes; half the uninformative cells show another class's value "
             "(a misleading cue)", distractor_rate=(0.5, 0.5, 0.5),
             train_per_class=24, val_per_class=10, test_per_class=10),
]))


def variant_config(name: str, seed: int = 0, **overrides: Any) -> SynthConfig:
    """The config of variant `name` with `seed`, `overrides` (SynthConfig fields) replacing its settings.

    With code "full", `classes` follows `values` unless given; overriding `code` away from "full" drops the
    variant's `values`. ValueError for an unknown name (listing the known ones) or a bad config.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    kwargs = dict(VARIANTS[name].kwargs)
    if overrides.get("code", "full") != "full" and "values" not in overrides:
        kwargs.pop("values", None)
    kwargs.update(overrides)
    kwargs["seed"] = seed
    if kwargs.get("code") == "full" and kwargs.get("values") is not None and "classes" not in overrides:
        kwargs["classes"] = full_classes(kwargs["values"])
    return SynthConfig(**kwargs)


# --------------------------------------------------------------------------------------------------------
# Which cells are informative


def forced_draw_probability(rate: float, segments: int, modality: str = "modality") -> float:
    """The per-cell draw probability q such that, after forcing one random cell informative when none was
    drawn, a cell is informative with probability exactly `rate`: q + (1 - q)^S / S = rate.

    `rate` 0 means never informative (no cell is forced); otherwise it must be at least 1 / S.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{modality}: informative rate must be in [0, 1], got {rate}")
    if rate == 0.0:
        return 0.0
    floor = 1.0 / segments
    if rate < floor - 1e-12:
        raise ValueError(
            f"{modality}: informative rate {rate} is below 1/segments = {floor:.3f}, the least possible when "
            "every video must show each modality in at least one cell (use 0 for never)"
        )
    lo, hi = 0.0, 1.0
    for _ in range(60):  # the left side grows with q on [0, 1]
        mid = (lo + hi) / 2
        if mid + (1 - mid) ** segments / segments < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def sample_informative(rates: Mapping[str, float], segments: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Which of `segments` cells each modality is informative in: {modality: (S,) bool}.

    Cells are drawn independently; a modality with a non-zero rate is informative in at least one cell
    (one random cell is forced when none was drawn), and its expected rate is exactly `rates[modality]`.
    Draws always happen in the same order, whatever the rates.
    """
    out = {}
    for name in MODALITIES:
        rate = rates[name]
        q = forced_draw_probability(rate, segments, name)
        draws = rng.random(segments) < q
        forced = int(rng.integers(segments))
        if rate > 0 and not draws.any():
            draws[forced] = True
        out[name] = draws
    return out


# --------------------------------------------------------------------------------------------------------
# Per-video plans (pure: no rendering)


@dataclass(frozen=True)
class CellPlan:
    """What one cell shows. `hue_deg` is None when RGB is uninformative (grey object); `velocity` is (0, 0)
    when flow is uninformative; `pitch_hz` is None when audio is uninformative (noise only)."""

    rgb: bool
    flow: bool
    audio: bool
    hue_deg: float | None
    velocity: tuple[int, int]  # (vx, vy) pixels per frame
    pitch_hz: float | None
    position: tuple[int, int]  # (x, y) of the object's top-left corner at the cell's first frame
    # The signature value each modality (rgb, flow, audio) shows: the class's own in informative cells, another
    # in distractor cells, None where it shows nothing. `hue_deg` / `velocity` / `pitch_hz` are what is rendered.
    shown: tuple[int | None, int | None, int | None] = (None, None, None)
    # Whether each modality (rgb, flow, audio) shows a misleading cue here (never in an informative cell).
    distractor: tuple[bool, bool, bool] = (False, False, False)

    def informative(self) -> dict[str, bool]:
        return {"rgb": self.rgb, "flow": self.flow, "audio": self.audio}

    def distractors(self) -> dict[str, bool]:
        return dict(zip(MODALITIES, self.distractor))


@dataclass(frozen=True)
class VideoPlan:
    """One video: its identity, label, per-video random look and sound, and its cells."""

    id: str  # the path relative to the dataset folder, without extension (the store's video id)
    split: str
    label: str
    label_index: int
    seed: int  # seeds the textures and noise
    object_side: int
    harmonics: tuple[float, float, float]
    tone_amplitude: float
    noise_rms: float
    cells: tuple[CellPlan, ...]

    @property
    def path(self) -> str:
        return self.id + ".mp4"

    def informative(self) -> dict[str, list[bool]]:
        return {m: [getattr(c, m) for c in self.cells] for m in MODALITIES}

    def ground_truth(self, config: SynthConfig) -> dict:
        """The row of ground_truth.jsonl. With distractors (any non-zero `distractor_rate`), also `distractors`
        (per segment, which modality shows a misleading cue) and each cell's `shown` values; without, the row
        is the same as before distractors existed."""
        sig = config_signature_table(config)[self.label_index]
        f = config.frames_per_segment
        row = {
            "id": self.id, "path": self.path, "label": self.label, "label_index": self.label_index,
            "split": self.split,
            "segments": [c.informative() for c in self.cells],
            "signature": {m: sig[m] for m in MODALITIES},
            "cells": [
                {"frames": [k * f, (k + 1) * f], "hue_deg": c.hue_deg, "velocity": list(c.velocity),
                 "pitch_hz": c.pitch_hz, "position": list(c.position)}
                for k, c in enumerate(self.cells)
            ],
            "num_frames": config.num_frames, "fps": config.fps, "size": config.size,
            "object_side": self.object_side, "tone_amplitude": self.tone_amplitude, "noise_rms": self.noise_rms,
        }
        if config.has_distractors:
            row["distractors"] = [c.distractors() for c in self.cells]
            for cell, c in zip(row["cells"], self.cells):
                cell["shown"] = dict(zip(MODALITIES, c.shown))
        return row


def video_id(split: str, label: str, index: int) -> str:
    return f"videos/{split}/{label}/{index:06d}"


def plan_video(config: SynthConfig, split: str, class_index: int, index: int) -> VideoPlan:
    """The plan of video `index` of class `class_index` in `split`; depends only on these, the seed and the
    config (changing the number of videos in one split leaves the others unchanged)."""
    seq = np.random.SeedSequence([config.seed, SPLITS.index(split), class_index, index])
    rng = np.random.default_rng(seq)
    code = config.code
    sig = class_signatures(config.classes, code, config.values)[class_index]
    n_rgb, n_flow, n_audio = config.num_values
    rates = dict(zip(MODALITIES, config.informative_rate))
    informative = sample_informative(rates, config.segments, rng)
    # The jitters scale the same draws (by 1.0 wherever they were 12 degrees / 1 semitone), so that the draws
    # and, for every config that could be written before, the values stay what they were.
    hue_jitter = hue_jitter_deg(n_rgb, code)
    pitch_jitter = pitch_jitter_semitones(n_audio, code)
    hue = (hue_deg(sig.rgb, n_rgb, code)
           + rng.uniform(-_HUE_JITTER_DEG, _HUE_JITTER_DEG) * (hue_jitter / _HUE_JITTER_DEG)) % 360.0
    pitch = pitch_hz(sig.audio, n_audio, code) * 2.0 ** (
        rng.uniform(-_PITCH_JITTER_SEMITONES, _PITCH_JITTER_SEMITONES)
        * (pitch_jitter / _PITCH_JITTER_SEMITONES) / 12)
    direction, speed = motion(sig.flow, config.size)
    side = int(round(config.size * rng.uniform(0.34, 0.44)))
    harmonics = tuple(float(h) for h in (1.0, rng.uniform(0.2, 0.7), rng.uniform(0.05, 0.4)))
    tone_amplitude = float(rng.uniform(0.2, 0.35))
    noise_rms = float(rng.uniform(0.01, 0.03))
    # Distractors come from a stream of their own (the plan's draws above and below stay as they were): per
    # cell and modality, (chance, which other value, jitter) uniforms, drawn whether used or not.
    distract = None
    if config.has_distractors:
        stream = [config.seed, SPLITS.index(split), class_index, index, _DISTRACTOR_STREAM]
        distract = np.random.default_rng(stream).random((config.segments, len(MODALITIES), 3))
    counts = (n_rgb, n_flow, n_audio)
    cells = []
    for k in range(config.segments):
        position = (int(rng.integers(config.size)), int(rng.integers(config.size)))
        sign = 1 if rng.random() < 0.5 else -1
        rgb, flow, audio = (bool(informative[m][k]) for m in MODALITIES)
        shown = [sig.value(m) if on else None for m, on in zip(MODALITIES, (rgb, flow, audio))]
        fake = [False, False, False]
        if distract is not None:
            for j, m in enumerate(MODALITIES):
                chance, pick, _jitter = distract[k, j]
                if shown[j] is None and counts[j] >= 2 and chance < config.distractor_rate[j]:
                    other = min(int(pick * (counts[j] - 1)), counts[j] - 2)
                    shown[j] = other + (other >= sig.value(m))
                    fake[j] = True
        cell_hue = cell_pitch = None
        v = (0, 0)
        if rgb:
            cell_hue = round(float(hue), 3)
        elif fake[0]:
            offset = (2.0 * distract[k, 0, 2] - 1.0) * hue_jitter
            cell_hue = round(float((hue_deg(shown[0], n_rgb, code) + offset) % 360.0), 3)
        if flow or fake[1]:
            cell_direction, cell_speed = (direction, speed) if flow else motion(shown[1], config.size)
            if cell_direction == "horizontal":
                v = (sign * cell_speed, 0)
            else:
                v = (0, cell_speed * dict(_DIRECTIONS)[cell_direction][1])
        if audio:
            cell_pitch = round(float(pitch), 3)
        elif fake[2]:
            offset = (2.0 * distract[k, 2, 2] - 1.0) * pitch_jitter
            cell_pitch = round(float(pitch_hz(shown[2], n_audio, code) * 2.0 ** (offset / 12)), 3)
        cells.append(CellPlan(
            rgb=rgb, flow=flow, audio=audio, hue_deg=cell_hue, velocity=v, pitch_hz=cell_pitch,
            position=position, shown=tuple(shown), distractor=tuple(fake),
        ))
    return VideoPlan(
        id=video_id(split, sig.name, index), split=split, label=sig.name, label_index=class_index,
        seed=int(seq.generate_state(1)[0]), object_side=side, harmonics=harmonics,
        tone_amplitude=round(tone_amplitude, 4), noise_rms=round(noise_rms, 4), cells=tuple(cells),
    )


def plan_dataset(config: SynthConfig) -> list[VideoPlan]:
    """Every video of the dataset, split by split, class by class."""
    return [plan_video(config, split, c, i)
            for split in SPLITS for c in range(config.classes) for i in range(config.per_class(split))]


# --------------------------------------------------------------------------------------------------------
# Rendering (pure functions of a plan)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed (periodic) white noise with zero mean and unit std."""
    x = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx ** 2 + fy ** 2))
    y = np.fft.irfft2(np.fft.rfft2(x) * kernel, s=shape)
    return (y - y.mean()) / (y.std() + 1e-12)


def _scaled(spec: tuple[float, float, float, float], noise: np.ndarray) -> np.ndarray:
    mean, std, lo, hi = spec
    return np.clip(mean + std * noise, lo, hi)


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rec. 601 (what cv2's RGB2GRAY and the H.264 encoder use for luma): U/V offsets leave the luma as is."""
    r = y + 1.140 * v
    g = y - 0.395 * u - 0.581 * v
    b = y + 2.032 * u
    return np.stack([r, g, b], axis=-1)


def _video_look(video: VideoPlan, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The video's static background luma (H, W), object luma (s, s) and object chroma noise (s, s, 2)."""
    rng = np.random.default_rng([video.seed, 0])
    scale = size / 64
    background = _scaled(_BACKGROUND_LUMA, _smooth_noise(rng, (size, size), 2.0 * scale))
    s = video.object_side
    obj = _scaled(_OBJECT_LUMA, _smooth_noise(rng, (s, s), 1.0 * scale))
    std, clip = _CHROMA_NOISE
    chroma = np.clip(std * rng.standard_normal((s, s, 2)), -clip, clip)
    return background, obj, chroma


def render_cell_frames(video: VideoPlan, cell: int, config: SynthConfig) -> np.ndarray:
    """(frames_per_segment, size, size, 3) uint8 RGB frames of one cell.

    The object (a textured square) is placed at the cell's position and moves by the cell's velocity each
    frame, wrapping around the edges; it is coloured with the cell's hue, or grey. The random draws do not
    depend on what is informative, so two plans that differ only in that render the same noise.
    """
    plan = video.cells[cell]
    size, s, frames = config.size, video.object_side, config.frames_per_segment
    background, obj, chroma = _video_look(video, size)
    rng = np.random.default_rng([video.seed, 1, cell])
    std, clip = _SENSOR_NOISE
    sensor = np.clip(std * rng.standard_normal((frames, size, size)), -clip, clip)
    luma_layer = np.zeros((size, size))
    mask = np.zeros((size, size), dtype=bool)
    chroma_layer = np.zeros((size, size, 2))
    luma_layer[:s, :s], mask[:s, :s] = obj, True
    chroma_layer[:s, :s] = chroma
    if plan.hue_deg is not None:
        angle = math.radians(plan.hue_deg)
        chroma_layer[:s, :s] += (config.chroma * math.cos(angle), config.chroma * math.sin(angle))
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    x0, y0 = plan.position
    vx, vy = plan.velocity
    for t in range(frames):
        shift = ((y0 + vy * t) % size, (x0 + vx * t) % size)
        m = np.roll(mask, shift, axis=(0, 1))
        y = np.where(m, np.roll(luma_layer, shift, axis=(0, 1)), background) + sensor[t]
        uv = np.roll(chroma_layer, shift, axis=(0, 1)) * m[..., None]
        out[t] = np.clip(np.rint(_yuv_to_rgb(y, uv[..., 0], uv[..., 1])), 0, 255).astype(np.uint8)
    return out


def cell_sample_range(cell: int, config: SynthConfig) -> tuple[int, int]:
    """[start, end) audio samples of a cell."""
    per = config.cell_seconds * config.audio_rate
    return int(round(cell * per)), int(round((cell + 1) * per))


def render_cell_audio(video: VideoPlan, cell: int, config: SynthConfig) -> np.ndarray:
    """(N,) float32 mono audio of one cell: background noise, plus the cell's harmonic tone if informative.

    The tone keeps `_TONE_MARGIN_S` of noise-only at both cell edges (a centred 1.28 s window then sees no
    tone of the neighbouring cells) and fades in and out over 10 ms.
    """
    plan = video.cells[cell]
    start, end = cell_sample_range(cell, config)
    n, rate = end - start, config.audio_rate
    rng = np.random.default_rng([video.seed, 2, cell])
    out = video.noise_rms * rng.standard_normal(n)
    phases = rng.uniform(0, 2 * np.pi, size=len(video.harmonics))
    if plan.pitch_hz is not None:
        t = np.arange(n) / rate
        wave = sum(w * np.sin(2 * np.pi * (h + 1) * plan.pitch_hz * t + p)
                   for h, (w, p) in enumerate(zip(video.harmonics, phases)) if (h + 1) * plan.pitch_hz < rate / 2)
        wave = wave * (video.tone_amplitude / sum(video.harmonics))
        margin = min(int(_TONE_MARGIN_S * rate), n // 8)
        fade = max(1, min(int(_TONE_FADE_S * rate), (n - 2 * margin) // 4))
        envelope = np.zeros(n)
        envelope[margin:n - margin] = 1.0
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        envelope[margin:margin + fade] = ramp
        envelope[n - margin - fade:n - margin] = ramp[::-1]
        out = out + wave * envelope
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def render_video(video: VideoPlan, config: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T, H, W, 3) uint8 and audio (N,) float32 of a video."""
    frames = np.concatenate([render_cell_frames(video, k, config) for k in range(config.segments)])
    audio = np.concatenate([render_cell_audio(video, k, config) for k in range(config.segments)])
    return frames, audio


# --------------------------------------------------------------------------------------------------------
# Writing the dataset


def write_synth_video(video: VideoPlan, config: SynthConfig, root: Path, overwrite: bool = False) -> bool:
    """Render and write one video under `root`; False when it already existed (and was kept)."""
    path = Path(root) / video.path
    if path.exists() and not overwrite:
        return False
    frames, audio = render_video(video, config)
    with atomic_path(path) as tmp:
        write_video(tmp, frames, config.fps, audio, audio_rate=config.audio_rate, crf=config.crf)
    return True


def write_index(videos: Iterable[VideoPlan], config: SynthConfig, root: Path) -> tuple[Path, Path, Path]:
    """annotations.csv (`path,label,split`), ground_truth.jsonl and synth.json (config + class table)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    videos = list(videos)
    csv_path, gt_path, meta_path = root / "annotations.csv", root / "ground_truth.jsonl", root / "synth.json"
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        handle.write("path,label,split\n")
        handle.writelines(f"{v.path},{v.label},{v.split}\n" for v in videos)
    with open(gt_path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(v.ground_truth(config)) + "\n" for v in videos)
    meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(),
            "classes": config_signature_table(config)}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return csv_path, gt_path, meta_path


def read_meta(root: Path) -> dict | None:
    path = Path(root) / "synth.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _write_chunk(videos: list[VideoPlan], config: SynthConfig, root: str, overwrite: bool) -> list[bool]:
    return [write_synth_video(v, config, Path(root), overwrite) for v in videos]


def generate(config: SynthConfig, root: Path, workers: int = 1, overwrite: bool = False,
             console: Console | None = None, quiet: bool = False) -> dict:
    """Write the dataset under `root`; returns counts, wall seconds and the measured informative rates.

    Raises ValueError when `root` holds a dataset made with other arguments (unless `overwrite`).
    """
    console = console or Console(stderr=True, soft_wrap=True)
    root = Path(root)
    meta = read_meta(root)
    if meta is not None and not overwrite and meta.get("config") != config.to_dict():
        old = meta.get("config", {})
        diff = ", ".join(f"{k}: {old.get(k)} -> {v}" for k, v in config.to_dict().items() if old.get(k) != v)
        raise ValueError(f"{root} holds a dataset written with other arguments ({diff}); "
                         "use another --out, or --overwrite to write it again")
    videos = plan_dataset(config)
    start = time.perf_counter()
    write_index([], config, root)  # synth.json first: marks the folder with its arguments
    counts = {"written": 0, "reused": 0}
    todo = videos if overwrite else [v for v in videos if not (root / v.path).exists()]
    counts["reused"] = len(videos) - len(todo)
    progress = Progress(
        TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet,
    )
    with progress:
        task = progress.add_task("synth", total=len(videos), completed=counts["reused"],
                                 status=f"reused {counts['reused']}")

        def done(results: list[bool]) -> None:
            counts["written"] += sum(results)
            counts["reused"] += len(results) - sum(results)
            progress.update(task, advance=len(results), status=f"written {counts['written']}")

        workers = max(1, min(workers, len(todo)))
        if workers == 1:
            for v in todo:
                done(_write_chunk([v], config, str(root), overwrite))
        else:
            chunk = max(1, min(8, len(todo) // (4 * workers)))
            chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_write_chunk, c, config, str(root), overwrite) for c in chunks]
                for future in as_completed(futures):
                    done(future.result())
    csv_path, gt_path, _meta = write_index(videos, config, root)
    cells = {m: [getattr(c, m) for v in videos for c in v.cells] for m in MODALITIES}
    fakes = {m: [c.distractor[j] for v in videos for c in v.cells if not getattr(c, m)]
             for j, m in enumerate(MODALITIES)}
    return {
        "videos": len(videos), **counts, "seconds": time.perf_counter() - start,
        "rates": {m: (sum(x) / len(x) if x else 0.0) for m, x in cells.items()},
        # of the cells where a modality is not informative, the share showing a misleading cue
        "distractor_rates": {m: (sum(x) / len(x) if x else 0.0) for m, x in fakes.items()},
        "annotations": csv_path, "ground_truth": gt_path,
    }
