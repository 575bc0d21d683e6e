"""Decoding (frame counts, sizes, audio) and optical flow (direction and magnitude after quantisation)."""

from __future__ import annotations

from fractions import Fraction

import av
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


@pytest.mark.parametrize("aspect, shown",
                         [(Fraction(2), (16, 48)), (Fraction(1, 2), (21, 16)), (Fraction(10), (16, 24))])
def test_an_anamorphic_video_is_stored_at_the_shape_it_is_shown(tmp_path, aspect, shown):
    """Non-square pixels (DVD, HDV) are scaled by the sample aspect ratio before the short side is resized, as a
    player shows them; a ratio beyond 4:1 is a broken header and ignored."""
    frames = np.zeros((3, 32, 48, 3), np.uint8)
    frames[:, :, :12] = 255  # the left quarter of the coded picture is white
    clip = write_raw_codec(tmp_path / "dvd.mp4", frames, "libx264", sample_aspect=aspect)
    assert probe(clip).sample_aspect == (float(aspect) if aspect <= 4 else 1.0)
    with VideoReader(clip, short_side=16) as reader:
        images = list(reader)
    assert images[0].shape[:2] == shown and reader.size == shown[::-1]
    quarter = shown[1] // 4  # still the left quarter of the picture as shown
    assert images[0][:, :quarter - 1].mean() > 200 and images[0][:, quarter + 1:].mean() < 50


def write_collection_clip(path, vcodec: str, pix_fmt: str, acodec: str, rate: int, layout: str,
                          sample_format: str | None = None, audio_start: float = 0.0, frames: int = 20):
    """A clip as real collections hold them: a smooth moving picture, a 440 Hz tone at 0.3 of full scale on every
    channel of `layout`, the audio starting `audio_start` seconds after the first frame."""
    y, x = np.mgrid[0:48, 0:64]
    pictures = [np.stack([(x * 4 + 6 * i) % 256, y * 5, np.full_like(x, 90)], -1).astype(np.uint8) for i in range(frames)]
    with av.open(str(path), "w") as container:
        video = container.add_stream(vcodec, rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, pix_fmt
        audio = container.add_stream(acodec, rate=rate, layout=layout)
        if sample_format:
            audio.format = sample_format
        for picture in pictures:
            container.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(video.encode(None))
        channels = len(av.AudioLayout(layout).channels)
        start, total = int(audio_start * rate), int((frames / 25 - audio_start) * rate)
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / rate)).astype(np.float32)
        for at in range(0, total, 1024):
            chunk = av.AudioFrame.from_ndarray(np.tile(wave[at:at + 1024], (channels, 1)), format="fltp", layout=layout)
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, start + at, Fraction(1, rate)
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
    return path, np.stack(pictures)


@pytest.mark.parametrize("name, vcodec, pix_fmt, acodec, rate, layout, sample_format", [
    ("vp9_opus.webm", "libvpx-vp9", "yuv420p", "libopus", 48_000, "stereo", None),
    ("hevc_opus.mkv", "libx265", "yuv420p", "libopus", 48_000, "stereo", None),
    ("h264_10bit_aac44k.mp4", "libx264", "yuv420p10le", "aac", 44_100, "stereo", None),
    ("prores_10bit_pcm_5.1.mov", "prores", "yuv422p10le", "pcm_s16le", 48_000, "5.1", "s16"),
    ("mjpeg_pcm_mono_8k.avi", "mjpeg", "yuvj420p", "pcm_s16le", 8_000, "mono", "s16"),
    ("mpeg2_mp2.ts", "mpeg2video", "yuv420p", "mp2", 48_000, "stereo", None),
])
def test_the_codecs_and_audio_layouts_of_real_collections(tmp_path, name, vcodec, pix_fmt, acodec, rate, layout,
                                                         sample_format):
    """Web video (VP9 / HEVC with Opus), 10-bit H.264 and ProRes, 5.1 and 8 kHz PCM, MJPEG in AVI, MPEG-2 in a
    transport stream: every frame decoded in its colours, the audio resampled to 24 kHz mono at its loudness."""
    clip, pictures = write_collection_clip(tmp_path / name, vcodec, pix_fmt, acodec, rate, layout, sample_format)
    with VideoReader(clip, short_side=0, audio_rate=24_000) as reader:
        frames = np.stack(list(reader))
    assert frames.shape == pictures.shape
    error = np.abs(frames.astype(int) - pictures[..., ::-1])  # the reader gives BGR, as OpenCV writes it
    assert error.mean() < 6, error.mean()  # lossy codecs, chroma subsampling
    assert reader.measured_fps() == pytest.approx(25, rel=0.01)
    samples = reader.audio.samples.astype(np.float64) / 32767
    assert reader.audio.rate == 24_000 and abs(samples.size - 24_000 * 20 / 25) <= 2048
    middle = samples[4000:16000]
    assert np.sqrt((middle ** 2).mean()) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)  # downmixed, not summed
    spectrum = np.abs(np.fft.rfft(middle))
    assert np.fft.rfftfreq(middle.size, 1 / 24_000)[spectrum.argmax()] == pytest.approx(440, abs=4)


def test_audio_that_starts_late_is_placed_at_its_time(tmp_path):
    """An audio track that starts 0.4 s after the first frame gets 0.4 s of silence before it, so that a segment's
    sound stays the sound of its frames."""
    clip, _ = write_collection_clip(tmp_path / "late.mkv", "libx264", "yuv420p", "aac", 48_000, "stereo",
                                    audio_start=0.4)
    with VideoReader(clip, short_side=0, audio_rate=24_000) as reader:
        list(reader)
    samples = reader.audio.samples.astype(np.float64) / 32767
    assert np.abs(samples[:int(0.38 * 24_000)]).max() < 0.01
    assert np.sqrt((samples[int(0.45 * 24_000):int(0.75 * 24_000)] ** 2).mean()) > 0.15


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
