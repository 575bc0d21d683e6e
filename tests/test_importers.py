"""Importers: each annotation format on a small sample file, and paths that try to leave the root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adamml.prepare.importers import (
    KINETICS_SOUNDS,
    AnnotationError,
    assign_classes,
    guess_format,
    import_annotations,
)


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def by_id(result):
    return {e.id: e for e in result.entries}


def test_generic_csv_with_header_multi_label_and_split(tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text("path,label,label2,split\nv/a.mp4,run,jump,train\nv/b.avi,swim,,validation\n")
    result = by_id(import_annotations("csv", ann, tmp_path))
    assert result["v/a"].labels == ("run", "jump") and result["v/a"].split == "train"
    assert result["v/b"].labels == ("swim",) and result["v/b"].split == "val"
    assert result["v/b"].source == "v/b.avi"


def test_generic_csv_header_columns_in_any_order(tmp_path):
    # label,path,split was read as a headerless list: "label" a video, "path" and "split" classes, every video failed
    ann = tmp_path / "a.csv"
    ann.write_text("label,path,split\nrun,v/a.mp4,train\nswim,v/b.mp4,test\n")
    result = by_id(import_annotations("csv", ann, tmp_path))
    assert set(result) == {"v/a", "v/b"}
    assert result["v/a"].labels == ("run",) and result["v/a"].split == "train" and result["v/b"].split == "test"


def test_generic_csv_without_header_uses_default_split(tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text("a.mp4,run\nb.mp4,swim,run\n")
    result = by_id(import_annotations("csv", ann, tmp_path, default_split="test"))
    assert result["b"].labels == ("swim", "run") and result["a"].split == "test"


def test_unknown_split_names_the_line(tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text("path,label,split\na.mp4,run,holdout\n")
    with pytest.raises(AnnotationError, match=r"a.csv:2: unknown split 'holdout'"):
        import_annotations("csv", ann, tmp_path)


@pytest.mark.parametrize("bad", ["../up.mp4", "/etc/passwd", "a/../../b.mp4", "C:/x.mp4"])
def test_paths_that_leave_the_root_are_refused(tmp_path, bad):
    ann = tmp_path / "a.csv"
    ann.write_text(f"{bad},run\nok.mp4,run\n")
    entries = import_annotations("csv", ann, tmp_path).entries
    assert entries[0].error and "a.csv:1" in entries[0].error
    assert entries[1].error is None


def test_kinetics_csv_with_kinetics_sounds_subset(tmp_path):
    videos = tmp_path / "videos"
    touch(videos, "train/playing drums/abc_000010_000020.mp4", "train/archery/def_000000_000010.mp4",
          "val/tickling/ghi_000005_000015.mkv")
    ann = tmp_path / "kinetics400_train.csv"
    ann.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "playing drums,abc,10,20,train\narchery,def,0,10,train\ntickling,ghi,5,15,val\n"
        "singing,missing,0,10,train\n"
    )
    result = import_annotations("kinetics", ann, videos, subset="kinetics-sounds")
    entries = by_id(result)
    assert set(entries) == {"train/playing drums/abc_000010_000020", "val/tickling/ghi_000005_000015",
                            "missing_000000_000010"}
    assert entries["val/tickling/ghi_000005_000015"].split == "val"
    assert "no video file" in entries["missing_000000_000010"].error
    assert result.classes == sorted(KINETICS_SOUNDS) and len(result.classes) == 31
    classes, entries_out = assign_classes(result.entries, result.classes, None)
    assert classes.index("playing drums") == 11
    assert guess_format(ann) == "kinetics"


def test_activitynet_json_multi_label_and_subsets(tmp_path):
    touch(tmp_path, "v_aaa.mp4", "bbb.mkv")
    ann = tmp_path / "activity_net.v1-3.min.json"
    ann.write_text(json.dumps({"version": "VERSION 1.3", "database": {
        "aaa": {"subset": "training", "annotations": [{"label": "Surfing", "segment": [1, 5]},
                                                    {"label": "Swimming", "segment": [6, 9]},
                                                    {"label": "Surfing", "segment": [10, 12]}]},
        "bbb": {"subset": "validation", "annotations": [{"label": "Cooking", "segment": [0, 3]}]},
        "ccc": {"subset": "testing", "annotations": []},
    }}))
    entries = by_id(import_annotations("activitynet", ann, tmp_path))
    assert entries["v_aaa"].labels == ("Surfing", "Swimming") and entries["v_aaa"].split == "train"
    assert entries["bbb"].split == "val"
    assert entries["ccc"].error and "no video file" in entries["ccc"].error
    assert guess_format(ann) == "activitynet"


def test_fcvid_split_and_label_matrix(tmp_path):
    split = tmp_path / "FCVID_VideoName_TrainTestSplit.txt"
    split.write_text("cooking/x.mp4 train\nsoccer/y.mp4 test\n")
    (tmp_path / "FCVID_Label.txt").write_text("0 1 0\n1 0 1\n")
    names = tmp_path / "FCVID_Category.txt"
    names.write_text("0 basketball\n1 cooking\n2 soccer\n")
    result = import_annotations("fcvid", split, tmp_path)
    entries = by_id(result)
    assert entries["cooking/x"].labels == ("1",) and entries["soccer/y"].labels == ("0", "2")
    assert entries["soccer/y"].split == "test"
    classes, named = assign_classes(result.entries, result.classes, names)
    assert classes == ["basketball", "cooking", "soccer"]
    assert [e.labels for e in named] == [("cooking",), ("basketball", "soccer")]


def test_fcvid_without_label_matrix_is_a_clear_error(tmp_path):
    split = tmp_path / "list.txt"
    split.write_text("a.mp4 train\n")
    with pytest.raises(AnnotationError, match="FCVID label matrix .* not found"):
        import_annotations("fcvid", split, tmp_path)


def test_sports1m_partition_list(tmp_path):
    touch(tmp_path, "videos/AbC-123_x.mp4")
    ann = tmp_path / "train_partition.txt"
    ann.write_text("https://www.youtube.com/watch?v=AbC-123_x 4,7\nhttps://www.youtube.com/watch?v=gone 1\n")
    entries = import_annotations("sports1m", ann, tmp_path / "videos", default_split="train").entries
    assert entries[0].source == "AbC-123_x.mp4" and entries[0].labels == ("4", "7")
    assert entries[1].error
    assert guess_format(ann) == "sports1m"


def test_official_adamml_list_with_frame_folders_and_videos(tmp_path):
    touch(tmp_path, "videos/a/00001.jpg", "videos/b.mp4")
    ann = tmp_path / "train.txt"
    ann.write_text("videos/a;1;30;3\nvideos/b;1;50;0\n")
    entries = by_id(import_annotations("adamml", ann, tmp_path, default_split="train"))
    assert entries["videos/a"].kind == "frames" and entries["videos/a"].labels == ("3",)
    assert entries["videos/b"].source == "videos/b.mp4" and entries["videos/b"].kind == "video"
    classes, _ = assign_classes(list(entries.values()), None, None)
    assert classes == ["0", "1", "2", "3"]  # integer labels keep their ids


def test_mmaction_video_and_rawframe_lists(tmp_path):
    touch(tmp_path, "clips/a.mp4", "frames/b/img_00001.jpg")
    video_list = tmp_path / "videos.txt"
    video_list.write_text("clips/a.mp4 2\n")
    raw_list = tmp_path / "rawframes.txt"
    raw_list.write_text("frames/b 120 5 6\n")
    (video,) = import_annotations("mmaction-video", video_list, tmp_path).entries
    (raw,) = import_annotations("mmaction-rawframes", raw_list, tmp_path).entries
    assert (video.id, video.labels, video.kind) == ("clips/a", ("2",), "video")
    assert (raw.id, raw.labels, raw.kind) == ("frames/b", ("5", "6"), "frames")


def test_labels_outside_a_classes_file_are_marked(tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text("a.mp4,run\nb.mp4,fly\n")
    names = tmp_path / "classes.txt"
    names.write_text("run\nswim\n")
    classes, entries = assign_classes(import_annotations("csv", ann, tmp_path).entries, None, names)
    assert classes == ["run", "swim"]
    assert entries[0].error is None and "['fly'] not among the 2 classes" in entries[1].error


def test_unrecognised_list_asks_for_format(tmp_path):
    ann = tmp_path / "list.txt"
    ann.write_text("a b c\n")
    with pytest.raises(AnnotationError, match="give --format"):
        guess_format(ann)


@pytest.mark.parametrize("fmt,name,text,message", [
    ("csv", "a.csv", "v/a.mp4," + "x" * 200_000 + "\n", r"a.csv:1: not a readable CSV row"),
    ("kinetics", "k.csv", "label,youtube_id,time_start,time_end,split\nbowling,abc\n", r"k.csv:2: bad time_start"),
    ("activitynet", "a.json", json.dumps({"database": {"v1": {"annotations": "run"}}}),
     r"a.json:database.v1: expected an object with a list of annotation objects"),
    ("activitynet", "b.json", json.dumps({"database": {"v1": {"subset": 3, "annotations": []}}}),
     r"b.json:database.v1.subset: expected a string"),
])
def test_malformed_annotation_files_name_the_file_and_line(tmp_path, fmt, name, text, message):
    ann = tmp_path / name
    ann.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        import_annotations(fmt, ann, tmp_path)


def test_control_characters_and_foreign_names_make_failed_entries(tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text('v/a.mp4,"run\rwalk"\nv/b.mp4,swim\x1cdive\nv/c.mp4,ok\n')
    entries = by_id(import_annotations("csv", ann, tmp_path))
    assert "a.csv:1: label 'run\\rwalk' holds the control character" in entries["v/a"].error
    assert "a.csv:2" in entries["v/b"].error and entries["v/c"].error is None
    classes, _ = assign_classes(list(entries.values()), None, None)
    assert classes == ["ok"]
    root = tmp_path / "videos"
    (root / "cat").mkdir(parents=True)
    with open(os.path.join(os.fsencode(root / "cat"), b"caf\xe9.mp4"), "wb") as handle:  # a Latin-1 name
        handle.write(b"x")
    (entry,) = import_annotations("folder", root, root).entries
    assert entry.id == "cat/caf\\xe9.mp4" and "not valid UTF-8" in entry.error
    entry.id.encode("utf-8")  # safe to write into the manifest


def test_only_newlines_end_lines_of_a_list(tmp_path):
    touch(tmp_path, "v/a.mp4", "v/b.mp4")
    ann = tmp_path / "list.txt"
    ann.write_text("v/a.mp4 swim\x85dive\x07\nv/b.mp4 run\n")  # \x85 ends a line for str.splitlines()
    entries = by_id(import_annotations("mmaction-video", ann, tmp_path))
    assert sorted(entries) == ["v/a", "v/b"]
    assert "list.txt:1: label 'dive\\x07' holds the control character" in entries["v/a"].error


def test_a_backslash_in_a_file_name_is_named_not_lost(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "a\\b.mp4").write_bytes(b"")
    (tmp_path / "run" / "fine.mp4").write_bytes(b"")
    result = by_id(import_annotations("folder", tmp_path, tmp_path))
    assert result["run/fine"].error is None
    (odd,) = [e for e in result.values() if e.error]
    assert "a '\\' in a file name reads as a folder separator" in odd.error
