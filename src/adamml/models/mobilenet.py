"""MobileNetV2 networks: the audio recognizer and the policy's feature extractors (paper Sec. 3.1, Sec. 4 and
supplementary Sec. B "Network").

Both keep torchvision's MobileNetV2 definition and parameter names (``features.N...``, ``classifier.1``), so an
ImageNet checkpoint loads with strict key matching; only the first convolution takes ``in_channels`` inputs.

- ``MobileNetV2Recognizer``: audio recognition on the 1-channel log-spectrogram ``(N, 1, F, W)`` -> logits;
  ``begin`` / ``forward_stage`` / ``end`` run it in four stages of output strides 4, 8, 16, 32 (as ResNet's
  layer1 .. layer4) for the mid-level fusion baselines.
- ``MobileNetV2Extractor``: a policy feature extractor without classifier. Visual inputs ``(N, T, C, H, W)``
  (4 frames of 160 x 160 in the paper) go through two temporal max pools (kernel 3, stride 2, padding 1), placed
  as in the official code before the first block of the 64-channel stage and of the 160-channel stage, so
  4 -> 2 -> 1 frames. The audio extractor gets ``(N, 1, F, W)`` (one "frame", no pooling). Output ``(N, 1280)``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.ops.misc import Conv2dNormActivation

from adamml.models.tsn_resnet import temporal_max_pool

# indices in ``features`` of the first block of the 64-channel and 160-channel stages of MobileNetV2
TEMPORAL_POOL_BEFORE: tuple[int, ...] = (7, 14)
# ends (exclusive) in ``features`` of four stages at output strides 4, 8, 16 and 32, those of ResNet's layer1 ..
# layer4 (mid-level fusion baselines connect the audio stream to the visual ones there)
STAGE_ENDS: tuple[int, ...] = (4, 7, 14, 19)


def _mobilenet_v2(in_channels: int, num_classes: int, width_mult: float, dropout: float) -> MobileNetV2:
    """torchvision's MobileNetV2 with ``in_channels`` inputs to the first convolution."""
    net = MobileNetV2(num_classes=num_classes, width_mult=width_mult, dropout=dropout)
    if in_channels != 3:
        stem: Conv2dNormActivation = net.features[0]
        old: nn.Conv2d = stem[0]
        conv = nn.Conv2d(in_channels, old.out_channels, kernel_size=3, stride=2, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out")
        stem[0] = conv
    return net


class MobileNetV2Recognizer(nn.Module):
    """MobileNetV2 classifier on one image per sample (the audio spectrogram): ``(N, C, H, W)`` -> ``(N, K)``."""

    def __init__(self, in_channels: int, num_classes: int, width_mult: float = 1.0, dropout: float = 0.5) -> None:
        super().__init__()
        net = _mobilenet_v2(in_channels, num_classes, width_mult, dropout)
        self.in_channels = in_channels
        self.features = net.features
        self.classifier = net.classifier  # Dropout, Linear
        self.num_features = net.last_channel
        self.stage_channels = tuple(self.features[end - 1].out_channels for end in STAGE_ENDS)

    def begin(self, x: Tensor) -> tuple[Tensor, int]:
        """Check ``(N, C, H, W)``; returns it and its number of frames (1), as ``TSNResNet.begin`` does."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return x, 1

    def forward_stage(self, index: int, x: Tensor, frames: int = 1) -> tuple[Tensor, int]:
        """Stage ``index`` (0-3, output strides 4, 8, 16, 32) of ``features``; returns the output and ``frames``."""
        start = STAGE_ENDS[index - 1] if index else 0
        return self.features[start:STAGE_ENDS[index]](x), frames

    def end(self, x: Tensor, n: int) -> Tensor:
        """The last stage's output ``(N, F, h, w)`` -> ``(N, F)``."""
        return x.mean(dim=(2, 3))

    def forward_features(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, F)``."""
        x, _ = self.begin(x)
        return self.end(self.features(x), x.shape[0])

    def forward_head(self, features: Tensor) -> Tensor:
        """``(N, F)`` -> ``(N, K)``."""
        return self.classifier(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class MobileNetV2Extractor(nn.Module):
    """MobileNetV2 features for the policy: ``(N, T, C, H, W)`` or ``(N, C, H, W)`` -> ``(N, 1280)``."""

    def __init__(self, in_channels: int, width_mult: float = 1.0) -> None:
        super().__init__()
        net = _mobilenet_v2(in_channels, 1000, width_mult, 0.0)
        self.in_channels = in_channels
        self.features = net.features
        self.num_features = net.last_channel

    def forward_features(self, x: Tensor) -> Tensor:
        """Frames ``(N, T, C, H, W)`` (temporal pools 4 -> 2 -> 1) or one image ``(N, C, H, W)`` -> ``(N, F)``."""
        if x.dim() == 4:
            x = x.unsqueeze(1)  # (N, 1, C, H, W): a single image, e.g. the spectrogram
        n, t, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels per frame, got input of shape {tuple(x.shape)}")
        x = x.reshape(n * t, c, h, w)  # (N * T, C, H, W)
        for index, layer in enumerate(self.features):
            if index in TEMPORAL_POOL_BEFORE and t > 1:
                x, t = temporal_max_pool(x, t)
            x = layer(x)
        x = x.mean(dim=(2, 3)).view(n, t, -1)  # (N, T', F)
        return x.mean(dim=1)  # (N, F)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)
