"""The benchmark's design: `SynthConfig`, the class signatures (a hue, a motion and a pitch per class, after the
config's `code`), which cells are informative, and the rendering constants."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

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
        if not 0 < self.fps < float("inf"):  # nan fails this too
            raise ValueError(f"fps must be a positive finite number, got {self.fps}")
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
