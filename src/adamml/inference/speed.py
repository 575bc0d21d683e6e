"""Speed measurements of AdaMML against the baselines: the library behind `adamml bench` (`adamml.cli.bench`
says what is measured and how)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from adamml.config import ModelConfig, load_config
from adamml.data.batch import policy_key
from adamml.data.dataset import Store
from adamml.inference.checkpoint import has_policy
from adamml.inference.evaluation import evaluate
from adamml.inference.gflops import always_on_gmacs, measure_costs, video_gmacs
from adamml.modalities import modality_rates
from adamml.models.build import build_model
from adamml.models.folding import optimize_for_inference
from adamml.runtime.precision import FP32, Amp, amp_for


def parse_named(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--checkpoint takes NAME=PATH, got {item!r}")
        name, path = item.split("=", 1)
        name = name.strip()
        if not name:
            raise ValueError(f"--checkpoint takes NAME=PATH, got {item!r} (no name)")
        if name in out:  # the later one would replace the earlier without a word
            raise ValueError(f"--checkpoint {name}= is given twice ({out[name]} and {path}); give each a name of its own")
        out[name] = Path(path)
    return out


def bench(checkpoints: dict[str, Path], data: Path, videos_root: Path | None, split: str = "test",
          limit: int | None = None, flow: str = "dis", baseline: str = "fusion", console: Console | None = None,
          repeats: int = 1, batch_size: int | None = None, precision: str = "fp32",
          threshold: float | None = None) -> dict[str, Any]:
    """Measure (a) and (b) for every checkpoint; speed-ups relative to `baseline`. AdaMML checkpoints decide at
    `threshold` when given, else at their recorded operating point."""
    console = console or Console(stderr=True, soft_wrap=True)
    if baseline not in checkpoints:
        raise ValueError(f"the baseline {baseline!r} is not among the checkpoints ({', '.join(checkpoints)})")
    policies = {name: has_policy(path) for name, path in checkpoints.items()}
    if threshold is not None and not any(policies.values()):
        raise ValueError(f"--threshold applies to checkpoints with a policy (AdaMML); none of {', '.join(checkpoints)} "
                         "has one")
    rows: dict[str, dict[str, Any]] = {}
    for name, path in checkpoints.items():
        console.rule(f"[bold]{name}")
        best = None
        for _ in range(repeats):  # the fastest of `repeats` passes, as timing tools do
            given = [threshold] if threshold is not None and policies[name] else None
            report = evaluate(path, data, split, None, given,
                              batch_size=batch_size, console=console, precision=precision)
            if best is None or report.videos_per_second > best.videos_per_second:
                best = report
        rows[name] = {"gflops": best.gflops_per_video, "top1": best.top1, "threshold": best.threshold,
                      "network_videos_per_second": best.videos_per_second}
    if videos_root is not None:
        # decoding (PyAV) is imported only where it is needed
        from adamml.inference.prediction import load_predictor

        store = Store.open(data)
        sources = [videos_root / r["source"] for r in store.split(split)][:limit]
        for name, path in checkpoints.items():
            policy = rows[name]["threshold"] is not None
            predictor = load_predictor(path, flow, threshold if policy else None, precision=precision)
            predictor(sources[0])  # warm-up (first-call allocations)
            start = time.perf_counter()
            pairs = 0
            for source in sources:
                result, _ = predictor(source)
                pairs += result.flow_pairs
            seconds = time.perf_counter() - start
            rows[name].update(end_to_end_videos_per_second=len(sources) / seconds, flow_pairs_per_video=pairs / len(sources))
    return _with_speedups({"baseline": baseline, "split": split, "batch_size": batch_size, "flow": flow,
                           "precision": precision,
                           "threads": torch.get_num_threads(), "rows": rows})


def _with_speedups(result: dict[str, Any]) -> dict[str, Any]:
    """Add each row's GFLOPs ratio, speed-ups and speed-up / ratio against the baseline row (network columns only
    where the network pass was measured)."""
    rows, base = result["rows"], result["rows"][result["baseline"]]
    for row in rows.values():
        row["gflops_ratio"] = base["gflops"] / row["gflops"] if row["gflops"] else float("inf")
        if row.get("network_videos_per_second") is not None:
            row["network_speedup"] = row["network_videos_per_second"] / base["network_videos_per_second"]
            row["network_efficiency"] = row["network_speedup"] / row["gflops_ratio"]
        if "end_to_end_videos_per_second" in row:
            row["end_to_end_speedup"] = row["end_to_end_videos_per_second"] / base["end_to_end_videos_per_second"]
            row["end_to_end_efficiency"] = row["end_to_end_speedup"] / row["gflops_ratio"]
    return result


def exact_decisions(videos: int, segments: int, rates: list[float], seed: int = 0) -> torch.Tensor:
    """``(B, S, M)`` decisions selecting round(rate * B * S) cells of each modality, at random places."""
    g = torch.Generator().manual_seed(seed)
    cells = videos * segments
    decisions = torch.zeros(cells, len(rates))
    for m, rate in enumerate(rates):
        decisions[torch.randperm(cells, generator=g)[: round(rate * cells)], m] = 1
    return decisions.view(videos, segments, len(rates))


def random_inputs(cfg: ModelConfig, videos: int, policy: bool = True, generator: torch.Generator | None = None,
                  segments: int | None = None, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Random inputs ``(B, S, ...)`` as the data pipeline gives them (``adamml.data.batch.network_ready``): every
    recognizer modality at its network's size and, with ``policy``, every policy input under ``policy_<name>``
    (the per-segment shapes the cost accounting measures the networks on); S = ``segments`` (default: the
    test segments, ``cfg.num_segments``). Drawn on `device` (a generator of that device), where they are used:
    at the paper's sizes a batch of 32 videos is gigabytes of inputs."""
    costs = measure_costs(cfg)
    shapes = {name: costs.recognizer_inputs[name] for name in cfg.modalities}
    if policy:
        shapes |= {policy_key(name): shape for name, shape in costs.extractor_inputs.items()}
    s = segments or cfg.num_segments
    return {key: torch.randn(videos, s, *shape, generator=generator, device=device) for key, shape in shapes.items()}


def parse_rates(text: str | None, modalities: tuple[str, ...]) -> list[float]:
    """``--rates``: ``"rgb=0.4,flow=0.3,audio=0.9"`` or one rate for every modality (default 0.5), in
    ``modalities`` order."""
    try:
        return list(modality_rates(text or "0.5", modalities).values())
    except ValueError as error:
        raise ValueError(f"--rates: {error}") from None


def _time_passes(fn: Callable[[dict[str, torch.Tensor], int], None], batches: list[dict[str, torch.Tensor]],
                 device: torch.device, repeats: int, amp: Amp = FP32) -> float:
    """The fastest of ``repeats`` timed passes of ``fn`` over ``batches`` (after one warm-up batch) under `amp`'s
    autocast, seconds."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode(), amp.autocast():
        fn(batches[0], 0)  # warm-up: allocations, cuDNN's algorithm choice
        sync()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for i, batch in enumerate(batches):
                fn(batch, i)
            sync()
            best = min(best, time.perf_counter() - start)
    return best


def bench_synthetic(config: str, overrides: list[str], videos: int, batch_size: int, rates: str | None,
                    device: str = "cpu", repeats: int = 2, seed: int = 0, unimodal: bool = True,
                    console: Console | None = None, precision: str = "fp32") -> dict[str, Any]:
    """Network-only videos/s of AdaMML (policy + recognizers on exactly ``rates`` of the cells), weighted fusion
    and the unimodal models, at the sizes of ``config``, with random weights and inputs; see the module docs."""
    console = console or Console(stderr=True, soft_wrap=True)
    cfg = load_config(config, overrides).model
    cfg = dataclasses.replace(cfg, fusion=dataclasses.replace(cfg.fusion, kind="weighted"))  # AdaMML's fusion
    if videos < 1 or batch_size < 1:
        raise ValueError("--num-videos and --batch-size must be positive")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA device on this machine")
    torch.manual_seed(seed)
    model = optimize_for_inference(build_model(cfg).eval()).to(dev)  # an AdaMML model: the fusion kind is weighted
    rate_list = parse_rates(rates, cfg.modalities)
    sizes = [min(batch_size, videos - start) for start in range(0, videos, batch_size)]
    g = torch.Generator(dev).manual_seed(seed)
    batches = [random_inputs(cfg, n, generator=g, device=dev) for n in sizes]
    s, m = cfg.num_segments, len(cfg.modalities)
    decisions = exact_decisions(videos, s, rate_list, seed).to(dev)
    chunks = list(torch.split(decisions, sizes))
    costs = measure_costs(cfg)
    console.print(f"{config}: {', '.join(cfg.modalities)}; {videos} videos x {s} segments in batches of "
                  f"{batch_size}; input {cfg.input_size}, ResNet-{cfg.resnet.depth}; {dev}"
                  + (f", {torch.get_num_threads()} CPU threads" if dev.type == "cpu" else "")
                  + f"; {precision}; fastest of {repeats} passes")

    def adamml(batch: dict[str, torch.Tensor], i: int) -> None:
        model.decide(batch)  # the policy on every segment (its decisions give way to the fixed ones)
        model.infer(batch, chunks[i])

    def fixed(columns: list[int]) -> Callable[[dict[str, torch.Tensor], int], None]:
        def run(batch: dict[str, torch.Tensor], i: int) -> None:
            chosen = torch.zeros(sizes[i], s, m, device=dev)
            chosen[:, :, columns] = 1
            model.infer(batch, chosen)
        return run

    plans: dict[str, tuple[Callable, float]] = {
        "adamml": (adamml, float(video_gmacs(decisions, costs, include_policy=True).mean())),
        "fusion": (fixed(list(range(m))), always_on_gmacs(costs, s)),
    }
    if unimodal:
        for j, name in enumerate(cfg.modalities):
            plans[name] = (fixed([j]), s * costs.recognizers[name].conv)
    rows: dict[str, dict[str, Any]] = {}
    for name, (fn, gflops) in plans.items():
        seconds = _time_passes(fn, batches, dev, repeats, amp_for(precision, dev))
        rows[name] = {"gflops": gflops, "top1": None, "network_videos_per_second": videos / seconds}
        console.print(f"  {name}: {videos / seconds:.3g} videos/s")
    return _with_speedups({"baseline": "fusion", "config": config, "device": str(dev), "videos": videos,
                           "precision": precision,
                           "threads": torch.get_num_threads(),
                           "batch_size": batch_size, "segments": s,
                           "rates": dict(zip(cfg.modalities, rate_list)), "rows": rows})


def video_files(paths: list[Path], limit: int | None = None) -> list[Path]:
    """The video files among `paths` (files, or folders searched recursively by extension), sorted, at most
    `limit`; a clear error when there are none."""
    from adamml.prepare.importers import VIDEO_EXTENSIONS

    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    if not found:
        raise ValueError(f"{', '.join(map(str, paths))}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return found[:limit]


def bench_synthetic_end_to_end(config: str, overrides: list[str], videos: list[Path], flow: str, rates: str | None,
                               device: str = "cpu", seed: int = 0, unimodal: bool = True,
                               console: Console | None = None, precision: str = "fp32") -> dict[str, Any]:
    """End-to-end videos/s of `adamml predict`'s path (decoding, the policy's inputs, the policy, optical flow
    only where chosen, the recognizers) on real video files, at the sizes of ``config`` with random weights:
    AdaMML's policy runs on every segment and its decisions then give way to exactly ``rates`` of the segments
    of each video (random places, fixed per video); weighted fusion and the unimodal models compute every cell.
    Each model predicts the first video once unmeasured (allocations; DIS flow), then every video once, timed."""
    from adamml.inference.prediction import STAGES, Predictor

    console = console or Console(stderr=True, soft_wrap=True)
    cfg = load_config(config, overrides)
    model_cfg = dataclasses.replace(cfg.model, fusion=dataclasses.replace(cfg.model.fusion, kind="weighted"))
    cfg = dataclasses.replace(cfg, model=model_cfg)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA device on this machine")
    rate_list = parse_rates(rates, model_cfg.modalities)
    s = model_cfg.num_segments
    torch.manual_seed(seed)
    model = optimize_for_inference(build_model(model_cfg).eval()).to(dev)
    draws = iter(range(1, 1 << 30))

    def fixed_rates(_decisions: torch.Tensor) -> torch.Tensor:
        return exact_decisions(1, s, rate_list, seed + next(draws))

    plans: dict[str, Predictor] = {
        "adamml": Predictor(model, cfg, "adamml", None, flow, device, precision, override=fixed_rates),
        "fusion": Predictor(model, cfg, "fusion", None, flow, device, precision),
    }
    if unimodal:
        for name in model_cfg.modalities:
            single = dataclasses.replace(cfg, model=dataclasses.replace(model_cfg, modalities=(name,)))
            torch.manual_seed(seed)
            net = optimize_for_inference(build_model(single.model).eval()).to(dev)
            plans[name] = Predictor(net, single, "unimodal", None, flow, device, precision)
    console.print(f"{config}: {', '.join(model_cfg.modalities)}; {len(videos)} video files end to end, "
                  f"{s} segments, flow {flow}; input {model_cfg.input_size}, ResNet-{model_cfg.resnet.depth}; {dev}"
                  + (f", {torch.get_num_threads()} CPU threads" if dev.type == "cpu" else "") + f"; {precision}")
    rows: dict[str, dict[str, Any]] = {}
    for name, predictor in plans.items():
        # warm-up: first-call allocations, cuDNN's algorithm choice; with DIS flow, as a TV-L1 warm-up would cost
        # minutes a video and warm nothing more
        predictor.flow_method = "dis"
        predictor(videos[0])
        predictor.flow_method = flow
        seconds = {stage: 0.0 for stage in STAGES}
        gflops = pairs = 0.0
        start = time.perf_counter()
        for video in videos:
            result, _ = predictor(video)
            gflops += result.gflops
            pairs += result.flow_pairs
            for stage, value in result.seconds.items():
                seconds[stage] += value
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        total = time.perf_counter() - start
        rows[name] = {"gflops": gflops / len(videos), "top1": None, "network_videos_per_second": None,
                      "end_to_end_videos_per_second": len(videos) / total, "flow_pairs_per_video": pairs / len(videos),
                      "seconds_per_video": {k: round(v / len(videos), 4) for k, v in seconds.items()}}
        parts = ", ".join(f"{k} {1000 * v / len(videos):.0f} ms" for k, v in seconds.items() if v)
        console.print(f"  {name}: {len(videos) / total:.3g} videos/s ({parts} per video)")
    return _with_speedups({"baseline": "fusion", "config": config, "device": str(dev), "videos": len(videos),
                           "flow": flow, "precision": precision, "threads": torch.get_num_threads(),
                           "segments": s, "rates": dict(zip(model_cfg.modalities, rate_list)), "rows": rows})


def _speed(videos_per_second: float) -> str:
    return f"{videos_per_second:.1f}" if videos_per_second >= 10 else f"{videos_per_second:.3g}"


def bench_table(result: dict[str, Any]) -> Table:
    """The measurements as a table; the end-to-end columns only where they were measured."""
    table = Table(title=f"speed against {result['baseline']} (same machine, same run)")
    with_e2e = any("end_to_end_videos_per_second" in r for r in result["rows"].values())
    with_network = any(r.get("network_videos_per_second") is not None for r in result["rows"].values())
    columns = ["model", "top-1 (%)", "GFLOPs / video", "GFLOPs ratio"]
    if with_network:
        columns += ["network videos/s", "speed-up", "speed-up / ratio"]
    if with_e2e:
        columns += ["end-to-end videos/s", "speed-up", "speed-up / ratio", "flow pairs / video"]
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, r in result["rows"].items():
        cells = [name, f"{r['top1']:.2f}" if r["top1"] is not None else "-", f"{r['gflops']:.4g}",
                 f"{r['gflops_ratio']:.2f}x"]
        if with_network:
            cells += [_speed(r["network_videos_per_second"]), f"{r['network_speedup']:.2f}x",
                      f"{r['network_efficiency']:.2f}"]
        if with_e2e:
            e2e = "end_to_end_videos_per_second" in r
            cells += [_speed(r["end_to_end_videos_per_second"]) if e2e else "-",
                      f"{r['end_to_end_speedup']:.2f}x" if e2e else "-",
                      f"{r['end_to_end_efficiency']:.2f}" if e2e else "-",
                      f"{r['flow_pairs_per_video']:.1f}" if e2e else "-"]
        table.add_row(*cells)
    return table
