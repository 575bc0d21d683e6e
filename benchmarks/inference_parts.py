"""Where a trained AdaMML model's inference time goes on this machine, per batch of prepared videos.

Times (median of N runs, milliseconds per batch): shaping the stored layout for the networks (the policy's
inputs, the smaller spectrogram; done in the data pipeline by `adamml.data.batch.network_ready`, so not part of the
network time), the policy, the whole sparse inference path, and the always-on path (every recognizer on every
segment, i.e. weighted fusion's cost): as trained, with batch norms folded into the convolutions, and folded with
channels-last weights (`adamml.models.folding`, what eval, predict and bench use). At the CPU preset's scale the
policy is ~5 % of the GMACs but a much larger share of the time; this shows how much.

    python benchmarks/inference_parts.py --checkpoint runs/demo/adamml/best.pt --data runs/demo/store --videos 8
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch

from adamml.data.batch import network_ready
from adamml.data.dataset import SegmentDataset, Store, sampling_config
from adamml.inference.checkpoint import load_trained
from adamml.models.folding import fold_batch_norms, optimize_for_inference


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="prepared store")
    parser.add_argument("--split", default="test")
    parser.add_argument("--videos", type=int, default=8, help="videos per batch")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    trained = load_trained(args.checkpoint, fold=False)
    model, cfg = trained.model, trained.config
    stored = dataclasses.replace(sampling_config(cfg), network=None)  # the stored layout, shaped below
    data = SegmentDataset(Store.open(args.data), args.split, cfg.model.modalities, train=False, sampling=stored)
    raw = torch.utils.data.default_collate([data[i] for i in range(min(args.videos, len(data)))])
    batch = network_ready(raw, cfg.model)
    b, s = batch["label"].shape[0], cfg.model.num_segments
    print(f"{b} videos x {s} segments, {torch.get_num_threads()} threads; milliseconds per batch")
    variants = (("as trained", model), ("batch norms folded", fold_batch_norms(copy.deepcopy(model))),
                ("folded, channels-last", optimize_for_inference(copy.deepcopy(model))))
    with torch.no_grad():
        print(f"shaping the inputs (data pipeline) {median_ms(lambda: network_ready(raw, cfg.model), args.repeats):.1f}")
        for label, net in variants:
            inputs = net.policy_inputs(batch)
            parts = {
                "policy": median_ms(lambda: net.policy(inputs), args.repeats),
                "sparse inference (all)": median_ms(lambda: net.infer(batch), args.repeats),
                "always on": median_ms(lambda: net.infer(batch, torch.ones(b, s, len(net.modalities))), args.repeats),
            }
            print(f"{label:>22}: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
