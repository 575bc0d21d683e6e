"""Checkpoints: model, optimisers, schedulers, stage progress, temperature, RNG state and the resolved config.

Saved atomically (temporary file, then rename), loaded with `weights_only=True` (a checkpoint is untrusted
input) and strictly: a mismatch is an error listing the keys, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adamml.config import Config, config_from_dict, config_to_dict
from adamml.errors import shorten
from adamml.models.adamml import AdaMML
from adamml.models.build import Model, build_model
from adamml.models.folding import optimize_for_inference
from adamml.models.state import CheckpointError, non_finite_tensor, read_weights, state_mismatch
from adamml.runtime.atomic_file import atomic_file
from adamml.stages import get_stage


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_file(path, binary=True) as handle:
        torch.save(payload, handle)


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    payload = read_weights(path, "adamml checkpoint")
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
    mismatch = state_mismatch(state, model.state_dict())
    if mismatch:
        raise CheckpointError(f"{path} does not match the model{mismatch}")
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


@dataclass
class Checkpoint:
    """A trained checkpoint loaded for inference (`load_trained`): the model in eval mode, its configuration (with
    the recorded operating point applied), the stage that trained it, the class names it was trained on, and the
    rest of the file (`metadata`: epoch, validation metrics, the operating point, ...; not the weights)."""

    model: Model
    config: Config
    stage: str
    classes: list[str] | None
    path: Path
    metadata: dict[str, Any]

    @property
    def uses_policy(self) -> bool:
        """A policy decides which cells run (AdaMML), so a decision threshold means something."""
        return get_stage(self.stage).uses_policy and isinstance(self.model, AdaMML)

    @property
    def operating_point(self) -> dict[str, Any] | None:
        """The operating point recorded by `adamml calibrate` or the end of training (None: none)."""
        return self.metadata.get("operating_point")


def load_trained(path: Path, device: str = "cpu", fold: bool = True) -> Checkpoint:
    """A trained checkpoint (strict, weights only): its model in eval mode, config, stage, classes and metadata.

    With `fold`, batch norms are folded into their convolutions and the convolution weights stored channels-last
    (same outputs up to float rounding, less time; see `adamml.models.folding`): the model is then for inference
    only. An operating point recorded in the checkpoint (`adamml calibrate`) sets ``model.policy.threshold``, in the
    returned config and model alike: every command then decides at it unless told another threshold."""
    payload = load_checkpoint(path)
    cfg = checkpoint_config(payload, path)
    threshold = recorded_threshold(payload, path)
    if threshold is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, policy=dataclasses.replace(cfg.model.policy, threshold=threshold)))
    # the trained weights replace any ImageNet initialisation: do not read those files again
    m = cfg.model
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        m, resnet=dataclasses.replace(m.resnet, pretrained=None, mmaction2={}),
        audio=dataclasses.replace(m.audio, pretrained=None),
        policy=dataclasses.replace(m.policy, pretrained=None)))
    model = build_model(cfg.model)
    load_model_state(model, payload["model"], path)
    model = model.to(device).eval()
    if fold:
        optimize_for_inference(model)
    classes = payload.get("classes")
    metadata = {key: value for key, value in payload.items() if key != "model"}
    return Checkpoint(model, cfg, str(payload.get("stage", "adamml")), list(classes) if classes else None, Path(path),
                      metadata)


def has_policy(path: Path) -> bool:
    """Whether the checkpoint at `path` was trained by a stage whose policy decides (a decision threshold applies)."""
    return get_stage(str(load_checkpoint(path).get("stage", "adamml"))).uses_policy


def recorded_threshold(payload: dict[str, Any], path: Path | str = "<checkpoint>") -> float | None:
    """The decision threshold of the operating point recorded in a checkpoint payload (None: none recorded)."""
    point = payload.get("operating_point")
    if point is None:
        return None
    threshold = point.get("threshold") if isinstance(point, dict) else None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise CheckpointError(f"{path}: its recorded operating point has no threshold in [0, 1] "
                              f"({shorten(point)}); calibrate it again (adamml calibrate)")
    return float(threshold)
