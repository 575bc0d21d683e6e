"""Checkpoints: model, optimisers, schedulers, stage progress, temperature, RNG state and the resolved config.

Saved atomically (temporary file, then rename), loaded with `weights_only=True` (a checkpoint is untrusted
input) and strictly: a mismatch is an error listing the keys, never silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from adamml.atomic_file import atomic_file
from adamml.config import Config, config_from_dict, config_to_dict
from adamml.errors import UserError, shorten
from adamml.models.build import load_failure, non_finite_tensor


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used as asked; names the file and the problem."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_file(path, binary=True) as handle:
        torch.save(payload, handle)


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable adamml checkpoint ({load_failure(error)})") from error
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path}: not an adamml checkpoint (no 'model' and 'config' entries)")
    model, config = payload["model"], payload["config"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict (parameter name -> tensor), "
                              f"but {shorten(model)}")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its 'config' entry is not a mapping, but {shorten(config)}")
    return payload


def checkpoint_config(payload: dict[str, Any], path: Path | str = "<checkpoint>") -> Config:
    return config_from_dict(payload["config"], f"{path} (stored config)")


def model_payload(model: nn.Module, cfg: Config, **extra: Any) -> dict[str, Any]:
    return {"model": model.state_dict(), "config": config_to_dict(cfg), **extra}


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Strict load with a readable list of what does not match."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
                  for k in state if k in target and state[k].shape != target[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"{path} does not match the model"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
        raise CheckpointError("\n".join(lines))
    bad = non_finite_tensor(state)
    if bad is not None:
        raise CheckpointError(f"{path}: tensor {bad!r} holds NaN or infinite values; a model trained into NaN "
                              "cannot be used (train again, e.g. with a lower learning rate)")
    model.load_state_dict(state, strict=True)


def load_recognizer(model: nn.Module, name: str, payload: dict[str, Any], path: Path | str) -> None:
    """Copy the recognizer of modality `name` from a checkpoint (matched by modality name, never position)."""
    prefix = f"recognizers.{name}."
    state = {k[len(prefix):]: v for k, v in payload["model"].items() if k.startswith(prefix)}
    if not state:
        have = sorted({k.split(".")[1] for k in payload["model"] if k.startswith("recognizers.")})
        raise CheckpointError(f"{path}: no {name!r} recognizer in this checkpoint (it has: {', '.join(have) or 'none'})")
    load_model_state(model.recognizers[name], state, f"{path} [{name}]")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
