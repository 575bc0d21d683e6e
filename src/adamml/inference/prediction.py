"""Single videos, end to end: the library behind `adamml predict` (`adamml.cli.predict` says what it does).

Only the frames the segments read are kept while the video decodes, so memory does not grow with its length, and
they are resized and converted only when read: the policy's frames, then those of the cells it chose."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adamml.config import Config
from adamml.data.batch import network_ready
from adamml.data.dataset import (
    DIFFS,
    FLOW_STACK,
    SamplingConfig,
    flow_segment,
    policy_positions,
    rgb_segment,
    rgbdiff_segment,
    sampling_config,
)
from adamml.data.sampling import (
    consecutive_frames,
    diff_frame_indices,
    flow_stack_indices,
    segment_centre_seconds,
    eval_frame_indices,
)
from adamml.data.spectrogram import audio_window, log_spectrogram, silence
from adamml.data.transforms import centre_crop
from adamml.errors import UserError
from adamml.inference.decisions import stage_decisions
from adamml.inference.gflops import measure_costs, video_gmacs
from adamml.inference.metrics import softmax
from adamml.models.adamml import AdaMML
from adamml.models.policy import DecisionRule
from adamml.prepare.decode import DecodedAudio, DeferredFrame, VideoError, VideoReader
from adamml.prepare.flow import (
    DEFAULT_BOUND,
    FLOW_METHODS,
    make_flow,
    quantize,
    to_gray,
)
from adamml.runtime.precision import amp_for
from adamml.stages import get_stage

STAGES = ("decode", "policy inputs", "policy", "rgb", "flow", "recognizers")
# decoded pictures held unconverted per video, at most (a 1080p picture takes 3 MB): past this, the frames are
# converted as they are decoded (the same pixels, only sooner)
DEFER_BYTES = 256 * 2**20


class DecodedFrames(Mapping[int, np.ndarray]):
    """The frames of one video by index, each resized and converted the first time it is read."""

    def __init__(self, frames: dict[int, np.ndarray | DeferredFrame]) -> None:
        self._frames = frames
        self.converted = sum(isinstance(f, np.ndarray) for f in frames.values())  # frames converted so far

    def __getitem__(self, index: int) -> np.ndarray:
        frame = self._frames[index]
        if isinstance(frame, DeferredFrame):
            frame = self._frames[index] = frame.array()
            self.converted += 1
        return frame

    def __iter__(self) -> Iterator[int]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)


class InMemoryFrames:
    """Decoded frames by index (those the segments use); optical flow computed on demand (and counted), quantised
    as the store quantises it."""

    def __init__(self, frames: Mapping[int, np.ndarray], method: str, bound: float = DEFAULT_BOUND) -> None:
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

    def __init__(self, model: AdaMML, cfg: Config, stage: str, classes: list[str] | None,
                 flow_method: str = "dis", device: str = "cpu", precision: str = "fp32",
                 rule: DecisionRule | None = None,
                 override: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.model, self.cfg, self.device = model.eval(), cfg, torch.device(device)
        self.rule = rule  # the policy's threshold for these predictions (None: the configured one)
        # decisions (1, S, M) used instead of the policy's, which still runs (`adamml bench --synthetic --videos`
        # fixes the selection rates of a model with random weights)
        self.override = override
        self.notes: list[str] = []  # what a person should know about these predictions (`load_predictor`)
        self.amp = amp_for(precision, self.device)
        self.stage = stage
        self.sampling: SamplingConfig = sampling_config(cfg)
        self.classes = classes or [str(i) for i in range(cfg.model.num_classes)]
        if flow_method not in FLOW_METHODS or flow_method == "none":
            raise ValueError(f"--flow must be one of {', '.join(m for m in FLOW_METHODS if m != 'none')}")
        self.flow_method = flow_method
        self.costs = measure_costs(cfg.model)
        self.decisions_fn = stage_decisions(model, self.stage, cfg)

    @property
    def policy_inputs(self) -> set[str]:
        """The policy's input modalities (none for the baselines, which have no policy)."""
        return set(self.model.policy.inputs) if self.decisions_fn is None else set()

    @property
    def wanted(self) -> set[str]:
        """Every input this model reads before optical flow: its recognizers' and its policy's."""
        return set(self.model.modalities) | self.policy_inputs

    def segment_indices(self, num_frames: int) -> np.ndarray:
        """Frame indices of the test segments of a video of `num_frames` frames; (S, T)."""
        cfg = self.sampling
        return eval_frame_indices(num_frames, cfg.test_segments, cfg.frames, cfg.stride, cfg.conventions,
                                  consecutive_frames(self.wanted))

    def frames_used(self, num_frames: int) -> set[int]:
        """Every frame a video of `num_frames` frames is read at: the segments' frames, the frames of their RGB
        differences and of their optical flow (should the policy choose it), the figure's thumbnails."""
        indices = self.segment_indices(num_frames)
        used = set(indices.ravel().tolist())
        if "rgbdiff" in self.wanted:
            positions = indices if "rgbdiff" in self.model.modalities else policy_positions(indices, self.sampling)
            used.update(diff_frame_indices(positions, DIFFS, num_frames).ravel().tolist())
        if "flow" in self.model.modalities and num_frames > 1:
            flows = flow_stack_indices(indices, FLOW_STACK, num_frames - 1).ravel()
            used.update(flows.tolist())
            used.update((flows + 1).tolist())  # flow i lies between frames i and i + 1
        return used

    def decode(self, path: Path) -> tuple[DecodedFrames, tuple[int, int], int, float, DecodedAudio | None]:
        """The frames the video's segments may use, by index (converted when read), their (width, height), the
        frame count, frame rate and audio. Only those frames are kept while decoding, so memory does not grow
        with the video's length: which ones follows from the frame count, guessed from the container's packets
        and checked once decoded (a wrong guess costs a second decoding pass, never a wrong frame)."""
        guess = 0
        for _attempt in range(2):
            with VideoReader(path, short_side=self.sampling.test_short_side) as reader:
                guess = guess or max(1, reader.expected_frames)
                keep = self.frames_used(guess)
                frames = dict(reader.frames_at(keep, DEFER_BYTES))
            n = reader.num_frames
            if self.frames_used(n) <= frames.keys():
                width, height = reader.size
                size = (height, width) if reader.rotation in (90, 270) else (width, height)
                return DecodedFrames(frames), size, n, reader.measured_fps(), reader.audio
            guess = n
        raise VideoError(f"{path}: decoded {n} frames, then a different number when decoded again")

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
        frames, (width, height), n, fps, audio = self.decode(path)
        lap("decode")
        indices = self.segment_indices(n)  # (S, T)
        crop = centre_crop(width, height, cfg.input_size, cfg.test_short_side, cfg.conventions == "official")
        source = InMemoryFrames(frames, self.flow_method)
        policy_inputs, wanted = self.policy_inputs, self.wanted
        # with a policy, the RGB recognizer's frames are converted only for the segments that choose RGB; before
        # the decisions, only the policy's frames (positions 0, 2, 4, 6 of 8)
        rgb_after = "rgb" in model.modalities and "rgb" in policy_inputs
        batch: dict[str, torch.Tensor] = {}
        if "rgb" in wanted:
            segments = policy_positions(indices, cfg) if rgb_after else indices
            batch["rgb"] = _tensor([rgb_segment(source, seg, crop) for seg in segments])
        if "rgbdiff" in wanted:
            positions = indices if "rgbdiff" in model.modalities else policy_positions(indices, cfg)
            batch["rgbdiff"] = _tensor([rgbdiff_segment(source, seg, crop, n, conventions=cfg.conventions)
                                        for seg in positions])
        if "audio" in wanted:
            centres = segment_centre_seconds(indices, fps)
            if audio is None:
                specs = [silence()[None] for _ in centres]
            else:  # int16 samples, one window at a time
                specs = [log_spectrogram(audio_window(audio.samples, c, audio.rate, cfg.audio_window) / 32768.0)[None]
                         for c in centres]
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
                decided = model.decide(batch, self.rule)
                decisions, probs = decided.decisions, decided.probs
            if self.override is not None:
                decisions = self.override(decisions).to(decisions.device, decisions.dtype)
        lap("policy")
        s = len(indices)
        chosen = decisions[0].cpu().numpy() > 0.5  # (S, M)
        if rgb_after:  # the recognizer's RGB: only where it runs (infer never reads the other segments)
            rgb = np.zeros((s, cfg.frames, 3, cfg.input_size, cfg.input_size), np.float32)
            for seg in np.flatnonzero(chosen[:, model.modalities.index("rgb")]):
                rgb[seg] = rgb_segment(source, indices[seg], crop)
            batch["rgb"] = torch.from_numpy(rgb)[None].to(self.device)
        lap("rgb")
        if "flow" in model.modalities:
            column = model.modalities.index("flow")
            flow = np.zeros((s, cfg.frames, 10, cfg.input_size, cfg.input_size), np.float32)
            for seg in np.flatnonzero(chosen[:, column]):
                flow[seg] = flow_segment(source, indices[seg], crop, n - 1, cfg.input_size)
            batch["flow"] = torch.from_numpy(flow)[None].to(self.device)
        lap("flow")
        with torch.no_grad(), self.amp.autocast():
            out = model.infer(batch, decisions)
        lap("recognizers")
        logits = out.logits[0].float().cpu().numpy()
        if not np.isfinite(logits).all():
            raise UserError(f"{path}: the model produced non-finite (NaN or infinite) logits for this video; the "
                            "checkpoint's weights or this video's inputs are broken")
        scores = softmax(logits[None])[0]
        order = np.argsort(-scores)[:top_k]
        used = chosen
        include_policy = get_stage(self.stage).uses_policy
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


def load_predictor(checkpoint: Path, flow_method: str = "dis", threshold: float | None = None, device: str = "cpu",
                   precision: str = "fp32") -> Predictor:
    from adamml.inference.checkpoint import load_trained

    trained = load_trained(checkpoint, device)
    if threshold is not None and not get_stage(trained.stage).uses_policy:
        raise UserError(f"{checkpoint}: --threshold sets AdaMML's decision threshold, but this is a "
                        f"{trained.stage!r} model, which runs every modality on every segment")
    predictor = Predictor(trained.model, trained.config, trained.stage, trained.classes, flow_method, device,
                          precision, rule=DecisionRule(threshold) if threshold is not None else None)
    trained_flow = (trained.metadata.get("store") or {}).get("flow")
    uses_flow = "flow" in trained.config.model.modalities
    predictor.notes = ([f"{checkpoint} was trained on {trained_flow} flow; --flow {flow_method} gives its flow "
                        f"recognizer fields it never saw (use --flow {trained_flow})"]
                       if uses_flow and trained_flow not in (None, "none", flow_method) else [])
    return predictor
