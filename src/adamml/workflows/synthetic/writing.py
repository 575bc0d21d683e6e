"""Writing the benchmark: the videos (in parallel, resumable), the annotation lists and the ground truth."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adamml.runtime.atomic_file import atomic_path
from adamml.workflows.synthetic.clips import write_video
from adamml.workflows.synthetic.design import FORMAT_VERSION, MODALITIES, SynthConfig, config_signature_table
from adamml.workflows.synthetic.plans import VideoPlan, plan_dataset
from adamml.workflows.synthetic.render import render_video


def write_synth_video(video: VideoPlan, config: SynthConfig, root: Path, overwrite: bool = False) -> bool:
    """Render and write one video under `root`; False when it already existed (and was kept)."""
    path = Path(root) / video.path
    if path.exists() and not overwrite:
        return False
    frames, audio = render_video(video, config)
    with atomic_path(path) as tmp:
        write_video(tmp, frames, config.fps, audio, audio_rate=config.audio_rate, crf=config.crf)
    return True


def write_index(videos: Iterable[VideoPlan], config: SynthConfig, root: Path) -> tuple[Path, Path, Path]:
    """annotations.csv (`path,label,split`), ground_truth.jsonl and synth.json (config + class table)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    videos = list(videos)
    csv_path, gt_path, meta_path = root / "annotations.csv", root / "ground_truth.jsonl", root / "synth.json"
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        handle.write("path,label,split\n")
        handle.writelines(f"{v.path},{v.label},{v.split}\n" for v in videos)
    with open(gt_path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(v.ground_truth(config)) + "\n" for v in videos)
    meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(),
            "classes": config_signature_table(config)}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return csv_path, gt_path, meta_path


def read_meta(root: Path) -> dict | None:
    path = Path(root) / "synth.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _write_chunk(videos: list[VideoPlan], config: SynthConfig, root: str, overwrite: bool) -> list[bool]:
    return [write_synth_video(v, config, Path(root), overwrite) for v in videos]


def generate(config: SynthConfig, root: Path, workers: int = 1, overwrite: bool = False,
             console: Console | None = None, quiet: bool = False) -> dict:
    """Write the dataset under `root`; returns counts, wall seconds and the measured informative rates.

    Raises ValueError when `root` holds a dataset made with other arguments (unless `overwrite`).
    """
    console = console or Console(stderr=True, soft_wrap=True)
    root = Path(root)
    meta = read_meta(root)
    if meta is not None and not overwrite and meta.get("config") != config.to_dict():
        old = meta.get("config", {})
        diff = ", ".join(f"{k}: {old.get(k)} -> {v}" for k, v in config.to_dict().items() if old.get(k) != v)
        raise ValueError(f"{root} holds a dataset written with other arguments ({diff}); "
                         "use another --out, or --overwrite to write it again")
    videos = plan_dataset(config)
    start = time.perf_counter()
    write_index([], config, root)  # synth.json first: marks the folder with its arguments
    counts = {"written": 0, "reused": 0}
    todo = videos if overwrite else [v for v in videos if not (root / v.path).exists()]
    counts["reused"] = len(videos) - len(todo)
    progress = Progress(
        TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet,
    )
    with progress:
        task = progress.add_task("synth", total=len(videos), completed=counts["reused"],
                                 status=f"reused {counts['reused']}")

        def done(results: list[bool]) -> None:
            counts["written"] += sum(results)
            counts["reused"] += len(results) - sum(results)
            progress.update(task, advance=len(results), status=f"written {counts['written']}")

        workers = max(1, min(workers, len(todo)))
        if workers == 1:
            for v in todo:
                done(_write_chunk([v], config, str(root), overwrite))
        else:
            chunk = max(1, min(8, len(todo) // (4 * workers)))
            chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_write_chunk, c, config, str(root), overwrite) for c in chunks]
                for future in as_completed(futures):
                    done(future.result())
    csv_path, gt_path, _meta = write_index(videos, config, root)
    cells = {m: [getattr(c, m) for v in videos for c in v.cells] for m in MODALITIES}
    fakes = {m: [c.distractor[j] for v in videos for c in v.cells if not getattr(c, m)]
             for j, m in enumerate(MODALITIES)}
    return {
        "videos": len(videos), **counts, "seconds": time.perf_counter() - start,
        "rates": {m: (sum(x) / len(x) if x else 0.0) for m, x in cells.items()},
        # of the cells where a modality is not informative, the share showing a misleading cue
        "distractor_rates": {m: (sum(x) / len(x) if x else 0.0) for m, x in fakes.items()},
        "annotations": csv_path, "ground_truth": gt_path,
    }
