"""Data-loader throughput at the paper's settings: training samples per second, per loader worker.

Writes a store the way `adamml prepare` lays it out (short side 256: 340 x 256 JPEG frames at quality 95,
quantised flow x / y JPEGs, 24 kHz mono audio; textured moving pictures, so the JPEGs have the size of real
video frames), then reads training samples from it with the dataset the trainer uses, at the preset's sizes:
5 segments x 8 frames, 224 crops of a random scale, 10-channel flow stacks, RGB differences and spectrograms
for the policy. It reports

  * the milliseconds one sample takes in one process, split by modality (what to optimise);
  * samples/s through the trainer's own loader (`adamml.train.loop.make_loader`: batches of --batch, pinned
    memory on CUDA) with 0, 1, 2, 4, ... workers, and samples/s per worker, counted after each epoch's first
    batches (the workers' start);
  * with --pass-starts, the milliseconds from each pass's start to its first batch with new workers every pass
    and with the workers kept from pass to pass (`data.persistent_workers`, a `LoaderPool`);
each in both transports: `float` (the workers send normalised float32 tensors) and `uint8` (the workers send the
uint8 crops, the training process finishes them on its device: `data.normalize_on_device`, the paper presets').
With `--decode device` (`data.decode: device`) the workers only read the JPEG files' bytes and the training process
decodes, crops and finishes each batch on its device (`adamml.data.jpeg`; uint8 transport only, reported as
`device_decode`): the timings include that work (synchronised on CUDA). With the uint8 transport the one-process
split also shows the workers' part alone as `<modality> worker`.

    python benchmarks/loader_speed.py                           # paper-rgb-flow-audio, workers 0 1 2 4 8
    python benchmarks/loader_speed.py --workers 0 1 --videos 12 --seconds 4   # a quick check
    python benchmarks/loader_speed.py --decode device --workers 1 4 8 # JPEGs decoded on the GPU
    python benchmarks/loader_speed.py --workers 2 --transports uint8 --pass-starts 4  # workers kept or not

A GPU that trains V videos/s needs V / (samples/s per worker) loader cores. Needs torch, numpy, opencv, pyyaml.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from adamml.config import load_config  # noqa: E402
from adamml.data.batch import finish_batch  # noqa: E402
from adamml.data.dataset import SegmentDataset, Store, sampling_config  # noqa: E402
from adamml.data.jpeg import collate_encoded, decode_batch  # noqa: E402
from adamml.data.layout import (  # noqa: E402
    AUDIO_NAME,
    CLASSES_NAME,
    FLOW_X_TEMPLATE,
    FLOW_Y_TEMPLATE,
    FRAMES_DIR,
    IMG_TEMPLATE,
    MANIFEST_NAME,
    write_jsonl,
)
from adamml.data.loader import LoaderPool, make_loader  # noqa: E402
from adamml.runtime.distributed import DistInfo  # noqa: E402
from adamml.runtime.jsonfile import write_json  # noqa: E402

WIDTH, HEIGHT, FPS, RATE = 340, 256, 30.0, 24_000


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random picture with fine grain: JPEG sizes like those of real frames (~20-40 kB here)."""
    coarse = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    picture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    picture += rng.normal(0, 5, picture.shape).astype(np.float32)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _write_video(args: tuple[Path, int, int]) -> dict:
    store, index, frames = args
    rng = np.random.default_rng(index)
    vid = f"video_{index:04d}"
    folder = store / FRAMES_DIR / vid
    folder.mkdir(parents=True, exist_ok=True)
    scene = _texture(rng, HEIGHT, WIDTH + 4 * frames)  # panned across: every frame differs
    params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    for i in range(frames):
        cv2.imwrite(str(folder / IMG_TEMPLATE.format(i + 1)), scene[:, 4 * i: 4 * i + WIDTH], params)
        if i < frames - 1:
            for template, shift in ((FLOW_X_TEMPLATE, 4.0), (FLOW_Y_TEMPLATE, 0.0)):
                field = 128 + 6.4 * shift + rng.normal(0, 3, (HEIGHT // 8, WIDTH // 8))
                image = cv2.resize(np.clip(field, 0, 255).astype(np.uint8), (WIDTH, HEIGHT))
                cv2.imwrite(str(folder / template.format(i + 1)), image, params)
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(frames / FPS * RATE)) / RATE) * 32767).astype("<i2")
    with wave.open(str(folder / AUDIO_NAME), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes(samples.tobytes())
    return {"id": vid, "source": f"{vid}.mp4", "frames_dir": f"{FRAMES_DIR}/{vid}",
            "audio": f"{FRAMES_DIR}/{vid}/{AUDIO_NAME}", "labels": [f"class{index % 4}"], "label_ids": [index % 4],
            "split": "train", "fps": FPS, "num_frames": frames, "num_flow": frames - 1, "duration": frames / FPS,
            "width": WIDTH, "height": HEIGHT, "rotation": 0, "has_audio": True, "audio_samples": len(samples),
            "flow": "tvl1", "status": "ok", "error": None}


def make_store(store: Path, videos: int, seconds: float) -> Path:
    """A store of `videos` made-up videos of `seconds` each (reused when it is there already)."""
    if (store / MANIFEST_NAME).exists() and len(Store.open(store).rows) == videos:
        return store
    store.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * FPS)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        rows = list(pool.map(_write_video, [(store, i, frames) for i in range(videos)]))
    (store / CLASSES_NAME).write_text("".join(f"class{i}\n" for i in range(4)), encoding="utf-8")
    write_jsonl(store / MANIFEST_NAME, rows)
    size = sum(f.stat().st_size for f in (store / FRAMES_DIR / rows[0]["id"]).glob("img_*.jpg")) / frames
    print(f"store: {videos} videos x {frames} frames of {WIDTH}x{HEIGHT} ({size / 1000:.0f} kB per RGB JPEG) in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return store


def _sampling(cfg, uint8: bool, decode: str = "cpu"):
    return dataclasses.replace(sampling_config(cfg), raw=uint8, decode=decode)


def _finished(item: dict, cfg, device: torch.device, decode: str) -> dict:
    """One uint8 sample as a batch finished on `device` (decoded there first with `decode` "device")."""
    if decode == "device":
        batch = decode_batch(collate_encoded([item]), device, cfg.model.input_size)
        return finish_batch({k: v.to(device) for k, v in batch.items()}, cfg.model)
    return finish_batch({k: v[None].to(device) for k, v in item.items()}, cfg.model)


def per_modality_ms(store: Store, cfg, samples: int, uint8: bool, device: torch.device, decode: str = "cpu"
                    ) -> dict[str, float]:
    """Milliseconds per training sample in this process, for each modality alone and for all of them (uint8:
    with the finishing on `device`, and the workers' part alone as "<name> worker"; `decode` "device": with the
    decoding on `device` too)."""
    out = {}
    for name, modalities in [(m, (m,)) for m in cfg.model.modalities] + [("all", cfg.model.modalities)]:
        data = SegmentDataset(store, "train", modalities, train=True, sampling=_sampling(cfg, uint8, decode))
        if uint8:
            _finished(data[0], cfg, device, decode)  # first-call costs
        reading = 0.0
        start = time.perf_counter()
        for i in range(samples):
            begin = time.perf_counter()
            item = data[i % len(data)]
            reading += time.perf_counter() - begin
            if uint8:
                _finished(item, cfg, device, decode)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out[name] = 1000 * (time.perf_counter() - start) / samples
        if uint8:  # what a loader worker does of it (the rest is the training process's, on its device)
            out[f"{name} worker"] = 1000 * reading / samples
    return out


def loader_rate(store: Store, cfg, workers: int, batch: int, epochs: int, uint8: bool, device: torch.device,
                max_batches: int | None = None, decode: str = "cpu") -> float:
    """Samples/s through the trainer's loader (batches on `device`, finished there for uint8, decoded there with
    `decode` "device"), not counting each epoch's first `workers` batches (its workers' start, then one batch each
    in parallel); at most `max_batches` timed batches an epoch."""
    data = SegmentDataset(store, "train", cfg.model.modalities, train=True, sampling=_sampling(cfg, uint8, decode))
    if len(data) < batch * (workers + 2):
        raise SystemExit(f"{len(data)} videos give too few batches of {batch} for {workers} workers: more --videos")
    info = DistInfo(device=device)
    timed, seconds = 0, 0.0
    for epoch in range(epochs):
        data.set_epoch(epoch)
        loader = make_loader(data, batch, info, epoch, train=True, workers=workers)
        start = None
        for step, item in enumerate(loader, 1):
            if not uint8:
                item = {k: v.to(device, non_blocking=True) for k, v in item.items()}
            if step == max(1, workers):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
            elif start is not None:
                timed += batch
                if max_batches is not None and step - max(1, workers) >= max_batches:
                    break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - start
    return timed / seconds


def pass_start_ms(store: Store, cfg, workers: int, batch: int, passes: int, uint8: bool, device: torch.device,
                  persistent: bool) -> list[float]:
    """Milliseconds from the start of each of `passes` passes over the training split to its first batch: the
    workers' start (new ones every pass, or, `persistent`, those of the run's `LoaderPool`, started in the first
    pass) and that batch's reading. Each pass is read to its end, as the trainer does."""
    data = SegmentDataset(store, "train", cfg.model.modalities, train=True, sampling=_sampling(cfg, uint8))
    info = DistInfo(device=device)
    out = []
    with LoaderPool() as pool:
        for epoch in range(passes):
            data.set_epoch(epoch)
            start = time.perf_counter()
            loader = make_loader(data, batch, info, epoch, train=True, workers=workers,
                                 pool=pool if persistent else None)
            for step, _ in enumerate(loader):
                if step == 0:
                    out.append(1000 * (time.perf_counter() - start))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper-rgb-flow-audio")
    parser.add_argument("--store", type=Path, default=Path("runs/loader-bench/store"))
    parser.add_argument("--videos", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=1, help="loader passes per measurement (default 1)")
    parser.add_argument("--max-batches", type=int, help="timed batches per pass at most (default: the whole pass)")
    parser.add_argument("--samples", type=int, default=6, help="samples per modality for the split (default 6)")
    parser.add_argument("--transports", nargs="+", choices=["float", "uint8"],
                        help="default: float and uint8 (uint8 alone with --decode device)")
    parser.add_argument("--decode", default="cpu", choices=["cpu", "device"],
                        help="where the JPEGs are decoded (data.decode; device: uint8 transport only)")
    parser.add_argument("--pass-starts", type=int, default=0, metavar="PASSES",
                        help="also time each pass's start (workers started, first batch read) over PASSES passes "
                             "with new workers every pass and with workers kept (data.persistent_workers), at the "
                             "largest --workers count (default: not timed)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.transports is None:
        args.transports = ["uint8"] if args.decode == "device" else ["float", "uint8"]
    if args.decode == "device" and "float" in args.transports:
        parser.error("--decode device gives uint8 pixels to the device: the float transport does not apply")
    cv2.setNumThreads(1)  # one core per worker, as the trainer's workers run
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    store = Store.open(make_store(args.store, args.videos, args.seconds))
    device = torch.device(args.device)
    result: dict = {"config": args.config, "batch": args.batch, "cpu_count": os.cpu_count(), "device": str(device),
                    "decode": args.decode}
    for transport in args.transports:
        uint8 = transport == "uint8"
        name = "device_decode" if args.decode == "device" else transport
        ms = per_modality_ms(store, cfg, args.samples, uint8, device, args.decode)
        print(f"{name}: one process, ms per training sample: " + ", ".join(f"{k} {v:.0f}" for k, v in ms.items()),
              flush=True)
        rates = {}
        for workers in args.workers:
            rate = loader_rate(store, cfg, workers, args.batch, args.epochs, uint8, device, args.max_batches,
                               args.decode)
            rates[str(workers)] = {"samples_per_second": rate, "per_worker": rate / max(1, workers)}
            print(f"  {name}, {workers} workers: {rate:.1f} samples/s ({rate / max(1, workers):.2f} per worker)",
                  flush=True)
        result[name] = {"ms_per_sample": ms, "loader": rates}
        if args.pass_starts and args.decode == "cpu":
            starts = {}
            for workers in [max(args.workers)] if max(args.workers) > 0 else []:
                new_ms, kept_ms = (pass_start_ms(store, cfg, workers, args.batch, args.pass_starts, uint8, device, kept)
                                   for kept in (False, True))
                starts[str(workers)] = {"new_workers_ms": new_ms, "kept_workers_ms": kept_ms}
                print(f"  {name}, {workers} workers, ms from a pass's start to its first batch: new workers "
                      f"{_median(new_ms):.0f} (each pass: {_listed(new_ms)}); kept workers {_median(kept_ms[1:]):.0f} "
                      f"after the first pass (each pass: {_listed(kept_ms)})", flush=True)
            result[name]["pass_start"] = starts
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, result, indent=1)
    return 0


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _listed(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
