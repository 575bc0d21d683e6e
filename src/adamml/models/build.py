"""Building the AdaMML model (or an always-on fusion baseline) from its configuration, and loading ImageNet
weights from a local file.

One explicit ``build_model(cfg)``; no registries. Pretrained weights come only from a local torchvision ImageNet
checkpoint given by the user (``torch.load(..., weights_only=True)``; nothing is downloaded). As in the paper
(supplementary Sec. B) the first convolution of a non-RGB input (flow 10, RGBDiff 15, audio 1 channels) is the RGB
kernel averaged over its 3 input channels and repeated. Keys are matched strictly: any missing, unexpected or
shape-mismatched key is an error listing them (the ImageNet classifier is the only thing left out: the head is
trained for the dataset's classes).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from adamml.config import BASELINE_KINDS, ModelConfig
from adamml.modalities import get_modality
from adamml.models.adamml import AdaMML
from adamml.models.baselines import FusionBaseline, build_baseline
from adamml.models.fusion import LateFusion
from adamml.models.mobilenet import MobileNetV2Extractor, MobileNetV2Recognizer
from adamml.models.policy import PolicyNetwork
from adamml.models.state import CheckpointError, WeightsNotFoundError, non_finite_tensor, read_weights, state_mismatch
from adamml.models.tsn_resnet import TSNResNet

Model = AdaMML | FusionBaseline  # what build_model returns; both give an AdaMMLOutput


def _first_conv_and_head(net: nn.Module) -> tuple[str, str]:
    """Name of the first conv weight and prefix of the ImageNet classifier, in torchvision's naming."""
    if isinstance(net, TSNResNet):
        return "conv1.weight", "fc."
    if isinstance(net, (MobileNetV2Recognizer, MobileNetV2Extractor)):
        return "features.0.0.weight", "classifier."
    raise TypeError(f"no ImageNet checkpoint layout known for {type(net).__name__}")


def load_imagenet_weights(net: nn.Module, path: str | Path) -> None:
    """Load a local torchvision ImageNet checkpoint into ``net`` (TSNResNet or a MobileNetV2), strictly.

    The checkpoint's classifier is dropped; the first conv is inflated from 3 channels when ``net`` takes another
    number of input channels. Raises ``CheckpointError`` listing missing / unexpected / mismatched keys.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"pretrained weights not found: {path}")
    state = read_weights(path)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path}: expected a flat state dict (parameter name -> tensor) as torchvision's ImageNet checkpoints "
            f"are; got {type(state).__name__}" + (f" with keys {sorted(state)[:8]}" if isinstance(state, dict) else ""))
    load_torchvision_state(net, state, path)


def load_torchvision_state(net: nn.Module, state: dict[str, Tensor], path: str | Path) -> None:
    """Load `state`, in torchvision's names, into ``net`` as ``load_imagenet_weights`` does (classifier dropped,
    first conv inflated, strict); `path` names the file in errors."""
    bad = non_finite_tensor(state)
    if bad is not None:
        raise CheckpointError(f"{path}: tensor {bad!r} holds NaN or infinite values")
    first_conv, head = _first_conv_and_head(net)
    target = net.state_dict()
    state = {key: value for key, value in state.items() if not key.startswith(head)}
    weight = state.get(first_conv)
    wanted = target[first_conv]
    if weight is not None and weight.dim() == 4 and weight.shape[1] == 3 and wanted.shape[1] != 3:
        # average the RGB kernel over its input channels and repeat it (supplementary Sec. B)
        state[first_conv] = weight.mean(dim=1, keepdim=True).expand(-1, wanted.shape[1], -1, -1).contiguous()
    expected = {key: value for key, value in target.items() if not key.startswith(head)}
    mismatch = state_mismatch(state, expected, optional=[k for k in expected if k.endswith("num_batches_tracked")])
    if mismatch:
        network = type(net).__name__
        if isinstance(net, TSNResNet):
            network += f" (depth {net.depth}, {net.in_channels} input channels)"
        raise CheckpointError(f"{path} does not match {network}{mismatch}")
    full = dict(target)
    full.update(state)
    net.load_state_dict(full, strict=True)


def build_recognizers(cfg: ModelConfig) -> dict[str, nn.Module]:
    """One recognizer per modality, in model order (ImageNet weights loaded where configured)."""
    recognizers: dict[str, nn.Module] = {}
    for name in cfg.modalities:
        modality = get_modality(name)
        if modality.visual:
            net: nn.Module = TSNResNet(cfg.resnet.depth, modality.channels, cfg.num_classes,
                                       base_width=cfg.resnet.base_width, dropout=cfg.resnet.dropout)
            if cfg.resnet.pretrained:
                load_imagenet_weights(net, cfg.resnet.pretrained)
            if name in cfg.resnet.mmaction2:
                from adamml.models.mmaction2_weights import load_mmaction2_weights

                load_mmaction2_weights(net, cfg.resnet.mmaction2[name])
        else:
            net = MobileNetV2Recognizer(modality.channels, cfg.num_classes, width_mult=cfg.audio.width_mult,
                                        dropout=cfg.audio.dropout)
            if cfg.audio.pretrained:
                load_imagenet_weights(net, cfg.audio.pretrained)
        recognizers[name] = net
    return recognizers


def build_model(cfg: ModelConfig) -> Model:
    """The model ``cfg`` describes: AdaMML (one recognizer per modality, the policy, the late fusion) for the late
    fusion kinds, or the always-on fusion baseline ``cfg.fusion.kind`` (no policy)."""
    recognizers = build_recognizers(cfg)
    if cfg.fusion.kind in BASELINE_KINDS:
        return build_baseline(cfg, recognizers)
    policy = PolicyNetwork(cfg.modalities, cfg.policy)
    if cfg.policy.pretrained:
        for extractor in policy.extractors.values():
            load_imagenet_weights(extractor, cfg.policy.pretrained)
    fusion = LateFusion(len(cfg.modalities), cfg.fusion.kind, cfg.fusion.segment_mean,
                        cfg.fusion.decision_gradient, cfg.fusion.skipped_logits, cfg.num_classes)
    return AdaMML(cfg, recognizers, policy, fusion)
