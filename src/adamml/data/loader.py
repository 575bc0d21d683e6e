"""Batches for one process: a global batch order that N processes split exactly as one process would see it,
and, for stores read as uint8 pixels (``data.normalize_on_device``), batches finished on the device (with
``data.decode: device``, decoded there too). A training run keeps its loaders in a `LoaderPool`, so that their
worker processes start once per run, not once per epoch (``data.persistent_workers``)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from adamml.data.batch import finish_batch
from adamml.data.jpeg import collate_encoded, decode_batch
from adamml.runtime.distributed import DistInfo


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


def single_threaded_worker(worker_id: int) -> None:
    """Each loader worker runs OpenCV serially. Otherwise OpenCV would start a thread per core in every worker (it
    splits a 224 x 224 warp in two on 2 cores), threads that only contend with the other workers; and a forked
    worker would use a thread pool copied from the training process without its threads, which can hang. 0, not 1:
    setting 1 stops the copied pool's threads, which also hangs in a forked child (7 of 18 forks in a test here);
    0 runs serially without touching the pool (0 of 105; mmengine and opencv-python advise the same). PyTorch
    already gives each worker one thread of its own."""
    cv2.setNumThreads(0)


class PersistentLoader:
    """A DataLoader whose worker processes stay up between passes (``persistent_workers``), for a `LoaderPool`.

    Iterating it takes from the global torch RNG the one number that a new DataLoader's iterator takes (its
    workers' base seed) and the DataLoader itself draws from a generator of its own: a run's random stream (the
    Gumbel noise), and so its results, are the same whatever ``data.workers`` and wherever the run was resumed.
    The samples do not depend on the workers' seeds (`adamml.data.dataset`: seed, epoch and index only)."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.batch_sampler = loader.batch_sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()
        return iter(self.loader)

    def close(self) -> None:
        """Stop the worker processes now (they would stop when the loader is collected)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


class LoaderPool:
    """The loaders of one training run, one per data set, batch size and order, kept from epoch to epoch so that
    their workers start once (`make_loader` with ``pool``). The data sets must read their epoch at sampling time
    from memory the workers share (`adamml.data.dataset.SegmentDataset.set_epoch` does). `close` (or leaving a
    ``with`` block) stops the workers."""

    def __init__(self) -> None:
        self._loaders: dict[tuple, tuple[object, PersistentLoader]] = {}  # key -> (data set kept alive, loader)

    def __len__(self) -> int:
        return len(self._loaders)

    def get(self, key: tuple, dataset, build: Callable[[], DataLoader]) -> PersistentLoader:
        if key not in self._loaders:
            self._loaders[key] = (dataset, PersistentLoader(build()))
        return self._loaders[key][1]

    def close(self) -> None:
        loaders, self._loaders = self._loaders, {}
        for _, loader in loaders.values():
            loader.close()

    def __enter__(self) -> LoaderPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_loader(dataset, global_batch: int, info: DistInfo, seed: int, train: bool, workers: int,
                pool: LoaderPool | None = None) -> DataLoader | PersistentLoader | DeviceLoader:
    """Batches of `dataset` for this process; a store read with uint8 pixels (``data.normalize_on_device``)
    gives batches already on the device and finished there (`DeviceLoader`), decoded there first with
    ``data.decode: device`` (training and evaluation alike). With `pool` and workers, the loader of the same data
    set, batch size and order made by an earlier call is used again, its workers still running, its batch order
    that of `seed` (the same batches as a new loader's)."""
    batch = min(global_batch, len(dataset) - len(dataset) % info.world) if train else global_batch
    batch = max(info.world, batch - batch % info.world)
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    sampling = getattr(base, "cfg", None)
    encoded = getattr(sampling, "decode", "cpu") == "device"
    kept = pool is not None and workers > 0

    def build() -> DataLoader:
        sampler = GlobalBatchSampler(len(dataset), batch, info, seed, shuffle=train, drop_last=train)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=kept,
                          pin_memory=info.device.type == "cuda", collate_fn=collate_encoded if encoded else None,
                          worker_init_fn=single_threaded_worker, generator=torch.Generator() if kept else None)

    if kept:
        part = tuple(int(i) for i in dataset.indices) if isinstance(dataset, Subset) else None
        loader = pool.get((id(base), part, batch, train, workers), base, build)
        loader.batch_sampler.seed = seed
        loader.batch_sampler.set_epoch(0)
    else:
        loader = build()
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

    def __init__(self, loader: DataLoader | PersistentLoader, device: torch.device,
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
