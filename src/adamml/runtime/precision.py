"""Mixed precision (`train.precision`, and `--precision` of eval, predict and bench).

``fp32`` runs everything in float32; ``bf16`` and ``fp16`` run the forward passes under ``torch.autocast``
(matrix products and convolutions in the low precision, reductions, softmax and losses in float32, as autocast
decides per operation); ``fp16`` also scales the loss (``torch.amp.GradScaler``) so small gradients do not flush
to zero, skipping the steps whose gradients overflow. Weights, optimiser state and checkpoints stay float32
whatever the precision. The policy's decisions are always taken in float32 (``PolicyNetwork._one_hot``): Gumbel
noise and the threshold compare need more than bf16's 8 bits of mantissa.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import get_args

import torch

from adamml.config import Precision

PRECISIONS: tuple[str, ...] = get_args(Precision)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


@dataclass(frozen=True)
class Amp:
    """One precision on one kind of device: the autocast context of the forward passes and the loss scaler."""

    precision: str = "fp32"
    device_type: str = "cpu"

    def __post_init__(self) -> None:
        check_precision(self.precision)

    @property
    def enabled(self) -> bool:
        return self.precision != "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context to run forward passes (and losses) in: autocast, or nothing for fp32."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.precision])

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler that is active for fp16 only (a pass-through otherwise)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.precision == "fp16")


FP32 = Amp()


def amp_for(precision: str, device: torch.device | str) -> Amp:
    return Amp(precision, torch.device(device).type)


def channels_last(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """Store `model`'s 4-D weights channels-last on CUDA, where cuDNN's convolutions (tensor cores above all)
    are fastest in that layout and pick it for their outputs too; unchanged elsewhere."""
    if torch.device(device).type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model

