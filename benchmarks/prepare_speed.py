"""Frames per second of each stage of `adamml prepare` on the same generated clips.

Measures, on one core (OpenCV limited to one thread) and on the same clips:
  decode+resize  PyAV decoding with the short side resized to 256
  jpeg           JPEG encoding of the resized frames
  flow <method>  optical flow between consecutive resized frames (tvl1, dis, farneback)
and the whole `prepare` of the clips with DIS flow and --workers N.

Usage: python benchmarks/prepare_speed.py [--clips 4] [--frames 48] [--size 340x256] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2

from adamml.prepare.decode import VideoReader
from adamml.prepare.flow import make_flow, to_gray
from adamml.prepare.importers import assign_classes, import_folder
from adamml.prepare.pipeline import run_prepare
from adamml.prepare.worker import PrepareSettings
from adamml.workflows.synthetic import moving_square_clip, tone, write_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="340x256", help="source frame size WxH")
    parser.add_argument("--tvl1-pairs", type=int, default=10, help="frame pairs timed for TV-L1 (slow)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "videos"
        for i in range(args.clips):
            frames = moving_square_clip(args.frames, width, height, (3.0, 1.0), seed=i)
            write_video(root / "bench" / f"clip{i}.mp4", frames, 25.0, tone(args.frames / 25.0))
        clips = sorted(root.rglob("*.mp4"))
        results = []

        start = time.perf_counter()
        decoded = []
        for clip in clips:
            with VideoReader(clip, short_side=256) as reader:
                decoded.extend(reader)
        seconds = time.perf_counter() - start
        results.append(("decode+resize (PyAV, short side 256)", len(decoded), seconds))
        h, w = decoded[0].shape[:2]

        start = time.perf_counter()
        for image in decoded:
            cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        results.append(("JPEG encode (quality 95)", len(decoded), time.perf_counter() - start))

        grays = [to_gray(image) for image in decoded[: args.frames]]
        for method in ("tvl1", "dis", "farneback"):
            flow = make_flow(method)
            pairs = min(len(grays) - 1, args.tvl1_pairs if method == "tvl1" else len(grays) - 1)
            start = time.perf_counter()
            for a, b in zip(grays[:pairs], grays[1:pairs + 1]):
                flow(a, b)
            results.append((f"flow {method} ({w}x{h} pairs)", pairs, time.perf_counter() - start))

        imported = import_folder(root)
        classes, entries = assign_classes(imported.entries, None, None)
        store = Path(tmp) / "store"
        summary = run_prepare(entries, classes, root, store, PrepareSettings(flow="dis"), workers=args.workers)
        results.append((f"prepare end to end, dis flow, {args.workers} workers", summary.frames,
                        summary.wall_seconds))

    print(f"{'stage':<48} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'ms/frame':>9}")
    for name, count, seconds in results:
        print(f"{name:<48} {count:>7} {seconds:>8.2f} {count / seconds:>9.1f} {1000 * seconds / count:>9.2f}")


if __name__ == "__main__":
    main()
