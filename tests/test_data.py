"""Segment sampling (exact indices, any length), the spectrogram, transforms and the store dataset."""

from __future__ import annotations

import os
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adamml.config import load_config
from adamml.data.dataset import SegmentDataset, Store, default_sampling, read_wav_window, sampling_config
from adamml.data.layout import StoreError
from adamml.data.sampling import (
    diff_frame_indices,
    eval_segment_starts,
    flow_stack_indices,
    official_eval_frame_indices,
    segment_frame_indices,
    eval_frame_indices,
    train_segment_starts,
)
from adamml.data.splits import HOLDOUT, Holdout, split_rows
from adamml.data.spectrogram import (
    EPS,
    HOP,
    N_FFT,
    WIN_LENGTH,
    audio_window,
    log_spectrogram,
)
from adamml.data.transforms import (
    apply_crop,
    centre_crop,
    flow_component,
    normalize_rgb,
    rgb_differences,
    train_crop,
)
from adamml.prepare.importers import assign_classes, import_folder
from adamml.prepare.pipeline import run_prepare
from adamml.prepare.worker import PrepareSettings
from tests.conftest import make_clip


def test_eval_segments_exact_indices_for_100_frames():
    starts = eval_segment_starts(100, 10, 32)
    assert starts.tolist() == [0, 0, 9, 19, 29, 39, 49, 59, 68, 68]
    idx = segment_frame_indices(starts, 8, 4, 100)
    assert idx[2].tolist() == [9, 13, 17, 21, 25, 29, 33, 37]
    assert idx[-1].tolist() == [68, 72, 76, 80, 84, 88, 92, 96]


def test_train_segments_fall_in_their_regions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        starts = train_segment_starts(200, 5, 32, rng)
        for i, s in enumerate(starts):
            assert 40 * i <= s <= 40 * i + 8


def test_short_video_is_clamped():
    idx = segment_frame_indices(eval_segment_starts(3, 10, 32), 8, 4, 3)
    assert idx.shape == (10, 8) and idx[0].tolist() == [0, 2, 2, 2, 2, 2, 2, 2]
    assert flow_stack_indices(idx[:1], 5, 2)[0, 0].tolist() == [0, 1, 1, 1, 1]
    assert diff_frame_indices(idx[:1, :1], 5, 3)[0, 0].tolist() == [0, 1, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="no optical flow"):
        flow_stack_indices(idx, 5, 0)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), segments=st.integers(1, 16), seed=st.integers(0, 2**31))
def test_any_length_gives_valid_ordered_indices(n, segments, seed):
    for starts in (train_segment_starts(n, segments, 32, np.random.default_rng(seed)),
                   eval_segment_starts(n, segments, 32)):
        idx = segment_frame_indices(starts, 8, 4, n)
        assert idx.shape == (segments, 8)
        assert idx.min() >= 0 and idx.max() <= n - 1
        assert (np.diff(idx, axis=1) >= 0).all()
        assert (np.diff(starts) >= 0).all()
        if n >= 32:  # whole windows inside the video: stride kept exactly
            assert (np.diff(idx, axis=1) == 4).all()


def test_train_sampling_is_seedable():
    a = train_segment_starts(500, 5, 32, np.random.default_rng([1, 2, 3]))
    b = train_segment_starts(500, 5, 32, np.random.default_rng([1, 2, 3]))
    assert a.tolist() == b.tolist()


def _direct_log_spectrogram(x: np.ndarray) -> np.ndarray:
    """One frame at a time: pad n_fft // 2 zeros, periodic Hann of 240 centred in 511, |rfft|^2."""
    padded = np.concatenate([np.zeros(N_FFT // 2), x, np.zeros(N_FFT // 2)])
    window = np.zeros(N_FFT)
    left = (N_FFT - WIN_LENGTH) // 2
    window[left:left + WIN_LENGTH] = [0.5 - 0.5 * np.cos(2 * np.pi * k / WIN_LENGTH) for k in range(WIN_LENGTH)]
    columns = []
    for t in range(256):
        frame = padded[t * HOP:t * HOP + N_FFT] * window
        spectrum = np.array([np.sum(frame * np.exp(-2j * np.pi * f * np.arange(N_FFT) / N_FFT))
                             for f in range(N_FFT // 2 + 1)])
        columns.append(np.log(np.abs(spectrum) ** 2 + EPS))
    return np.stack(columns, axis=1)


def test_spectrogram_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(30_720) / 24_000) + 0.05 * rng.standard_normal(30_720))
    spec = log_spectrogram(x)
    assert spec.shape == (256, 256) and spec.dtype == np.float32
    direct = _direct_log_spectrogram(x[: 256 * HOP + N_FFT])
    np.testing.assert_allclose(spec, direct, rtol=1e-4, atol=1e-3)
    # 1 kHz at 24 kHz with 511 points: bin 1000 / 24000 * 511 = 21.3
    assert spec[:, 100].argmax() == 21


def test_audio_window_edges_and_short_clips():
    x = np.arange(100_000, dtype=np.float32)
    assert audio_window(x, 0.0)[0] == 0  # shifted inside at the start
    assert audio_window(x, 1e6)[-1] == 99_999  # and at the end
    mid = audio_window(x, 2.0)
    assert mid[0] == 48_000 - 15_360 and mid.size == 30_720
    assert audio_window(np.ones(1000), 0.0).size == 30_720
    assert not audio_window(np.zeros(0), 0.0).any()


def test_same_crop_for_all_modalities_and_flow_x_negated_on_flip():
    rng = np.random.default_rng(0)
    crop = train_crop(341, 256, 224, (256, 320), rng)
    assert 224 / 320 * 256 - 1e-6 <= crop.side <= 224 + 1e-6
    crop, flipped = replace(crop, flip=False), replace(crop, flip=True)
    ramp = np.tile((np.arange(341) % 256).astype(np.uint8)[None, :], (256, 1))
    a, b = apply_crop(ramp, crop), apply_crop(ramp, flipped)
    np.testing.assert_array_equal(a[:, ::-1], b)
    flow = np.full((256, 341), 200, np.uint8)  # rightward motion
    assert flow_component(flow, flipped, is_x=True).mean() == pytest.approx(1 - 200 / 255)
    assert flow_component(flow, flipped, is_x=False).mean() == pytest.approx(200 / 255)
    centre = centre_crop(341, 256, 224, 256)
    assert (centre.x, centre.y, centre.side) == pytest.approx((58.5, 16, 224))


def test_rgb_normalisation_and_frame_differences():
    frames = np.random.default_rng(0).integers(0, 256, (2, 6, 5, 7, 3), dtype=np.uint8)  # (T', 6, H, W, 3) BGR
    rgb = frames[..., ::-1].astype(np.float32) / 255.0
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    expected = np.moveaxis((rgb - mean) / std, -1, -3)  # (2, 6, 3, H, W), the arithmetic
    normed = normalize_rgb(frames)
    np.testing.assert_array_equal(normed, expected)  # the table lookup gives the same numbers
    diffs = rgb_differences(frames)
    assert diffs.shape == (2, 15, 5, 7) and diffs.dtype == np.float32
    np.testing.assert_allclose(diffs, (normed[:, 1:] - normed[:, :-1]).reshape(2, 15, 5, 7), atol=1e-5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvideos")
    make_clip(root / "train" / "cat" / "a.mp4", frames=40, size=(64, 48))
    make_clip(root / "train" / "dog" / "b.mp4", frames=12, size=(64, 48), audio=False, velocity=(0, 2))
    make_clip(root / "test" / "cat" / "c.mp4", frames=1, size=(64, 48))
    out = tmp_path_factory.mktemp("dstore")
    imported = import_folder(root)
    classes, entries = assign_classes(imported.entries, None, None)
    run_prepare(entries, classes, root, out, PrepareSettings(flow="dis", short_side=64))
    return Store.open(out)


SMALL = replace(default_sampling(), input_size=48, train_scale=(64, 80), test_short_side=64)


def test_dataset_items_have_the_documented_shapes(store):
    ds = SegmentDataset(store, "train", ("rgb", "flow", "audio"), train=True, sampling=SMALL)
    item = ds[0]
    assert item["rgb"].shape == (5, 8, 3, 48, 48)
    assert item["flow"].shape == (5, 8, 10, 48, 48)
    assert item["rgbdiff"].shape == (5, 4, 15, 48, 48)  # policy stand-in for flow
    assert item["audio"].shape == (5, 1, 256, 256)
    assert item["label"].item() == 0 and item["target"].tolist() == [1.0, 0.0]
    for value in item.values():
        assert torch.isfinite(value.float()).all()
    test = SegmentDataset(store, "test", ("rgb", "rgbdiff"), train=False, sampling=SMALL)
    one = test[0]  # a one-frame video
    assert one["rgb"].shape == (10, 8, 3, 48, 48) and one["rgbdiff"].shape == (10, 8, 15, 48, 48)
    assert one["rgbdiff"].abs().max() == 0  # no motion in a single frame


def test_items_shaped_for_the_networks_equal_the_model_side_derivation(store):
    from adamml.config import load_config
    from adamml.models.build import build_model

    cfg = load_config("tiny", ["model.input_size=48", "model.num_segments=3", "model.frames_per_segment=8"]).model
    stored = SegmentDataset(store, "train", cfg.modalities, train=False, sampling=replace(SMALL, test_segments=3))
    shaped = SegmentDataset(store, "train", cfg.modalities, train=False,
                            sampling=replace(SMALL, test_segments=3, network=cfg))
    raw, item = stored[0], shaped[0]
    assert "rgbdiff" not in item  # only the policy needed it: it travels at the policy's size
    assert item["policy_rgb"].shape == (3, 4, 3, 24, 24) and item["policy_rgbdiff"].shape == (3, 4, 15, 24, 24)
    assert item["policy_audio"].shape == (3, 1, 32, 32) and item["audio"].shape == (3, 1, 64, 64)
    assert torch.equal(item["rgb"], raw["rgb"]) and torch.equal(item["flow"], raw["flow"])
    model = build_model(cfg).eval()
    batch = {k: v.unsqueeze(0) for k, v in raw.items()}
    derived = model.policy_inputs(batch)
    given = model.policy_inputs({k: v.unsqueeze(0) for k, v in item.items()})
    for name in model.policy.inputs:
        torch.testing.assert_close(given[name], derived[name], rtol=0, atol=0)
    torch.testing.assert_close(model.recognizer_input("audio", item["audio"]),
                               model.recognizer_input("audio", raw["audio"]), rtol=0, atol=0)


@pytest.mark.parametrize("modalities", [("rgb", "flow", "audio"), ("rgbdiff", "audio")])
def test_uint8_items_finished_on_the_device_equal_the_float_items(store, modalities):
    """data.normalize_on_device: the workers send uint8 crops (4x less data), the device finishes them into
    the very batch the float path gives (flipped flow x to 1 ulp: 1 - q/255 against (255 - q)/255)."""
    from adamml.config import load_config
    from adamml.data.batch import finish_batch
    from adamml.data.loader import DeviceLoader, make_loader
    from adamml.runtime.distributed import DistInfo

    cfg = load_config("tiny", ["model.input_size=48", "model.num_segments=3", "model.frames_per_segment=8",
                               f"model.modalities=[{','.join(modalities)}]"]).model
    shaped = replace(SMALL, test_segments=3, network=cfg)
    for train in (True, False):  # random crops and flips, centre crops
        floats = SegmentDataset(store, "train", cfg.modalities, train=train, sampling=shaped, seed=5)
        uint8 = SegmentDataset(store, "train", cfg.modalities, train=train, sampling=replace(shaped, raw=True),
                               seed=5)
        for i in range(len(floats)):
            item, raw = floats[i], uint8[i]
            for m in ("rgb", "flow"):  # a quarter of the bytes (paper size, all inputs: 45 MB a video, not 144)
                if m in raw:
                    assert raw[m].dtype == torch.uint8 and raw[m].numel() == item[m].numel()
            done = finish_batch({k: v.unsqueeze(0) for k, v in raw.items()}, cfg)
            assert set(done) == set(item)
            for key, value in item.items():
                torch.testing.assert_close(done[key][0], value, rtol=0, atol=1e-6)
    loader = make_loader(uint8, 2, DistInfo(), 0, train=False, workers=0)
    assert isinstance(loader, DeviceLoader) and len(loader) == 1
    batch = next(iter(loader))
    assert batch["rgbdiff" if "rgbdiff" in cfg.modalities else "rgb"].dtype == torch.float32
    assert isinstance(make_loader(floats, 2, DistInfo(), 0, train=False, workers=0), torch.utils.data.DataLoader)


class _WorkerPids(torch.utils.data.Dataset):
    """Each item: the id of the process that read it and the threads OpenCV would use there."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([os.getpid(), cv2.getNumThreads()])


def test_a_runs_loaders_keep_their_workers_across_epochs(store):
    """data.persistent_workers: a LoaderPool's loader starts its worker processes once and reads every epoch with
    them; the workers sample the epoch the training process sets (shared memory), so its batches are those of a
    loader reading in the training process, epoch after epoch, and iterating it takes from the torch RNG what a new
    loader takes (the Gumbel noise does not depend on data.workers); `close` stops the workers."""
    from adamml.data.loader import LoaderPool, make_loader
    from adamml.runtime.distributed import DistInfo

    info = DistInfo()

    def pids(pool):
        data = _WorkerPids()
        passes = [torch.cat(list(make_loader(data, 2, info, seed, train=True, workers=2, pool=pool)))
                  for seed in (0, 1)]
        assert all((p[:, 1] == 1).all() for p in passes)  # OpenCV on one thread in each worker
        return [set(p[:, 0].tolist()) for p in passes]

    threads = cv2.getNumThreads()
    cv2.setNumThreads(4)  # what forked workers would inherit
    try:
        with LoaderPool() as pool:
            kept = pids(pool)
            assert kept[0] == kept[1] and len(kept[0]) == 2 and os.getpid() not in kept[0] and len(pool) == 1
        fresh = pids(None)
    finally:
        cv2.setNumThreads(threads)
    for pid in kept[0]:  # stopped and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert fresh[0].isdisjoint(fresh[1])  # without a pool: new workers for each pass

    data = SegmentDataset(store, "train", ("rgb", "flow", "audio"), train=True, sampling=SMALL, seed=3)
    first_video = []
    with LoaderPool() as pool:
        for epoch in range(3):
            data.set_epoch(epoch)
            if epoch == 1:  # a pass left after its first batch (as the policy's batch-norm pass does)
                next(iter(make_loader(data, 1, info, 99, train=True, workers=2, pool=pool)))
            torch.manual_seed(epoch)
            read_by_workers = list(make_loader(data, 1, info, 10 + epoch, train=True, workers=2, pool=pool))
            after_workers = torch.rand(3)
            torch.manual_seed(epoch)
            read_here = list(make_loader(data, 1, info, 10 + epoch, train=True, workers=0))
            assert torch.equal(after_workers, torch.rand(3))
            assert len(read_by_workers) == len(read_here) == 2
            for a, b in zip(read_by_workers, read_here):
                assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            first_video.append(next(b["rgb"] for b in read_here if b["index"].item() == 0))
        assert len(pool) == 1
    assert not torch.equal(first_video[0], first_video[1])  # each epoch its own segments and crops


def test_video_without_audio_gives_silence(store):
    ds = SegmentDataset(store, "train", ("rgb", "audio"), train=False, sampling=SMALL)
    silent = ds[1]["audio"]
    assert torch.all(silent == float(np.log(EPS)))
    assert ds[0]["audio"].std() > 1.0  # a tone


def test_training_samples_depend_on_seed_epoch_index_only(store):
    ds = SegmentDataset(store, "train", ("rgb",), train=True, sampling=SMALL, seed=3)
    a = ds[0]["rgb"]
    assert torch.equal(a, ds[0]["rgb"])
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0]["rgb"])


def test_wav_window_reads_the_centre(store, tmp_path):
    row = next(r for r in store.rows if r["has_audio"])
    x = read_wav_window(store.root / row["audio"], 0.8, 2400)
    assert x.shape == (2400,) and np.abs(x).max() > 0.3


def test_official_conventions_read_the_official_loaders_test_frames():
    """`data.conventions: official`: the official loader's test windows (IBM/AdaMML utils/video_dataset.py, dense
    sampling with a fixed offset), against the index lists it gives; adamml's own centre them in equal regions."""
    official = eval_frame_indices(300, 10, 8, 4, "official", consecutive=5)  # flow or RGBDiff read: 5 frames after
    assert official[:, 0].tolist() == [0, 29, 58, 88, 117, 146, 176, 205, 234, 264]
    assert official[3].tolist() == [88 + 4 * k for k in range(8)]
    assert eval_frame_indices(300, 10, 8, 4)[:, 0].tolist() == [0, 29, 59, 89, 119, 149, 179, 209, 239, 268]
    assert official_eval_frame_indices(300, 10, 8, 4, consecutive=1)[-1, 0] == 268  # RGB and audio only
    # a video shorter than a window wraps around, as the official loader's modulo does (adamml's clamps)
    assert official_eval_frame_indices(20, 2, 8, 4, consecutive=1).tolist() == [[0, 4, 8, 12, 16, 0, 4, 8]] * 2
    assert eval_frame_indices(20, 2, 8, 4)[0].tolist() == [0, 4, 8, 12, 16, 19, 19, 19]


def test_official_conventions_crop_an_odd_margin_at_a_whole_pixel():
    """A 16:9 frame at short side 256 is 455 wide: torchvision's centre crop (the official code's) starts at column
    116; adamml's own samples at 115.5, between two columns."""
    columns = np.tile(np.arange(455, dtype=np.float32), (256, 1))  # each pixel holds its column
    whole = apply_crop(columns, centre_crop(455, 256, 224, 256, whole_pixels=True))
    assert whole[0].tolist() == list(range(116, 340))
    assert apply_crop(columns, centre_crop(455, 256, 224, 256))[0, 0] == pytest.approx(115.5)


def _rows(split_counts: dict[str, int], classes: int = 2) -> list[dict]:
    return [{"id": f"{split}-{c}-{i}", "split": split, "label_ids": [c]}
            for split, count in split_counts.items() for c in range(classes) for i in range(count)]


def test_holdout_is_a_seeded_stratified_part_of_the_training_split_and_train_the_rest():
    rows = _rows({"train": 10, "val": 3})
    spec = Holdout(0.2, seed=0)
    held = split_rows(rows, HOLDOUT, spec, "store")
    rest = split_rows(rows, "train", spec, "store")
    assert [r["label_ids"][0] for r in held].count(0) == 2 and [r["label_ids"][0] for r in held].count(1) == 2
    assert sorted(r["id"] for r in held + rest) == sorted(r["id"] for r in rows if r["split"] == "train")
    assert not {r["id"] for r in held} & {r["id"] for r in rest}
    assert split_rows(rows, HOLDOUT, Holdout(0.2, seed=0), "store") == held  # the same videos on every run
    assert split_rows(rows, HOLDOUT, Holdout(0.2, seed=1), "store") != held
    assert split_rows(rows, "val", spec, "store") == split_rows(rows, "val", None, "store")  # other splits as stored
    assert len(split_rows(rows, "train", None, "store")) == 20  # without holdout: the whole training split
    with pytest.raises(StoreError, match="data.val_split: holdout"):
        split_rows(rows, HOLDOUT, None, "store")  # a model not trained with a held-out part
    with pytest.raises(StoreError, match="split of its own called 'holdout'"):
        split_rows(rows + _rows({"holdout": 1}), HOLDOUT, spec, "store")


def test_val_split_holdout_comes_from_the_config_and_bad_values_are_refused():
    cfg = load_config("tiny", ["data.val_split=holdout", "data.holdout_fraction=0.25", "data.holdout_seed=3"])
    assert sampling_config(cfg).holdout == Holdout(0.25, 3)
    assert sampling_config(load_config("tiny", [])).holdout is None
    with pytest.raises(ValueError, match="training split"):
        load_config("tiny", ["data.val_split=train"])
    with pytest.raises(ValueError, match="holdout_fraction"):
        load_config("tiny", ["data.val_split=holdout", "data.holdout_fraction=1"])


def test_a_store_prepared_otherwise_than_the_training_store_is_said(tmp_path):
    store = Store(tmp_path, [], ["a", "b"], {"flow": "dis", "short_side": 64, "audio_rate": 24000}, {})
    assert store.settings_note(None) is None  # a checkpoint that does not record its store
    assert store.settings_note({"flow": "dis", "short_side": 64, "flow_bound": None}) is None
    note = store.settings_note({"flow": "tvl1", "short_side": 256, "audio_rate": 24000})
    assert "flow 'tvl1' there, 'dis' here" in note and "short_side 256 there, 64 here" in note
    assert "audio_rate" not in note


def test_frames_stored_smaller_than_the_model_reads_them_are_said(tmp_path):
    store = Store(tmp_path, [], ["a", "b"], {"short_side": 64}, {})
    assert store.size_note(64) is None and store.size_note(32) is None
    assert "short side 64 and the model reads them at 256" in store.size_note(256)
    assert Store(tmp_path, [], ["a", "b"], {}, {}).size_note(256) is None  # a store that does not say


def test_an_audio_model_on_videos_without_audio_is_said(tmp_path):
    from types import SimpleNamespace

    rows = [{"id": "a", "has_audio": True, "audio": "a.wav"}, {"id": "b", "has_audio": False, "audio": None}]
    store = Store(tmp_path, rows, ["x", "y"], {}, {"a": 1, "b": 2})
    data = SimpleNamespace(modalities=("rgb", "audio"), rows=rows, store=store)
    note = SegmentDataset.silent_note(data)
    assert "1 of the 2 videos" in note and "manifest.jsonl:2" in note and "'b'" in note
    assert SegmentDataset.silent_note(SimpleNamespace(modalities=("rgb",), rows=rows, store=store)) is None
