"""Distributed data parallel: one command on one CPU, one GPU, several GPUs or several nodes.

Launch with `torchrun --nproc_per_node N -m adamml.cli train ...` (or plain `adamml train` for one process).
Gradients are averaged by DistributedDataParallel; batch norm is synchronised across processes
(torch's SyncBatchNorm on GPUs; on CPUs, where torch's has no kernel, `GlobalBatchNorm2d` below), so a global
batch gives the same statistics however many processes share it (supplementary Sec. B: synchronised BN).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from adamml.runtime.devices import torch_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1); pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device != "auto":
        torch_device(device)  # a clear error for a device this machine does not have
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of every process's gradient (each process's loss depends
    on the total)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole global batch (all processes), for CPU
    process groups. Differentiable: the reduction goes through `torch.distributed.nn.functional.all_reduce`."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), count]))  # (C + 1,)
        n = stats[-1]
        mean = stats[:c] / n
        # two passes (sum, then squared deviations) keep the variance exact when it is tiny next to the mean
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dim=(0, 2, 3))) / n  # biased, as batch norm normalises with
        if self.track_running_stats:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 0.1
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
                self.num_batches_tracked.add_(1)
        y = centred * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def sync_batch_norm(model: nn.Module, info: DistInfo) -> nn.Module:
    """Replace batch norms by synchronised ones when several processes train together."""
    if not info.enabled:
        return model
    if info.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        for p_new, p_old in zip(new.parameters(), module.parameters()):
            p_new.requires_grad_(p_old.requires_grad)
        return new
    for name, child in module.named_children():
        setattr(module, name, _convert_cpu(child))
    return module


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel over the parameters that currently require gradients (re-wrap after freezing or
    unfreezing parts); the model itself for one process."""
    if not info.enabled:
        return model
    ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_gather_objects(obj: object, info: DistInfo) -> list[object]:
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def reduce_mean(values: Tensor, info: DistInfo) -> Tensor:
    if not info.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / info.world


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
