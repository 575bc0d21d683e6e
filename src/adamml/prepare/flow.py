"""Optical flow between consecutive resized frames, bounded and quantised to 8-bit images.

Supplementary material, Sec. B "Input": TV-L1 flow on the resized frames, bounded to [-20, 20]. The
quantisation is the one denseflow and mmaction2 use (`(v + bound) * 255 / (2 * bound)`), so stores
prepared by those tools and by adamml read the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FLOW_METHODS = ("tvl1", "dis", "farneback", "none")
DEFAULT_BOUND = 20.0

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def make_flow(method: str) -> FlowFn:
    """A function (prev_gray, next_gray) -> (H, W, 2) float32 flow in pixels, for `method`."""
    import cv2  # here, not at the top: the command line lists FLOW_METHODS without loading OpenCV

    if method == "tvl1":
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda prev, nxt: tvl1.calc(prev, nxt, None)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda prev, nxt: dis.calc(prev, nxt, None)
    if method == "farneback":
        return lambda prev, nxt: cv2.calcOpticalFlowFarneback(
            prev, nxt, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
            poly_sigma=1.2, flags=0,
        )
    raise ValueError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")


def to_gray(bgr: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def quantize(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 2) flow -> x and y uint8 images; values outside [-bound, bound] are clipped."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    u8 = np.rint(scaled).astype(np.uint8)
    return u8[..., 0], u8[..., 1]


def dequantize(image: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """uint8 flow image -> float32 flow in pixels (inverse of `quantize` up to rounding)."""
    return image.astype(np.float32) * (2.0 * bound / 255.0) - bound
