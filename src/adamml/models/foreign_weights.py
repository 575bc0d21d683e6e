"""The state dict of a weights file written by another code base (the official AdaMML, mmaction2; read with
`adamml.models.state.read_weights`), with DataParallel's ``module.`` prefix removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from adamml.errors import shorten


def state_dict_of(payload: Any, path: Path, error: type[Exception]) -> dict[str, Tensor]:
    """The state dict of a checkpoint (``payload['state_dict']`` or the payload itself), ``module.`` removed."""
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    if not isinstance(state, dict) or not state:
        raise error(f"{path}: expected a state dict or a dict with 'state_dict', got {shorten(payload)}")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise error(f"{path}: entry {shorten(bad[0])} of its state dict is not a tensor")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
