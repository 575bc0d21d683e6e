"""Shared fixtures: small real video files written with PyAV (H.264 + AAC in mp4)."""

from __future__ import annotations

import importlib.util
import struct
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from adamml.prepare.importers import assign_classes, import_annotations
from adamml.prepare.pipeline import run_prepare
from adamml.prepare.worker import PrepareSettings
from adamml.workflows.synthetic import moving_square_clip, tone, write_video

FPS = 25.0

# the smallest settings every training test uses (2 classes, 3 segments of 32 x 32, one epoch per phase)
TINY = [
    "model.num_classes=2", "model.num_segments=3", "model.input_size=32", "model.audio.size=32",
    "model.policy.size=32", "model.policy.audio_size=32", "model.resnet.dropout=0.0", "model.audio.dropout=0.0",
    "data.train_segments=3", "data.stride=2", "data.train_scale=[32,40]", "data.test_short_side=32",
    "data.workers=0", "train.batch_size=4", "train.eval_batch_size=4",
    "train.unimodal.epochs=1", "train.fusion.epochs=1", "train.warmup.epochs=1", "train.alternating.epochs=1",
    "train.finetune.epochs=1", "train.policy_pretrain.epochs=1", "train.policy_passes=2",
]


def load_benchmark(name: str):
    """The script benchmarks/NAME.py as a module (the benchmarks are scripts, not a package)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_cli(store: Path, out: Path, stage: str, *extra: str) -> list[str]:
    """The arguments of `adamml train` at the TINY settings."""
    args = ["train", "--config", "tiny", "--stage", stage, "--data", str(store), "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    return args + list(extra)




def make_clip(path: Path, frames: int = 20, size: tuple[int, int] = (64, 48), audio: bool = True,
              velocity: tuple[float, float] = (2.0, 0.0), seed: int = 0, pitch: float = 440.0, **kwargs) -> Path:
    w, h = size
    data = moving_square_clip(frames, w, h, velocity, seed=seed)
    return write_video(path, data, FPS, tone(frames / FPS, pitch) if audio else None, **kwargs)


def set_display_rotation(path: Path, degrees: int) -> Path:
    """Write a display matrix turning the picture ``degrees`` counter-clockwise (90, -90 or 180) into the track
    headers (``moov/trak/tkhd``) of an MP4, as phones do for portrait video; the pictures stay as coded."""
    a, b, c, d = {90: (0, -1, 1, 0), -90: (0, 1, -1, 0), 180: (-1, 0, 0, -1)}[degrees]
    data = bytearray(path.read_bytes())

    def boxes(start: int, end: int):
        while start + 8 <= end:
            size, kind = struct.unpack(">I4s", data[start:start + 8])
            yield kind, start + 8, start + size
            start += size

    patched = 0
    for kind, body, end in boxes(0, len(data)):
        if kind == b"moov":
            for trak, tbody, tend in boxes(body, end):
                for tkhd, hbody, _ in boxes(tbody, tend) if trak == b"trak" else ():
                    if tkhd == b"tkhd":
                        version = data[hbody]
                        matrix = hbody + 4 + (32 if version == 1 else 20) + 16  # after times, ids, volume
                        values = (a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)
                        data[matrix:matrix + 36] = struct.pack(">9i", *values)
                        patched += 1
    assert patched, f"{path}: no track header found"
    path.write_bytes(bytes(data))
    return path


def write_raw_codec(path: Path, frames: np.ndarray, codec: str, sample_aspect: Fraction | None = None) -> Path:
    """A video in a codec that accepts any frame size (H.264 needs even sizes); `sample_aspect` makes its pixels
    non-square (anamorphic), as the codec's headers say."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        if sample_aspect is not None:
            stream.codec_context.sample_aspect_ratio = sample_aspect
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def wait_for(predicate, timeout: float) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def good_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "good.mp4", frames=40)


@pytest.fixture(scope="session")
def video_tree(tmp_path_factory) -> Path:
    """A folder DIR/<split>/<label>/<video> with good and bad videos of every kind the store must handle."""
    root = tmp_path_factory.mktemp("videos")
    make_clip(root / "train" / "cat" / "a.mp4", frames=36)
    make_clip(root / "train" / "cat" / "with space.mp4", frames=20, seed=1)
    make_clip(root / "train" / "dog" / "no_audio.mp4", frames=20, audio=False, seed=2)
    make_clip(root / "train" / "dog" / "portrait.mp4", frames=12, size=(32, 64), seed=3)
    make_clip(root / "test" / "dog" / "ünïcödé.mp4", frames=20, seed=4)
    make_clip(root / "test" / "cat" / "short.mp4", frames=3, seed=5)
    make_clip(root / "test" / "cat" / "huge.mp4", frames=2, size=(1920, 1088), seed=8)
    times = list(np.cumsum([0.0] + [0.02 if i % 2 else 0.06 for i in range(19)]))
    make_clip(root / "test" / "cat" / "vfr.mp4", frames=20, seed=6, frame_times=times)
    # bad inputs
    (root / "test" / "cat" / "empty.mp4").write_bytes(b"")
    (root / "test" / "cat" / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    full = make_clip(root / "scratch.mp4", frames=30, seed=7).read_bytes()
    (root / "scratch.mp4").unlink()
    (root / "test" / "dog" / "truncated.mp4").write_bytes(full[: len(full) // 2])
    _audio_only(root / "test" / "dog" / "audio_only.mp4")
    thin = np.random.default_rng(1).integers(0, 255, size=(5, 64, 2, 3), dtype=np.uint8)
    write_raw_codec(root / "test" / "dog" / "thin.mkv", thin, "ffv1")
    (root / "test" / "dog" / "notes.txt").write_text("not a video")
    return root


def _audio_only(path: Path) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=24_000, layout="mono")
        samples = tone(0.5).reshape(1, -1)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]),
                                               format="flt", layout="mono")
            frame.sample_rate = 24_000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# a store of 2 classes told apart by the direction of motion and by the pitch of the tone (4 / 2 / 2 videos per
# class in train / val / test), for the training, evaluation and inference tests
@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train_videos")
    rows = ["path,label,split"]
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for c, (label, velocity) in enumerate((("right", (2.0, 0.0)), ("down", (0.0, 2.0)))):
            for i in range(count):
                rel = f"{split}/{label}/{i}.mp4"
                make_clip(root / rel, frames=24, size=(48, 32), velocity=velocity, seed=10 * c + i,
                          pitch=(440.0 if c == 0 else 1200.0) * (1 + 0.05 * i))
                rows.append(f"{rel},{label},{split}")
    (root / "ann.csv").write_text("\n".join(rows) + "\n")
    store = tmp_path_factory.mktemp("train_store")
    imported = import_annotations("csv", root / "ann.csv", root)
    classes, entries = assign_classes(imported.entries, None, None)
    run_prepare(entries, classes, root, store, PrepareSettings(flow="dis", short_side=32))
    return store
