"""`adamml synth`: the embedded benchmark's class design, ground truth, determinism, and that informative and
uninformative cells really differ in the generated media (audio energy at the pitch, motion, colour)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from adamml.cli import main
from adamml.prepare.importers import import_csv
from adamml.synth import (
    MODALITIES,
    SynthConfig,
    cell_sample_range,
    class_signatures,
    forced_draw_probability,
    plan_dataset,
    plan_video,
    render_cell_audio,
    render_cell_frames,
    sample_informative,
    signature_table,
)

SMALL = SynthConfig(classes=8, train_per_class=3, val_per_class=1, test_per_class=2, segments=4,
                    frames_per_segment=16, size=64)


# -- helpers: cheap measurements of one cell ---------------------------------------------------------------

def band_fraction(audio: np.ndarray, pitch: float, rate: int = 24_000) -> float:
    """Fraction of the energy within +-3 % of `pitch`."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / rate)
    return float(power[(freqs > 0.97 * pitch) & (freqs < 1.03 * pitch)].sum() / power.sum())


def band_energy(audio: np.ndarray, pitch: float, rate: int = 24_000) -> float:
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / rate)
    return float(power[(freqs > 0.97 * pitch) & (freqs < 1.03 * pitch)].sum())


_DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def cell_motion(frames: np.ndarray) -> tuple[float, float, float]:
    """(median vx, median vy) of DIS flow over moving pixels and the mean absolute frame difference."""
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    vx, vy, diff = [], [], []
    for a, b in zip(gray[:-1:3], gray[1::3]):
        flow = _DIS.calc(a, b, None)
        moving = np.hypot(flow[..., 0], flow[..., 1]) > 0.5
        vx.append(float(np.median(flow[..., 0][moving])) if moving.sum() > 20 else 0.0)
        vy.append(float(np.median(flow[..., 1][moving])) if moving.sum() > 20 else 0.0)
        diff.append(float(np.abs(b.astype(float) - a.astype(float)).mean()))
    return float(np.median(vx)), float(np.median(vy)), float(np.mean(diff))


def object_chroma(frames: np.ndarray) -> np.ndarray:
    """Mean (U, V) of the most coloured pixels of a cell (the object when it is coloured)."""
    yuv = cv2.cvtColor(np.ascontiguousarray(frames[0]), cv2.COLOR_RGB2YUV).astype(float)
    uv = yuv[..., 1:].reshape(-1, 2) - 128.0
    strongest = np.argsort(np.hypot(uv[:, 0], uv[:, 1]))[-100:]
    return uv[strongest].mean(axis=0)


# -- class design and informative cells ----------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 4, 5, 8, 9, 12, 27, 30])
def test_every_class_is_a_distinct_triple_and_no_single_modality_tells_it(k):
    sigs = class_signatures(k)
    triples = {(s.rgb, s.flow, s.audio) for s in sigs}
    assert len(triples) == k and [s.index for s in sigs] == list(range(k))
    names = [s.name for s in sigs]
    assert names == sorted(names)  # zero-padded: `adamml prepare` sorts class names
    for m in MODALITIES:
        values = {s.value(m) for s in sigs}
        assert len(values) >= 2  # every modality carries something
        if k > 2:
            assert len(values) < k  # ... but not the class


def test_eight_classes_need_all_three_modalities():
    sigs = class_signatures(8)
    for m in MODALITIES:
        counts = np.bincount([s.value(m) for s in sigs])
        assert counts.tolist() == [4, 4]  # one modality: 1 of 4 classes, 25 % at best
    for pair in [("rgb", "flow"), ("rgb", "audio"), ("flow", "audio")]:
        assert len({tuple(s.value(m) for m in pair) for s in sigs}) == 4  # two: 1 of 2


@pytest.mark.parametrize("rate", [0.25, 0.3, 0.5, 0.8, 1.0])
def test_forced_draw_keeps_the_rate_exact(rate):
    q = forced_draw_probability(rate, 4)
    assert q + (1 - q) ** 4 / 4 == pytest.approx(rate, abs=1e-9)


def test_informative_cells_guarantee_one_per_modality_and_the_asked_rate():
    rng = np.random.default_rng(0)
    rates = {"rgb": 0.3, "flow": 0.5, "audio": 0.8}
    draws = [sample_informative(rates, 4, rng) for _ in range(4000)]
    for m, rate in rates.items():
        cells = np.stack([d[m] for d in draws])  # (N, S)
        assert cells.any(axis=1).all()
        assert cells.mean() == pytest.approx(rate, abs=0.015)
    every = sample_informative({"rgb": 1.0, "flow": 0.0, "audio": 0.5}, 5, rng)
    assert every["rgb"].all() and not every["flow"].any()
    with pytest.raises(ValueError, match="below 1/segments"):
        sample_informative({"rgb": 0.2, "flow": 0.5, "audio": 0.5}, 4, rng)
    with pytest.raises(ValueError):
        SynthConfig(informative_rate=(0.5, 1.5, 0.5))


def test_plans_are_deterministic_and_splits_independent():
    a, b = plan_dataset(SMALL), plan_dataset(SMALL)
    assert a == b
    assert plan_dataset(dataclasses.replace(SMALL, seed=1)) != a
    more_test = plan_dataset(dataclasses.replace(SMALL, test_per_class=5))
    assert [v for v in more_test if v.split == "train"] == [v for v in a if v.split == "train"]
    counts = {s: sum(v.split == s for v in a) for s in ("train", "val", "test")}
    assert counts == {"train": 24, "val": 8, "test": 16}
    video = a[5]
    assert np.array_equal(render_cell_frames(video, 1, SMALL), render_cell_frames(video, 1, SMALL))
    assert np.array_equal(render_cell_audio(video, 2, SMALL), render_cell_audio(video, 2, SMALL))
    for v in a:  # the ground truth agrees with the class table
        sig = signature_table(SMALL.classes, SMALL.size)[v.label_index]
        for cell in v.cells:
            assert (cell.hue_deg is not None) == cell.rgb and (cell.pitch_hz is not None) == cell.audio
            assert (cell.velocity != (0, 0)) == cell.flow
            if cell.audio:
                assert abs(12 * math.log2(cell.pitch_hz / sig["audio"]["pitch_hz"])) <= 1.0 + 1e-6


# -- the media: informative and uninformative cells differ, class signatures show ---------------------------

def _cells(config=SMALL, per_class: int = 2):
    for k in range(config.classes):
        for i in range(per_class):
            video = plan_video(config, "train", k, i)
            for c, cell in enumerate(video.cells):
                yield video, c, cell


def test_informative_audio_has_far_more_energy_at_the_pitch():
    informative, silent = [], []
    for video, c, cell in _cells():
        audio = render_cell_audio(video, c, SMALL)
        assert audio.shape == (cell_sample_range(c, SMALL)[1] - cell_sample_range(c, SMALL)[0],)
        pitch = signature_table(SMALL.classes, SMALL.size)[video.label_index]["audio"]["pitch_hz"]
        if cell.audio:
            informative.append(band_fraction(audio, cell.pitch_hz))
        else:
            silent.append(band_energy(audio, pitch))
    assert min(informative) > 0.3  # the tone dominates
    tone_energy = min(band_energy(render_cell_audio(v, c, SMALL), cell.pitch_hz)
                      for v, c, cell in _cells() if cell.audio)
    assert tone_energy > 100 * max(silent)


def test_motion_follows_the_class_direction_only_in_informative_cells():
    table = signature_table(SMALL.classes, SMALL.size)
    for video, c, cell in _cells(per_class=1):
        vx, vy, diff = cell_motion(render_cell_frames(video, c, SMALL))
        if cell.flow:
            direction = table[video.label_index]["flow"]["direction"]
            assert vy < -0.8 if direction == "up" else vy > 0.8, (video.id, c, vx, vy)
            assert abs(vx) < 0.3 and diff > 3.5
        else:
            assert abs(vx) < 0.1 and abs(vy) < 0.1 and diff < 3.0


def test_colour_shows_the_class_and_grey_cells_look_alike_across_classes():
    chroma_by_value: dict[int, list[np.ndarray]] = {0: [], 1: []}
    grey = []
    for video, c, cell in _cells():
        uv = object_chroma(render_cell_frames(video, c, SMALL))
        if cell.rgb:
            chroma_by_value[class_signatures(SMALL.classes)[video.label_index].rgb].append(uv)
            angle = math.degrees(math.atan2(uv[1], uv[0])) % 360
            assert abs((angle - cell.hue_deg + 180) % 360 - 180) < 20
        else:
            grey.append(uv)
    means = {v: np.mean(x, axis=0) for v, x in chroma_by_value.items()}
    assert np.hypot(*(means[0] - means[1])) > 25  # the two appearance values differ
    assert max(np.hypot(*uv) for uv in grey) < 0.5 * min(np.hypot(*m) for m in means.values())


def test_appearance_and_motion_are_independent():
    """The grey levels (what optical flow sees) do not depend on the hue, and the frames do not depend on
    whether the audio is informative."""
    video = plan_video(SMALL, "train", 2, 0)
    c = next(i for i, cell in enumerate(video.cells) if cell.rgb)
    cells = list(video.cells)
    cells[c] = dataclasses.replace(cells[c], rgb=False, hue_deg=None, audio=not cells[c].audio,
                                   pitch_hz=None if cells[c].audio else 400.0)
    greyed = dataclasses.replace(video, cells=tuple(cells))
    coloured, plain = render_cell_frames(video, c, SMALL), render_cell_frames(greyed, c, SMALL)
    gray = lambda frames: np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(int)
    assert not np.array_equal(coloured, plain)
    assert np.abs(gray(coloured) - gray(plain)).max() <= 1


# -- the command: real files, annotations, ground truth, reuse ---------------------------------------------

def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames, audio, fps


def test_synth_command_writes_videos_annotations_and_ground_truth(tmp_path):
    out = tmp_path / "synth"
    args = ["synth", "--out", str(out), "--classes", "3", "--train-per-class", "2", "--val-per-class", "1",
            "--test-per-class", "1", "--segments", "3", "--frames-per-segment", "24", "--size", "64",
            "--informative-rate", "rgb=0.5,flow=0.4,audio=0.6", "--seed", "7", "--workers", "2", "--quiet"]
    assert main(args) == 0
    with open(out / "annotations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["split"] for r in rows].count("train") == 6 and len(rows) == 12
    assert {r["label"] for r in rows} == {"c0", "c1", "c2"}
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    assert [t["id"] for t in truth] == [r["path"][:-4] for r in rows]
    assert [e.id for e in import_csv(out / "annotations.csv").entries] == [t["id"] for t in truth]
    meta = json.loads((out / "synth.json").read_text())
    assert meta["config"]["informative_rate"] == {"rgb": 0.5, "flow": 0.4, "audio": 0.6}
    for t in truth:
        assert t["path"].startswith(f"videos/{t['split']}/{t['label']}/")
        for m in MODALITIES:
            assert any(s[m] for s in t["segments"])
    config = SynthConfig(classes=3, segments=3, frames_per_segment=24, size=64, seed=7,
                         informative_rate=(0.5, 0.4, 0.6))
    samples_per_cell = 24 * 24_000 // 24
    for t in truth[:4]:
        frames, audio, fps = _decode(out / t["path"])
        assert frames.shape == (72, 64, 64, 3) and fps == pytest.approx(24.0)
        assert abs(audio.size - 3 * samples_per_cell) <= 2048
        pitch = t["signature"]["audio"]["pitch_hz"]
        for c, seg in enumerate(t["segments"]):
            cell_audio = audio[c * samples_per_cell:(c + 1) * samples_per_cell]
            fraction = band_fraction(cell_audio, t["cells"][c]["pitch_hz"] or pitch)
            assert fraction > 0.3 if seg["audio"] else fraction < 0.02, (t["id"], c, fraction)
            vx, vy, diff = cell_motion(frames[c * 24 + 1:(c + 1) * 24])
            if seg["flow"]:
                assert np.sign(vy) == np.sign(t["cells"][c]["velocity"][1]) and abs(vy) > 0.8
            else:
                assert abs(vy) < 0.2 and diff < 3.0
    # decoded media match the pure renderer's plan
    assert plan_video(config, "train", 0, 0).ground_truth(config) == truth[0]

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    assert len(mtimes) == 12
    assert main(args) == 0  # again: every video reused
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == mtimes
    other = [("8" if a == "7" else a) for a in args]  # another seed
    assert main(other) == 2  # other arguments: refused


def test_the_pipelines_windows_see_one_cell_only():
    """With the default layout, the 8-frame (stride 4) window of each test segment and the 1.28 s audio window
    centred on it (adamml.data) lie inside one cell: an uninformative cell's audio window holds no tone."""
    from adamml.data.sampling import (
        eval_segment_starts,
        segment_centre_seconds,
        segment_frame_indices,
    )
    from adamml.data.spectrogram import audio_window

    config = SynthConfig()
    starts = eval_segment_starts(config.num_frames, config.segments, 32)
    indices = segment_frame_indices(starts, 8, 4, config.num_frames)
    assert (indices // config.frames_per_segment == np.arange(config.segments)[:, None]).all()
    centres = segment_centre_seconds(indices, config.fps)
    checked = 0
    for k in range(config.classes):
        video = plan_video(config, "test", k, 0)
        audio = np.concatenate([render_cell_audio(video, c, config) for c in range(config.segments)])
        pitch = next(cell.pitch_hz for cell in video.cells if cell.audio)  # this video's (jittered) pitch
        for c, cell in enumerate(video.cells):
            window = audio_window(audio, float(centres[c]))
            if cell.audio:
                assert band_fraction(window, cell.pitch_hz) > 0.3
            else:
                assert band_fraction(window, pitch) < 0.02
                checked += 1
    assert checked > 0


def test_the_same_arguments_write_the_same_videos(tmp_path):
    """Everything downstream (the demo's table) depends on the generated videos being identical from run to
    run: one encoder thread, so x264's frame threads cannot change its decisions under load."""
    common = ["--classes", "2", "--train-per-class", "1", "--val-per-class", "1", "--test-per-class", "1",
              "--segments", "2", "--frames-per-segment", "16", "--size", "32", "--workers", "2", "--quiet"]
    for name in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / name), *common]) == 0
    videos = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.mp4"))
    assert len(videos) == 6
    for rel in videos:
        (frames_a, audio_a, _), (frames_b, audio_b, _) = _decode(tmp_path / "a" / rel), _decode(tmp_path / "b" / rel)
        assert np.array_equal(frames_a, frames_b) and np.array_equal(audio_a, audio_b), rel


def test_generated_videos_decode_to_the_rendered_frames_exactly(tmp_path):
    """Lossless by default: whatever x264 decides (its decisions differed between runs on the same frames, in 2 of
    the demo's 320 videos), a generated video decodes to its rendered frames through yuv420p, bit for bit."""
    from adamml.synth import SynthConfig, _encoder_frame, plan_dataset, render_video, write_synth_video

    config = SynthConfig(classes=2, train_per_class=1, val_per_class=0, test_per_class=0, segments=2,
                         frames_per_segment=8, size=32)
    assert config.crf == 0
    for video in plan_dataset(config):
        assert write_synth_video(video, config, tmp_path)
        rendered, _audio = render_video(video, config)
        decoded, _, _ = _decode(tmp_path / video.path)
        assert len(decoded) == len(rendered)
        for got, image in zip(decoded, rendered):
            assert np.array_equal(got, _encoder_frame(image, "yuv420p").to_ndarray(format="rgb24")), video.id
    lossy = dataclasses.replace(config, crf=18)
    video = plan_dataset(lossy)[0]
    write_synth_video(video, lossy, tmp_path / "lossy")
    rendered, _audio = render_video(video, lossy)
    decoded, _, _ = _decode(tmp_path / "lossy" / video.path)
    assert not all(np.array_equal(got, _encoder_frame(image, "yuv420p").to_ndarray(format="rgb24"))
                   for got, image in zip(decoded, rendered))  # what the default avoids
    with pytest.raises(ValueError, match="crf must be in 0..51"):
        SynthConfig(crf=52)


def test_frames_reach_the_encoder_with_zeros_past_each_line():
    """Frames are converted to the encoder's format before it sees them, with nothing left past each line's end
    from earlier frames: the bytes of a video must depend on its frames only, not on what the process wrote
    before (two demo videos in 320 differed between two fresh clones)."""
    from adamml.synth import _encoder_frame

    image = np.random.default_rng(0).integers(0, 256, (36, 50, 3), dtype=np.uint8)  # lines shorter than the rows
    for _ in range(3):
        frame = _encoder_frame(image, "yuv420p")
        padded = [p for p in frame.planes if p.line_size > p.width]
        assert padded  # the case that matters is exercised
        for plane in padded:
            lines = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
            assert not lines[:, plane.width:].any()
        assert np.array_equal(frame.to_ndarray(format="rgb24"),
                              av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
                              .to_ndarray(format="rgb24"))  # the picture itself is untouched
