"""Time saved by reusing the optical flow a frame folder already holds (`adamml prepare --existing-flow reuse`,
the default) against computing it again (`--existing-flow recompute`).

A made-up mmaction2 / denseflow rawframes tree: CLIPS folders of FRAMES frames (`img_00001.jpg`, a moving square on
noise, WxH) with their flow (`flow_x_00001.jpg`, `flow_y_`, bound 20, computed once here with DIS); then the same
`prepare` of it into a fresh store with each flow method and with reuse, on one worker with OpenCV on one thread.

Usage: python benchmarks/existing_flow_speed.py [--clips 3] [--frames 100] [--size 340x256] [--methods tvl1,dis]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from adamml.prepare.flow import make_flow, quantize, to_gray
from adamml.prepare.importers import assign_classes, import_annotations
from adamml.prepare.pipeline import run_prepare
from adamml.prepare.worker import PrepareSettings
from adamml.workflows.synthetic import moving_square_clip


def make_tree(root: Path, clips: int, frames: int, width: int, height: int) -> Path:
    flow = make_flow("dis")
    lines = []
    for c in range(clips):
        folder = root / f"clip{c}"
        folder.mkdir(parents=True)
        images = moving_square_clip(frames, width, height, (3.0, 1.0), seed=c)[..., ::-1]  # RGB -> BGR
        noise = np.random.default_rng(c).integers(0, 40, images.shape[1:], dtype=np.uint8)
        previous = None
        for i, image in enumerate(images):
            image = np.ascontiguousarray(image) + noise
            cv2.imwrite(str(folder / f"img_{i + 1:05d}.jpg"), image)
            gray = to_gray(image)
            if previous is not None:
                fx, fy = quantize(flow(previous, gray))
                cv2.imwrite(str(folder / f"flow_x_{i:05d}.jpg"), fx)
                cv2.imwrite(str(folder / f"flow_y_{i:05d}.jpg"), fy)
            previous = gray
        lines.append(f"clip{c} {frames} 0")
    listing = root / "list.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="340x256", help="frame size WxH (short side 256: stored as it is)")
    parser.add_argument("--methods", default="tvl1,dis", help="flow methods to compare reuse against")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cv2.setNumThreads(1)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        listing = make_tree(raw, args.clips, args.frames, width, height)
        imported = import_annotations("mmaction-rawframes", listing, raw)
        classes, entries = assign_classes(imported.entries, None, None)
        for method in args.methods.split(","):
            for mode in ("recompute", "reuse"):
                if mode == "reuse" and "reuse" in results:
                    continue  # reusing does not depend on the method
                settings = PrepareSettings(short_side=min(width, height), flow=method, existing_flow=mode)
                store = Path(tmp) / f"store-{method}-{mode}"
                start = time.perf_counter()
                summary = run_prepare(entries, classes, raw, store, settings, workers=1)
                wall = time.perf_counter() - start
                assert summary.ok == args.clips, f"{summary.failed} clips failed: {summary.failures}"
                key = "reuse" if mode == "reuse" else f"recompute-{method}"
                results[key] = {"wall_s": round(wall, 2), "flow_stage_s": round(summary.stage_seconds["flow"], 2),
                                "frames": summary.frames}
                print(f"{key:18s} wall {wall:7.2f} s, flow stage {summary.stage_seconds['flow']:7.2f} s, "
                      f"{summary.frames} frames", flush=True)
    reuse = results["reuse"]["wall_s"]
    for key, row in results.items():
        if key != "reuse":
            print(f"{key}: reuse saves {row['wall_s'] - reuse:.1f} s of {row['wall_s']:.1f} s "
                  f"({row['wall_s'] / reuse:.1f}x faster)")
    if args.out:
        args.out.write_text(json.dumps({"clips": args.clips, "frames_per_clip": args.frames, "size": args.size,
                                        "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
