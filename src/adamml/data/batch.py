"""From the stored layout to the tensors the networks take: the policy's inputs and the recognizers' sizes.

The store keeps one layout for every network (frames at the recognizers' crop size, the 256 x 256 spectrogram).
The policy looks at fewer frames (positions 0, 2, 4, 6 of 8) at a smaller size, and the CPU presets run the
audio recognizer on a smaller spectrogram; the resizing is bilinear (``align_corners=False``), per image.

Two places do it, with the same functions and so the same numbers:
- the data pipeline (``network_ready``, called by the dataset on each video and by ``adamml predict``), where it
  costs like the decoding and cropping it follows, in the loader's workers, as the official code reads its policy
  frames at their own size; the policy's inputs then travel under ``policy_key(name)``;
- the model (``AdaMML.policy_inputs``, ``AdaMML.recognizer_input``), for a batch that holds only the stored
  layout (tests, the exported programs, code that builds its own batches); a tensor already at the network's
  size passes unchanged, so nothing is resized twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from adamml.config import ModelConfig, PolicyConfig
from adamml.data.spectrogram import BINS, FRAMES
from adamml.modalities import FLOW_MEAN, FLOW_STD, IMAGENET_MEAN, IMAGENET_STD, get_modality, policy_modalities

POLICY_PREFIX = "policy_"


def policy_key(name: str) -> str:
    """The batch key of policy input ``name`` when the data pipeline has already shaped it (``policy_rgb``)."""
    return POLICY_PREFIX + name


def resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of the last two dims of ``(..., C, H, W)`` to ``size`` (no-op when already there)."""
    if x.shape[-2:] == (size, size):
        return x
    lead = x.shape[:-3]
    y = F.interpolate(x.reshape(-1, *x.shape[-3:]), size=(size, size), mode="bilinear", align_corners=False)
    return y.view(*lead, *y.shape[-3:])


def policy_view(name: str, x: Tensor, cfg: PolicyConfig) -> Tensor:
    """Policy input ``name`` from its stored layout ``(B, S, ...)``: visual ones subsampled to the policy's frames
    (0, 2, 4, 6 of 8) and resized to its size; the spectrogram resized to its audio size."""
    if get_modality(name).visual:  # (B, S, T, C, H, W)
        t = x.shape[2]
        if t != cfg.frames:
            step = t // cfg.frames
            x = x[:, :, : step * cfg.frames : step]  # (B, S, T', C, H, W)
        return resize(x, cfg.size)
    return resize(x, cfg.audio_size)  # (B, S, 1, F, W)


def recognizer_view(name: str, x: Tensor, audio_size: int) -> Tensor:
    """Cells of recognizer modality ``name`` (any leading dims) at the recognizer's size (audio: resized)."""
    if not get_modality(name).visual:
        return resize(x, audio_size)
    return x


def network_ready(batch: dict[str, Tensor], cfg: ModelConfig, policy: bool = True) -> dict[str, Tensor]:
    """A batch ``(B, S, ...)`` in the stored layout -> the same batch shaped for the networks of ``cfg``.

    With ``policy``, each policy input is added under ``policy_key(name)`` at the policy's frames and size, and
    a stored tensor only the policy needed (RGBDiff standing in for flow) is dropped; recognizer tensors are
    brought to their network's size (the CPU presets' smaller spectrogram). Other keys pass unchanged."""
    out = dict(batch)
    if policy:
        for name in policy_modalities(cfg.modalities):
            if name in batch:
                out[policy_key(name)] = policy_view(name, batch[name], cfg.policy).contiguous()
                if name not in cfg.modalities:
                    del out[name]
    for name in cfg.modalities:
        if name in out:
            out[name] = recognizer_view(name, out[name], cfg.audio.size).contiguous()
    return out


def _normalized_rgb(bgr: Tensor) -> Tensor:
    """(..., H, W, 3) uint8 BGR -> (..., 3, H, W) float32 RGB with ImageNet's mean and std: the arithmetic of
    `adamml.data.transforms.normalize_rgb`, on any device."""
    x = bgr.flip(-1).movedim(-1, -3).float() / 255.0  # (..., 3, H, W) RGB in [0, 1]
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def finish_batch(batch: dict[str, Tensor], cfg: ModelConfig, policy: bool = True, conventions: str = "adamml"
                 ) -> dict[str, Tensor]:
    """A batch whose pixels the loader left uint8 (``data.normalize_on_device``: ``rgb`` (B, S, T, H, W, 3) BGR,
    ``rgbdiff`` (B, S, T', 6, H, W, 3) BGR, ``flow`` (B, S, T, 10, H, W) quantised) -> the network-ready batch
    the dataset gives otherwise (normalised, RGB differences of normalised frames or, with `conventions`
    "official", the official code's difference images, ``network_ready``), computed where the batch is (the GPU,
    in training); float tensors pass unchanged."""
    out = dict(batch)
    if "rgb" in out and out["rgb"].dtype == torch.uint8:
        out["rgb"] = _normalized_rgb(out["rgb"])
    if "rgbdiff" in out and out["rgbdiff"].dtype == torch.uint8 and conventions == "official":
        x = out["rgbdiff"].to(torch.int16)  # (B, S, T', 6, H, W, 3) BGR
        image = torch.div(x[:, :, :, 1:] - x[:, :, :, :-1] + 255, 2, rounding_mode="floor").to(torch.uint8)
        out["rgbdiff"] = _normalized_rgb(image).flatten(3, 4)  # (B, S, T', 5, 3, H, W) -> (B, S, T', 15, H, W)
    if "rgbdiff" in out and out["rgbdiff"].dtype == torch.uint8:
        x = _normalized_rgb(out["rgbdiff"])  # (B, S, T', 6, 3, H, W)
        d = x[:, :, :, 1:] - x[:, :, :, :-1]  # (B, S, T', 5, 3, H, W)
        out["rgbdiff"] = d.flatten(3, 4)  # (B, S, T', 15, H, W)
    if "flow" in out and out["flow"].dtype == torch.uint8:
        out["flow"] = (out["flow"].float() / 255.0 - FLOW_MEAN) / FLOW_STD
    return network_ready(out, cfg, policy)


def sample_shape(name: str, cfg: ModelConfig, policy: bool = False) -> tuple[int, ...]:
    """The per-segment shape of input `name` as the dataset gives it (before `network_ready`): the recognizer's
    frames (or, with `policy`, the policy's) at the crop size, or the stored spectrogram."""
    modality = get_modality(name)
    if not modality.visual:
        return (1, BINS, FRAMES)
    frames = cfg.policy.frames if policy else cfg.frames_per_segment
    return (frames, modality.channels, cfg.input_size, cfg.input_size)
