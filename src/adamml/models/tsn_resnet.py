"""TSN-style 2D ResNet recognizer with temporal max pooling (paper Sec. 4, supplementary Sec. B "Network").

A 2D ResNet (torchvision's BasicBlock / Bottleneck, depths 18, 34, 50) runs on every frame of a segment; temporal
max pooling (kernel 3, stride 2, padding 1) after layer1, layer2 and layer3 (the beginning of stages 2, 3 and 4)
reduces 8 frames to 4, 2 and 1 and thereby the computation. Spatially pooled features are averaged over the
frames that remain, then dropout (0.5) and a linear classifier give the segment logits. ``begin`` /
``forward_stage`` / ``end`` expose the four stages one at a time (mid-level fusion baselines connect streams
between them, ``adamml.models.baselines``); ``forward_features`` is exactly their composition.

The module keeps torchvision's parameter names (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``) so that an
ImageNet checkpoint loads with strict key matching (see ``adamml.models.build``). ``base_width`` scales every stage
(64 = torchvision; 128, 256, 512 follow) for tiny CPU models.

Input: ``(N, T, C, H, W)``: N segments, T frame positions, C channels per frame position (rgb 3, flow 10,
rgbdiff 15; see ``adamml.modalities``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

NUM_STAGES = 4  # layer1 .. layer4

RESNET_LAYERS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


def temporal_max_pool(x: Tensor, frames: int) -> tuple[Tensor, int]:
    """Max pooling over time, kernel 3, stride 2, padding 1, on ``(N * frames, C, H, W)``.

    Returns the pooled ``(N * frames', C, H, W)`` tensor and ``frames' = ceil(frames / 2)``.
    """
    nt, c, h, w = x.shape
    x = x.view(nt // frames, frames, c, h, w).transpose(1, 2)  # (N, C, T, H, W)
    x = F.max_pool3d(x, kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
    frames = x.shape[2]
    x = x.transpose(1, 2).reshape(-1, c, h, w)  # (N * T', C, H, W)
    return x, frames


class TSNResNet(nn.Module):
    """2D ResNet on each frame with temporal max pooling between stages; segment logits."""

    def __init__(self, depth: int, in_channels: int, num_classes: int, base_width: int = 64,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}, got {depth}")
        block, layers = RESNET_LAYERS[depth]
        self.depth = depth
        self.in_channels = in_channels
        self.inplanes = base_width
        self.conv1 = nn.Conv2d(in_channels, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, base_width, layers[0])
        self.layer2 = self._make_layer(block, base_width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base_width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base_width * 8, layers[3], stride=2)
        self.num_features = base_width * 8 * block.expansion
        # channels of the outputs of layer1 .. layer4 (mid-level fusion connects streams there)
        self.stage_channels = tuple(base_width * 2 ** k * block.expansion for k in range(NUM_STAGES))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _stages(self) -> tuple[nn.Sequential, ...]:
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def begin(self, x: Tensor) -> tuple[Tensor, int]:
        """``(N, T, C, H, W)`` -> the frames as a batch ``(N * T, C, H, W)`` and T."""
        n, t, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels per frame, got input of shape {tuple(x.shape)}")
        return x.reshape(n * t, c, h, w), t

    def forward_stage(self, index: int, x: Tensor, frames: int) -> tuple[Tensor, int]:
        """Stage ``index`` on ``(N * frames, C, H, W)``: 0 = stem + layer1, 1 = layer2, 2 = layer3, 3 = layer4;
        stages 0-2 end with the temporal max pool (8 -> 4 -> 2 -> 1 frames). Returns the output and its frames."""
        if index == 0:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self._stages()[index](x)
        if index < NUM_STAGES - 1:
            x, frames = temporal_max_pool(x, frames)
        return x, frames

    def end(self, x: Tensor, n: int) -> Tensor:
        """The last stage's output ``(N * T', F, h, w)`` -> features ``(N, F)``: spatial, then temporal average."""
        return self.avgpool(x).view(n, -1, self.num_features).mean(dim=1)  # (N, T', F) -> (N, F)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(N, T, C, H, W)`` -> pooled features ``(N, F)``."""
        n = x.shape[0]
        x, t = self.begin(x)
        for index in range(NUM_STAGES):
            x, t = self.forward_stage(index, x, t)
        return self.end(x, n)

    def forward_head(self, features: Tensor) -> Tensor:
        """``(N, F)`` -> logits ``(N, K)``."""
        return self.fc(self.dropout(features))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, T, C, H, W)`` -> segment logits ``(N, K)``."""
        return self.forward_head(self.forward_features(x))


__all__ = ["NUM_STAGES", "RESNET_LAYERS", "TSNResNet", "temporal_max_pool"]
