"""A store survives careless and hostile use: concurrent and incremental runs, resumed videos checked on disk,
bad labels, names, links and manifests refused with messages, killed runs leaving no processes, file modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from adamml.cli import main
from adamml.data.dataset import SegmentDataset, Store
from adamml.data.layout import StoreError, read_jsonl
from adamml.inference.checkpoint import save_checkpoint
from adamml.prepare.lock import StoreBusy, store_lock
from tests.conftest import make_clip, wait_for

FAST = ["--flow", "dis", "--short-side", "32", "--quiet"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Four tiny clips under one root."""
    root = tmp_path_factory.mktemp("tiny")
    for i, name in enumerate(("cat/a", "cat/b", "dog/c", "dog/d")):
        make_clip(root / f"{name}.mp4", frames=6, size=(32, 32), seed=i)
    return root


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _prepare(listing: Path, root: Path, store: Path, *extra: str) -> int:
    return main(["prepare", "--list", str(listing), "--root", str(root), "--out", str(store), *FAST, *extra])


def _rows(store: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(store / "manifest.jsonl")}


# --- one writer at a time ------------------------------------------------------------------------------


def test_a_second_run_on_a_busy_store_is_refused_naming_the_holder(clips, tmp_path, capsys):
    listing = _csv(tmp_path / "l.csv", "cat/a.mp4,cat\ndog/c.mp4,dog\n")
    store = tmp_path / "store"
    store.mkdir()
    with store_lock(store):
        assert _prepare(listing, clips, store) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and str(store) in err and "--wait" in err
        assert not (store / "manifest.jsonl").exists()
        with pytest.raises(StoreBusy):  # shards wait for a whole-list run too
            with store_lock(store, shard=(0, 2)):
                pass
    # shards run side by side, but one shard only once
    with store_lock(store, shard=(0, 2)):
        with store_lock(store, shard=(1, 2)):
            pass
        with pytest.raises(StoreBusy, match=r"shard 0/2 of"):
            with store_lock(store, shard=(0, 2)):
                pass


def test_wait_waits_for_the_lock_then_prepares(clips, tmp_path, capsys):
    listing = _csv(tmp_path / "l.csv", "cat/a.mp4,cat\ndog/c.mp4,dog\n")
    store = tmp_path / "store"
    store.mkdir()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store_lock(store):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    threading.Timer(0.5, release.set).start()
    assert _prepare(listing, clips, store, "--wait") == 0
    holder.join()
    assert "waiting for it" in capsys.readouterr().err
    assert {r["status"] for r in _rows(store).values()} == {"ok"}


def test_killed_two_worker_run_leaves_no_process_and_no_lock(tmp_path):
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    videos = tmp_path / "videos"
    for i in range(8):
        make_clip(videos / "cls" / f"v{i}.mp4", frames=30, size=(64, 48), seed=i)
    store = tmp_path / "store"
    command = [sys.executable, "-m", "adamml.cli", "prepare", "--videos", str(videos), "--out", str(store),
               "--flow", "tvl1", "--short-side", "96", "--workers", "2", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(_children(proc.pid)) >= 2, 60), "the pool never started"
        children = _children(proc.pid)
        # meanwhile, a second run on the same store is refused, naming the running one
        with pytest.raises(StoreBusy, match=f"pid {proc.pid}"):
            with store_lock(store):
                pass
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert wait_for(lambda: not [p for p in children if _alive(p)], 10), \
        f"left running after kill -9: {[p for p in children if _alive(p)]}"
    with store_lock(store):  # the kernel released the dead run's lock
        pass


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- incremental stores, resumed videos --------------------------------------------------------------


def test_lists_prepared_one_after_another_all_stay_listed(clips, tmp_path, capsys):
    store = tmp_path / "store"
    train = _csv(tmp_path / "train.csv", "path,label,split\ncat/a.mp4,cat,train\ndog/c.mp4,dog,train\n")
    val = _csv(tmp_path / "val.csv", "path,label,split\ncat/b.mp4,cat,val\ndog/c.mp4,dog,val\n")
    assert _prepare(train, clips, store) == 0
    assert _prepare(val, clips, store) == 0
    rows = _rows(store)
    assert sorted(rows) == ["cat/a", "cat/b", "dog/c"]  # dog/c listed once, prepared once
    assert [rows[v]["split"] for v in ("cat/a", "cat/b", "dog/c")] == ["train", "val", "val"]
    assert all(r["status"] == "ok" for r in rows.values())
    assert (store / "classes.txt").read_text() == "cat\ndog\n"
    assert "split 'train' -> 'val'" in capsys.readouterr().err
    # a list bringing a class the store does not have is refused before anything is written
    bird = _csv(tmp_path / "bird.csv", "dog/d.mp4,bird\n")
    assert _prepare(bird, clips, store) == 2
    err = capsys.readouterr().err
    assert "bird.csv:1" in err and "'bird'" in err and "classes.txt" in err
    assert sorted(_rows(store)) == ["cat/a", "cat/b", "dog/c"]


def test_overwrite_redoes_its_list_and_keeps_the_others_that_still_hold(clips, tmp_path, capsys):
    store = tmp_path / "store"
    train = _csv(tmp_path / "train.csv", "path,label,split\ncat/a.mp4,cat,train\ndog/c.mp4,dog,train\n")
    val = _csv(tmp_path / "val.csv", "path,label,split\ncat/b.mp4,cat,val\ndog/d.mp4,dog,val\n")
    assert _prepare(train, clips, store) == 0 and _prepare(val, clips, store) == 0
    before = _rows(store)

    def written(video: str) -> int:  # when the first frame of `video` was written (ns)
        return (store / before[video]["frames_dir"] / "img_00001.jpg").stat().st_mtime_ns

    written_before = {v: written(v) for v in ("cat/b", "cat/a")}
    # the same settings: the val videos are prepared again, the train videos stay listed as they were
    assert _prepare(val, clips, store, "--overwrite") == 0
    rows = _rows(store)
    assert sorted(rows) == ["cat/a", "cat/b", "dog/c", "dog/d"]
    # done again (its timing, rounded to 0.1 ms, can come out the same: 0.0105 s both times once)
    assert written("cat/b") > written_before["cat/b"] and written("cat/a") == written_before["cat/a"]
    assert rows["dog/c"] == before["dog/c"] and rows["cat/a"] == before["cat/a"]
    # a list naming only "cat": the store's classes become ["cat"]; a "dog" video cannot keep a class id and goes
    cats = _csv(tmp_path / "cats.csv", "path,label,split\ncat/b.mp4,cat,val\n")
    capsys.readouterr()
    assert _prepare(cats, clips, store, "--overwrite") == 0
    assert (store / "classes.txt").read_text() == "cat\n"
    assert sorted(_rows(store)) == ["cat/a", "cat/b"] and _rows(store)["cat/a"]["label_ids"] == [0]
    assert "2 videos of other lists are no longer listed" in capsys.readouterr().err
    # other settings: the videos of other lists were made with the old ones and go, with a warning saying so
    assert _prepare(cats, clips, store, "--overwrite", "--short-side", "24") == 0
    assert sorted(_rows(store)) == ["cat/b"]
    assert "prepared with other settings" in capsys.readouterr().err


def test_a_resumed_video_is_checked_on_disk_and_redone_when_incomplete(clips, tmp_path):
    store = tmp_path / "store"
    listing = _csv(tmp_path / "l.csv", "cat/a.mp4,cat\ncat/b.mp4,cat\ndog/c.mp4,dog\ndog/d.mp4,dog\n")
    assert _prepare(listing, clips, store) == 0
    frames = store / "rawframes"
    (frames / "cat" / "a" / "img_00003.jpg").unlink()
    (frames / "cat" / "b" / "flow_y_00005.jpg").unlink()
    (frames / "dog" / "c" / "audio.wav").unlink()
    assert _prepare(listing, clips, store) == 0
    rows = _rows(store)
    assert all(r["status"] == "ok" for r in rows.values())
    assert (frames / "cat" / "a" / "img_00003.jpg").exists()
    assert (frames / "cat" / "b" / "flow_y_00005.jpg").exists() and (frames / "dog" / "c" / "audio.wav").exists()


def test_redone_videos_are_counted_as_prepared_not_skipped(clips, tmp_path, capsys):
    store = tmp_path / "store"
    listing = _csv(tmp_path / "l.csv", "cat/a.mp4,cat\ndog/c.mp4,dog\n")
    assert _prepare(listing, clips, store) == 0
    (store / "rawframes" / "cat" / "a" / "img_00001.jpg").unlink()
    capsys.readouterr()
    assert main(["prepare", "--list", str(listing), "--root", str(clips), "--out", str(store),
                 "--flow", "dis", "--short-side", "32"]) == 0
    err = capsys.readouterr().err
    assert "1 / 0 / 1" in err  # ok / failed / skipped
    assert "prepared again, the store was incomplete" in err and "1 of 6 img_* files missing" in err


# --- labels ------------------------------------------------------------------------------------------


def test_a_label_with_a_line_break_is_a_failed_row_and_shifts_no_class(clips, tmp_path):
    store = tmp_path / "store"
    listing = _csv(tmp_path / "l.csv", 'cat/a.mp4,cat\ndog/c.mp4,"do\ng"\ndog/d.mp4,dog\n')
    assert _prepare(listing, clips, store) == 0
    rows = _rows(store)
    bad = rows["dog/c"]
    assert bad["status"] == "failed" and "l.csv:2" in bad["error"] and "control character" in bad["error"]
    assert (store / "classes.txt").read_text() == "cat\ndog\n"
    assert rows["dog/d"]["label_ids"] == [1]


def test_unlabelled_videos_are_prepared_but_training_refuses_them_by_line(clips, tmp_path, capsys):
    store = tmp_path / "store"
    listing = _csv(tmp_path / "l.csv", "path,split\ncat/a.mp4,train\ndog/c.mp4,train\n")
    assert _prepare(listing, clips, store) == 0
    assert "2 videos have no label" in capsys.readouterr().err
    with pytest.raises(StoreError, match=r"manifest.jsonl:1: video 'cat/a' has no label"):
        SegmentDataset(Store.open(store), "train", ["rgb"], train=True)
    # training and comparing say what is missing (not "model.num_classes must be positive")
    for argv in (["train", "--config", "tiny", "--stage", "unimodal", "--modalities", "rgb"],
                 ["compare", "--config", "tiny", "--methods", "rgb"]):
        assert main([*argv, "--data", str(store), "--out", str(tmp_path / argv[0])]) == 2
        assert "0 class(es) in its classes.txt" in capsys.readouterr().err


# --- arguments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("option,value", [("--audio-rate", "-8000"), ("--audio-rate", "0"), ("--flow-bound", "0"),
                                          ("--flow-bound", "nan"), ("--frames-fps", "inf"), ("--workers", "0")])
def test_out_of_range_numbers_are_refused_at_parsing(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["prepare", "--videos", str(tmp_path), "--out", str(tmp_path / "s"), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "must be a finite number" in err and "Traceback" not in err


def test_out_naming_a_file_is_a_clear_error(clips, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("mine")
    assert main(["prepare", "--videos", str(clips), "--out", str(target), *FAST]) == 2
    assert f"{target}: exists and is not a folder" in capsys.readouterr().err
    assert target.read_text() == "mine"


# --- paths and manifests -------------------------------------------------------------------------------


def test_a_link_leading_out_of_the_video_root_is_not_read(tmp_path):
    outside = make_clip(tmp_path / "private" / "secret.mp4", frames=4, size=(32, 32))
    root = tmp_path / "videos"
    make_clip(root / "cat" / "fine.mp4", frames=4, size=(32, 32))
    (root / "cat" / "link.mp4").symlink_to(outside)
    (root / "cat" / "inside.mp4").symlink_to(root / "cat" / "fine.mp4")
    store = tmp_path / "store"
    assert main(["prepare", "--videos", str(root), "--out", str(store), *FAST]) == 0
    rows = _rows(store)
    assert rows["cat/link"]["status"] == "failed" and "outside the video root" in rows["cat/link"]["error"]
    assert rows["cat/inside"]["status"] == "ok" and rows["cat/fine"]["status"] == "ok"
    assert not (store / "rawframes" / "cat" / "link").exists()


def test_a_symbolic_link_loop_is_one_failed_video_and_the_run_goes_on(tmp_path):
    root = tmp_path / "videos"
    make_clip(root / "cat" / "fine.mp4", frames=8, size=(32, 32))
    (root / "cat" / "loop.mp4").symlink_to(root / "cat" / "other.mp4")
    (root / "cat" / "other.mp4").symlink_to(root / "cat" / "loop.mp4")
    store = tmp_path / "store"
    assert main(["prepare", "--videos", str(root), "--out", str(store), *FAST]) == 0
    rows = _rows(store)
    assert rows["cat/fine"]["status"] == "ok"
    assert rows["cat/loop"]["status"] == "failed" and "symbolic link loop" in rows["cat/loop"]["error"]
    assert main(["prepare", "--videos", str(root), "--out", str(store), *FAST]) == 0  # a rerun goes on too


def test_a_frame_folder_with_an_image_linked_out_of_the_root_is_not_read(tmp_path):
    secret = tmp_path / "private" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(b"not really a jpeg")
    frames = tmp_path / "raw" / "clip"
    frames.mkdir(parents=True)
    (frames / "img_00001.jpg").symlink_to(secret)
    listing = _csv(tmp_path / "list.txt", "clip 1 0\n")
    store = tmp_path / "store"
    assert main(["prepare", "--list", str(listing), "--format", "mmaction-rawframes", "--root",
                 str(tmp_path / "raw"), "--out", str(store), *FAST]) == 1  # its one video failed
    (row,) = read_jsonl(store / "manifest.jsonl")
    assert row["status"] == "failed" and "img_00001.jpg resolves to" in row["error"]


def test_merge_keeps_the_videos_of_lists_prepared_before(clips, tmp_path):
    store = tmp_path / "store"
    assert _prepare(_csv(tmp_path / "a.csv", "cat/a.mp4,cat\ndog/c.mp4,dog\n"), clips, store) == 0
    later = _csv(tmp_path / "b.csv", "cat/b.mp4,cat\ndog/d.mp4,dog\n")
    for shard in ("0/2", "1/2"):
        assert _prepare(later, clips, store, "--shard", shard) == 0
    assert main(["prepare", "--merge", str(store)]) == 0
    assert sorted(_rows(store)) == ["cat/a", "cat/b", "dog/c", "dog/d"]


@pytest.fixture(scope="module")
def small_store(clips, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("small") / "store"
    listing = _csv(store.parent / "l.csv", "path,label,split\ncat/a.mp4,cat,train\ndog/c.mp4,dog,train\n")
    assert _prepare(listing, clips, store) == 0
    return store


@pytest.mark.parametrize("change,message", [
    (lambda row: {**row, "frames_dir": "../../etc"}, r"manifest.jsonl:2: 'frames_dir'.*leaves its folder"),
    (lambda row: {**row, "audio": "/etc/passwd"}, r"manifest.jsonl:2: 'audio'.*absolute path"),
    (lambda row: {k: v for k, v in row.items() if k != "num_frames"}, r"manifest.jsonl:2: no 'num_frames' key"),
    (lambda row: {**row, "label_ids": [7]}, r"manifest.jsonl:2: label_ids \[7\]"),
    (lambda row: [row["id"]], r"manifest.jsonl:2: expected a JSON object, got list"),
])
def test_a_bad_manifest_row_is_refused_naming_its_line(small_store, tmp_path, change, message):
    store = tmp_path / "copy"
    store.mkdir()
    for name in ("classes.txt", "store.json"):
        (store / name).write_bytes((small_store / name).read_bytes())
    rows = read_jsonl(small_store / "manifest.jsonl")
    lines = [json.dumps(rows[0]), json.dumps(change(rows[1]))]
    (store / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(StoreError, match=message):
        Store.open(store)


def test_a_deleted_audio_file_is_named_at_load(small_store, tmp_path):
    store = tmp_path / "copy"
    store.mkdir()
    for path in small_store.rglob("*"):
        if path.is_file():
            (store / path.relative_to(small_store)).parent.mkdir(parents=True, exist_ok=True)
            (store / path.relative_to(small_store)).write_bytes(path.read_bytes())
    audio = store / "rawframes" / "dog" / "c" / "audio.wav"
    dataset = SegmentDataset(Store.open(store), "train", ["audio"], train=False)
    audio.unlink()
    with pytest.raises(StoreError, match=f"{audio}: missing or unreadable audio of video 'dog/c'"):
        dataset[1]
    with pytest.raises(StoreError, match=f"{audio}: missing"):
        SegmentDataset(Store.open(store), "train", ["audio"], train=False)


# --- names ---------------------------------------------------------------------------------------------


def test_undecodable_and_markup_names_do_not_stop_the_run(tmp_path, capsys):
    root = tmp_path / "videos"
    make_clip(root / "cat" / "clip [hd].mp4", frames=4, size=(32, 32))
    (root / "cat" / "odd[").mkdir()
    (root / "cat" / "odd[" / "y] broken.mp4").write_bytes(b"")  # the path reads cat/odd[/y] broken.mp4
    clip = make_clip(tmp_path / "x.mp4", frames=4, size=(32, 32))
    os.rename(os.fsencode(clip), os.path.join(os.fsencode(root / "cat"), b"caf\xe9.mp4"))  # Latin-1 name
    store = tmp_path / "store"
    assert main(["prepare", "--videos", str(root), "--out", str(store), "--flow", "dis", "--short-side", "32"]) == 0
    err = capsys.readouterr().err
    rows = _rows(store)
    assert rows["cat/clip [hd]"]["status"] == "ok"
    bad = rows["cat/caf\\xe9.mp4"]
    assert bad["status"] == "failed" and "not valid UTF-8" in bad["error"]
    assert rows["cat/odd[/y] broken"]["status"] == "failed"
    assert "cat/clip [hd]" in err and "odd[/y] broken" in err and "caf\\xe9" in err


# --- file modes ----------------------------------------------------------------------------------------


def test_store_files_and_checkpoints_honour_the_umask(clips, tmp_path):
    listing = _csv(tmp_path / "l.csv", "cat/a.mp4,cat\n")
    old = os.umask(0o027)
    try:
        assert _prepare(listing, clips, tmp_path / "store") == 0
        save_checkpoint(tmp_path / "run" / "last.pt", {"model": {"w": torch.zeros(1)}})
    finally:
        os.umask(old)
    for path in ("store/manifest.jsonl", "store/classes.txt", "store/store.json", "run/last.pt"):
        assert (tmp_path / path).stat().st_mode & 0o777 == 0o640, path


def test_nothing_to_prepare_is_an_error_and_all_failed_is_not_success(tmp_path, capsys):
    """'Nothing done' is never exit 0: an empty list, a header-only list, a folder with no videos."""
    header_only = tmp_path / "list.csv"
    header_only.write_text("path,label,split\n")
    assert main(["prepare", "--list", str(header_only), "--out", str(tmp_path / "s1"), *FAST]) == 2
    assert "gives no videos to prepare" in capsys.readouterr().err
    empty = tmp_path / "videos"
    (empty / "cat").mkdir(parents=True)
    assert main(["prepare", "--videos", str(empty), "--out", str(tmp_path / "s2"), *FAST]) == 2
    assert "gives no videos to prepare" in capsys.readouterr().err
    broken = tmp_path / "broken"
    (broken / "cat").mkdir(parents=True)
    (broken / "cat" / "a.mp4").write_bytes(b"not a video")
    assert main(["prepare", "--videos", str(broken), "--out", str(tmp_path / "s3"), *FAST]) == 1
    assert "every video of" in capsys.readouterr().err
