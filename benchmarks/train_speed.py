"""Training speed of the AdaMML stage at any preset's size, through the trainer's own step (`train_epoch`).

Random weights and random inputs already on the device (no data loading: see `loader_speed.py` for that), the
paper's training sizes (5 segments x 8 frames, ResNet-50 at 224, MobileNetV2 policy at 160): for each precision,
steps/s and videos/s of the three kinds of step the stage takes, as `adamml train --stage adamml` sets them up:

  recognition   the alternating epoch's recognition part (and warm-up / fine-tune): the recognizers and the
                fusion learn (SGD), the policy is frozen and samples its Gumbel decisions; sparse recognizers
  policy        the alternating epoch's policy part, the paper's way (`train.policy_passes: 1`): the policy learns
                (Adam, efficiency loss), the frozen recognizers run on every cell
  policy-cached a policy pass over cached recognizer logits (`train.policy_passes` > 1): the policy's network only

    python benchmarks/train_speed.py --device cuda --batch 6 --precision fp32 bf16
    python benchmarks/train_speed.py --config tiny --device cpu --steps 3      # a quick check anywhere

`--batch` is the batch of one process: the paper's global batch of 72 on 12-18 GPUs is 4-6 per GPU. Needs only
torch, numpy, pyyaml and rich (runs from src/ without installing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from adamml.config import load_config  # noqa: E402
from adamml.inference.speed import random_inputs  # noqa: E402
from adamml.models.build import build_model  # noqa: E402
from adamml.runtime.distributed import DistInfo  # noqa: E402
from adamml.runtime.jsonfile import write_json  # noqa: E402
from adamml.runtime.precision import PRECISIONS, Amp, channels_last  # noqa: E402
from adamml.train.loop import train_epoch  # noqa: E402
from adamml.train.optim import (  # noqa: E402
    efficiency_terms,
    recognition_params,
    set_trainable,
    trained_policy_params,
)


def _batches(cfg, batch: int, count: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator(device).manual_seed(0)
    out = []
    for i in range(count):
        inputs = random_inputs(cfg.model, batch, generator=g, segments=cfg.data.train_segments, device=device)
        label = torch.randint(0, cfg.model.num_classes, (batch,), generator=g, device=device)
        inputs.update(label=label, target=torch.nn.functional.one_hot(label, cfg.model.num_classes).float(),
                      index=torch.arange(i * batch, (i + 1) * batch, device=device))
        out.append(inputs)
    return out


def measure(config: str, overrides: list[str], precision: str, device: torch.device, batch: int, steps: int,
            warmup: int = 2) -> dict:
    cfg = load_config(config, overrides)
    torch.manual_seed(0)
    model = channels_last(build_model(cfg.model).to(device), device)
    amp = Amp(precision, device.type)
    info = DistInfo(device=device)
    # distinct batches, cycled: each step reads new inputs, as it would from a loader
    data = _batches(cfg, batch, min(steps, 4), device)
    feed = [data[i % len(data)] for i in range(steps)]
    rec_opt = torch.optim.SGD(recognition_params(model), lr=cfg.train.alternating.lr, momentum=0.9,
                              weight_decay=1e-4)
    pol_opt = torch.optim.Adam(trained_policy_params(model, cfg), lr=cfg.train.policy_lr)
    cells = cfg.data.train_segments * len(cfg.model.modalities)
    with torch.no_grad():
        recognized = torch.randn(steps * batch, cfg.data.train_segments, len(cfg.model.modalities),
                                 cfg.model.num_classes, device=device)
    kinds = {
        "recognition": (dict(recognizers=True, policy=False), [rec_opt], None, None),
        "policy": (dict(recognizers=False, policy=True), [pol_opt], efficiency_terms(cfg), None),
        "policy-cached": (dict(recognizers=False, policy=True), [pol_opt], efficiency_terms(cfg), recognized),
    }
    rows = {}
    for name, (trainable, optimizers, efficiency, cached) in kinds.items():
        set_trainable(model, **trainable, extractors=not cfg.train.freeze_policy_extractors)
        scaler = amp.scaler()

        def run(batches):
            train_epoch(model, model, batches, optimizers, info, decisions_fn=None, efficiency=efficiency,
                        multi_label=False, clip_grad_norm=cfg.train.clip_grad_norm, recognized=cached, amp=amp,
                        scaler=scaler)

        run(feed[:warmup])  # allocations, cuDNN's algorithm choice
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        run(feed)  # train_epoch reads each step's loss (.item()): every step ends synchronised
        seconds = time.perf_counter() - start
        rows[name] = {"steps_per_second": steps / seconds, "videos_per_second": steps * batch / seconds}
        if device.type == "cuda":
            rows[name]["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"  {precision} {name}: {steps / seconds:.2f} steps/s, {steps * batch / seconds:.1f} videos/s"
              + (f", peak {rows[name]['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in rows[name] else ""),
              flush=True)
    return {"config": config, "precision": precision, "device": str(device), "batch": batch, "steps": steps,
            "segments": cfg.data.train_segments, "cells_per_video": cells, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper-rgb-flow-audio")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=6, help="videos per step of this process (default 6 = 72 / 12)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each kind (default 10)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}", flush=True)
    results = []
    for precision in args.precision:
        results.append(measure(args.config, args.set, precision, device, args.batch, args.steps))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, results, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
