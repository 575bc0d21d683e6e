"""mmaction2 TSN ResNet checkpoints as the initialisation of our recognizers (``model.resnet.mmaction2``, or
``adamml train --init rgb=FILE.pth``).

mmaction2's ResNet wraps each convolution and its batch norm in a ``ConvModule`` (``backbone.conv1.conv``,
``backbone.conv1.bn``, ``backbone.layer1.0.conv2.conv``, ``backbone.layer1.0.downsample.bn``, ...) where torchvision
(and ``TSNResNet``) names them ``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer1.0.downsample.1``; its TSN head is
``cls_head.fc_cls``. The file is ``{'state_dict': ..., 'meta': ...}`` (or the bare state dict), read weights only.
The backbone is renamed and loaded as the ImageNet weights are (``adamml.models.build.load_torchvision_state``):
strictly, a 3-channel first convolution inflated for flow / RGBDiff; the head is left out (trained for the
dataset's classes). Input conventions: mmaction2's RGB normalisation is ImageNet's, as ours; its flow is
``(q - 128) / 128`` where ours is ``(q / 255 - 0.5) / 0.226`` (about 2.2 times larger), which fine-tuning absorbs.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from adamml.models.build import load_torchvision_state
from adamml.models.foreign_weights import state_dict_of
from adamml.models.state import CheckpointError, WeightsNotFoundError, read_weights
from adamml.models.tsn_resnet import TSNResNet

BACKBONE, HEAD = "backbone.", "cls_head."
# ConvModule parts -> torchvision names, relative to a block (or the stem)
_STEM = {"conv1.conv.": "conv1.", "conv1.bn.": "bn1."}
_BLOCK = re.compile(r"^(layer\d+\.\d+\.)(conv(\d)\.(conv|bn)|downsample\.(conv|bn))\.(.+)$")


def torchvision_name(key: str) -> str | None:
    """mmaction2's backbone name (without ``backbone.``) -> torchvision's; None when it is none of a ResNet's."""
    for old, new in _STEM.items():
        if key.startswith(old):
            return new + key[len(old):]
    match = _BLOCK.match(key)
    if match is None:
        return None
    block, _, index, conv_or_bn, down, param = match.groups()
    if index is not None:
        return f"{block}{'conv' if conv_or_bn == 'conv' else 'bn'}{index}.{param}"
    return f"{block}downsample.{0 if down == 'conv' else 1}.{param}"


def read_mmaction2_state(path: Path) -> dict[str, Tensor]:
    """The backbone of an mmaction2 checkpoint in torchvision's names; errors name the file and the keys."""
    payload = read_weights(path, "mmaction2 checkpoint", error=CheckpointError, not_found=WeightsNotFoundError)
    state = state_dict_of(payload, path, CheckpointError)
    if not any(k.startswith(BACKBONE) for k in state):
        raise CheckpointError(f"{path}: no 'backbone.*' keys: not an mmaction2 recognizer checkpoint "
                                      f"(keys: {sorted(state)[:5]})")
    renamed, unknown = {}, []
    for key, value in state.items():
        if key.startswith(HEAD):
            continue
        name = torchvision_name(key[len(BACKBONE):]) if key.startswith(BACKBONE) else None
        if name is None:
            unknown.append(key)
        else:
            renamed[name] = value
    if unknown:
        raise CheckpointError(f"{path}: keys that are not a ResNet backbone's or a TSN head's "
                                      f"({len(unknown)}): {', '.join(unknown[:10])}")
    return renamed


def load_mmaction2_weights(net: TSNResNet, path: str | Path) -> None:
    """Initialise ``net`` from the mmaction2 TSN checkpoint at `path` (backbone strictly, head left out)."""
    load_torchvision_state(net, read_mmaction2_state(Path(path)), path)


__all__ = ["load_mmaction2_weights", "read_mmaction2_state", "torchvision_name"]
