"""Annotation files and folders to a labelled video list.

Formats (`--format`): a folder of videos (`folder`), generic CSV (`csv`), Kinetics CSV (`kinetics`, with the
Kinetics-Sounds subset), ActivityNet v1.3 JSON (`activitynet`), FCVID (`fcvid`), Sports-1M / Mini-Sports1M
partition lists (`sports1m`), the official AdaMML list (`adamml`), mmaction2 video and rawframe lists
(`mmaction-video`, `mmaction-rawframes`). Every path read from an annotation file must stay inside the video
root: absolute paths and `..` are refused (the entry is recorded as failed, the run goes on).
"""

from __future__ import annotations

import csv
import json
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from adamml.data.layout import check_relative

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp", ".ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val",
    "test": "test", "testing": "test",
}

# Kinetics-Sounds (Arandjelovic & Zisserman, 2017) as used by AdaMML: 31 Kinetics-400 classes.
KINETICS_SOUNDS = (
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball",
    "laughing", "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar",
    "playing clarinet", "playing drums", "playing guitar", "playing harmonica", "playing keyboard",
    "playing organ", "playing piano", "playing saxophone", "playing trombone", "playing trumpet",
    "playing violin", "playing xylophone", "ripping paper", "shoveling snow", "shuffling cards",
    "singing", "stomping grapes", "tap dancing", "tapping guitar", "tapping pen", "tickling",
)
SUBSETS = {"kinetics-sounds": KINETICS_SOUNDS}

FORMATS = (
    "folder", "csv", "kinetics", "activitynet", "fcvid", "sports1m", "adamml", "mmaction-video",
    "mmaction-rawframes",
)


class AnnotationError(Exception):
    """An annotation file that cannot be read at all; names the file (and line) and the problem."""


@dataclass(frozen=True)
class VideoEntry:
    """One video to prepare: where it is, what it is labelled, which split it belongs to."""

    id: str  # relative POSIX path without extension; also the video's folder in the store
    source: str  # path relative to the video root ('' when unknown)
    labels: tuple[str, ...] = ()
    split: str | None = None
    kind: str = "video"  # "video": a video file; "frames": a folder of frame images
    error: str | None = None  # set when the entry itself is invalid (bad path, file missing, ...)
    origin: str = ""  # "annotation-file:line", for messages


@dataclass
class ImportResult:
    entries: list[VideoEntry]
    classes: list[str] | None = None  # class order fixed by the annotation format, if any
    notes: list[str] = field(default_factory=list)


def normalize_split(value: str | None, where: str) -> str | None:
    if value is None or not value.strip():
        return None
    split = _SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise AnnotationError(f"{where}: unknown split {value!r} (expected one of {', '.join(SPLITS)})")
    return split


def _strip_ext(rel: str) -> str:
    stem, ext = os.path.splitext(rel)
    return stem if ext.lower() in VIDEO_EXTENSIONS else rel


def printable(text: str) -> str:
    """`text` writable as UTF-8: bytes of a file name in another encoding shown as `\\xNN`."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_problem(text: str, label: bool) -> str | None:
    """Why `text` cannot be a video path (or a class name, `label`) in the store's text files, or None."""
    for char in text:
        kind = unicodedata.category(char)
        if kind == "Cs":
            return "is not valid UTF-8 (a name in another encoding)"
        if label and kind in ("Cc", "Zl", "Zp"):
            return f"holds the control character {char!r} (class names are the lines of classes.txt)"
    return None


def _checked_labels(entry: VideoEntry) -> VideoEntry:
    """`entry`, failed when one of its labels cannot be a line of classes.txt."""
    for label in entry.labels:
        problem = _text_problem(label, label=True)
        if problem:
            return replace(entry, labels=tuple(printable(x) for x in entry.labels),
                           error=entry.error or f"{entry.origin}: label {printable(label)!r} {problem}")
    return entry


def _entry(rel: str, labels: Iterable[str], split: str | None, origin: str, kind: str = "video") -> VideoEntry:
    labels = tuple(str(label).strip() for label in labels if str(label).strip())
    origin = printable(origin)
    problem = _text_problem(rel, label=False)
    if problem:
        safe = printable(rel)
        return _checked_labels(VideoEntry(id=safe, source=safe, labels=labels, split=split, kind=kind,
                                          error=f"{origin}: path {safe!r} {problem}", origin=origin))
    try:
        clean = check_relative(rel).as_posix()
    except ValueError as exc:
        return _checked_labels(VideoEntry(id=rel, source=rel, labels=labels, split=split, kind=kind,
                                          error=f"{origin}: {exc}", origin=origin))
    entry = VideoEntry(id=_strip_ext(clean), source=clean, labels=labels, split=split, kind=kind, origin=origin)
    return _checked_labels(entry)


class VideoIndex:
    """Files under a video root, looked up by file name stem (for formats that name videos by id)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_stem: dict[str, str] = {}
        if root.is_dir():
            for dirpath, _dirs, files in os.walk(root):
                for name in sorted(files):
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in VIDEO_EXTENSIONS:
                        rel = Path(dirpath, name).relative_to(root).as_posix()
                        self._by_stem.setdefault(stem, rel)

    def find(self, *stems: str) -> str | None:
        for stem in stems:
            if stem in self._by_stem:
                return self._by_stem[stem]
        return None


def _missing(name: str, labels: Iterable[str], split: str | None, origin: str, root: Path) -> VideoEntry:
    name, origin = printable(name), printable(origin)
    return _checked_labels(VideoEntry(id=name, source="", labels=tuple(labels), split=split,
                                      error=printable(f"{origin}: no video file for {name!r} under {root}"),
                                      origin=origin))


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from exc
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines(): \x1c, \x85, ... are no line ends
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


# --- formats -------------------------------------------------------------------------------------------


def import_folder(root: Path) -> ImportResult:
    """Every video file under `root`; `root/<label>/<video>` or `root/<split>/<label>/<video>`."""
    if not root.is_dir():
        raise AnnotationError(f"{root}: not a folder")
    entries = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS:
                continue
            rel = Path(dirpath, name).relative_to(root).as_posix()
            parts = rel.split("/")[:-1]
            split = _SPLIT_ALIASES.get(parts[0].lower()) if parts else None
            entry = _entry(rel, parts[1:2] if split else parts[:1], split, origin=f"{root}/{rel}")
            if "\\" in rel:  # paths read from lists turn it into "/" (lists written on Windows)
                entry = replace(entry, error=f"{entry.origin}: a '\\' in a file name reads as a folder separator: "
                                "rename the file")
            entries.append(entry)
    return ImportResult(entries)


def import_csv(path: Path, default_split: str | None = None) -> ImportResult:
    """Generic CSV: `path,label[,label...]`, or a header naming `path` (`video`, `filename`), `label`s, `split`.

    With a header, every column whose name starts with `label` holds labels (a cell may hold several: `|`, `;`)."""
    rows = _csv_rows(path, csv.reader)
    rows = [(n, row) for n, row in enumerate(rows, 1) if row and any(c.strip() for c in row)]
    if not rows:
        return ImportResult([])
    header = [c.strip().lower() for c in rows[0][1]]
    entries = []
    path_col = next((i for i, name in enumerate(header) if name in ("path", "video", "filename")), None)
    if path_col is not None:  # a header, its columns in any order (label,path,split as well as path,label,split)
        label_cols = [i for i, name in enumerate(header) if name.startswith("label")]
        split_col = header.index("split") if "split" in header else None
        for number, row in rows[1:]:
            origin = f"{path}:{number}"
            labels: list[str] = []
            for i in label_cols:
                if i < len(row):
                    labels += re.split(r"[|;]", row[i])
            split = normalize_split(row[split_col], origin) if split_col is not None and split_col < len(row) else None
            entries.append(_entry(row[path_col].strip() if path_col < len(row) else "", labels,
                                  split or default_split, origin))
    else:
        for number, row in rows:
            entries.append(_entry(row[0].strip(), row[1:], default_split, f"{path}:{number}"))
    return ImportResult(entries)


def _csv_rows(path: Path, make_reader) -> list:
    """All rows of a CSV file read with `make_reader(handle)`; unreadable input names the file and line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = make_reader(handle)
            try:
                return list(reader)
            except csv.Error as exc:
                raise AnnotationError(f"{path}:{getattr(reader, 'line_num', '?')}: not a readable CSV row ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from exc


def import_kinetics(path: Path, root: Path, subset: str | None = None) -> ImportResult:
    """Kinetics CSV (`label,youtube_id,time_start,time_end,split`); files named `ID_SSSSSS_EEEEEE.ext`."""
    fields: list[str] = []

    def dict_reader(handle):
        reader = csv.DictReader(handle, restval="")
        fields.extend(reader.fieldnames or [])
        return reader

    rows = _csv_rows(path, dict_reader)
    missing = {"youtube_id", "time_start", "time_end"} - set(fields)
    if missing:
        raise AnnotationError(f"{path}: not a Kinetics CSV, missing columns {sorted(missing)}")
    keep = None
    if subset is not None:
        if subset not in SUBSETS:
            raise AnnotationError(f"unknown subset {subset!r} (known: {', '.join(SUBSETS)})")
        keep = set(SUBSETS[subset])
    index = VideoIndex(root)
    entries = []
    for number, row in enumerate(rows, 2):
        origin = f"{path}:{number}"
        label = (row.get("label") or "").strip()
        if keep is not None and label not in keep:
            continue
        youtube_id = (row.get("youtube_id") or "").strip()
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except (ValueError, TypeError, OverflowError) as exc:
            raise AnnotationError(f"{origin}: bad time_start/time_end ({exc}); is the row short of fields?") from exc
        if not youtube_id:
            raise AnnotationError(f"{origin}: empty youtube_id")
        name = f"{youtube_id}_{start:06d}_{end:06d}"
        split = normalize_split(row.get("split"), origin)
        rel = index.find(name, youtube_id)
        labels = [label] if label else []
        entries.append(_entry(rel, labels, split, origin) if rel else _missing(name, labels, split, origin, root))
    classes = sorted(SUBSETS[subset]) if subset is not None else None
    return ImportResult(entries, classes=classes)


def import_activitynet(path: Path, root: Path) -> ImportResult:
    """ActivityNet v1.3 JSON: `database.<id>.{subset, annotations[].label}`; files `v_<id>.ext` or `<id>.ext`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ActivityNet JSON ({exc})") from exc
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: no 'database' object (not an ActivityNet v1.3 file)")
    index = VideoIndex(root)
    entries = []
    for vid in sorted(database):
        item = database[vid]
        origin = f"{path}:database.{vid}"
        annotations = item.get("annotations", []) if isinstance(item, dict) else None
        if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
            raise AnnotationError(f"{origin}: expected an object with a list of annotation objects")
        labels = sorted({str(a["label"]) for a in annotations if "label" in a})
        subset = item.get("subset")
        if subset is not None and not isinstance(subset, str):
            raise AnnotationError(f"{origin}.subset: expected a string, got {subset!r}")
        split = normalize_split(subset, origin)
        rel = index.find(f"v_{vid}", vid)
        entries.append(_entry(rel, labels, split, origin) if rel else _missing(vid, labels, split, origin, root))
    return ImportResult(entries)


def _read_class_names(path: Path) -> list[str]:
    """One class name a line, optionally preceded by its index (`3 name`, `3,name`, `3\tname`); each class once."""
    first: dict[str, int] = {}  # name -> its line, in the file's order
    for number, line in _lines(path):
        match = re.match(r"^\d+[\s,;]+(.+)$", line)
        name = (match.group(1) if match else line).strip()
        if name in first:  # a repeated class would shift every later class's id
            raise AnnotationError(f"{path}:{number}: class {name!r} is listed again (first at line {first[name]})")
        first[name] = number
    return list(first)


def import_fcvid(path: Path, label_file: Path | None = None) -> ImportResult:
    """FCVID: `FCVID_VideoName_TrainTestSplit.txt` (`relpath split`) and the 0/1 label matrix
    `FCVID_Label.txt` (one row per video, same order; found beside the list when not given)."""
    label_file = label_file or path.with_name("FCVID_Label.txt")
    if not label_file.exists():
        raise AnnotationError(f"{path}: FCVID label matrix {label_file} not found (give --label-file)")
    matrix = [line.split() for _n, line in _lines(label_file)]
    lines = list(_lines(path))
    if len(matrix) != len(lines):
        raise AnnotationError(
            f"{label_file}: {len(matrix)} label rows for {len(lines)} videos in {path}"
        )
    entries = []
    for (number, line), row in zip(lines, matrix):
        origin = f"{path}:{number}"
        parts = line.split()
        split = normalize_split(parts[1], origin) if len(parts) > 1 else None
        try:
            labels = [str(i) for i, v in enumerate(row) if float(v) > 0.5]
        except ValueError as exc:
            raise AnnotationError(f"{label_file}: row for {path}:{number}: {exc}") from exc
        entries.append(_entry(parts[0], labels, split, origin))
    num_classes = len(matrix[0]) if matrix else 0
    return ImportResult(entries, classes=[str(i) for i in range(num_classes)])


def import_sports1m(path: Path, root: Path, default_split: str | None = None) -> ImportResult:
    """Sports-1M partition list (`URL label[,label...]`, used for Mini-Sports1M); files named by YouTube id."""
    index = VideoIndex(root)
    entries = []
    for number, line in _lines(path):
        origin = f"{path}:{number}"
        parts = line.split()
        url = parts[0]
        match = re.search(r"[?&]v=([\w-]+)", url)
        vid = match.group(1) if match else url.rsplit("/", 1)[-1]
        labels = parts[1].split(",") if len(parts) > 1 else []
        rel = index.find(vid)
        entries.append(
            _entry(rel, labels, default_split, origin) if rel
            else _missing(vid, labels, default_split, origin, root)
        )
    return ImportResult(entries)


def import_adamml(path: Path, root: Path, default_split: str | None = None) -> ImportResult:
    """Official AdaMML list: `relpath;start;end;label` (`;` or spaces); relpath is a video or a frame folder."""
    index = VideoIndex(root)
    entries = []
    for number, line in _lines(path):
        origin = f"{path}:{number}"
        parts = line.split(";") if ";" in line else line.split()
        if len(parts) < 4:
            raise AnnotationError(f"{origin}: expected 'relpath;start;end;label', got {line!r}")
        rel, labels = parts[0].strip(), parts[3].split(",")
        entries.append(_resolve(rel, labels, default_split, origin, root, index))
    return ImportResult(entries)


def _resolve(rel: str, labels: list[str], split: str | None, origin: str, root: Path,
             index: VideoIndex) -> VideoEntry:
    """A list entry naming a video file, a video without extension, or a folder of frames."""
    entry = _entry(rel, labels, split, origin)
    if entry.error:
        return entry
    target = root / entry.source
    if target.is_file():
        return entry
    if target.is_dir():
        return replace(entry, kind="frames")
    for ext in VIDEO_EXTENSIONS:
        if target.with_name(target.name + ext).is_file():
            return replace(entry, source=entry.source + ext)
    found = index.find(Path(entry.source).name)
    if found:
        return replace(entry, source=found)
    return replace(entry, error=printable(f"{origin}: no video file or frame folder {entry.source!r} under {root}"))


def import_mmaction(path: Path, root: Path, rawframes: bool, default_split: str | None = None) -> ImportResult:
    """mmaction2 lists: videos `filename label [label...]`, rawframes `frame_dir total_frames label [...]`."""
    index = VideoIndex(root)
    entries = []
    for number, line in _lines(path):
        origin = f"{path}:{number}"
        parts = line.split()
        skip = 2 if rawframes else 1
        if len(parts) < skip:
            raise AnnotationError(f"{origin}: too few fields in {line!r}")
        entry = _resolve(parts[0], parts[skip:], default_split, origin, root, index)
        entries.append(entry)
    return ImportResult(entries)


def import_annotations(
    fmt: str,
    source: Path,
    root: Path,
    subset: str | None = None,
    default_split: str | None = None,
    label_file: Path | None = None,
) -> ImportResult:
    """Dispatch on `fmt` (one of FORMATS); `source` is the annotation file (the folder for `folder`)."""
    if fmt == "folder":
        result = import_folder(source)
    elif fmt == "csv":
        result = import_csv(source, default_split)
    elif fmt == "kinetics":
        result = import_kinetics(source, root, subset)
    elif fmt == "activitynet":
        result = import_activitynet(source, root)
    elif fmt == "fcvid":
        result = import_fcvid(source, label_file)
    elif fmt == "sports1m":
        result = import_sports1m(source, root, default_split)
    elif fmt == "adamml":
        result = import_adamml(source, root, default_split)
    elif fmt in ("mmaction-video", "mmaction-rawframes"):
        result = import_mmaction(source, root, fmt == "mmaction-rawframes", default_split)
    else:
        raise AnnotationError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if subset is not None and fmt != "kinetics":
        keep = set(SUBSETS.get(subset, ()))
        if not keep:
            raise AnnotationError(f"unknown subset {subset!r} (known: {', '.join(SUBSETS)})")
        result.entries = [e for e in result.entries if set(e.labels) & keep]
        result.classes = sorted(keep)
    return result


def guess_format(source: Path) -> str:
    """The format of `source` from its name and first line."""
    if source.is_dir():
        return "folder"
    name = source.name.lower()
    if name.endswith(".json"):
        return "activitynet"
    if "fcvid" in name:
        return "fcvid"
    try:
        first = next((line for _n, line in _lines(source)), "")
    except AnnotationError:
        first = ""
    if name.endswith(".csv"):
        head = first.lower().replace(" ", "")
        return "kinetics" if "youtube_id" in head else "csv"
    if "youtube.com" in first:
        return "sports1m"
    if ";" in first:
        return "adamml"
    raise AnnotationError(
        f"{source}: cannot tell the annotation format from its name; give --format (one of {', '.join(FORMATS)})"
    )


def assign_classes(
    entries: list[VideoEntry], fixed: list[str] | None, classes_file: Path | None
) -> tuple[list[str], list[VideoEntry]]:
    """The class list (stable: from the file, the format, numeric order or sorted names) and the entries,
    with entries whose labels are not in the list marked as errors."""
    if classes_file is not None:
        classes = _read_class_names(classes_file)
    elif fixed is not None:
        classes = list(fixed)
    else:
        names = {label for e in entries if not e.error for label in e.labels}
        if names and all(n.isdigit() for n in names):
            classes = [str(i) for i in range(max(int(n) for n in names) + 1)]
        else:
            classes = sorted(names)
    position = {name: i for i, name in enumerate(classes)}
    out = []
    for entry in entries:
        labels = entry.labels
        if classes_file is not None and labels and all(l.isdigit() for l in labels) and not (set(labels) <= set(position)):
            # integer labels index into the class names file
            labels = tuple(classes[int(l)] if int(l) < len(classes) else l for l in labels)
        unknown = [l for l in labels if l not in position]
        if unknown and not entry.error:
            entry = replace(entry, error=f"{entry.origin}: label(s) {unknown} not among the {len(classes)} classes")
        out.append(replace(entry, labels=labels))
    return classes, out
