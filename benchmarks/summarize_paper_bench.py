"""The tables of `paper_size_bench.sh`'s results (markdown, as the README shows them).

    python benchmarks/summarize_paper_bench.py runs/paper-size-bench
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def training_table(runs: list[dict]) -> list[str]:
    lines = ["| precision | step | steps/s | videos/s | peak GPU memory (GiB) |", "| --- | --- | ---: | ---: | ---: |"]
    for run in runs:
        for kind, row in run["rows"].items():
            memory = f"{row['peak_memory_gib']:.1f}" if "peak_memory_gib" in row else "-"
            lines.append(f"| {run['precision']} | {kind} | {row['steps_per_second']:.2f} | "
                         f"{row['videos_per_second']:.1f} | {memory} |")
    return lines


def bench_table(results: list[dict]) -> list[str]:
    lines = ["| config | precision | batch | fusion videos/s | AdaMML videos/s | speed-up | GFLOPs ratio |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(results, key=lambda r: (r["config"], r.get("precision", "fp32"), r["batch_size"])):
        fusion, ada = r["rows"]["fusion"], r["rows"]["adamml"]
        lines.append(f"| {r['config']} | {r.get('precision', 'fp32')} | {r['batch_size']} | "
                     f"{fusion['network_videos_per_second']:.1f} | {ada['network_videos_per_second']:.1f} | "
                     f"{ada['network_speedup']:.2f}x | {ada['gflops_ratio']:.2f}x |")
    return lines


def loader_table(loader: dict, training: list[dict]) -> list[str]:
    transports = [t for t in ("float", "uint8", "device_decode") if t in loader]
    lines = ["| loader workers | " + " | ".join(f"{t}: samples/s | per worker" for t in transports) + " |",
             "| ---: |" + " ---: | ---: |" * len(transports)]
    for workers in loader[transports[0]]["loader"]:
        cells = [f"{loader[t]['loader'][workers]['samples_per_second']:.1f} | "
                 f"{loader[t]['loader'][workers]['per_worker']:.2f}" for t in transports if workers in loader[t]["loader"]]
        lines.append(f"| {workers} | " + " | ".join(cells) + " |")
    lines.append("")
    for t in transports:
        lines.append(f"- {t}, one process, ms per training sample: "
                     + ", ".join(f"{k} {v:.0f}" for k, v in loader[t]["ms_per_sample"].items()))
    for t in transports:
        for workers, starts in loader[t].get("pass_start", {}).items():
            new, kept = starts["new_workers_ms"], starts["kept_workers_ms"]
            lines.append(f"- {t}, {workers} workers, ms from a pass's start to its first batch: new workers "
                         f"{statistics.median(new):.0f}, kept workers (data.persistent_workers) "
                         f"{statistics.median(kept[1:] or kept):.0f} after the first pass")
    for transport in transports[1:]:
        if transport == "device_decode":
            lines += _device_decode_cores(loader[transport], training)
        else:
            lines += _cores_needed(loader[transport]["loader"], transport, training)
    return lines


def _device_decode_cores(result: dict, training: list[dict]) -> list[str]:
    """With the JPEGs decoded on the GPU the workers only read files: their CPU time per sample ("all worker")
    gives the cores needed, and the loader's best samples/s what the GPU's decoding gives at most."""
    worker_ms = result["ms_per_sample"].get("all worker")
    best = max(row["samples_per_second"] for row in result["loader"].values())
    lines = [f"- device_decode: at most {best:.1f} samples/s through the loader (workers + decoding on the GPU)"]
    if worker_ms and training:
        for run in training:
            need = max(run["rows"][k]["videos_per_second"] for k in ("recognition", "policy") if k in run["rows"])
            lines.append(f"- {run['precision']}: {need:.1f} videos/s at {worker_ms:.0f} ms of worker CPU per sample "
                         f"(device_decode) takes {need * worker_ms / 1000:.1f} loader cores")
    return lines


def _cores_needed(rates: dict, transport: str, training: list[dict]) -> list[str]:
    """How many loader cores the GPU's training speed needs at the best samples/s per worker of `transport`."""
    per_worker = max((row["per_worker"] for w, row in rates.items() if int(w) > 0), default=None)
    lines = []
    if per_worker and training:
        for run in training:
            # the loader feeds the recognition step and the paper's policy step (cached passes need no loader)
            need = max(run["rows"][k]["videos_per_second"] for k in ("recognition", "policy") if k in run["rows"])
            lines.append(f"- {run['precision']}: the GPU trains {need:.1f} videos/s at most; at {per_worker:.2f} "
                         f"samples/s per worker ({transport}) that takes {need / per_worker:.0f} loader cores")
    return lines


def end_to_end_table(runs: list[dict]) -> list[str]:
    """`bench --synthetic --videos` results: videos/s, speed-up over fusion and where each video's time went."""
    lines = ["| flow | model | GFLOPs / video | end-to-end videos/s | speed-up | / GFLOPs ratio | flow fields / video "
             "| ms per video: decode, policy inputs, policy, rgb, flow, recognizers |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for run in runs:
        for name, row in run["rows"].items():
            parts = ", ".join(f"{1000 * v:.0f}" for v in row["seconds_per_video"].values())
            lines.append(f"| {run['flow']} | {name} | {row['gflops']:.4g} | {row['end_to_end_videos_per_second']:.3g} | "
                         f"{row['end_to_end_speedup']:.2f}x | {row['end_to_end_efficiency']:.2f} | "
                         f"{row['flow_pairs_per_video']:.0f} | {parts} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv or sys.argv[1:] or ["runs/paper-size-bench"])[0])
    training = _load(folder / "train-speed.json") or []
    benches = [r for p in sorted(folder.glob("paper-*-batch*.json")) if (r := _load(p))]
    loader = _load(folder / "loader-speed.json")
    end_to_end = [r for name in ("e2e-dis.json", "e2e-tvl1.json") if (r := _load(folder / name))]
    device_decode = _load(folder / "loader-speed-device.json")
    if loader and device_decode and "device_decode" in device_decode:
        loader["device_decode"] = device_decode["device_decode"]
    out: list[str] = []
    if training:
        out += ["## Training steps (AdaMML stage, batch %d per GPU)" % training[0]["batch"], ""] + training_table(training)
    if benches:
        out += ["", "## Network speed against weighted fusion (10 test segments)", ""] + bench_table(benches)
    if loader and any(t in loader for t in ("float", "uint8")):
        out += ["", "## Data loader (training samples, paper settings)", ""] + loader_table(loader, training)
    if end_to_end:
        out += ["", f"## End to end on video files ({end_to_end[0]['config']}, {end_to_end[0]['videos']} videos)",
                ""] + end_to_end_table(end_to_end)
    text = "\n".join(out) + "\n"
    (folder / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if out else 1


if __name__ == "__main__":
    raise SystemExit(main())
