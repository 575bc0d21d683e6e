"""Frame folders that already hold optical flow (denseflow / mmaction2 `flow_x_`, TSN `x_`) are prepared with that
flow, not with flow computed again; holes and wrong counts fail the video with the missing file's name."""

from __future__ import annotations

import json

import cv2
import numpy as np

from adamml.cli import main
from adamml.data.layout import read_jsonl
from adamml.prepare.flow import dequantize, quantize


def frame_folder(folder, frames: int = 6, size=(64, 48), names="img_{:05d}.jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(frames):
        cv2.imwrite(str(folder / names.format(i + 1)), rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return folder


def flow_images(folder, numbers, prefix=("flow_x_", "flow_y_"), size=(64, 48), value=200):
    folder.mkdir(parents=True, exist_ok=True)
    for i in numbers:
        for k, p in enumerate(prefix):
            cv2.imwrite(str(folder / f"{p}{i:05d}.jpg"), np.full((size[1], size[0]), value + k + i, np.uint8))


def prepare(tmp_path, listing: str, fmt: str, *extra: str) -> dict:
    (tmp_path / "list.txt").write_text(listing)
    store = tmp_path / "store"
    code = main(["prepare", "--list", str(tmp_path / "list.txt"), "--format", fmt, "--root", str(tmp_path / "raw"),
                 "--out", str(store), "--flow", "dis", "--short-side", "48", "--quiet", *extra])
    (row,) = read_jsonl(store / "manifest.jsonl")
    assert code == (0 if row["status"] == "ok" else 1)  # the one video failed: nothing prepared is no success
    return row


def test_denseflow_flow_one_based_is_copied_as_it_is(tmp_path):
    clip = frame_folder(tmp_path / "raw" / "clip")
    flow_images(clip, range(1, 6))
    row = prepare(tmp_path, "clip 6 0\n", "mmaction-rawframes")
    assert row["status"] == "ok" and row["num_frames"] == 6 and row["num_flow"] == 5
    assert row["flow"] == "existing (denseflow, numbered from 1, bound 20)"
    stored = tmp_path / "store" / row["frames_dir"]
    for i in range(1, 6):
        assert (stored / f"flow_x_{i:05d}.jpg").read_bytes() == (clip / f"flow_x_{i:05d}.jpg").read_bytes()
        assert (stored / f"flow_y_{i:05d}.jpg").read_bytes() == (clip / f"flow_y_{i:05d}.jpg").read_bytes()
    settings = json.loads((tmp_path / "store" / "store.json").read_text())
    assert not any(key.startswith("existing_flow") for key in settings)  # the defaults: stores from before match


def test_zero_based_flow_with_one_image_per_frame_keeps_n_minus_one(tmp_path):
    clip = frame_folder(tmp_path / "raw" / "clip")
    flow_images(clip, range(0, 6))
    row = prepare(tmp_path, "clip 6 0\n", "mmaction-rawframes")
    assert row["num_flow"] == 5 and "numbered from 0" in row["flow"]
    stored = tmp_path / "store" / row["frames_dir"]
    assert (stored / "flow_x_00001.jpg").read_bytes() == (clip / "flow_x_00000.jpg").read_bytes()
    assert not (stored / "flow_x_00006.jpg").exists()


def test_tsn_flow_in_its_own_tree_is_resized_with_the_frames(tmp_path):
    frame_folder(tmp_path / "raw" / "clip", size=(96, 72), names="{:05d}.jpg")  # the official AdaMML naming
    flow_images(tmp_path / "flow" / "clip", range(1, 6), prefix=("x_", "y_"), size=(96, 72))
    row = prepare(tmp_path, "clip;1;6;0\n", "adamml", "--existing-flow-root", str(tmp_path / "flow"))
    assert row["status"] == "ok" and row["num_flow"] == 5 and "tsn" in row["flow"]
    assert (row["width"], row["height"]) == (64, 48)
    stored = cv2.imread(str(tmp_path / "store" / row["frames_dir"] / "flow_x_00002.jpg"), cv2.IMREAD_GRAYSCALE)
    assert stored.shape == (48, 64)
    pixels = dequantize(np.full((1, 1), 202, np.uint8))[0, 0] * (64 / 96)  # x_00002 was 200 + 0 + 2
    expected = quantize(np.full((1, 1, 2), pixels, np.float32))[0][0, 0]
    assert abs(int(np.median(stored)) - int(expected)) <= 1


def test_a_missing_flow_image_fails_the_video_by_name(tmp_path):
    clip = frame_folder(tmp_path / "raw" / "clip")
    flow_images(clip, range(1, 6))
    (clip / "flow_y_00003.jpg").unlink()
    row = prepare(tmp_path, "clip 6 0\n", "mmaction-rawframes")
    assert row["status"] == "failed" and "flow_y_00003.jpg: missing" in row["error"]


def test_a_flow_count_that_does_not_fit_the_frames_fails_the_video(tmp_path):
    clip = frame_folder(tmp_path / "raw" / "clip")
    flow_images(clip, range(1, 4))
    row = prepare(tmp_path, "clip 6 0\n", "mmaction-rawframes")
    assert row["status"] == "failed" and "6 frames but 3 flow images" in row["error"]
    assert not (tmp_path / "store" / "rawframes" / "clip").exists()


def test_recompute_ignores_the_existing_flow(tmp_path):
    clip = frame_folder(tmp_path / "raw" / "clip")
    flow_images(clip, range(1, 6))
    row = prepare(tmp_path, "clip 6 0\n", "mmaction-rawframes", "--existing-flow", "recompute")
    assert row["flow"] == "dis" and row["num_flow"] == 5
    stored = tmp_path / "store" / row["frames_dir"]
    assert (stored / "flow_x_00001.jpg").read_bytes() != (clip / "flow_x_00001.jpg").read_bytes()
    settings = json.loads((tmp_path / "store" / "store.json").read_text())
    assert settings["existing_flow"] == "recompute"
