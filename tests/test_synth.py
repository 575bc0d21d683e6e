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
from adamml.workflows.synthetic import (
    MODALITIES,
    SPLITS,
    VARIANTS,
    SynthConfig,
    cell_sample_range,
    class_design,
    class_signatures,
    config_signature_table,
    forced_draw_probability,
    hue_deg,
    hue_jitter_deg,
    motion,
    pitch_hz,
    pitch_jitter_semitones,
    plan_dataset,
    plan_video,
    render_cell_audio,
    render_cell_frames,
    sample_informative,
    signature_table,
    variant_config,
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
    from adamml.workflows.synthetic import SynthConfig, _encoder_frame, plan_dataset, render_video, write_synth_video

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
    from adamml.workflows.synthetic import _encoder_frame

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


# -- what existed stays bit for bit: the demo's published figures depend on it --------------------------------

def _digest(obj) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def test_the_default_plan_and_config_are_what_they_were():
    """Values computed with the code before code / values / distractor_rate existed (and a validation split of 6
    videos per class, the default then: the other splits' videos do not depend on it)."""
    config = SynthConfig(val_per_class=6)
    video = plan_video(config, "train", 3, 5)
    assert (video.id, video.label, video.seed, video.object_side) == ("videos/train/c3/000005", "c3", 3646430263, 23)
    assert video.harmonics == (1.0, 0.4752977839745567, 0.3669787422961409)
    assert (video.tone_amplitude, video.noise_rms) == (0.2178, 0.0201)
    cells = [(c.rgb, c.flow, c.audio, c.hue_deg, c.velocity, c.pitch_hz, c.position) for c in video.cells]
    assert cells == [
        (False, True, True, None, (0, 2), 344.386, (11, 56)),
        (True, False, False, 123.537, (0, 0), None, (13, 18)),
        (True, True, False, 123.537, (0, 2), None, (28, 11)),
        (False, False, False, None, (0, 0), None, (63, 7)),
    ]
    assert not any(any(c.distractor) for c in video.cells)
    assert _digest(video.ground_truth(config)) == "18e36f1f789ae619"
    assert _digest([v.ground_truth(config) for v in plan_dataset(config)]) == "26e2b6394afe5fd3"  # all 320
    assert config.to_dict() == {
        "classes": 8, "train_per_class": 24, "val_per_class": 6, "test_per_class": 10, "segments": 4,
        "frames_per_segment": 32, "fps": 24.0, "size": 64, "informative_rate": {"rgb": 0.5, "flow": 0.5, "audio": 0.5},
        "seed": 0, "audio_rate": 24000, "chroma": 40.0, "crf": 0,
    }
    assert list(config.to_dict()) == ["classes", "train_per_class", "val_per_class", "test_per_class", "segments",
                                      "frames_per_segment", "fps", "size", "informative_rate", "seed", "audio_rate",
                                      "chroma", "crf"]
    assert variant_config("demo") == SynthConfig() == dataclasses.replace(config, val_per_class=10)


@pytest.mark.parametrize("k, truth, table", [
    (2, "70a67b8c83bf06fe", "6afa17494a5af201"), (3, "5fb9d368e698a3b9", "02f5facae1f25fa0"),
    (9, "ff6b4838b9b36ed3", "fa052d44afba6ce2"), (30, "1e905f3354534bb2", "e78bec494a8bb555"),
])
def test_product_configs_are_what_they_were(k, truth, table):
    config = SynthConfig(classes=k, train_per_class=2, val_per_class=1, test_per_class=1,
                         informative_rate=(0.25, 1.0, 0.0), seed=3)
    assert _digest([v.ground_truth(config) for v in plan_dataset(config)]) == truth
    assert _digest(signature_table(k, 64)) == table
    assert "code" not in config.to_dict() and "distractor_rate" not in config.to_dict()


# -- codes: how classes map to signature values ------------------------------------------------------------

def _circular(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


@pytest.mark.parametrize("k", [2, 3, 5, 10, 12])
def test_redundant_code_lets_each_modality_alone_name_the_class(k):
    config = SynthConfig(classes=k, code="redundant")
    sigs = class_signatures(k, "redundant")
    for m in MODALITIES:
        assert len({s.value(m) for s in sigs}) == k
    assert class_design(config) == "each modality alone names the class"
    hues = [hue_deg(v, k, "redundant") for v in range(k)]
    jitter = hue_jitter_deg(k, "redundant")
    assert min(_circular(a, b) for i, a in enumerate(hues) for b in hues[i + 1:]) > 2 * jitter
    if k <= 3:  # as the product code has them
        assert hues == [hue_deg(v, k) for v in range(k)] and jitter == 12.0
    pitches = [pitch_hz(v, k, "redundant") for v in range(k)]
    step = min(12 * math.log2(b / a) for a, b in zip(pitches, pitches[1:]))
    assert step > 2 * pitch_jitter_semitones(k, "redundant")
    assert pitches[-1] * 2 ** (pitch_jitter_semitones(k, "redundant") / 12) < 24_000 / 2
    assert len({motion(v, 64) for v in range(k)}) == k
    assert max(speed for _d, speed in (motion(v, 64) for v in range(k))) <= 64 / 8
    for video in (plan_video(config, "train", c, 0) for c in range(k)):  # the plans show these values
        for cell in video.cells:
            if cell.rgb:
                assert _circular(cell.hue_deg, hues[video.label_index]) <= jitter + 1e-3
            if cell.audio:
                assert abs(12 * math.log2(cell.pitch_hz / pitches[video.label_index])) <= 1 + 1e-6


def test_full_code_uses_every_combination():
    config = SynthConfig(classes=27, code="full", values=(3, 3, 3))
    sigs = class_signatures(27, "full", (3, 3, 3))
    triples = [(s.rgb, s.flow, s.audio) for s in sigs]
    assert len(set(triples)) == 27 and config.num_values == (3, 3, 3)
    for m in MODALITIES:
        assert np.bincount([s.value(m) for s in sigs]).tolist() == [9, 9, 9]
    for pair in [("rgb", "flow"), ("rgb", "audio"), ("flow", "audio")]:  # no two modalities tell the class
        keys = [tuple(s.value(m) for m in pair) for s in sigs]
        assert len(set(keys)) < len(keys)
    assert class_design(config) == "each modality alone narrows the class down to 9 of 27"
    assert [row["rgb"]["hue_deg"] for row in config_signature_table(config)][::9] == [30.0, 90.0, 150.0]

    mute = SynthConfig(classes=9, code="full", values=(3, 3, 1), informative_rate=(0.5, 0.5, 0.0))
    sigs = class_signatures(9, "full", (3, 3, 1))
    assert {s.audio for s in sigs} == {0} and len({(s.rgb, s.flow) for s in sigs}) == 9
    assert "audio alone tells nothing about the class" in class_design(mute)
    assert all(c.pitch_hz is None for k in range(9) for c in plan_video(mute, "train", k, 0).cells)
    assert mute.to_dict()["code"] == "full" and mute.to_dict()["values"] == [3, 3, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(code="binary"), "unknown code 'binary'"),
    (dict(values=(2, 2, 2)), "only used with code 'full'"),
    (dict(code="redundant", classes=8, values=(2, 2, 2)), "only used with code 'full'"),
    (dict(code="full"), "needs values"),
    (dict(code="full", values=(3, 3, 3)), "use classes=27"),
    (dict(code="full", classes=6, values=(3, 2)), "one whole number"),
    (dict(code="full", classes=0, values=(3, 0, 1)), "at least 2 classes"),
    (dict(code="redundant", classes=13), "at most 12"),
    (dict(code="full", classes=9, values=(3, 3, 1), distractor_rate=(0.5, 0.5, 0.5)), "at least 2 audio values"),
    (dict(distractor_rate=(0.5, 1.5, 0.0)), "distractor rate must be in"),
    (dict(distractor_rate=(0.5,)), "one rate per modality"),
    (dict(fps=float("nan")), "fps must be a positive finite number"),
    (dict(fps=float("inf")), "fps must be a positive finite number"),
])
def test_bad_codes_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**kwargs)


# -- distractors: misleading cues in uninformative cells -------------------------------------------------------

@pytest.mark.parametrize("config", [
    SynthConfig(classes=8, distractor_rate=(0.3, 0.5, 0.7)),
    SynthConfig(classes=10, code="redundant", informative_rate=(0.4, 0.25, 1.0), distractor_rate=(0.5, 0.5, 0.5)),
    SynthConfig(classes=27, code="full", values=(3, 3, 3), distractor_rate=(0.6, 0.6, 0.6)),
], ids=["product", "redundant", "full"])
def test_distractors_mislead_in_uninformative_cells_at_the_asked_rate(config):
    counts = config.num_values
    hits = {m: [] for m in MODALITIES}
    shown_values: dict[str, set[int]] = {m: set() for m in MODALITIES}
    base = dataclasses.replace(config, distractor_rate=(0.0, 0.0, 0.0))
    for k in range(config.classes):
        sig = class_signatures(config.classes, config.code, config.values)[k]
        for i in range(600 // config.classes):
            video = plan_video(config, "train", k, i)
            plain = plan_video(base, "train", k, i)  # the plan's own draws are untouched by distractors
            assert video.informative() == plain.informative() and video.seed == plain.seed
            assert [c.position for c in video.cells] == [c.position for c in plain.cells]
            row = video.ground_truth(config)
            assert row["distractors"] == [c.distractors() for c in video.cells]
            for cell, plain_cell, truth in zip(video.cells, plain.cells, row["cells"]):
                assert truth["shown"] == dict(zip(MODALITIES, cell.shown))
                for j, m in enumerate(MODALITIES):
                    if getattr(cell, m):
                        assert not cell.distractor[j] and cell.shown[j] == sig.value(m)
                        continue
                    hits[m].append(cell.distractor[j])
                    if not cell.distractor[j]:
                        assert cell.shown[j] is None
                        continue
                    shown = cell.shown[j]
                    assert shown != sig.value(m) and 0 <= shown < counts[j]
                    shown_values[m].add(shown)
                if cell.distractor[0]:
                    assert _circular(cell.hue_deg, hue_deg(cell.shown[0], counts[0], config.code)) \
                        <= hue_jitter_deg(counts[0], config.code) + 1e-3
                elif cell.rgb:
                    assert cell.hue_deg == plain_cell.hue_deg
                else:
                    assert cell.hue_deg is None
                if cell.distractor[1]:
                    direction, speed = motion(cell.shown[1], config.size)
                    assert max(abs(cell.velocity[0]), abs(cell.velocity[1])) == speed
                    assert (cell.velocity[1] == 0) == (direction == "horizontal")
                    if direction != "horizontal":
                        assert np.sign(cell.velocity[1]) == (-1 if direction == "up" else 1)
                else:
                    assert cell.velocity == plain_cell.velocity
                if cell.distractor[2]:
                    target = pitch_hz(cell.shown[2], counts[2], config.code)
                    jitter = pitch_jitter_semitones(counts[2], config.code)
                    assert abs(12 * math.log2(cell.pitch_hz / target)) <= jitter + 1e-3
                else:
                    assert cell.pitch_hz == plain_cell.pitch_hz
    for j, m in enumerate(MODALITIES):
        if hits[m]:
            assert np.mean(hits[m]) == pytest.approx(config.distractor_rate[j], abs=0.04), m
            assert shown_values[m] == set(range(counts[j])), m  # every value serves as a distractor
    assert "distractors" not in plan_video(base, "train", 0, 0).ground_truth(base)


def test_distractor_cells_render_the_misleading_cue():
    config = SynthConfig(classes=2, segments=4, frames_per_segment=4, size=32, informative_rate=(0.25, 0.25, 0.25),
                         distractor_rate=(1.0, 1.0, 1.0))
    video = plan_video(config, "train", 0, 0)
    c = next(i for i, cell in enumerate(video.cells) if cell.distractor[0] and cell.distractor[2])
    cell = video.cells[c]
    assert cell.shown[0] == 1 and cell.shown[2] == 1  # class 0 is (0, 0, 0): the cue is the other class's
    uv = object_chroma(render_cell_frames(video, c, config))
    assert _circular(math.degrees(math.atan2(uv[1], uv[0])) % 360, cell.hue_deg) < 20
    assert _circular(cell.hue_deg, hue_deg(1, 2)) < 13
    audio = render_cell_audio(video, c, config)
    assert band_fraction(audio, cell.pitch_hz) > 0.3
    assert band_energy(audio, pitch_hz(0)) < 0.01 * band_energy(audio, cell.pitch_hz)


# -- named variants -------------------------------------------------------------------------------------------

def test_every_variant_builds_within_the_cpu_budget():
    assert {"demo", "any-one", "all-needed", "mute-audio", "uneven", "distractors"} <= set(VARIANTS)
    for name, variant in VARIANTS.items():
        config = variant_config(name)
        assert variant.name == name and variant.description and "\n" not in variant.description
        sizes = {s: config.classes * config.per_class(s) for s in SPLITS}
        assert 150 <= sizes["train"] <= 230, (name, sizes)
        assert sizes["val"] == sizes["test"], (name, sizes)
        plan_video(config, "train", config.classes - 1, 0)
        assert variant_config(name, seed=4).seed == 4
    expect = {"any-one": (10, "redundant"), "all-needed": (27, "full"), "mute-audio": (9, "full"),
              "uneven": (8, "product"), "distractors": (8, "product")}
    for name, (classes, code) in expect.items():
        config = variant_config(name)
        assert (config.classes, config.code) == (classes, code) and config != SynthConfig()
    assert variant_config("mute-audio").informative_rate[2] == 0.0
    assert variant_config("uneven").informative_rate == (0.25, 0.75, 0.5)
    assert variant_config("distractors").distractor_rate == (0.5, 0.5, 0.5)


def test_variant_overrides():
    assert variant_config("any-one", train_per_class=3).train_per_class == 3
    assert variant_config("all-needed", values=(3, 3, 2)).classes == 18  # classes follow values
    assert variant_config("all-needed", code="product", classes=8) == SynthConfig(train_per_class=8, val_per_class=4,
                                                                                 test_per_class=4)
    with pytest.raises(ValueError, match="unknown variant 'nope'; known: demo, any-one"):
        variant_config("nope")
    with pytest.raises(ValueError, match="use classes=27"):
        variant_config("all-needed", classes=8)


# -- the command -------------------------------------------------------------------------------------------------

def _synth_args(*argv: str):
    from adamml.cli.main import build_parser
    from adamml.cli.synth import config_from_args

    return config_from_args(build_parser().parse_args(["synth", "--out", "x", *argv]))


def test_synth_flags_override_the_variant():
    assert _synth_args() == SynthConfig()
    config = _synth_args("--variant", "uneven", "--informative-rate", "rgb=0.5", "--train-per-class", "2",
                         "--seed", "3")
    assert config == dataclasses.replace(variant_config("uneven"), informative_rate=(0.5, 0.75, 0.5),
                                         train_per_class=2, seed=3)
    assert _synth_args("--variant", "all-needed", "--values", "3,3,2").classes == 18
    config = _synth_args("--code", "full", "--values", "2x2x3", "--distractor-rate", "audio=0.3")
    assert (config.classes, config.values, config.distractor_rate) == (12, (2, 2, 3), (0.0, 0.0, 0.3))
    assert _synth_args("--code", "redundant", "--classes", "6").num_values == (6, 6, 6)
    with pytest.raises(ValueError, match="only used with code 'full'"):
        _synth_args("--values", "3,3,3")


def test_synth_lists_variants_and_refuses_unknown_ones(capsys, tmp_path):
    assert main(["synth", "--list-variants"]) == 0
    out = capsys.readouterr().out
    for name in VARIANTS:
        assert name in out
    assert main(["synth", "--variant", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown variant 'nope'" in err and "any-one" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
    assert main(["synth", "--variant", "demo"]) == 2  # no --out
    assert "--out" in capsys.readouterr().err


def test_synth_command_writes_a_variant_with_distractors(tmp_path):
    out = tmp_path / "d"
    args = ["synth", "--out", str(out), "--variant", "distractors", "--classes", "2", "--train-per-class", "1",
            "--val-per-class", "0", "--test-per-class", "0", "--segments", "2", "--frames-per-segment", "4",
            "--size", "32", "--distractor-rate", "flow=0", "--workers", "1", "--quiet"]
    assert main(args) == 0
    meta = json.loads((out / "synth.json").read_text())
    assert meta["config"]["distractor_rate"] == {"rgb": 0.5, "flow": 0.0, "audio": 0.5}
    assert meta["config"]["classes"] == 2 and "code" not in meta["config"]
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    assert len(truth) == 2 and all(len(t["distractors"]) == 2 for t in truth)
    assert not any(seg["flow"] for t in truth for seg in t["distractors"])
    assert main(args) == 0  # the same arguments: reused
    assert main([a if a != "flow=0" else "flow=0.2" for a in args]) == 2  # other arguments: refused
