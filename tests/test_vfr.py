"""Variable-frame-rate videos: frames put on a constant-rate grid, so that frame i is at time i / fps in the store
and in prediction (segments evenly spread in time, audio cut where its frames are)."""

from __future__ import annotations

import json
import wave

import cv2
import numpy as np
import pytest

from adamml.data.dataset import Store
from adamml.data.layout import read_jsonl
from adamml.prepare.decode import VideoReader, constant_rate_grid
from adamml.prepare.importers import assign_classes, import_annotations
from adamml.prepare.pipeline import run_prepare
from adamml.prepare.worker import PrepareSettings
from adamml.workflows.synthetic import write_video

TICK = 0.025  # source times are multiples of this, and each frame shows its time as its grey level


def _level(time: float) -> int:
    return 10 + 3 * int(round(time / TICK))  # 10-247; decoding moves it by 1 at most


def _time(image: np.ndarray) -> float:
    return round((float(image.mean()) - 10) / 3) * TICK


def _phone_clip(path, audio=None):
    """One second at 10 fps (dim light), then one second at 40 fps: 50 frames over 1.975 s."""
    times = [0.1 * i for i in range(10)] + [1.0 + TICK * i for i in range(40)]
    frames = np.stack([np.full((32, 32, 3), _level(t), np.uint8) for t in times])
    write_video(path, frames, fps=25.0, frame_times=times, audio=audio)
    return np.array(times)


def test_constant_rate_files_are_passed_through():
    assert constant_rate_grid([i / 30 for i in range(90)]) is None
    jitter = np.random.default_rng(0).uniform(-0.01, 0.01, 90)  # timestamp rounding and jitter under half a step
    assert constant_rate_grid(sorted(i / 30 + j for i, j in enumerate(jitter))) is None
    assert constant_rate_grid([0.0, 0.5]) is None  # too few frames to tell
    grid = constant_rate_grid([0.1 * i for i in range(10)] + [1.0 + TICK * i for i in range(40)])
    assert grid is not None and grid.count == 50 and grid.step == pytest.approx(1.975 / 49)


def test_a_variable_frame_rate_video_is_read_at_a_constant_rate(tmp_path):
    source = _phone_clip(tmp_path / "phone.mp4")
    with VideoReader(tmp_path / "phone.mp4", short_side=0) as reader:
        shown = np.array([_time(image) for image in reader])
    assert reader.grid is not None and reader.source_frames == 50 and reader.num_frames == 50
    assert reader.measured_fps() == pytest.approx(50 / 2.0, rel=0.02)
    grid = np.arange(50) * reader.grid.step
    assert np.allclose(reader.frame_times, grid)
    # each index shows the source frame nearest its time: index / fps is the time the frame was shown
    nearest = source[np.abs(source[None, :] - grid[:, None]).argmin(axis=1)]
    assert np.allclose(shown, nearest)
    assert np.abs(shown - grid).max() <= 0.05 + 1e-6  # half the slowest source interval
    # the first second (10 frames) now takes about half the indices (those before 0.95 s), not a fifth
    assert (shown < 1.0).sum() == 24
    # as decoded, index and time part: index 25 was shown at 1.375 s, not 1.0 s
    with VideoReader(tmp_path / "phone.mp4", short_side=0, constant_rate=False) as raw:
        decoded = np.array([_time(image) for image in raw])
    assert raw.grid is None and raw.num_frames == 50
    assert np.abs(decoded - np.arange(50) / raw.measured_fps()).max() > 0.3


def test_frames_at_and_iteration_agree_on_the_grid(tmp_path):
    """Prediction reads some frames by index; they are the frames the store holds at those indices."""
    _phone_clip(tmp_path / "phone.mp4")
    with VideoReader(tmp_path / "phone.mp4", short_side=0) as reader:
        every = list(reader)
    keep = {0, 3, 4, 24, 25, 26, 49}
    with VideoReader(tmp_path / "phone.mp4", short_side=0) as reader:
        picked = {i: f if isinstance(f, np.ndarray) else f.array() for i, f in reader.frames_at(keep, 1 << 20)}
    assert picked.keys() == keep
    for i in keep:
        assert np.array_equal(picked[i], every[i])


def test_a_store_of_a_variable_frame_rate_video_keeps_sound_with_its_frames(tmp_path):
    """A click at 0.6 s (in the 10 fps part) is heard at the stored frame index that shows 0.6 s."""
    rate = 24_000
    audio = np.zeros(int(2.0 * rate), np.float32)
    audio[int(0.6 * rate):int(0.65 * rate)] = 0.8 * np.sin(np.arange(int(0.05 * rate)) * 2 * np.pi * 1000 / rate)
    videos = tmp_path / "videos"
    _phone_clip(videos / "test" / "phone" / "a.mp4", audio=audio)
    (videos / "ann.csv").write_text("path,label,split\ntest/phone/a.mp4,phone,test\n")
    imported = import_annotations("csv", videos / "ann.csv", videos)
    classes, entries = assign_classes(imported.entries, None, None)
    store = tmp_path / "store"
    run_prepare(entries, classes, videos, store, PrepareSettings(flow="none", short_side=32))
    (row,) = read_jsonl(store / "manifest.jsonl")
    assert row["status"] == "ok" and row["num_frames"] == 50 and row["source_frames"] == 50
    fps = row["fps"]
    frame_dir = store / row["frames_dir"]
    shown = [_time(cv2.imread(str(p))) for p in sorted(frame_dir.glob("img_*.jpg"))]
    index = int(np.argmin(np.abs(np.array(shown) - 0.6)))
    with wave.open(str(store / row["audio"])) as handle:
        samples = np.frombuffer(handle.readframes(handle.getnframes()), np.int16).astype(np.float64)
    loud = np.flatnonzero(np.abs(samples) > 0.3 * 32767)
    heard = loud[0] / rate
    assert heard == pytest.approx(0.6, abs=0.03)
    assert index / fps == pytest.approx(heard, abs=0.06)  # within a frame and a half of the 25 fps grid
    assert Store.open(store).stale_note() is None


def test_a_store_prepared_before_constant_rate_reading_is_flagged(tmp_path):
    """Rows without source_frames came from the index-sampling version: training and evaluation say so, naming the
    store, a manifest line and the way out."""
    videos = tmp_path / "videos"
    _phone_clip(videos / "test" / "phone" / "a.mp4")
    (videos / "ann.csv").write_text("path,label,split\ntest/phone/a.mp4,phone,test\n")
    classes, entries = assign_classes(import_annotations("csv", videos / "ann.csv", videos).entries, None, None)
    store = tmp_path / "store"
    run_prepare(entries, classes, videos, store, PrepareSettings(flow="none", short_side=32))
    (row,) = read_jsonl(store / "manifest.jsonl")
    del row["source_frames"]
    (store / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    note = Store.open(store).stale_note()
    assert note is not None and str(store) in note and "manifest.jsonl:1" in note and "--overwrite" in note
