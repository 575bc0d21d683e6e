"""Writing real video files (H.264 + AAC in mp4) from arrays, and simple generated clips.

The built-in audio-visual benchmark (`adamml synth`) is built on `write_video`; tests and the demo use
`moving_square_clip` for small clips with a known motion and tone.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    audio_rate: int = 24_000,
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
        time_base = Fraction(1, 90_000) if frame_times is not None else None
        if time_base is not None:
            vstream.codec_context.time_base = time_base
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=audio_rate, layout="mono")
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
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


def tone(duration: float, frequency: float = 440.0, rate: int = 24_000, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, (N,) float32."""
    t = np.arange(int(round(duration * rate)), dtype=np.float64) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
