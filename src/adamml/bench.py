"""`adamml bench`: how much of AdaMML's GFLOPs saving turns into time (supplementary Sec. F, runtime analysis).

In one run on one machine, for AdaMML and the baselines (weighted fusion, unimodal models):
  (a) network only: videos/s of the evaluation pass over prepared inputs (the sparse inference path: each
      recognizer only on the segments that selected it);
  (b) end to end: videos/s of `adamml predict` on the raw video files (decoding, the policy, optical flow for
      the selected segments only, the recognizers).
It prints each speed-up over weighted fusion and the speed-up divided by the GFLOPs ratio (1.0 = the whole
theoretical saving shows up as time). The paper: 1.96x (Kinetics-Sounds) and 1.42x (ActivityNet) over weighted
fusion on one V100.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from adamml.data.dataset import Store
from adamml.evaluate import evaluate
from adamml.predict import load_predictor


def parse_named(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--checkpoint takes NAME=PATH, got {item!r}")
        name, path = item.split("=", 1)
        out[name.strip()] = Path(path)
    return out


def bench(checkpoints: dict[str, Path], data: Path, videos_root: Path | None, split: str = "test",
          limit: int | None = None, flow: str = "dis", baseline: str = "fusion", console: Console | None = None,
          repeats: int = 1, batch_size: int | None = None) -> dict[str, Any]:
    """Measure (a) and (b) for every checkpoint; speed-ups relative to `baseline`."""
    console = console or Console(stderr=True, soft_wrap=True)
    if baseline not in checkpoints:
        raise ValueError(f"the baseline {baseline!r} is not among the checkpoints ({', '.join(checkpoints)})")
    rows: dict[str, dict[str, Any]] = {}
    for name, path in checkpoints.items():
        console.rule(f"[bold]{name}")
        best = None
        for _ in range(repeats):  # the fastest of `repeats` passes, as timing tools do
            report = evaluate(path, data, split, None, batch_size=batch_size, console=console)
            if best is None or report["videos_per_second"] > best["videos_per_second"]:
                best = report
        rows[name] = {"gflops": best["gflops_per_video"], "top1": best["top1"],
                      "network_videos_per_second": best["videos_per_second"]}
    if videos_root is not None:
        store = Store.open(data)
        sources = [videos_root / r["source"] for r in store.split(split)][:limit]
        for name, path in checkpoints.items():
            predictor = load_predictor(path, flow, None)
            predictor(sources[0])  # warm-up (first-call allocations)
            start = time.perf_counter()
            pairs = 0
            for source in sources:
                result, _ = predictor(source)
                pairs += result.flow_pairs
            seconds = time.perf_counter() - start
            rows[name].update(end_to_end_videos_per_second=len(sources) / seconds, flow_pairs_per_video=pairs / len(sources))
    base = rows[baseline]
    for row in rows.values():
        row["gflops_ratio"] = base["gflops"] / row["gflops"] if row["gflops"] else float("inf")
        row["network_speedup"] = row["network_videos_per_second"] / base["network_videos_per_second"]
        row["network_efficiency"] = row["network_speedup"] / row["gflops_ratio"]
        if "end_to_end_videos_per_second" in row:
            row["end_to_end_speedup"] = row["end_to_end_videos_per_second"] / base["end_to_end_videos_per_second"]
            row["end_to_end_efficiency"] = row["end_to_end_speedup"] / row["gflops_ratio"]
    return {"baseline": baseline, "split": split, "batch_size": batch_size, "rows": rows}


def bench_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"speed against {result['baseline']} (same machine, same run)")
    columns = ("model", "top-1 (%)", "GFLOPs / video", "GFLOPs ratio", "network videos/s", "speed-up",
               "speed-up / ratio", "end-to-end videos/s", "speed-up", "speed-up / ratio", "flow pairs / video")
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, r in result["rows"].items():
        e2e = ("end_to_end_videos_per_second" in r)
        table.add_row(name, f"{r['top1']:.2f}", f"{r['gflops']:.4g}", f"{r['gflops_ratio']:.2f}x",
                      f"{r['network_videos_per_second']:.1f}", f"{r['network_speedup']:.2f}x",
                      f"{r['network_efficiency']:.2f}",
                      f"{r['end_to_end_videos_per_second']:.2f}" if e2e else "-",
                      f"{r['end_to_end_speedup']:.2f}x" if e2e else "-",
                      f"{r['end_to_end_efficiency']:.2f}" if e2e else "-",
                      f"{r['flow_pairs_per_video']:.1f}" if e2e else "-")
    return table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="videos/s of AdaMML against the baselines, network only and end to end",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", dest="checkpoints", action="append", required=True, metavar="NAME=PATH",
                   help="a trained model (repeatable), e.g. adamml=runs/demo/adamml/best.pt")
    p.add_argument("--data", required=True, type=Path, help="prepared store (network-only pass)")
    p.add_argument("--videos", type=Path, help="folder the store's sources are relative to (end-to-end pass)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="end to end: at most this many videos")
    p.add_argument("--flow", default="dis", help="end to end: the optical flow method of the store")
    p.add_argument("--baseline", default="fusion", help="the NAME speed-ups are relative to")
    p.add_argument("--repeats", type=int, default=1, help="network pass: keep the fastest of N")
    p.add_argument("--batch-size", type=int, help="network pass: videos per batch (default: each checkpoint's "
                   "train.eval_batch_size); larger batches spread the fixed cost of each layer call")
    p.add_argument("--json", type=Path, help="write the measurements here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True, soft_wrap=True)
    try:
        result = bench(parse_named(args.checkpoints), args.data, args.videos, args.split, args.limit, args.flow,
                       args.baseline, console, args.repeats, args.batch_size)
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        return 2
    Console(width=200).print(bench_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0
