"""Choosing and recording a checkpoint's operating point on a prepared split: the library behind `adamml calibrate`
and the last step of an AdaMML training (`adamml.inference.operating_point` holds the rule and explains it)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adamml.config import OperatingPointConfig
from adamml.data.dataset import SegmentDataset, Store, sampling_config
from adamml.data.layout import StoreError
from adamml.data.loader import make_loader
from adamml.errors import UserError
from adamml.inference.checkpoint import checkpoint_config, load_checkpoint, load_trained, save_checkpoint
from adamml.inference.gflops import measure_costs
from adamml.inference.operating_point import OperatingPoint, calibrate_model, dense_outputs
from adamml.runtime.distributed import DistInfo


def calibrate(checkpoint: Path, data: Path, split: str = "val", settings: OperatingPointConfig | None = None,
              out: Path | None = None, info: DistInfo | None = None, batch_size: int | None = None,
              console: Console | None = None, on_dense=None) -> OperatingPoint:
    """Choose the operating point of the AdaMML `checkpoint` on `split` of the store `data` for `settings` (default:
    the checkpoint's own ``train.operating_point``) and record it in `out` (default: the checkpoint itself,
    rewritten atomically; the main process writes). `on_dense(model, dense, costs)`, if given, also receives the
    split's dense outputs (e.g. to study threshold rules without another pass over the videos)."""
    console = console or Console(stderr=True, soft_wrap=True)
    info = info or DistInfo()
    if split == "test" and info.is_main:
        console.print("[yellow]warning:[/yellow] calibrating on the test split: a threshold chosen there makes it "
                      "no longer held out; choose on a validation split and read test only to report")
    cfg = checkpoint_config(load_checkpoint(checkpoint), checkpoint)
    store = Store.open(data)
    if len(store.classes) != cfg.model.num_classes:
        raise StoreError(f"{data} has {len(store.classes)} classes, the checkpoint {checkpoint} was trained for "
                         f"{cfg.model.num_classes}")
    dataset = SegmentDataset(store, split, cfg.model.modalities, train=False, sampling=sampling_config(cfg))
    if len(dataset) == 0:
        raise UserError(f"{data} has no {split!r} videos to calibrate on")
    return calibrate_dataset(checkpoint, dataset, store.multi_label, split, settings, out, info, batch_size, console,
                             Path(data).resolve(), on_dense)


def calibrate_dataset(checkpoint: Path, dataset: SegmentDataset, multi_label: bool, split: str,
                      settings: OperatingPointConfig | None = None, out: Path | None = None,
                      info: DistInfo | None = None, batch_size: int | None = None, console: Console | None = None,
                      data: Path | None = None, on_dense=None) -> OperatingPoint:
    """`calibrate` on a dataset already built (training's validation set)."""
    console = console or Console(stderr=True, soft_wrap=True)
    info = info or DistInfo()
    trained = load_trained(checkpoint, str(info.device))
    model, cfg, stage = trained.model, trained.config, trained.stage
    if not trained.uses_policy:
        raise UserError(f"{checkpoint} is a {stage!r} model: it has no policy, so no decision threshold to choose")
    settings = settings or cfg.train.operating_point
    if settings.target == "fixed":
        raise UserError("the target 'fixed' records nothing: choose accuracy or budget")
    loader = make_loader(dataset, batch_size or cfg.train.eval_batch_size, info, 0, train=False, workers=cfg.data.workers)
    started = time.perf_counter()
    progress = Progress(TextColumn(f"[bold]calibrate on {split}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, disable=not info.is_main)
    with progress:
        task = progress.add_task("calibrate", total=len(dataset))
        dense = dense_outputs(model, loader, info, on_batch=lambda n: progress.update(task, advance=n))
    costs = measure_costs(cfg.model)
    point = calibrate_model(model, dense, costs, multi_label, split, settings.target, settings.margin,
                            settings.budget, settings.thresholds, data)
    if on_dense is not None and info.is_main:
        on_dense(model, dense, costs)
    if info.is_main:
        record_operating_point(checkpoint, point, out)
        for warning in point.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
        console.print(f"operating point: {escape(point.describe())} ({time.perf_counter() - started:.1f} s) "
                      f"-> {out or checkpoint}")
    return point


def record_operating_point(checkpoint: Path, point: OperatingPoint, out: Path | None = None) -> Path:
    """Write `point` into the checkpoint payload (as a new file `out`, or the checkpoint itself, atomically)."""
    payload = load_checkpoint(checkpoint)
    payload["operating_point"] = point.to_json()
    target = Path(out) if out is not None else Path(checkpoint)
    save_checkpoint(target, payload)
    return target
