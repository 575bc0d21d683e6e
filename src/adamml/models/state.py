"""Weights read strictly, in one way for every file adamml loads (its checkpoints, ImageNet weights): with
`weights_only=True` (a file that carries code is refused, never run), checked for NaN and infinities, and compared
with the network key by key, a mismatch listed by name and shape. One error class, `CheckpointError`."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from adamml.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint or weights file that cannot be used as asked; names the file and the problem."""


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """A weights file that does not exist."""


def load_failure(error: BaseException) -> str:
    """Why `torch.load(..., weights_only=True)` refused a file, in one line. Torch's own message runs to a page
    and advises loading with weights_only=False, which would run whatever code the file carries: never do."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = next((line for line in lines if line.startswith(("Unsupported", "Trying to load unsupported"))), None)
    if isinstance(error, pickle.UnpicklingError) or detail is not None:
        return ("it holds Python objects other than tensors, which adamml never loads (they could run code)"
                + (f": {detail}" if detail else ""))
    return lines[0] if lines else type(error).__name__


def read_weights(path: Path, what: str = "weights-only torch checkpoint", allowed: Iterable[Any] = (),
                 error: type[Exception] = CheckpointError, not_found: type[Exception] = WeightsNotFoundError) -> Any:
    """`torch.load` of `path` on the CPU, weights only (`allowed`: further plain-data globals, e.g. NumPy scalars
    in other code bases' files); a missing file raises `not_found`, any unpickling failure `error`, each naming
    the file."""
    path = Path(path)
    if not path.is_file():
        raise not_found(f"{path}: {what} not found")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as failure:  # truncated files, foreign pickles, objects with code: all reported with the path
        with open(path, "rb") as handle:
            head = handle.read(4)
        if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save writes a zip archive (a pickle before 1.6)
            raise error(f"{path}: not a readable {what} (not a file that torch.save writes: it starts with "
                        f"{head!r}, neither a zip archive nor a pickle)") from failure
        raise error(f"{path}: not a readable {what} ({load_failure(failure)})") from failure


def non_finite_tensor(state: dict[str, Tensor]) -> str | None:
    """Name of the first floating-point tensor of `state` holding a NaN or an infinity, or None."""
    for name, value in state.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def listing(title: str, items: list[str], limit: int = 20) -> str:
    shown = "".join(f"\n    {item}" for item in items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}):{shown}{more}"


def state_mismatch(state: dict[str, Tensor], expected: dict[str, Tensor], optional: Iterable[str] = ()) -> str:
    """What keeps `state` from loading strictly into a network whose state dict is `expected`: missing,
    unexpected and mis-shaped keys, one listing each ("" when it fits). Keys in `optional` may be missing."""
    optional = set(optional)
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in state if k in expected and state[k].shape != expected[k].shape]
    message = ""
    if missing:
        message += listing("missing from the checkpoint", missing)
    if unexpected:
        message += listing("unexpected in the checkpoint", unexpected)
    if mismatched:
        message += listing("shape mismatch", mismatched)
    if unexpected and all(k.startswith("module.") for k in unexpected):
        message += "\n  hint: keys start with 'module.': saved from a DataParallel-wrapped model"
    return message
