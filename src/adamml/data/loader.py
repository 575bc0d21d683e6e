"""Batches for one process: a global batch order that N processes split exactly as one process would see it,
and, for stores read as uint8 pixels (``data.normalize_on_device``), batches finished on the device (with
``data.decode: device``, decoded there too)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from adamml.data.batch import finish_batch
from adamml.data.jpeg import collate_encoded, decode_batch
from adamml.distributed import DistInfo


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of a global permutation (seed, epoch), each split into equal per-process slices, so N processes
    see exactly the global batches one process would."""

    def __init__(self, size: int, global_batch: int, info: DistInfo, seed: int, shuffle: bool, drop_last: bool):
        if global_batch % info.world:
            raise ValueError(f"batch size {global_batch} is not divisible by the {info.world} processes")
        self.size, self.global_batch, self.info = size, global_batch, info
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size))
        batches = [order[i:i + self.global_batch] for i in range(0, self.size, self.global_batch)]
        if self.drop_last and batches and len(batches[-1]) < self.global_batch:
            batches = batches[:-1]
        return batches

    def __iter__(self):
        for batch in self._batches():
            # an uneven last batch (evaluation only) is split as evenly as possible
            part = np.array_split(batch, self.info.world)[self.info.rank].tolist()
            if part:
                yield part

    def __len__(self) -> int:
        return len(self._batches())


def make_loader(dataset, global_batch: int, info: DistInfo, seed: int, train: bool, workers: int
                ) -> DataLoader | DeviceLoader:
    """Batches of `dataset` for this process; a store read with uint8 pixels (``data.normalize_on_device``)
    gives batches already on the device and finished there (`DeviceLoader`), decoded there first with
    ``data.decode: device`` (training and evaluation alike)."""
    batch = min(global_batch, len(dataset) - len(dataset) % info.world) if train else global_batch
    batch = max(info.world, batch - batch % info.world)
    sampler = GlobalBatchSampler(len(dataset), batch, info, seed, shuffle=train, drop_last=train)
    sampling = getattr(dataset.dataset if isinstance(dataset, Subset) else dataset, "cfg", None)
    encoded = getattr(sampling, "decode", "cpu") == "device"
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=False,
                        pin_memory=info.device.type == "cuda", collate_fn=collate_encoded if encoded else None)
    if encoded or (getattr(sampling, "raw", False) and sampling.network is not None):
        network = sampling.network
        return DeviceLoader(
            loader, info.device,
            (lambda b: finish_batch(b, network, conventions=sampling.conventions)) if network is not None else None,
            decode=(lambda b, device: decode_batch(b, device, sampling.input_size)) if encoded else None)
    return loader


class DeviceLoader:
    """A DataLoader whose batches are moved to `device` (asynchronously from pinned memory) and finished there
    by `finish` (`adamml.data.batch.finish_batch`): the loader's workers send uint8 pixels, the device converts them.
    With `decode` (``data.decode: device``: `adamml.data.jpeg.decode_batch`) the workers send JPEG bytes, decoded
    and cropped on the device first."""

    def __init__(self, loader: DataLoader, device: torch.device,
                 finish: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None,
                 decode: Callable[[dict, torch.device], dict[str, Tensor]] | None = None) -> None:
        self.loader, self.device, self.finish, self.decode = loader, device, finish, decode
        self.batch_sampler = loader.batch_sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.decode is not None:
                batch = self.decode(batch, self.device)
            batch = to_device(batch, self.device)
            yield self.finish(batch) if self.finish is not None else batch


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
