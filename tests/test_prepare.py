"""`adamml prepare` on a folder of good and bad videos: statuses, reasons, files, resume, shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import wave

import cv2
import numpy as np
import pytest

from adamml.cli import main
from adamml.data.layout import StoreError, read_jsonl
from adamml.prepare.flow import dequantize
from adamml.prepare.importers import assign_classes, import_folder
from adamml.prepare.pipeline import merge_manifests, parse_shard, run_prepare
from adamml.prepare.worker import PrepareSettings
from tests.conftest import make_clip, set_display_rotation, wait_for


@pytest.fixture(scope="module")
def prepared(video_tree, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    imported = import_folder(video_tree)
    classes, entries = assign_classes(imported.entries, None, None)
    summary = run_prepare(entries, classes, video_tree, store, PrepareSettings(flow="dis"), workers=2)
    rows = {r["id"]: r for r in read_jsonl(store / "manifest.jsonl")}
    return store, summary, rows


def test_every_video_gets_a_status_and_bad_ones_a_clear_reason(prepared):
    store, summary, rows = prepared
    ok = {"train/cat/a", "train/cat/with space", "train/dog/no_audio", "train/dog/portrait",
          "test/dog/ünïcödé", "test/cat/short", "test/cat/vfr", "test/cat/huge"}
    failed = {
        "test/cat/empty": "empty file",
        "test/cat/garbage": "cannot open",
        "test/dog/truncated": "truncated.mp4",
        "test/dog/audio_only": "no video stream",
        "test/dog/thin": "too elongated",
    }
    assert set(rows) == ok | set(failed)  # notes.txt is not a video
    for vid in ok:
        assert rows[vid]["status"] == "ok", rows[vid]
        assert rows[vid]["error"] is None
    for vid, reason in failed.items():
        assert rows[vid]["status"] == "failed"
        assert reason in rows[vid]["error"], rows[vid]["error"]
    assert (summary.ok, summary.failed, summary.skipped) == (len(ok), len(failed), 0)
    assert not (store / ".tmp").exists()


def test_frames_flow_audio_on_disk_match_the_manifest(prepared):
    store, _summary, rows = prepared
    row = rows["train/cat/a"]
    assert row["num_frames"] == 36 and row["num_flow"] == 35 and row["flow"] == "dis"
    assert row["fps"] == pytest.approx(25.0) and row["duration"] == pytest.approx(36 / 25)
    assert (row["width"], row["height"]) == (341, 256)
    folder = store / row["frames_dir"]
    names = sorted(os.listdir(folder))
    assert sum(n.startswith("img_") for n in names) == 36
    assert sum(n.startswith("flow_x_") for n in names) == 35 == sum(n.startswith("flow_y_") for n in names)
    assert "img_00001.jpg" in names and "img_00036.jpg" in names and "flow_x_00035.jpg" in names
    image = cv2.imread(str(folder / "img_00001.jpg"))
    assert image.shape == (256, 341, 3)
    with wave.open(str(store / row["audio"])) as handle:
        assert handle.getframerate() == 24_000 and handle.getnchannels() == 1 and handle.getsampwidth() == 2
        assert abs(handle.getnframes() - 24_000 * 36 / 25) <= 1024
    assert row["labels"] == ["cat"] and row["split"] == "train"
    assert (store / "classes.txt").read_text().split("\n")[:2] == ["cat", "dog"]
    assert row["label_ids"] == [0]


def test_moving_square_flow_points_right(prepared):
    store, _summary, rows = prepared
    folder = store / rows["train/cat/a"]["frames_dir"]
    fx = dequantize(cv2.imread(str(folder / "flow_x_00005.jpg"), cv2.IMREAD_GRAYSCALE))
    fy = dequantize(cv2.imread(str(folder / "flow_y_00005.jpg"), cv2.IMREAD_GRAYSCALE))
    moving = np.abs(fx) > 2  # the square moves 2 px/frame at 64 px wide, about 10.7 px at 341 px
    assert moving.mean() > 0.02
    assert np.median(fx[moving]) == pytest.approx(2 * 341 / 64, abs=1.5)
    assert abs(np.median(fy[moving])) < 1.0


def test_no_audio_short_portrait_vfr_and_odd_names(prepared):
    store, _summary, rows = prepared
    silent = rows["train/dog/no_audio"]
    assert silent["has_audio"] is False and silent["audio"] is None
    assert not (store / silent["frames_dir"] / "audio.wav").exists()
    huge = rows["test/cat/huge"]
    assert (huge["width"], huge["height"], huge["num_frames"]) == (452, 256, 2)
    portrait = rows["train/dog/portrait"]
    assert (portrait["width"], portrait["height"]) == (256, 512)
    short = rows["test/cat/short"]
    assert short["num_frames"] == 3 and "shorter than one segment" in short["warning"]
    vfr = rows["test/cat/vfr"]
    assert vfr["num_frames"] == 20 and vfr["fps"] == pytest.approx(20 / (0.8 + 0.04), rel=0.05)
    assert (store / "rawframes" / "test" / "dog" / "ünïcödé" / "img_00020.jpg").exists()
    assert (store / "rawframes" / "train" / "cat" / "with space" / "meta.json").exists()


def test_rerun_skips_finished_videos_and_retries_failed(prepared, video_tree):
    store, _summary, rows = prepared
    imported = import_folder(video_tree)
    classes, entries = assign_classes(imported.entries, None, None)
    before = (store / "rawframes" / "train" / "cat" / "a" / "img_00001.jpg").stat().st_mtime_ns
    summary = run_prepare(entries, classes, video_tree, store, PrepareSettings(flow="dis"))
    assert summary.skipped == 8 and summary.failed == 5 and summary.ok == 0
    assert (store / "rawframes" / "train" / "cat" / "a" / "img_00001.jpg").stat().st_mtime_ns == before


def test_other_settings_on_an_existing_store_is_an_error(prepared, video_tree):
    store, _summary, _rows = prepared
    imported = import_folder(video_tree)
    classes, entries = assign_classes(imported.entries, None, None)
    with pytest.raises(StoreError, match="flow: store has 'dis', asked 'none'"):
        run_prepare(entries, classes, video_tree, store, PrepareSettings(flow="none"))


def test_shards_cover_the_list_once_and_merge(video_tree, tmp_path):
    imported = import_folder(video_tree)
    classes, entries = assign_classes(imported.entries, None, None)
    store = tmp_path / "store"
    settings = PrepareSettings(flow="none")
    run_prepare(entries, classes, video_tree, store, settings, shard=(0, 2))
    with pytest.raises(StoreError, match=r"shard parts \[1\] of 2 are missing"):
        merge_manifests(store)
    run_prepare(entries, classes, video_tree, store, settings, shard=(1, 2))
    part0 = {r["id"] for r in read_jsonl(store / "manifest.shard-0-of-2.jsonl")}
    part1 = {r["id"] for r in read_jsonl(store / "manifest.shard-1-of-2.jsonl")}
    assert not part0 & part1 and len(part0) + len(part1) == len(entries)
    assert main(["prepare", "--merge", str(store)]) == 0
    merged = read_jsonl(store / "manifest.jsonl")
    assert {r["id"] for r in merged} == part0 | part1
    assert all(r["num_flow"] == 0 and r["flow"] == "none" for r in merged)


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "x", "1/0", "-1/3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_cli_prepares_from_a_generic_csv(tmp_path, video_tree):
    ann = tmp_path / "ann.csv"
    ann.write_text("path,label,split\ntrain/cat/a.mp4,cat,train\ntest/dog/ünïcödé.mp4,dog,test\n"
                   "../escape.mp4,cat,train\n", encoding="utf-8")
    store = tmp_path / "store"
    code = main(["prepare", "--list", str(ann), "--root", str(video_tree), "--out", str(store),
                 "--flow", "farneback", "--quiet"])
    assert code == 0
    rows = {r["id"]: r for r in read_jsonl(store / "manifest.jsonl")}
    assert rows["train/cat/a"]["status"] == "ok" and rows["train/cat/a"]["split"] == "train"
    assert rows["test/dog/ünïcödé"]["split"] == "test"
    bad = rows["../escape.mp4"]
    assert bad["status"] == "failed" and "leaves its folder" in bad["error"] and "ann.csv:4" in bad["error"]
    assert not (tmp_path / "escape").exists() and not (store.parent / "escape").exists()


def test_cli_missing_list_is_a_clear_error(tmp_path, capsys):
    code = main(["prepare", "--list", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "s")])
    assert code == 2
    assert "nope.csv: annotation file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_exposing_work(tmp_path):
    videos = tmp_path / "videos"
    for i in range(6):
        make_clip(videos / "cls" / f"v{i}.mp4", frames=10, size=(96, 64), seed=i)
    store = tmp_path / "store"
    command = [sys.executable, "-m", "adamml.cli", "prepare", "--videos", str(videos), "--out", str(store),
               "--flow", "tvl1", "--short-side", "128", "--quiet"]  # TV-L1 at 128: ~0.1 s a frame pair
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    frames = store / "rawframes" / "cls"
    try:
        assert wait_for(lambda: frames.exists() and any(frames.iterdir()), timeout=120), proc.stderr
        # kill while a later video is half written
        assert wait_for(lambda: any((store / ".tmp").rglob("img_*.jpg")), timeout=60)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    finished = sorted(p.name for p in frames.iterdir())
    assert 1 <= len(finished) < 6
    for name in finished:  # only complete videos are visible
        assert (frames / name / "meta.json").exists()
        assert len(list((frames / name).glob("img_*.jpg"))) == 10
    if (store / "manifest.jsonl").exists():
        read_jsonl(store / "manifest.jsonl")  # never a torn file
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_jsonl(store / "manifest.jsonl")
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    k = len(finished)
    assert f"{6 - k} / 0 / {k}" in done.stderr  # ok / failed / skipped in the summary
    assert not (store / ".tmp").exists()


def test_frame_folders_from_an_mmaction_rawframe_list(tmp_path):
    frames = tmp_path / "raw" / "clip"
    frames.mkdir(parents=True)
    for i in range(6):
        image = np.full((120, 160, 3), 20 * i, np.uint8)
        cv2.imwrite(str(frames / f"img_{i + 1:05d}.jpg"), image)
    (tmp_path / "raw" / "empty").mkdir()
    listing = tmp_path / "list.txt"
    listing.write_text("clip 6 1\nempty 0 0\n")
    store = tmp_path / "store"
    assert main(["prepare", "--list", str(listing), "--format", "mmaction-rawframes", "--root",
                 str(tmp_path / "raw"), "--out", str(store), "--flow", "dis", "--frames-fps", "10",
                 "--quiet"]) == 0
    rows = {r["id"]: r for r in read_jsonl(store / "manifest.jsonl")}
    clip = rows["clip"]
    assert clip["status"] == "ok" and clip["num_frames"] == 6 and clip["num_flow"] == 5
    assert clip["fps"] == 10 and clip["has_audio"] is False and (clip["width"], clip["height"]) == (341, 256)
    assert clip["label_ids"] == [1]
    assert rows["empty"]["status"] == "failed" and "holds no images" in rows["empty"]["error"]


def test_rawframes_at_the_store_size_are_kept_without_re_encoding(tmp_path):
    frames = tmp_path / "raw" / "clip"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(frames / f"img_{i + 1:05d}.jpg"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    listing = tmp_path / "list.txt"
    listing.write_text("clip 4 0\n")
    for short_side, kept in ((48, True), (32, False)):
        store = tmp_path / f"store{short_side}"
        assert main(["prepare", "--list", str(listing), "--format", "mmaction-rawframes", "--root",
                     str(tmp_path / "raw"), "--out", str(store), "--flow", "dis", "--short-side", str(short_side),
                     "--quiet"]) == 0
        (row,) = read_jsonl(store / "manifest.jsonl")
        assert row["status"] == "ok" and row["num_frames"] == 4 and row["num_flow"] == 3
        stored = (store / row["frames_dir"] / "img_00002.jpg").read_bytes()
        assert (stored == (frames / "img_00002.jpg").read_bytes()) is kept


def test_a_portrait_phone_video_is_stored_upright(tmp_path):
    root = tmp_path / "videos"
    clip = make_clip(root / "train" / "cat" / "phone.mp4", frames=6, size=(64, 48))
    set_display_rotation(clip, -90)  # shown turned a quarter clockwise: 48 x 64 on screen
    imported = import_folder(root)
    classes, entries = assign_classes(imported.entries, None, None)
    out = tmp_path / "store"
    run_prepare(entries, classes, root, out, PrepareSettings(flow="none", short_side=32))
    row = read_jsonl(out / "manifest.jsonl")[0]
    assert row["status"] == "ok" and (row["width"], row["height"], row["rotation"]) == (32, 43, 270)
    first = cv2.imread(str(out / row["frames_dir"] / "img_00001.jpg"))
    assert first.shape[:2] == (43, 32)
