"""What a pass over the data costs in starting the loader's worker processes, with new workers every pass (the way
before `data.persistent_workers`) and with the workers a training run keeps (`adamml.data.loader.LoaderPool`).

Each pass reads a data set whose items cost nothing (a small tensor), so the time of a pass is the workers' start
and the batches' round trips; the pass time with new workers less that with kept ones is what keeping them saves,
per loader and pass (a training epoch has some three loaders: training, validation, the policy's batch norm). It
depends on how processes start: `fork` (Linux' default) copies the training process's page tables, so it grows with
the memory the process holds (`--hold-gb`: memory held and touched, as a trainer's model, optimiser and CUDA
context are); `spawn` (the default on macOS and Windows) starts a new interpreter that imports torch and adamml.

    python benchmarks/worker_start.py                                  # fork and spawn, 2 and 8 workers
    python benchmarks/worker_start.py --methods fork --workers 8 --hold-gb 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from adamml.data.loader import LoaderPool, make_loader  # noqa: E402
from adamml.runtime.distributed import DistInfo  # noqa: E402
from adamml.runtime.jsonfile import write_json  # noqa: E402


class Cheap(Dataset):
    """Items that cost nothing to make: the time of a pass is the loader's own."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.full((16,), index)


def pass_seconds(workers: int, passes: int, batch: int, size: int, kept: bool) -> list[float]:
    data, info = Cheap(size), DistInfo()
    seconds = []
    with LoaderPool() as pool:
        for epoch in range(passes):
            start = time.perf_counter()
            for _ in make_loader(data, batch, info, epoch, train=True, workers=workers, pool=pool if kept else None):
                pass
            seconds.append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["fork", "spawn"], choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--passes", type=int, default=4, help="passes per measurement (default 4)")
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--batches", type=int, default=16, help="batches per pass (default 16)")
    parser.add_argument("--hold-gb", type=float, default=0.0,
                        help="memory the measuring process holds and has touched, as a trainer's does (default 0)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    held = np.ones(int(args.hold_gb * (1 << 30)), np.uint8) if args.hold_gb > 0 else None
    result: dict = {"cpu_count": os.cpu_count(), "hold_gb": args.hold_gb, "batch": args.batch,
                    "batches": args.batches, "passes": args.passes, "runs": []}
    print(f"{os.cpu_count()} CPUs; this process holds {args.hold_gb:g} GB besides torch; passes of {args.batches} "
          f"batches of {args.batch} items that cost nothing", flush=True)
    for method in args.methods:
        mp.set_start_method(method, force=True)
        for workers in args.workers:
            new = pass_seconds(workers, args.passes, args.batch, args.batch * args.batches, kept=False)
            kept = pass_seconds(workers, args.passes, args.batch, args.batch * args.batches, kept=True)
            row = {"method": method, "workers": workers, "new_workers_s": new, "kept_workers_s": kept,
                   "saved_per_pass_s": statistics.median(new) - statistics.median(kept[1:])}
            result["runs"].append(row)
            print(f"{method}, {workers} workers: a pass takes {statistics.median(new):.3f} s with new workers, "
                  f"{statistics.median(kept[1:]):.3f} s with kept ones after the first "
                  f"({kept[0]:.3f} s): {row['saved_per_pass_s']:.3f} s saved per pass and loader", flush=True)
    del held
    if args.json is not None:
        write_json(args.json, result, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
