"""Real video files from arrays (PyAV): `write_video`, and the small clips the tests build (`moving_square_clip`,
`tone`)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from adamml.data.spectrogram import AUDIO_RATE


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
