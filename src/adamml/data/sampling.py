"""Which frames each segment reads: pure, seedable functions of the video length.

Supplementary Sec. B: in training, C = 5 segments, one random window inside each of C equal regions of the
video; at test, 10 segments spread uniformly. A segment is 8 frames at stride 4 (a 32-frame window). Optical
flow at a frame position stacks 5 consecutive flow fields; RGB difference takes 5 consecutive differences
(6 frames). Videos shorter than a window are handled by clamping indices, never by failing.

Indices are 0-based here; the store's file names are 1-based (`img_00001.jpg` is frame 0).
"""

from __future__ import annotations

import math

import numpy as np


def window_span(frames: int, stride: int) -> int:
    """Frames covered by one segment window (8 frames at stride 4 -> 32)."""
    return frames * stride


def train_segment_starts(num_frames: int, num_segments: int, span: int, rng: np.random.Generator) -> np.ndarray:
    """One random window start inside each of `num_segments` equal regions; (S,) int64."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    last_start = max(0, num_frames - span)
    starts = np.empty(num_segments, dtype=np.int64)
    for i in range(num_segments):
        lo = math.floor(i * num_frames / num_segments)
        hi = math.floor((i + 1) * num_frames / num_segments) - span
        lo, hi = min(lo, last_start), min(max(lo, hi), last_start)
        starts[i] = rng.integers(lo, hi + 1)
    return starts


def eval_segment_starts(num_frames: int, num_segments: int, span: int) -> np.ndarray:
    """Window starts centred in `num_segments` equal regions (deterministic); (S,) int64."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    last_start = max(0, num_frames - span)
    centres = (np.arange(num_segments) + 0.5) * num_frames / num_segments
    starts = np.floor(centres - span / 2 + 0.5).astype(np.int64)
    return np.clip(starts, 0, last_start)


def consecutive_frames(modalities) -> int:
    """Frames a position reads past itself in the official loader: 5 when flow (5 fields) or RGBDiff (5
    differences) is read, else 1."""
    return 5 if {"flow", "rgbdiff"} & set(modalities) else 1


def official_eval_frame_indices(num_frames: int, num_segments: int, frames: int, stride: int,
                                consecutive: int) -> np.ndarray:
    """The official AdaMML loader's test frames (`data.conventions: official`; its dense sampling with a fixed
    offset): the window starts spread by `linspace` from frame 0 to the last start that leaves `consecutive`
    frames (5 when flow or RGBDiff is read, else 1) after the window, truncated to integers; an index past that
    wraps around (a video shorter than a window). (S, frames) int64, 0-based. For 300 frames, 10 segments of 8
    frames at stride 4 and flow: starts 0, 29, 58, 88, 117, 146, 176, 205, 234, 264."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    max_frame = max(1, num_frames - consecutive + 1)
    last = max(1, 1 + max_frame - stride * frames)
    starts = np.linspace(0, last - 1, num=num_segments, dtype=int)
    indices = (starts[:, None] + stride * np.arange(frames)[None, :]) % max_frame
    return indices.astype(np.int64)


def eval_frame_indices(num_frames: int, num_segments: int, frames: int, stride: int, conventions: str = "adamml",
                       consecutive: int = 1) -> np.ndarray:
    """The test segments' frames: adamml's windows centred in equal regions (clamped to the video), or with
    `conventions` "official" the official loader's (`official_eval_frame_indices`); (S, frames) int64."""
    if conventions == "official":
        return official_eval_frame_indices(num_frames, num_segments, frames, stride, consecutive)
    starts = eval_segment_starts(num_frames, num_segments, window_span(frames, stride))
    return segment_frame_indices(starts, frames, stride, num_frames)


def segment_frame_indices(starts: np.ndarray, frames: int, stride: int, num_frames: int) -> np.ndarray:
    """Frame indices of each segment, clamped to the video; (S, frames) int64."""
    indices = np.asarray(starts, dtype=np.int64)[:, None] + stride * np.arange(frames)[None, :]
    return np.clip(indices, 0, num_frames - 1)


def flow_stack_indices(frame_indices: np.ndarray, stack: int, num_flow: int) -> np.ndarray:
    """Flow-field indices stacked at each frame position; (..., stack). Flow i lies between frames i, i + 1."""
    if num_flow < 1:
        raise ValueError("the video has no optical flow (one frame only, or prepared with --flow none)")
    out = np.asarray(frame_indices, dtype=np.int64)[..., None] + np.arange(stack)
    return np.clip(out, 0, num_flow - 1)


def diff_frame_indices(frame_indices: np.ndarray, diffs: int, num_frames: int) -> np.ndarray:
    """The `diffs + 1` frames whose consecutive differences form RGBDiff at each position; (..., diffs + 1)."""
    out = np.asarray(frame_indices, dtype=np.int64)[..., None] + np.arange(diffs + 1)
    return np.clip(out, 0, num_frames - 1)


def segment_centre_seconds(frame_indices: np.ndarray, fps: float) -> np.ndarray:
    """Time of the middle of each segment's frames, using the video's own frame rate; (S,)."""
    first, last = frame_indices[:, 0], frame_indices[:, -1]
    return (first + last) / 2.0 / fps
