"""Making a trained model cheaper to run without changing what it computes.

``fold_batch_norms`` folds every evaluation-mode batch norm into the convolution that feeds it (``y = BN(conv(x))``
becomes one convolution with scaled weights and a bias), the standard deployment step: the outputs stay the same
up to float rounding, the multiply-accumulates of the convolutions are unchanged (the GFLOPs reported everywhere
count convolutions and linear layers only), and one layer call in three disappears. At the sizes of the CPU
presets the time of these small networks is mostly the fixed cost of each layer call, so this matters most for
the policy (three MobileNetV2s of ~50 layers each on tiny inputs).

A pair is folded when a batch norm is registered right after a ``Conv2d`` of the same width in the same parent
module (``nn.Sequential`` blocks, torchvision's ``Conv2dNormActivation``, the ``convN`` / ``bnN`` attributes of
ResNet blocks), which is how every network here applies them; the tests check that the outputs do not change.

``optimize_for_inference`` also stores the convolution weights channels-last (NHWC), the layout oneDNN's CPU
kernels and cuDNN's tensor-core kernels prefer: each network converts its input once at its first convolution
and keeps that layout to the end. On the CPU here it made the policy ~35 % and the recognizers ~20 % faster
(`benchmarks/inference_parts.py`); outputs equal up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold each ``Conv2d`` -> ``BatchNorm2d`` pair of ``module`` (in place; call in eval mode); returns it."""
    if module.training:
        raise ValueError("fold_batch_norms changes the network for inference only: call model.eval() first")
    for child in module.children():
        fold_batch_norms(child)
    names = list(module._modules)
    for first, second in zip(names, names[1:]):
        conv, norm = module._modules[first], module._modules[second]
        if (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
                and norm.num_features == conv.out_channels and norm.track_running_stats):
            module._modules[first] = fuse_conv_bn_eval(conv, norm)
            module._modules[second] = nn.Identity()
    return module


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """Batch norms folded (``fold_batch_norms``) and convolution weights channels-last; in place, returns it."""
    fold_batch_norms(model)
    return model.to(memory_format=torch.channels_last)
