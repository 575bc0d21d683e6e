"""Rendering (pure functions of a plan): a cell's frames and audio, a whole video."""

from __future__ import annotations

import math

import numpy as np

from adamml.workflows.synthetic.design import (
    _BACKGROUND_LUMA,
    _CHROMA_NOISE,
    _OBJECT_LUMA,
    _SENSOR_NOISE,
    SynthConfig,
    _TONE_FADE_S,
    _TONE_MARGIN_S,
)
from adamml.workflows.synthetic.plans import VideoPlan


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
