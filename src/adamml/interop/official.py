"""The official AdaMML checkpoints (IBM/AdaMML, Kinetics-Sounds) as adamml checkpoints.

The official repository publishes six models: unimodal RGB, audio and flow (a TSN ResNet-50, a MobileNetV2 on the
spectrogram) and AdaMML RGB+Audio, RGB+Flow and RGB+Flow+Audio (policy + recognizers + learnable late fusion).
Their layout, read from the official code (``models/resnet.py``, ``models/sound_mobilenet_v2.py``,
``models/joint_resnet_mobilenetv2.py``, ``models/adamml/policy_net.py``, ``train_adamml_stage.py``):

- the file: ``{'state_dict': ..., 'epoch', 'temperature', ...}`` saved from DistributedDataParallel, so every key
  starts with ``module.``;
- the recognizers ``main_net.nets.I`` and the ResNet / sound MobileNetV2 of a unimodal file keep torchvision's
  names (ours too); the policy's extractors ``policy_net.joint_net.nets.I`` are the official code's own
  MobileNetV2 (flat ``conv.K`` blocks, last 1x1 convolution ``conv``), renamed here to torchvision's; the MLP
  ``joint_net.joint.{0,2}``, ``lstm`` and the decision heads ``fcs.I``; the fusion weights ``main_net.lf_weights``;
- modalities are lists in command-line order (``rgb sound flow rgbdiff``): which net is which modality is read
  here from the first convolution's input channels (3 RGB, 10 flow, 15 RGBDiff, MobileNetV2 1 audio), never
  assumed from a position; the heads and fusion weights follow the recognizers' order, the MLP's input the
  policy extractors' order, and both are permuted to adamml's modality order.

Every official key is mapped and every adamml parameter filled (a unimodal file has no policy: a unimodal
adamml model never runs one, and its policy keeps the seeded initialisation our own unimodal checkpoints have),
or the conversion stops with an error naming the file and the keys. The converted config sets
``data.conventions: official``: the inputs are then formed as those weights were trained on (docs/official.md).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from adamml.config import Config, ModelConfig, load_config
from adamml.errors import shorten
from adamml.inference.checkpoint import CheckpointError, load_model_state, model_payload, save_checkpoint
from adamml.modalities import policy_modalities
from adamml.models.build import build_model
from adamml.models.foreign_weights import state_dict_of
from adamml.models.mobilenet import MobileNetV2Extractor
from adamml.models.state import non_finite_tensor, read_weights
from adamml.prepare.importers import KINETICS_SOUNDS

# the official modality names of ours
OFFICIAL_NAME = {"rgb": "rgb", "flow": "flow", "rgbdiff": "rgbdiff", "audio": "sound"}
# a ResNet's first convolution's input channels -> modality (``adamml.modalities`` channels)
RESNET_CHANNELS = {3: "rgb", 10: "flow", 15: "rgbdiff"}
# a policy extractor's first convolution's input channels -> its policy input
POLICY_CHANNELS = {3: "rgb", 15: "rgbdiff", 1: "audio"}
# the preset of each modality set; a unimodal file converts into a unimodal model of the RGB+Flow+Audio preset
PRESETS = {("rgb", "audio"): "paper-rgb-audio", ("rgb", "flow"): "paper-rgb-flow",
           ("rgb", "flow", "audio"): "paper-rgb-flow-audio"}
UNIMODAL_PRESET = "paper-rgb-flow-audio"
# the official code starts the Gumbel temperature at 5.0 and decays it by 0.965 per alternating epoch; a file
# without 'temperature' gets it from its epoch, as the official code does when it loads one
OFFICIAL_TEMPERATURE, OFFICIAL_DECAY = 5.0, 0.965
INIT_SEED = 0  # the seed of the parameters a file cannot fill (the unused policy of a unimodal model)


class OfficialCheckpointError(CheckpointError):
    """An official checkpoint that cannot be converted; names the file and what does not fit."""


@dataclass
class OfficialCheckpoint:
    """What an official file holds: its state dict (``module.`` removed) and what its layout says."""

    path: Path
    state: dict[str, Tensor]
    kind: str  # "adamml" or "unimodal"
    modalities: tuple[str, ...]  # recognizers, in the file's order
    policy_inputs: tuple[str, ...] = ()  # policy extractors, in the file's order (adamml only)
    temperature: float | None = None
    epoch: int | None = None


@dataclass
class Conversion:
    """A converted checkpoint: the adamml payload and what was done, for the user."""

    payload: dict[str, Any]
    cfg: Config
    source: OfficialCheckpoint
    model: torch.nn.Module  # the converted model, loaded (train mode, as built)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- reading


def _numpy_scalar_globals() -> list[Any]:
    """What unpickling a NumPy scalar needs (an official file may hold ``best_top1`` as one): data, no code."""
    names = [("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")]
    found = []
    for module, name in names:
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            continue
    found.append(np.dtype)
    found += [type(np.dtype(kind)) for kind in ("float64", "float32", "int64", "int32", "bool")]
    return found


def read_official(path: Path) -> OfficialCheckpoint:
    """Read an official file, weights only (a pickle that would run code is refused), and identify its layout."""
    path = Path(path)
    payload = read_weights(path, "official AdaMML checkpoint", allowed=_numpy_scalar_globals(),
                           error=OfficialCheckpointError, not_found=OfficialCheckpointError)
    state = state_dict_of(payload, path, OfficialCheckpointError)
    nan = non_finite_tensor(state)
    if nan is not None:
        raise OfficialCheckpointError(f"{path}: tensor {nan!r} holds NaN or infinite values")
    temperature = payload.get("temperature") if isinstance(payload, dict) else None
    epoch = payload.get("epoch") if isinstance(payload, dict) else None
    found = OfficialCheckpoint(path, state, *_layout(path, state),
                               temperature=float(temperature) if isinstance(temperature, (int, float)) else None,
                               epoch=int(epoch) if isinstance(epoch, (int, np.integer)) else None)
    return found


def _layout(path: Path, state: dict[str, Tensor]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(kind, recognizer modalities, policy inputs) read from the keys and the first convolutions' shapes."""
    if any(k.startswith("main_net.") for k in state):
        recognizers = tuple(_net_modality(path, state, f"main_net.nets.{i}.")
                            for i in range(_count(path, state, "main_net.nets.")))
        inputs = tuple(_policy_input(path, state, f"policy_net.joint_net.nets.{i}.")
                       for i in range(_count(path, state, "policy_net.joint_net.nets.")))
        if not recognizers or not inputs:
            raise OfficialCheckpointError(f"{path}: an AdaMML checkpoint without "
                                          f"{'recognizers (main_net.nets)' if not recognizers else 'a policy'}")
        return "adamml", recognizers, inputs
    if "conv1.weight" in state or "features.0.0.weight" in state:
        return "unimodal", (_net_modality(path, state, ""),), ()
    raise OfficialCheckpointError(f"{path}: not an official AdaMML checkpoint layout (no main_net.*, conv1.weight "
                                  f"or features.0.0.weight); keys: {shorten(sorted(state)[:6])}")


def _count(path: Path, state: dict[str, Tensor], prefix: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if indices != set(range(len(indices))):
        raise OfficialCheckpointError(f"{path}: {prefix}N indices {sorted(indices)} are not 0..{len(indices) - 1}")
    return len(indices)


def _net_modality(path: Path, state: dict[str, Tensor], prefix: str) -> str:
    """The modality of the recognizer under `prefix`: a ResNet by its input channels, a MobileNetV2 is audio."""
    if f"{prefix}conv1.weight" in state:
        channels = state[f"{prefix}conv1.weight"].shape[1]
        if channels not in RESNET_CHANNELS:
            raise OfficialCheckpointError(f"{path}: {prefix}conv1.weight takes {channels} input channels; a "
                                          f"recognizer takes 3 (RGB), 10 (flow) or 15 (RGBDiff)")
        return RESNET_CHANNELS[channels]
    weight = state.get(f"{prefix}features.0.0.weight")
    if weight is None or weight.shape[1] != 1:
        raise OfficialCheckpointError(f"{path}: {prefix or 'the file'} is neither a ResNet (conv1.weight) nor the "
                                      "1-channel audio MobileNetV2 (features.0.0.weight)")
    return "audio"


def _policy_input(path: Path, state: dict[str, Tensor], prefix: str) -> str:
    weight = state.get(f"{prefix}features.0.0.weight")
    if weight is None or weight.shape[1] not in POLICY_CHANNELS:
        shape = None if weight is None else tuple(weight.shape)
        raise OfficialCheckpointError(f"{path}: {prefix}features.0.0.weight is {shape}; a policy extractor takes "
                                      "3 (RGB), 15 (RGBDiff) or 1 (audio) input channels")
    return POLICY_CHANNELS[weight.shape[1]]


# ---------------------------------------------------------------------------------------------- key mapping


def extractor_names(extractor: MobileNetV2Extractor) -> dict[str, str]:
    """Our policy extractor's state-dict names (torchvision's MobileNetV2) -> the official policy MobileNetV2's.

    torchvision nests each block's layers (``conv.0.0`` conv, ``conv.0.1`` BN of a conv-BN-ReLU6), the official
    code lists them flat (conv, BN, ReLU6, ...), and keeps the last 1x1 convolution out of ``features``."""
    last = len(extractor.features) - 1
    names = {}
    for key in extractor.state_dict():
        parts = key.split(".")  # features, index, ...
        index = int(parts[1])
        if index == 0:
            names[key] = key
        elif index == last:
            names[key] = ".".join(["conv"] + parts[2:])
        else:  # features.K.conv.A[.B].param
            block = extractor.features[index].conv
            flat = [0, 1, 3, 4] if len(block) == 3 else [0, 1, 3, 4, 6, 7]  # expand ratio 1, or 6
            nested = [(0, 0), (0, 1), (1,), (2,)] if len(block) == 3 else [(0, 0), (0, 1), (1, 0), (1, 1), (2,), (3,)]
            position = tuple(int(p) for p in parts[3:-1])
            names[key] = ".".join(parts[:3] + [str(flat[nested.index(position)]), parts[-1]])
    return names


def _permute_blocks(weight: Tensor, order: list[int], block: int, start: int = 0) -> Tensor:
    """Columns ``start + block * i ...`` of `weight` rearranged so that block ``j`` is the file's block order[j]."""
    head = weight[:, :start]
    blocks = [weight[:, start + block * i: start + block * (i + 1)] for i in order]
    return torch.cat([head, *blocks, weight[:, start + block * len(order):]], dim=1)


def official_state(source: OfficialCheckpoint, model: torch.nn.Module) -> tuple[dict[str, Tensor], list[str]]:
    """The official tensors under our names (permuted to our modality order), and the official keys used."""
    ours: dict[str, Tensor] = {}
    used: list[str] = []
    state = source.state

    def take(official: str, name: str, value: Tensor | None = None) -> None:
        if official in state:
            ours[name] = state[official] if value is None else value
            used.append(official)

    recognizer_prefix = {m: (f"main_net.nets.{i}." if source.kind == "adamml" else "")
                         for i, m in enumerate(source.modalities)}
    for name, prefix in recognizer_prefix.items():
        for key in model.recognizers[name].state_dict():
            take(prefix + key, f"recognizers.{name}.{key}")
    if source.kind == "unimodal":
        return ours, used
    policy = model.policy
    for i, name in enumerate(source.policy_inputs):
        for key, official in extractor_names(policy.extractors[name]).items():
            take(f"policy_net.joint_net.nets.{i}.{official}", f"policy.extractors.{name}.{key}")
    # the MLP's input: the extractors' features concatenated in the file's order -> in ours
    mlp = "policy_net.joint_net.joint.0.weight"
    if mlp in state:
        width = state[mlp].shape[1] // len(source.policy_inputs)
        order = [source.policy_inputs.index(name) for name in policy.inputs]
        take(mlp, "policy.mlp.0.weight", _permute_blocks(state[mlp], order, width))
    for official, name in (("joint.0.bias", "mlp.0.bias"), ("joint.2.weight", "mlp.2.weight"),
                           ("joint.2.bias", "mlp.2.bias")):
        take(f"policy_net.joint_net.{official}", f"policy.{name}")
    # decisions: the file's head i decides about its recognizer i (the official code pairs them by position)
    order = [source.modalities.index(name) for name in model.modalities]
    lstm_ih = "policy_net.lstm.weight_ih"
    if lstm_ih in state:  # its input: features, then the previous segment's logits (2 per modality, file order)
        start = state[lstm_ih].shape[1] - 2 * len(order)
        take(lstm_ih, "policy.lstm.weight_ih", _permute_blocks(state[lstm_ih], order, 2, start))
    for key in ("weight_hh", "bias_ih", "bias_hh"):
        take(f"policy_net.lstm.{key}", f"policy.lstm.{key}")
    for i, name in enumerate(source.modalities):
        for key in ("weight", "bias"):
            take(f"policy_net.fcs.{i}.{key}", f"policy.heads.{name}.{key}")
    weights = state.get("main_net.lf_weights")
    if weights is not None and weights.dim() == 1 and len(weights) == len(order) - 1:
        full = torch.cat([weights, 1.0 - weights.sum().reshape(1)])  # the last modality's weight: 1 - the others
        take("main_net.lf_weights", "fusion.free_weights", full[order][:-1].clone())
    elif weights is not None:
        raise OfficialCheckpointError(f"{source.path}: main_net.lf_weights has shape {tuple(weights.shape)}; "
                                      f"{len(order)} modalities need {len(order) - 1} weights (per-class weights "
                                      "are not supported)")
    return ours, used


# ---------------------------------------------------------------------------------------------- the config


def converted_config(source: OfficialCheckpoint, preset: str | None, overrides: list[str]) -> tuple[Config, str]:
    """The configuration of the converted model: the matching preset (or `preset`), the modalities of the file,
    what the official model computes (logit feedback, weighted or averaged fusion over all segments) and the
    official input conventions."""
    ours = tuple(m for m in ("rgb", "flow", "rgbdiff", "audio") if m in source.modalities)
    if preset is None:
        preset = UNIMODAL_PRESET if source.kind == "unimodal" else PRESETS.get(ours)
        if preset is None:
            raise OfficialCheckpointError(f"{source.path}: no preset for the modalities {list(ours)}; give --preset")
    base = load_config(preset, [])
    kind = "weighted" if "main_net.lf_weights" in source.state or len(ours) == 1 else "average"
    forced = [f"model.modalities=[{','.join(ours)}]", "model.policy.feed=logits", f"model.fusion.kind={kind}",
              "model.fusion.segment_mean=all", "data.conventions=official"]
    cfg = load_config(preset, forced + list(overrides))
    if source.kind == "adamml" and set(base.model.modalities) != set(ours):
        raise OfficialCheckpointError(f"{source.path} holds an AdaMML model of {'+'.join(ours)}; the preset "
                                      f"{preset!r} is {'+'.join(base.model.modalities)} (use "
                                      f"{PRESETS.get(ours, 'another preset')})")
    if source.kind == "adamml" and set(source.policy_inputs) != set(policy_modalities(ours)):
        raise OfficialCheckpointError(f"{source.path}: its policy looks at {list(source.policy_inputs)}, adamml's "
                                      f"policy for {list(ours)} at {list(policy_modalities(ours))}")
    return cfg, preset


def _temperature(source: OfficialCheckpoint, cfg: ModelConfig) -> tuple[float, str]:
    if source.temperature is not None:
        return source.temperature, "from the file"
    if source.epoch is not None:
        return OFFICIAL_TEMPERATURE * OFFICIAL_DECAY ** max(0, source.epoch - 1), f"from its epoch {source.epoch}"
    return cfg.policy.temperature, "the preset's (the file records neither temperature nor epoch)"


# ---------------------------------------------------------------------------------------------- converting


def convert_official(path: Path, preset: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                     classes: list[str] | None = None) -> Conversion:
    """Convert the official file `path` into an adamml checkpoint payload (nothing written); strict."""
    source = read_official(path)
    cfg, preset = converted_config(source, preset, list(overrides))
    m = cfg.model
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        m, resnet=dataclasses.replace(m.resnet, pretrained=None, mmaction2={}),
        audio=dataclasses.replace(m.audio, pretrained=None),
        policy=dataclasses.replace(m.policy, pretrained=None)))
    torch.manual_seed(INIT_SEED)
    model = build_model(cfg.model)
    target = model.state_dict()
    mapped, used = official_state(source, model)
    notes = [f"{path}: official {source.kind} checkpoint of {'+'.join(source.modalities)} -> preset {preset!r}"]
    unexpected = sorted(set(source.state) - set(used))
    filled = dict(target)
    missing = []
    for name in target:
        if name in mapped:
            filled[name] = mapped[name]
        elif name.endswith("num_batches_tracked") or name == "policy.temperature":
            continue  # a counter the official file may lack; the temperature is set below
        elif source.kind == "unimodal" and name.startswith("policy."):
            continue  # a unimodal model runs no policy; its parameters keep their seeded initialisation
        else:
            missing.append(name)
    mismatched = [f"{name}: file {tuple(mapped[name].shape)} vs adamml {tuple(target[name].shape)}"
                  for name in mapped if mapped[name].shape != target[name].shape]
    if missing or unexpected or mismatched:
        lines = [f"{path} does not convert into the {preset!r} model ({'+'.join(m.modalities)}, ResNet-"
                 f"{m.resnet.depth}, {m.num_classes} classes)"]
        for title, items in (("adamml parameters the file does not fill", missing),
                             ("file keys adamml has no place for", unexpected), ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
        raise OfficialCheckpointError("\n".join(lines))
    temperature, why = _temperature(source, cfg.model)
    filled["policy.temperature"] = torch.tensor(float(temperature))
    load_model_state(model, {k: v.contiguous() for k, v in filled.items()}, path)  # strict, and no NaN
    if source.kind == "unimodal":
        notes.append("a unimodal file has no policy: the model runs its recognizer on every segment (stage "
                     f"'unimodal'); its policy parameters are the seeded initialisation (seed {INIT_SEED}), unused")
    else:
        notes.append(f"Gumbel temperature {temperature:.4g} ({why}); decisions at test: P(use) >= "
                     f"{cfg.model.policy.threshold:g} (the official code samples them)")
    classes = list(classes) if classes is not None else list(KINETICS_SOUNDS)
    if len(classes) != m.num_classes:
        raise OfficialCheckpointError(f"{len(classes)} class names for a model of {m.num_classes} classes")
    stage = "unimodal" if source.kind == "unimodal" else "adamml"
    payload = {**model_payload(model, cfg, classes=classes), "stage": stage,
               "converted_from": {"path": str(path), "kind": source.kind, "epoch": source.epoch,
                                  "temperature": float(temperature)}}
    return Conversion(payload, cfg, source, model, notes)


def write_conversion(conversion: Conversion, out: Path) -> None:
    """Write the converted checkpoint atomically (a failure leaves no half file)."""
    save_checkpoint(Path(out), conversion.payload)


__all__ = ["Conversion", "OfficialCheckpoint", "OfficialCheckpointError", "convert_official", "extractor_names",
           "read_official", "write_conversion"]
