"""``data.decode: device``: the loader's workers send JPEG bytes and crop tables, the training process decodes,
crops and flips on its device (here the CPU, through the same torchvision API) into the batch the CPU path gives."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from adamml.cli.main import main
from adamml.config import ConfigError, load_config
from adamml.data import jpeg
from adamml.data.batch import finish_batch
from adamml.data.dataset import SegmentDataset, Store, default_sampling
from adamml.data.jpeg import at_key, collate_encoded, decode_batch, key
from adamml.data.layout import IMG_TEMPLATE, StoreError
from adamml.data.loader import DeviceLoader, make_loader
from adamml.prepare.importers import assign_classes, import_folder
from adamml.prepare.pipeline import run_prepare
from adamml.prepare.worker import PrepareSettings
from adamml.runtime.distributed import DistInfo
from tests.conftest import make_clip, train_cli

CPU = torch.device("cpu")
# measured on this store: 1 level at most, 0.021 level on average (the centre crops, upscaled 4/3: 2 % of the values
# 1 level off; 2e-5 for the random training crops); on another tiny store 0.074. OpenCV's warp has 1/32-pixel
# positions and weights, grid_sample float ones; the two JPEG decoders agree exactly on the CPU
MAX_LEVELS, MEAN_LEVELS = 2, 0.1
NORMALISED = 2 * MAX_LEVELS / 255 / 0.224 + 1e-5  # the same in network inputs (an RGB difference: twice)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("jvideos")
    make_clip(root / "train" / "cat" / "a.mp4", frames=40, size=(64, 48))
    make_clip(root / "train" / "dog" / "b.mp4", frames=12, size=(64, 48), audio=False, velocity=(0, 2))
    make_clip(root / "train" / "dog" / "c.mp4", frames=1, size=(48, 64))  # no flow; another source size
    out = tmp_path_factory.mktemp("jstore")
    imported = import_folder(root)
    classes, entries = assign_classes(imported.entries, None, None)
    run_prepare(entries, classes, root, out, PrepareSettings(flow="dis", short_side=48))
    return Store.open(out)


def _sampling(modalities):
    cfg = load_config("tiny", ["model.input_size=48", "model.num_segments=3", "model.frames_per_segment=8",
                               f"model.modalities=[{','.join(modalities)}]"]).model
    return replace(default_sampling(), input_size=48, train_scale=(64, 80), test_short_side=64, test_segments=3,
                   network=cfg, raw=True)


def _datasets(store, modalities, train):
    sampling = _sampling(modalities)
    cpu = SegmentDataset(store, "train", sampling.network.modalities, train=train, sampling=sampling, seed=5)
    device = SegmentDataset(store, "train", sampling.network.modalities, train=train,
                            sampling=replace(sampling, decode="device"), seed=5)
    return cpu, device


@pytest.mark.parametrize("modalities", [("rgb", "flow", "audio"), ("rgbdiff", "audio")])
def test_device_decoding_gives_the_cpu_paths_uint8_batch(store, modalities, monkeypatch):
    """rgb, rgbdiff (policy input, or recognizer input at every frame) and flow, random crops and flips and centre
    crops, a one-frame video without flow and two source sizes in one batch, warped a few images at a time: the
    decoded batch is the CPU path's within a level or two, and finishes into the same network inputs."""
    monkeypatch.setattr(jpeg, "_CHUNK_ELEMENTS", 7 * 48 * 64)  # chunks of 7 flow or 2 RGB images
    for train in (True, False):
        cpu, device = _datasets(store, modalities, train)
        expected = [cpu[i] for i in range(len(cpu))]
        batch = decode_batch(collate_encoded([device[i] for i in range(len(device))]), CPU, 48)
        pixels = [k for k in ("rgb", "rgbdiff", "flow") if k in expected[0]]
        assert pixels and set(batch) == set(expected[0])
        for name in pixels:
            want = torch.stack([item[name] for item in expected])
            assert batch[name].dtype == torch.uint8 and batch[name].shape == want.shape
            diff = (batch[name].int() - want.int()).abs()
            assert diff.max() <= MAX_LEVELS and diff.float().mean() < MEAN_LEVELS, (name, train, diff.max())
        for name in ("audio", "label", "target", "index"):
            assert torch.equal(batch[name], torch.stack([item[name] for item in expected]))
        done = finish_batch(batch, cpu.cfg.network)
        want = finish_batch(torch.utils.data.default_collate(expected), cpu.cfg.network)
        assert set(done) == set(want)
        for name, value in want.items():
            torch.testing.assert_close(done[name], value, rtol=0, atol=NORMALISED)


def test_device_mode_takes_the_same_frames_crops_and_flips(store):
    """Same seeds, same samples: each crop of the device mode's table is the file and box the CPU path crops."""
    _, device = _datasets(store, ("rgb", "flow", "audio"), train=True)
    device.set_epoch(3)
    flips = set()
    for index, row in enumerate(device.rows):
        item = device[index]
        rng = np.random.default_rng([device.seed, 3, index])
        indices = device.frame_indices(row, rng)
        crops = [device._crop(int(row["width"]), int(row["height"]), rng) for _ in range(len(indices))]
        table, paths = item[key("image", "crops")], item[key("image", "paths")]
        for s, seg in enumerate(indices):
            for t, frame in enumerate(seg):
                file, x, y, side, flip, negate = table[item[at_key("rgb")][s, t]].tolist()
                assert paths[int(file)].endswith(IMG_TEMPLATE.format(int(frame) + 1))
                assert (x, y, side, bool(flip), bool(negate)) == (crops[s].x, crops[s].y, crops[s].side,
                                                                  crops[s].flip, False)
            flips.add(crops[s].flip)
        flow = item[key("flow", "crops")]
        for s in range(len(indices)):
            at = item[at_key("flow")][s]
            if (at < 0).all():  # the one-frame video
                continue
            assert flow[at[:, 0::2]][..., 5].eq(float(crops[s].flip)).all()  # x negated under a flip
            assert flow[at[:, 1::2]][..., 5].eq(0).all()
        assert len(set(paths)) == len(paths)  # every file read once per item
    assert flips == {True, False}


def test_make_loader_decodes_on_the_device_with_workers(store):
    """The trainer's loader: a worker process sends bytes, the training process decodes and finishes the batch."""
    cpu, device = _datasets(store, ("rgb", "flow", "audio"), train=True)
    loader = make_loader(device, 3, DistInfo(), 0, train=True, workers=1)
    assert isinstance(loader, DeviceLoader)
    got = next(iter(loader))
    want = next(iter(make_loader(cpu, 3, DistInfo(), 0, train=True, workers=0)))
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        torch.testing.assert_close(got[name], value, rtol=0, atol=NORMALISED)


def test_a_training_run_with_device_decoding(tiny_store, tmp_path, monkeypatch):  # noqa: F811
    """A unimodal flow stage (training and validation) with every batch decoded by the training process."""
    import adamml.data.loader as loader_module

    calls = []

    def spy(batch, device, size):
        calls.append(len(batch["index"]))
        return decode_batch(batch, device, size)

    monkeypatch.setattr(loader_module, "decode_batch", spy)
    assert main(train_cli(tiny_store, tmp_path / "flow", "unimodal", "--modalities", "flow",
                           "--set", "data.decode=device")) == 0
    assert (tmp_path / "flow" / "best.pt").exists()
    assert "decode: device" in (tmp_path / "flow" / "config.yaml").read_text()
    assert sum(calls) >= 8 + 4  # the 8 training videos, the 4 validation ones


def test_decode_setting_is_checked():
    assert load_config("tiny", ["data.decode=device"]).data.decode == "device"
    with pytest.raises(ConfigError, match="data.decode.*cpu.*device"):
        load_config("tiny", ["data.decode=gpu"])
    with pytest.raises(ValueError, match="raw=True"):
        replace(default_sampling(), decode="device")


def test_a_file_that_is_not_a_jpeg_or_is_corrupt_is_named(store, tmp_path):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store.root, copy)
    bad = Store.open(copy)
    _, device = _datasets(bad, ("rgb", "audio"), train=False)
    folder = copy / device.rows[0]["frames_dir"]
    first = folder / IMG_TEMPLATE.format(1)
    good = first.read_bytes()
    cv2.imwrite(str(folder / "frame.png"), cv2.imread(str(first)))
    first.write_bytes((folder / "frame.png").read_bytes())  # a PNG under a .jpg name: refused by the worker
    with pytest.raises(StoreError, match=rf"{first}: not a JPEG file .*data.decode: cpu"):
        device[0]
    first.write_bytes(good[: len(good) // 2])  # truncated: refused by the decode step
    with pytest.raises(StoreError, match=rf"{first}: not a decodable JPEG"):
        decode_batch(collate_encoded([device[0]]), CPU, 48)
