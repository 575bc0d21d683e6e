"""Spatial transforms shared by all modalities of a segment, and per-modality normalisation.

Supplementary Sec. B: training resizes the short side to a random size in [256, 320], takes a random 224 crop
and flips horizontally half of the time; test resizes the short side to 256 and takes the centre 224 crop.
The same crop and flip apply to every modality of a segment (a flipped flow field has its x component
negated). The crop is expressed as a box in the stored image's pixels, so one warp does resize and crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from adamml.modalities import FLOW_MEAN, FLOW_STD, IMAGENET_MEAN, IMAGENET_STD

_RGB_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_RGB_STD = np.asarray(IMAGENET_STD, np.float32)


@dataclass(frozen=True)
class Crop:
    """A square box of the stored image (x, y, side in source pixels) mapped to size x size, maybe flipped."""

    x: float
    y: float
    side: float
    size: int
    flip: bool = False


def train_crop(width: int, height: int, size: int, scale_range: tuple[int, int], rng: np.random.Generator) -> Crop:
    """Random short-side scale in `scale_range`, random `size` crop, random flip."""
    short = rng.uniform(scale_range[0], scale_range[1])
    scale = short / min(width, height)
    x = rng.uniform(0, max(0.0, width * scale - size))
    y = rng.uniform(0, max(0.0, height * scale - size))
    return Crop(x / scale, y / scale, size / scale, size, bool(rng.random() < 0.5))


def centre_crop(width: int, height: int, size: int, short_side: int, whole_pixels: bool = False) -> Crop:
    """Short side resized to `short_side`, centre `size` crop. The crop starts half way into the margin, which is
    a half pixel when the margin is odd (a 16:9 frame at short side 256 is 455 wide: x = 115.5, sampled between
    two columns); with `whole_pixels` (`data.conventions: official`) it starts at the rounded pixel, as
    torchvision's centre crop that the official code uses does (x = 116)."""
    scale = short_side / min(width, height)
    x = (width * scale - size) / 2
    y = (height * scale - size) / 2
    if whole_pixels:
        x, y = float(round(x)), float(round(y))  # round half to even, as torchvision's int(round(...))
    return Crop(x / scale, y / scale, size / scale, size, False)


def apply_crop(image: np.ndarray, crop: Crop) -> np.ndarray:
    """(H, W[, C]) image -> (size, size[, C]) through one affine warp (bilinear, edges replicated)."""
    scale = crop.size / crop.side
    matrix = np.float32([[scale, 0, -crop.x * scale], [0, scale, -crop.y * scale]])
    out = cv2.warpAffine(image, matrix, (crop.size, crop.size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    # cv2.flip writes the mirrored copy ~35x faster than numpy copying a reversed 3-channel view (0.006 against
    # 0.22 ms at 224 x 224), the same pixels; OpenCV drops the channel axis of a (H, W, 1) image, kept here
    return cv2.flip(out, 1).reshape(out.shape) if crop.flip else out


# uint8 -> normalised float32 of each RGB channel: a table lookup gives the same numbers as the arithmetic
# ((x / 255 - mean) / std in float32) at a fraction of its cost
_RGB_TABLE = (np.arange(256, dtype=np.float32)[None] / 255.0 - _RGB_MEAN[:, None]) / _RGB_STD[:, None]  # (3, 256)


def normalize_rgb(bgr: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 BGR -> (..., 3, H, W) float32 RGB, ImageNet mean / std."""
    out = np.empty((*bgr.shape[:-3], 3, *bgr.shape[-3:-1]), np.float32)
    for c in range(3):
        np.take(_RGB_TABLE[c], bgr[..., 2 - c], out=out[..., c, :, :])
    return out


def rgb_differences(bgr: np.ndarray) -> np.ndarray:
    """(..., K + 1, H, W, 3) uint8 BGR frames -> (..., 3 K, H, W) float32: the K consecutive differences of the
    normalised RGB frames (frame k + 1 minus frame k), R, G, B of each difference in turn. The frames are
    normalised first and then subtracted, the arithmetic the models were trained with (subtracting pixels and
    scaling gives the same values up to float rounding, which is enough to change what the tiny demo learns)."""
    x = normalize_rgb(bgr)  # (..., K + 1, 3, H, W)
    d = x[..., 1:, :, :, :] - x[..., :-1, :, :, :]  # (..., K, 3, H, W)
    return d.reshape(*d.shape[:-4], -1, *d.shape[-2:])


def official_rgb_differences(bgr: np.ndarray) -> np.ndarray:
    """`rgb_differences` as the official AdaMML code forms them (``data.conventions: official``): each difference
    of uint8 pixels made an image, ``floor((d + 255) / 2)``, then normalised like an RGB frame: half our scale,
    plus an offset of ``(0.5 - mean) / std`` per channel. (..., K + 1, H, W, 3) uint8 BGR -> (..., 3 K, H, W)."""
    x = bgr.astype(np.int16)
    image = ((x[..., 1:, :, :, :] - x[..., :-1, :, :, :] + 255) // 2).astype(np.uint8)  # (..., K, H, W, 3)
    d = normalize_rgb(image)  # (..., K, 3, H, W)
    return d.reshape(*d.shape[:-4], -1, *d.shape[-2:])


def flow_component(image: np.ndarray, crop: Crop, is_x: bool) -> np.ndarray:
    """Crop one quantised flow image; (size, size) float32 in [0, 1], x negated under a flip."""
    u = apply_crop(image, crop).astype(np.float32) / 255.0
    if crop.flip and is_x:
        u = 1.0 - u  # (v + B) / 2B -> (-v + B) / 2B
    return u


def flow_component_u8(image: np.ndarray, crop: Crop, is_x: bool) -> np.ndarray:
    """`flow_component` before its conversion to float: (size, size) uint8, x negated (255 - q) under a flip."""
    q = apply_crop(image, crop)
    return 255 - q if crop.flip and is_x else q


def normalize_flow(u: np.ndarray) -> np.ndarray:
    return (u - FLOW_MEAN) / FLOW_STD
