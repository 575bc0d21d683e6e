"""Decoding (frame counts, sizes, audio) and optical flow (direction and magnitude after quantisation)."""

from __future__ import annotations

import numpy as np
import pytest

from adamml.prepare.decode import VideoError, VideoReader, probe, resized_size
from adamml.prepare.flow import dequantize, make_flow, quantize
from tests.conftest import FPS, make_clip, set_display_rotation, write_raw_codec


def test_resized_size_keeps_aspect_and_short_side():
    assert resized_size(340, 256, 256) == (340, 256)
    assert resized_size(640, 480, 256) == (341, 256)
    assert resized_size(480, 640, 256) == (256, 341)
    assert resized_size(100, 100, 0) == (100, 100)


def test_decode_frames_audio_and_rates(good_clip):
    info = probe(good_clip)
    assert (info.width, info.height, info.has_audio) == (64, 48, True)
    assert info.fps == pytest.approx(FPS)
    with VideoReader(good_clip, short_side=256, audio_rate=24_000) as reader:
        frames = list(reader)
    assert len(frames) == 40
    assert frames[0].shape == (256, 341, 3) and frames[0].dtype == np.uint8
    assert reader.measured_fps() == pytest.approx(FPS, rel=1e-3)
    assert reader.measured_duration() == pytest.approx(40 / FPS, rel=1e-3)
    audio = reader.audio
    assert audio.rate == 24_000
    # AAC frames are 1024 samples; allow one frame of padding at the end
    assert abs(audio.samples.size - 24_000 * 40 / FPS) <= 1024
    # a 440 Hz tone: the strongest frequency of the decoded audio
    spectrum = np.abs(np.fft.rfft(audio.samples[2048:2048 + 12_000].astype(np.float64)))
    assert np.fft.rfftfreq(12_000, 1 / 24_000)[spectrum.argmax()] == pytest.approx(440, abs=4)


@pytest.mark.parametrize("degrees, corner", [(-90, (0, -1)), (90, (-1, 0)), (180, (-1, -1))])
def test_a_display_rotation_gives_upright_frames(tmp_path, degrees, corner):
    frames = np.zeros((3, 32, 48, 3), np.uint8)
    frames[:, :8, :8] = 255  # a white block in the coded picture's top-left corner
    clip = set_display_rotation(write_raw_codec(tmp_path / "phone.mp4", frames, "libx264"), degrees)
    with VideoReader(clip, short_side=16) as reader:
        images = list(reader)
    upright = (24, 16) if degrees != 180 else (16, 24)  # (H, W) as shown, short side 16
    assert images[0].shape[:2] == upright and reader.rotation == degrees % 360
    rows = slice(0, 4) if corner[0] == 0 else slice(-4, None)
    cols = slice(0, 4) if corner[1] == 0 else slice(-4, None)
    assert images[0][rows, cols].mean() > 200  # the block is where a player shows it
    assert images[0][:4, :4].mean() < 50
    with VideoReader(write_raw_codec(tmp_path / "plain.mp4", frames, "libx264"), short_side=16) as reader:
        plain = list(reader)
    assert plain[0].shape[:2] == (16, 24) and plain[0][:4, :4].mean() > 200 and reader.rotation == 0


def test_decode_without_audio_has_no_audio(tmp_path):
    clip = make_clip(tmp_path / "silent.mp4", frames=8, audio=False)
    with VideoReader(clip) as reader:
        assert len(list(reader)) == 8
    assert reader.audio is None and not reader.info.has_audio


def test_decode_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4: empty file"):
        VideoReader(empty)
    with pytest.raises(VideoError, match="missing.mp4: file not found"):
        VideoReader(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 300)
    with pytest.raises(VideoError, match="garbage.mp4: cannot open"):
        VideoReader(garbage)


def _textured_pair(dx: int, dy: int, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    import cv2

    big = cv2.GaussianBlur(rng.integers(0, 255, (size + 40, size + 40)).astype(np.uint8), (5, 5), 1.5)
    first = big[20:20 + size, 20:20 + size]
    # the content moves by (dx, dy): the second image samples the texture shifted back
    second = big[20 - dy:20 - dy + size, 20 - dx:20 - dx + size]
    return np.ascontiguousarray(first), np.ascontiguousarray(second)


@pytest.mark.parametrize("method", ["tvl1", "dis", "farneback"])
@pytest.mark.parametrize("shift", [(3, 0), (0, -2), (-2, 2)])
def test_flow_recovers_known_translation_after_quantisation(method, shift):
    first, second = _textured_pair(*shift)
    flow = make_flow(method)(first, second)
    fx, fy = quantize(flow)
    assert fx.dtype == np.uint8 and fy.dtype == np.uint8
    inner = (slice(16, -16), slice(16, -16))
    measured = (np.median(dequantize(fx)[inner]), np.median(dequantize(fy)[inner]))
    assert measured == pytest.approx(shift, abs=0.4)


def test_quantisation_clips_to_bound_and_round_trips():
    flow = np.array([[[-35.0, 0.0], [19.9, 7.3]]], dtype=np.float32)  # (1, 2, 2)
    fx, fy = quantize(flow, bound=20)
    assert fx.tolist() == [[0, 254]] and fy[0, 0] == 128
    back = dequantize(np.stack([fx, fy], -1), bound=20)
    assert back[0, 0, 0] == pytest.approx(-20)
    assert np.abs(back[0, 1] - [19.9, 7.3]).max() <= 40 / 255 / 2 + 1e-6


def test_unknown_flow_method_is_an_error():
    with pytest.raises(ValueError, match="unknown flow method"):
        make_flow("raft")
