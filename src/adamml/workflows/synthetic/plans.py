"""Which cells are informative, and every video's plan (pure: no rendering): `plan_video`, `plan_dataset`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adamml.workflows.synthetic.design import (
    class_signatures,
    config_signature_table,
    _DIRECTIONS,
    _DISTRACTOR_STREAM,
    hue_deg,
    _HUE_JITTER_DEG,
    hue_jitter_deg,
    MODALITIES,
    motion,
    pitch_hz,
    _PITCH_JITTER_SEMITONES,
    pitch_jitter_semitones,
    sample_informative,
    SPLITS,
    SynthConfig,
)


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
