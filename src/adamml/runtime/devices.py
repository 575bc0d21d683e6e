"""The torch device a ``--device`` argument names; a GPU asked for on a machine without one is a clear error,
not a CUDA traceback. Also what a result depends on of the machine that made it (`machine_info`)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from adamml.errors import UserError


def torch_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``, checked against this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise UserError(f"--device {name!r}: only cpu and cuda are supported")
    return device


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str | int]:
    """The machine a training ran on, as far as its numbers depend on it: the CPU, the instruction set PyTorch's
    CPU kernels were picked for (AVX2, AVX-512, ...) and the threads they split their sums over. The same code
    and data on another CPU, or with another thread count, train to other weights (float rounding, amplified)."""
    return {"cpu": _cpu_name(), "architecture": platform.machine(),
            "kernels": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
