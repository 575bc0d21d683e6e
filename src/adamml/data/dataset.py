"""A prepared store as a torch Dataset of per-segment samples keyed by modality.

Each item is a dict:
  `rgb`     (S, T, 3, H, W)   ImageNet-normalised frames
  `flow`    (S, T, 10, H, W)  x0, y0, ..., x4, y4 stacked at each frame position, normalised 0.5 / 0.226
  `rgbdiff` (S, T', 15, H, W) 5 consecutive differences of normalised frames (T' = T, or the policy's 4
                              frame positions 0, 2, 4, 6 when RGBDiff only stands in for flow in the policy)
  `audio`   (S, 1, 256, 256)  log-spectrogram of 1.28 s centred on the segment (silence without audio)
  `policy_<name>`             with `SamplingConfig.network` set (as `sampling_config` does): the policy's inputs
                              at its frames and size, the spectrogram at the recognizer's size, a stored tensor
                              only the policy needed dropped (`adamml.data.batch.network_ready`)
  `label`   ()  int64 first class id (-1 when unlabelled);  `target` (K,) float multi-hot;  `index` () int64
with S segments (5 random in training, 10 uniform at test) of T = 8 frames at stride 4.

With `SamplingConfig.raw` (`data.normalize_on_device`) the pixels stay uint8 as cropped: `rgb` (S, T, H, W, 3)
BGR, `rgbdiff` (S, T', 6, H, W, 3) BGR (the frames of the differences), `flow` (S, T, 10, H, W) quantised;
`adamml.data.batch.finish_batch` turns a batch of them into the items above on the training process's device
(`make_loader` does it for every batch). With `SamplingConfig.decode` "device" (`data.decode: device`) an item holds
the JPEG files' bytes and tables of the crops to take of them instead of the pixels (`adamml.data.jpeg`), decoded
into that uint8 layout on the device.
"""

from __future__ import annotations

import dataclasses
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from adamml.config import Config, ModelConfig
from adamml.data.batch import network_ready
from adamml.data.jpeg import JpegPacker, at_key
from adamml.data.layout import FLOW_X_TEMPLATE, FLOW_Y_TEMPLATE, IMG_TEMPLATE, StoreError
from adamml.data.sampling import (
    consecutive_frames,
    diff_frame_indices,
    flow_stack_indices,
    segment_centre_seconds,
    segment_frame_indices,
    eval_frame_indices,
    train_segment_starts,
    window_span,
)
from adamml.data.splits import HOLDOUT, Holdout, split_rows
from adamml.data.store import Store
from adamml.data.spectrogram import WINDOW_SAMPLES, log_spectrogram, repeat_to, silence, window_start
from adamml.data.transforms import (
    Crop,
    apply_crop,
    centre_crop,
    flow_component,
    flow_component_u8,
    normalize_flow,
    normalize_rgb,
    official_rgb_differences,
    rgb_differences,
    train_crop,
)
from adamml.modalities import check_modalities, policy_modalities

FLOW_STACK = 5
DIFFS = 5


@dataclass(frozen=True)
class SamplingConfig:
    """How segments are sampled and transformed (supplementary Sec. B): the values come from a `Config`
    (`sampling_config`; `default_sampling` for the paper's)."""

    train_segments: int
    test_segments: int
    frames: int
    stride: int
    input_size: int
    train_scale: tuple[int, int]
    test_short_side: int
    policy_frames: int
    # shape each item for these networks (`adamml.data.batch.network_ready`): the policy's inputs at its frames and
    # size under `policy_<name>`, the spectrogram at the audio recognizer's size; None keeps the stored layout
    network: ModelConfig | None = None
    raw: bool = False  # uint8 pixels, finished on the device (see the module docstring)
    audio_window: int = WINDOW_SAMPLES
    conventions: str = "adamml"  # `data.conventions`: how RGBDiff is formed (adamml or official)
    decode: str = "cpu"  # `data.decode`: "device" sends the JPEG files' bytes, decoded on the device (raw only)
    # `data.val_split: holdout`: the split "holdout" is this part of the training split, "train" the rest
    holdout: Holdout | None = None

    def __post_init__(self) -> None:
        if self.decode not in ("cpu", "device"):
            raise ValueError(f"SamplingConfig.decode must be cpu or device, got {self.decode!r}")
        if self.decode == "device" and not self.raw:
            raise ValueError("SamplingConfig: decode 'device' gives the uint8 layout, set raw=True with it")


def sampling_config(cfg: Config) -> SamplingConfig:
    """The sampling settings of a full configuration (model sizes, data section)."""
    return SamplingConfig(
        train_segments=cfg.data.train_segments,
        test_segments=cfg.model.num_segments,
        frames=cfg.model.frames_per_segment,
        stride=cfg.data.stride,
        input_size=cfg.model.input_size,
        train_scale=tuple(cfg.data.train_scale),
        test_short_side=cfg.data.test_short_side,
        policy_frames=cfg.model.policy.frames,
        network=cfg.model,
        raw=cfg.data.normalize_on_device or cfg.data.decode == "device",  # device decoding implies uint8 pixels
        conventions=cfg.data.conventions,
        decode=cfg.data.decode,
        holdout=Holdout(cfg.data.holdout_fraction, cfg.data.holdout_seed) if cfg.data.val_split == HOLDOUT else None,
    )


def default_sampling() -> SamplingConfig:
    """The paper's sampling with items in the stored layout (no network's sizes)."""
    return dataclasses.replace(sampling_config(Config()), network=None)


class SegmentDataset(Dataset):
    """Videos of one split of a store, sampled into segments; see the module docstring for the items."""

    def __init__(
        self,
        store: Store,
        split: str,
        modalities: tuple[str, ...] | list[str],
        train: bool,
        sampling: SamplingConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.cfg = sampling if sampling is not None else default_sampling()
        self.rows = split_rows(store.rows, split, self.cfg.holdout, str(store.root))
        if not self.rows:
            raise StoreError(f"{store.root}: no prepared videos in split {split!r}")
        self.modalities = check_modalities(modalities)
        needed = list(self.modalities) + [m for m in policy_modalities(self.modalities) if m not in self.modalities]
        self.keys = tuple(needed)  # every input read: the recognizers' and the policy's
        self.train = train
        self.seed = seed
        # in memory shared with the loader's workers, so that workers kept across epochs (a LoaderPool) see it
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.num_classes = len(store.classes)
        unlabelled = [r for r in self.rows if not r.get("label_ids")]
        if unlabelled:
            raise StoreError(f"{store.where(unlabelled[0])}: video {unlabelled[0]['id']!r} has no label "
                             f"({len(unlabelled)} of the {len(self.rows)} videos of split {split!r} have none); "
                             "training and evaluation need a label for every video")
        self._check_files()
        if "flow" in self.keys:
            missing = [r["id"] for r in self.rows if r.get("num_flow", 0) < 1 and r.get("num_frames", 0) > 1]
            if missing:
                raise StoreError(f"{store.root}: no optical flow for {len(missing)} videos (e.g. {missing[0]}); "
                                 "prepare the store with --flow")

    def silent_note(self) -> str | None:
        """A warning when an audio model reads videos that have no audio track (each gets silence), else None."""
        if "audio" not in self.modalities:
            return None
        silent = [r for r in self.rows if not r.get("has_audio") or not r.get("audio")]
        if not silent:
            return None
        return (f"{len(silent)} of the {len(self.rows)} videos of {self.store.root} in this split have no audio track "
                f"(e.g. {self.store.where(silent[0])}, {silent[0]['id']!r}): the audio recognizer hears silence there")

    def _check_files(self) -> None:
        """Every video's frame folder, and its audio when audio is read, exist (a clear error now, not a
        traceback in a loader worker later)."""
        for row in self.rows:
            paths = [row["frames_dir"]]
            if "audio" in self.keys and row.get("has_audio") and row.get("audio"):
                paths.append(row["audio"])
            for rel in paths:
                if not (self.store.root / rel).exists():
                    raise StoreError(f"{self.store.root / rel}: missing (video {row['id']!r}, "
                                     f"{self.store.where(row)}); run the same `adamml prepare` again to redo it")

    def set_epoch(self, epoch: int) -> None:
        """Training samples depend on (seed, epoch, index) only, so every process and worker agree; the workers
        already running (`adamml.data.loader.LoaderPool`) read the new epoch from shared memory."""
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_segments(self) -> int:
        return self.cfg.train_segments if self.train else self.cfg.test_segments

    def frame_indices(self, row: dict, rng: np.random.Generator | None) -> np.ndarray:
        """(S, T) frame indices of `row`'s segments."""
        n, cfg = int(row["num_frames"]), self.cfg
        if not self.train:
            return eval_frame_indices(n, cfg.test_segments, cfg.frames, cfg.stride, cfg.conventions,
                                      consecutive_frames(self.keys))
        starts = train_segment_starts(n, cfg.train_segments, window_span(cfg.frames, cfg.stride), rng)
        return segment_frame_indices(starts, cfg.frames, cfg.stride, n)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        indices = self.frame_indices(row, rng)  # (S, T)
        folder = self.store.root / row["frames_dir"]
        width, height = int(row["width"]), int(row["height"])
        crops = [self._crop(width, height, rng) for _ in range(len(indices))]
        if self.cfg.decode == "device":
            out = self._encoded_pixels(row, indices, crops)
        else:
            out = self._pixels(row, _FrameCache(folder), indices, crops)
        if "audio" in self.keys:
            out["audio"] = torch.from_numpy(self._audio(row, indices))  # (S, 1, 256, 256)
        if self.cfg.network is not None and not self.cfg.raw:
            shaped = network_ready({k: v.unsqueeze(0) for k, v in out.items()}, self.cfg.network)
            out = {k: v.squeeze(0) for k, v in shaped.items()}
        label_ids = row.get("label_ids", [])
        target = torch.zeros(self.num_classes)
        target[label_ids] = 1.0
        out["label"] = torch.tensor(label_ids[0] if label_ids else -1, dtype=torch.int64)
        out["target"] = target
        out["index"] = torch.tensor(index, dtype=torch.int64)
        return out

    def _diff_positions(self, indices: np.ndarray) -> np.ndarray:
        """The frame positions of RGBDiff: every frame, or the policy's 0, 2, 4, 6 when only it looks at it."""
        recognizers = self.cfg.network.modalities if self.cfg.network is not None else self.modalities
        return indices if "rgbdiff" in recognizers else policy_positions(indices, self.cfg)

    def _pixels(self, row: dict, reader: FrameSource, indices: np.ndarray, crops: list[Crop]
                ) -> dict[str, torch.Tensor]:
        """The decoded and cropped visual inputs of one item (see the module docstring)."""
        out: dict[str, torch.Tensor] = {}
        raw = self.cfg.raw
        if "rgb" in self.keys:
            out["rgb"] = torch.from_numpy(np.stack([
                rgb_segment(reader, seg, crop, raw) for seg, crop in zip(indices, crops)
            ]))  # (S, T, 3, H, W); raw: (S, T, H, W, 3) uint8
        if "rgbdiff" in self.keys:
            out["rgbdiff"] = torch.from_numpy(np.stack([
                rgbdiff_segment(reader, seg, crop, int(row["num_frames"]), raw, self.cfg.conventions)
                for seg, crop in zip(self._diff_positions(indices), crops)
            ]))  # (S, T', 15, H, W); raw: (S, T', 6, H, W, 3) uint8
        if "flow" in self.keys:
            out["flow"] = torch.from_numpy(np.stack([
                flow_segment(reader, seg, crop, int(row.get("num_flow", 0)), self.cfg.input_size, raw)
                for seg, crop in zip(indices, crops)
            ]))  # (S, T, 10, H, W), raw: uint8
        return out

    def _encoded_pixels(self, row: dict, indices: np.ndarray, crops: list[Crop]) -> dict:
        """The visual inputs of one item for `data.decode: device` (`adamml.data.jpeg`): the files' bytes, the
        crops to take and tables placing them like `_pixels`'s raw layout: ``jpeg_at_rgb`` (S, T), ``jpeg_at_rgbdiff``
        (S, T', 6), ``jpeg_at_flow`` (S, T, 10) (-1: no motion, a one-frame video)."""
        packer = JpegPacker(self.store.root / row["frames_dir"])

        def frame(i: int, crop: Crop) -> int:
            return packer.crop("image", IMG_TEMPLATE.format(int(i) + 1), (crop.x, crop.y, crop.side, crop.flip))

        out: dict = {}
        if "rgb" in self.keys:
            out[at_key("rgb")] = torch.tensor([[frame(i, crop) for i in seg] for seg, crop in zip(indices, crops)])
        if "rgbdiff" in self.keys:
            n = int(row["num_frames"])
            out[at_key("rgbdiff")] = torch.tensor([
                [[frame(i, crop) for i in six] for six in diff_frame_indices(seg, DIFFS, n)]
                for seg, crop in zip(self._diff_positions(indices), crops)])
        if "flow" in self.keys:
            out[at_key("flow")] = torch.tensor(np.stack([
                encoded_flow_segment(packer, seg, crop, int(row.get("num_flow", 0)))
                for seg, crop in zip(indices, crops)]))
        return {**out, **packer.tensors()}

    def _crop(self, width: int, height: int, rng: np.random.Generator | None) -> Crop:
        cfg = self.cfg
        if self.train:
            return train_crop(width, height, cfg.input_size, cfg.train_scale, rng)
        return centre_crop(width, height, cfg.input_size, cfg.test_short_side, cfg.conventions == "official")

    def _audio(self, row: dict, indices: np.ndarray) -> np.ndarray:
        centres = segment_centre_seconds(indices, float(row["fps"]))
        if not row.get("has_audio") or not row.get("audio"):
            return np.stack([silence()[None] for _ in centres])
        path = self.store.root / row["audio"]
        try:
            windows = [read_wav_window(path, c, self.cfg.audio_window) for c in centres]
        except (OSError, EOFError, wave.Error) as exc:
            raise StoreError(f"{path}: missing or unreadable audio of video {row['id']!r} ({exc}); "
                             "run the same `adamml prepare` again to redo it") from exc
        return np.stack([log_spectrogram(window)[None] for window in windows])


class FrameSource(Protocol):
    """Where a segment's pixels come from: a store folder (`_FrameCache`) or frames decoded in memory."""

    def image(self, i: int) -> np.ndarray: ...  # frame i, (H, W, 3) uint8 BGR

    def flow(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...  # quantised flow i -> i + 1, x and y uint8


def policy_positions(indices: np.ndarray, cfg: SamplingConfig) -> np.ndarray:
    """The frame positions the policy looks at (0, 2, 4, 6 of 8); (S, policy_frames)."""
    step = max(1, cfg.frames // cfg.policy_frames)
    return indices[:, ::step][:, : cfg.policy_frames]


def rgb_segment(reader: FrameSource, positions: np.ndarray, crop: Crop, raw: bool = False) -> np.ndarray:
    """(T, 3, H, W) normalised RGB of one segment; `raw`: the cropped frames, (T, H, W, 3) uint8 BGR."""
    frames = np.stack([apply_crop(reader.image(int(i)), crop) for i in positions])
    return frames if raw else normalize_rgb(frames)


def rgbdiff_segment(reader: FrameSource, positions: np.ndarray, crop: Crop, num_frames: int, raw: bool = False,
                    conventions: str = "adamml") -> np.ndarray:
    """(T', 15, H, W): at each position, the 5 consecutive differences of normalised frames (the official code's
    difference images with `conventions` "official"); `raw`: the 6 cropped frames of each position,
    (T', 6, H, W, 3) uint8 BGR."""
    frames = diff_frame_indices(positions, DIFFS, num_frames)  # (T', 6)
    unique, inverse = np.unique(frames, return_inverse=True)
    cropped = np.stack([apply_crop(reader.image(int(i)), crop) for i in unique])  # (U, H, W, 3) uint8
    stacked = cropped[inverse.reshape(frames.shape)]  # (T', 6, H, W, 3)
    if raw:
        return stacked
    differences = official_rgb_differences if conventions == "official" else rgb_differences
    return differences(stacked)  # -> (T', 15, H, W)


def flow_segment(reader: FrameSource, positions: np.ndarray, crop: Crop, num_flow: int, size: int,
                 raw: bool = False) -> np.ndarray:
    """(T, 10, H, W): x0, y0, ..., x4, y4 of the 5 flow fields from each position, normalised; `raw`: the
    quantised values, uint8 (no motion, in a one-frame video: 128)."""
    if num_flow < 1:  # a one-frame video: no motion
        if raw:
            return np.full((len(positions), 2 * FLOW_STACK, size, size), 128, np.uint8)
        return np.zeros((len(positions), 2 * FLOW_STACK, size, size), np.float32) + normalize_flow(0.5)
    stacks = flow_stack_indices(positions, FLOW_STACK, num_flow)  # (T, 5)
    component = flow_component_u8 if raw else (lambda image, c, is_x: normalize_flow(flow_component(image, c, is_x)))
    cropped: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    out = np.empty((len(positions), 2 * FLOW_STACK, size, size), np.uint8 if raw else np.float32)
    for t, stack in enumerate(stacks):
        for k, i in enumerate(stack):
            i = int(i)
            if i not in cropped:
                x, y = reader.flow(i)
                cropped[i] = (component(x, crop, True), component(y, crop, False))
            out[t, 2 * k], out[t, 2 * k + 1] = cropped[i]
    return out


def encoded_flow_segment(packer: JpegPacker, positions: np.ndarray, crop: Crop, num_flow: int) -> np.ndarray:
    """`flow_segment` for device decoding: (T, 10) indices of the crops of `packer` (x negated under a flip) at
    x0, y0, ..., x4, y4 of each position; -1 (no motion) in a one-frame video."""
    if num_flow < 1:
        return np.full((len(positions), 2 * FLOW_STACK), -1, np.int64)
    box = (crop.x, crop.y, crop.side, crop.flip)
    out = np.empty((len(positions), 2 * FLOW_STACK), np.int64)
    for t, stack in enumerate(flow_stack_indices(positions, FLOW_STACK, num_flow)):  # (5,) flow indices
        for k, i in enumerate(stack):
            out[t, 2 * k] = packer.crop("flow", FLOW_X_TEMPLATE.format(int(i) + 1), box, negate=crop.flip)
            out[t, 2 * k + 1] = packer.crop("flow", FLOW_Y_TEMPLATE.format(int(i) + 1), box)
    return out


def read_wav_window(path: Path, centre: float, length: int) -> np.ndarray:
    """`length` float samples of a mono 16-bit WAV centred at `centre` seconds (shifted inside the file at its
    ends; a file shorter than the window is repeated to fill it; an empty one gives silence)."""
    with wave.open(str(path), "rb") as handle:
        rate, total = handle.getframerate(), handle.getnframes()
        if total < length:
            return repeat_to(_pcm(handle.readframes(total)), length)
        handle.setpos(window_start(centre, rate, length, total))
        return _pcm(handle.readframes(length))


def _pcm(data: bytes) -> np.ndarray:
    """16-bit little-endian samples as floats in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class _FrameCache:
    """Frames and flow images of one video, each decoded once per item."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._images: dict[int, np.ndarray] = {}
        self._flows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _read(self, name: str, flags: int) -> np.ndarray:
        path = self.folder / name
        image = cv2.imread(str(path), flags)
        if image is None:
            raise StoreError(f"{path}: missing or unreadable")
        return image

    def image(self, i: int) -> np.ndarray:
        if i not in self._images:
            self._images[i] = self._read(IMG_TEMPLATE.format(i + 1), cv2.IMREAD_COLOR)
        return self._images[i]

    def flow(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._flows:
            self._flows[i] = (self._read(FLOW_X_TEMPLATE.format(i + 1), cv2.IMREAD_GRAYSCALE),
                              self._read(FLOW_Y_TEMPLATE.format(i + 1), cv2.IMREAD_GRAYSCALE))
        return self._flows[i]
