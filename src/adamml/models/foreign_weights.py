"""Reading weights files written by other code bases (the official AdaMML, mmaction2): weights only, never code,
and the state dict they hold with DataParallel's ``module.`` prefix removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from adamml.errors import shorten
from adamml.models.state import load_failure


def read_weights_file(path: Path, what: str, not_found: type[Exception], unreadable: type[Exception],
                      allowed: tuple[Any, ...] = ()) -> Any:
    """What `path` holds, loaded weights only (`allowed`: further plain-data globals, e.g. NumPy scalars); a
    missing file raises `not_found`, any unpickling failure `unreadable`, each naming the file."""
    path = Path(path)
    if not path.is_file():
        raise not_found(f"{path}: {what} not found")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated files, foreign pickles, objects with code: all reported with the path
        raise unreadable(f"{path}: not a readable {what} ({load_failure(error)})") from error


def state_dict_of(payload: Any, path: Path, error: type[Exception]) -> dict[str, Tensor]:
    """The state dict of a checkpoint (``payload['state_dict']`` or the payload itself), ``module.`` removed."""
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    if not isinstance(state, dict) or not state:
        raise error(f"{path}: expected a state dict or a dict with 'state_dict', got {shorten(payload)}")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise error(f"{path}: entry {shorten(bad[0])} of its state dict is not a tensor")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
