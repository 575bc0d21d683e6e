"""`adamml predict`: single videos, end to end, paying only for what the policy selects (paper Sec. 3-4).

Each video is decoded in memory (no store), the policy looks at its cheap inputs (RGB and RGB differences at the
policy's size, the audio spectrogram), and only then is optical flow computed — for the frames of the segments
whose policy chose flow, and no others — and each recognizer run on its selected segments. The preprocessing
is the evaluation's (short side `data.test_short_side`, centre crop, the same segments), so the predictions
match `adamml eval` on a store prepared at that short side with the same flow method.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from adamml.config import Config
from adamml.data.dataset import (
    FLOW_STACK,
    SamplingConfig,
    flow_segment,
    policy_positions,
    rgb_segment,
    rgbdiff_segment,
    sampling_config,
)
from adamml.data.sampling import (
    eval_segment_starts,
    flow_stack_indices,
    segment_centre_seconds,
    segment_frame_indices,
    window_span,
)
from adamml.data.spectrogram import audio_window, log_spectrogram, silence
from adamml.data.transforms import centre_crop
from adamml.flops import measure_costs, video_gmacs
from adamml.inputs import network_ready
from adamml.metrics import softmax
from adamml.models.adamml import AdaMML
from adamml.precision import add_precision_argument, amp_for
from adamml.prepare.decode import VideoError, VideoReader
from adamml.prepare.flow import (
    DEFAULT_BOUND,
    FLOW_METHODS,
    make_flow,
    quantize,
    to_gray,
)
from adamml.train.checkpoint import CheckpointError
from adamml.train.stages import eval_decisions

STAGES = ("decode", "policy inputs", "policy", "flow", "recognizers")


class InMemoryFrames:
    """Decoded frames; optical flow computed on demand (and counted), quantised as the store quantises it."""

    def __init__(self, frames: list[np.ndarray], method: str, bound: float = DEFAULT_BOUND) -> None:
        self.frames = frames
        self.method = method
        self.bound = bound
        self._flow_fn = None
        self._gray: dict[int, np.ndarray] = {}
        self._flows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.pairs = 0  # flow fields computed

    def image(self, i: int) -> np.ndarray:
        return self.frames[i]

    def _gray_of(self, i: int) -> np.ndarray:
        if i not in self._gray:
            self._gray[i] = to_gray(self.frames[i])
        return self._gray[i]

    def flow(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._flows:
            if self._flow_fn is None:
                self._flow_fn = make_flow(self.method)
            self._flows[i] = quantize(self._flow_fn(self._gray_of(i), self._gray_of(i + 1)), self.bound)
            self.pairs += 1
        return self._flows[i]


@dataclass
class VideoPrediction:
    path: str
    top: list[tuple[str, float]]
    segments: list[list[str]]  # modalities run on each segment
    p_use: list[list[float]]
    gflops: float
    gflops_always_on: float
    flow_pairs: int  # flow fields computed
    flow_pairs_always_on: int  # what computing flow for every segment would have taken
    seconds: dict[str, float] = field(default_factory=dict)
    num_frames: int = 0
    fps: float = 0.0
    has_audio: bool = False
    logits: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Predictor:
    """A trained checkpoint ready to predict single videos."""

    def __init__(self, model: AdaMML, cfg: Config, payload: dict[str, Any], classes: list[str] | None,
                 flow_method: str = "dis", device: str = "cpu", precision: str = "fp32") -> None:
        self.model, self.cfg, self.device = model.eval(), cfg, torch.device(device)
        self.amp = amp_for(precision, self.device)
        self.stage = payload.get("stage", "adamml")
        self.sampling: SamplingConfig = sampling_config(cfg)
        self.classes = classes or [str(i) for i in range(cfg.model.num_classes)]
        if flow_method not in FLOW_METHODS or flow_method == "none":
            raise ValueError(f"--flow must be one of {', '.join(m for m in FLOW_METHODS if m != 'none')}")
        self.flow_method = flow_method
        self.costs = measure_costs(cfg.model)
        self.decisions_fn = eval_decisions(model, self.stage, cfg)

    def __call__(self, path: Path, top_k: int = 5) -> tuple[VideoPrediction, dict[str, Any]]:
        """Predict one video; also returns what the figure needs (frames, spectrograms)."""
        seconds = {s: 0.0 for s in STAGES}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[stage] += now - clock
            clock = now

        cfg, model = self.sampling, self.model
        with VideoReader(path, short_side=cfg.test_short_side) as reader:
            frames = list(reader)
        fps, audio = reader.measured_fps(), reader.audio
        lap("decode")
        n = len(frames)
        height, width = frames[0].shape[:2]
        indices = segment_frame_indices(eval_segment_starts(n, cfg.test_segments, window_span(cfg.frames, cfg.stride)),
                                        cfg.frames, cfg.stride, n)  # (S, T)
        crop = centre_crop(width, height, cfg.input_size, cfg.test_short_side)
        source = InMemoryFrames(frames, self.flow_method)
        policy_inputs = set(model.policy.inputs) if self.decisions_fn is None else set()  # baselines: no policy
        wanted = set(model.modalities) | policy_inputs
        batch: dict[str, torch.Tensor] = {}
        if "rgb" in wanted:
            batch["rgb"] = _tensor([rgb_segment(source, seg, crop) for seg in indices])
        if "rgbdiff" in wanted:
            positions = indices if "rgbdiff" in model.modalities else policy_positions(indices, cfg)
            batch["rgbdiff"] = _tensor([rgbdiff_segment(source, seg, crop, n) for seg in positions])
        if "audio" in wanted:
            centres = segment_centre_seconds(indices, fps)
            if audio is None:
                specs = [silence()[None] for _ in centres]
            else:
                samples = audio.samples.astype(np.float32) / 32768.0
                specs = [log_spectrogram(audio_window(samples, c, audio.rate, cfg.audio_window))[None] for c in centres]
            batch["audio"] = _tensor(specs)
        spectrograms = batch.get("audio")  # (1, S, 1, 256, 256), for the figure
        batch = network_ready(batch, self.cfg.model, policy=bool(policy_inputs))  # as the dataset shapes items
        batch["index"] = torch.zeros(1, dtype=torch.int64)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        lap("policy inputs")
        with torch.no_grad(), self.amp.autocast():
            if self.decisions_fn is not None:  # baselines: always on, or the random policy (needs no input)
                shape = {"index": batch["index"], "segments": torch.zeros(1, len(indices), 1, device=self.device)}
                decisions = self.decisions_fn(shape)
                probs = decisions
            else:
                decided = model.decide(batch)
                decisions, probs = decided.decisions, decided.probs
        lap("policy")
        s = len(indices)
        if "flow" in model.modalities:
            column = model.modalities.index("flow")
            flow = np.zeros((s, cfg.frames, 10, cfg.input_size, cfg.input_size), np.float32)
            for seg in np.flatnonzero(decisions[0, :, column].cpu().numpy() > 0.5):
                flow[seg] = flow_segment(source, indices[seg], crop, n - 1, cfg.input_size)
            batch["flow"] = torch.from_numpy(flow)[None].to(self.device)
        lap("flow")
        with torch.no_grad(), self.amp.autocast():
            out = model.infer(batch, decisions)
        lap("recognizers")
        logits = out.logits[0].float().cpu().numpy()
        scores = softmax(logits[None])[0]
        order = np.argsort(-scores)[:top_k]
        used = decisions[0].cpu().numpy() > 0.5  # (S, M)
        include_policy = self.stage == "adamml"
        flow_always = 0
        if "flow" in model.modalities and n > 1:
            flow_always = len(np.unique(flow_stack_indices(indices, FLOW_STACK, n - 1)))
        result = VideoPrediction(
            path=str(path),
            top=[(self.classes[int(c)], float(scores[c])) for c in order],
            segments=[[m for j, m in enumerate(model.modalities) if used[i, j]] for i in range(s)],
            p_use=np.round(probs[0].float().cpu().numpy(), 4).tolist(),
            gflops=float(video_gmacs(used[None], self.costs, include_policy=include_policy)[0]),
            gflops_always_on=float(video_gmacs(np.ones_like(used)[None], self.costs, include_policy=False)[0]),
            flow_pairs=source.pairs,
            flow_pairs_always_on=flow_always,
            seconds={k: round(v, 4) for k, v in seconds.items()},
            num_frames=n,
            fps=round(fps, 4),
            has_audio=audio is not None,
            logits=logits.tolist(),
        )
        figure = {"frames": frames, "indices": indices, "audio": spectrograms}
        return result, figure


def _tensor(items: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(items))[None]  # (1, S, ...)


def load_predictor(checkpoint: Path, flow_method: str, threshold: float | None, device: str = "cpu",
                   precision: str = "fp32") -> Predictor:
    from adamml.evaluate import load_trained

    model, cfg, payload = load_trained(checkpoint, device)
    if threshold is not None:
        if payload.get("stage", "adamml") != "adamml":
            raise ValueError(f"{checkpoint}: --threshold sets AdaMML's decision threshold, but this is a "
                             f"{payload.get('stage')!r} model, which runs every modality on every segment")
        model.policy.threshold = threshold
    classes = payload.get("classes")
    return Predictor(model, cfg, payload, classes, flow_method, device, precision)


def print_prediction(result: VideoPrediction, console: Console) -> None:
    table = Table(title=f"{result.path}", show_header=True)
    table.add_column("class")
    table.add_column("probability", justify="right")
    for name, p in result.top:
        table.add_row(name, f"{p:.3f}")
    console.print(table)
    segs = "  ".join(f"{i + 1}:{'+'.join(m) or '-'}" for i, m in enumerate(result.segments))
    console.print(f"segments  {segs}")
    console.print(f"GFLOPs {result.gflops:.4g} (always-on {result.gflops_always_on:.4g}); optical flow computed for "
                  f"{result.flow_pairs} of {result.flow_pairs_always_on} frame pairs")
    console.print("seconds   " + "  ".join(f"{k} {v:.3f}" for k, v in result.seconds.items()))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="predict videos end to end, computing flow only where the policy asks",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--threshold", type=float, help="decision threshold (default: the checkpoint's)")
    p.add_argument("--flow", default="dis", choices=[m for m in FLOW_METHODS if m != "none"],
                   help="optical flow method; use the one the training store was prepared with (default dis)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", type=Path, help="write every prediction, decision and timing to this file")
    p.add_argument("--viz", type=Path, help="per-segment selection figure (PNG; one video: this path)")
    p.add_argument("--device", default="cpu")
    add_precision_argument(p)
    p.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's choice); with small models "
                   "one video at a time, 1 can be faster: idle torch threads spin and slow the decoder's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=False, soft_wrap=True)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    try:
        predictor = load_predictor(args.checkpoint, args.flow, args.threshold, args.device, args.precision)
    except (CheckpointError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        return 2
    results, failures = [], 0
    for index, path in enumerate(args.videos):
        try:
            result, figure = predictor(path, args.top_k)
        except VideoError as error:
            console.print(f"[red]failed[/red] {error}")
            failures += 1
            continue
        print_prediction(result, console)
        results.append(result.to_dict())
        if args.viz is not None:
            out = args.viz if len(args.videos) == 1 else args.viz.with_name(f"{args.viz.stem}-{index}{args.viz.suffix}")
            _figure(result, figure, predictor, out)
            console.print(f"figure: {out}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0 if failures == 0 else 1


def _figure(result: VideoPrediction, figure: dict[str, Any], predictor: Predictor, out: Path) -> None:
    from adamml.viz import normalize_spectrogram, selection_figure

    frames, indices = figure["frames"], figure["indices"]
    specs = figure["audio"][0, :, 0].cpu().numpy() if figure["audio"] is not None else None
    segments = []
    for s, seg in enumerate(indices):
        thumb = frames[int(seg[len(seg) // 2])][..., ::-1]
        spec = normalize_spectrogram(specs[s][:128]) if specs is not None else np.zeros((128, 256))
        segments.append({"thumb": thumb, "spec": spec, "used": set(result.segments[s]), "informative": None})
    title = f"{Path(result.path).name}: {result.top[0][0]} ({result.top[0][1]:.2f}), {result.gflops:.3g} GFLOPs"
    selection_figure([{"title": title, "segments": segments}], predictor.model.modalities, out)
