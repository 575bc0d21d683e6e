"""JPEG frames decoded on the training process's device (``data.decode: device``).

The loader's workers only read each file a sample needs (`JpegPacker`: every distinct file once, its bytes
unchanged) and say which crops to take of it (box, flip, flow x negation) and where each crop goes in the sample;
`collate_encoded` joins samples into a batch and `decode_batch` decodes the whole batch with
`torchvision.io.decode_jpeg` on the device (nvJPEG's batched decoder on a GPU), crops, resizes and flips there,
giving the uint8 layout of ``data.normalize_on_device`` (`adamml.data.dataset`), which
`adamml.data.batch.finish_batch` then finishes as usual.

The crop is `adamml.data.transforms.apply_crop`'s: output pixel u reads source x + u * side / size (no half-pixel
offset), bilinear, edges replicated, here `grid_sample` with ``align_corners=True`` and ``padding_mode="border"``.
OpenCV's warp uses 1/32-pixel fixed-point positions and weights, so the two differ by a level or two at edges.

Only JPEG files are decoded this way: a file that is not one (a PNG saved under a .jpg name) is refused by the
worker, a corrupt one by the decode step, both naming the file. EXIF orientation is not applied (nvJPEG cannot):
`adamml prepare` keeps a JPEG's bytes only when it is upright and re-encodes the others.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg

from adamml.data.layout import StoreError

PREFIX = "jpeg_"
# the two kinds of file: frames decoded as 3 channels (RGB, turned BGR as OpenCV reads them), flow as 1
GROUPS = {"image": ImageReadMode.RGB, "flow": ImageReadMode.GRAY}
# the sample's pixel inputs, the kind of file each is cropped from, and the value of a slot with no file
PLACES = {"rgb": "image", "rgbdiff": "image", "flow": "flow"}
NO_MOTION = 128  # a quantised flow value of 0 (one-frame videos have no flow files)
_JPEG_START = b"\xff\xd8"
_CHUNK_ELEMENTS = 1 << 26  # float source pixels warped at once (256 MB)
_CROP_COLUMNS = 6  # file, x, y, side, flip, negate


def key(group: str, what: str) -> str:
    """The batch key of `what` (bytes, lengths, crops, paths) of file kind `group`."""
    return f"{PREFIX}{group}_{what}"


def at_key(name: str) -> str:
    """The batch key of the table placing crops into pixel input `name` (rgb, rgbdiff, flow)."""
    return f"{PREFIX}at_{name}"


def read_jpeg(path: Path) -> bytes:
    """The bytes of one stored JPEG file, with an error naming it when it is missing or not a JPEG."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"{path}: missing or unreadable ({exc.strerror or exc})") from exc
    if not data.startswith(_JPEG_START):
        raise StoreError(f"{path}: not a JPEG file (it starts with {data[:4]!r}); data.decode: device decodes JPEG "
                         "frames only: set data.decode: cpu to read this store")
    return data


class JpegPacker:
    """One sample's files and crops for device decoding: each file read once, each distinct crop of it (box, flip,
    negation) listed once, `crop` returning its index for the sample's placement tables."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, dict[str, int]] = {g: {} for g in GROUPS}  # name -> file index
        self.data: dict[str, list[bytes]] = {g: [] for g in GROUPS}
        self.crops: dict[str, dict[Hashable, int]] = {g: {} for g in GROUPS}  # (file, box, flip, negate) -> index

    def crop(self, group: str, name: str, box: tuple[float, float, float, bool], negate: bool = False) -> int:
        """The index of the crop `box` (x, y, side, flip) of file `name` (x negated if `negate`)."""
        files = self.files[group]
        if name not in files:
            files[name] = len(files)
            self.data[group].append(read_jpeg(self.folder / name))
        crops = self.crops[group]
        return crops.setdefault((files[name], *box, negate), len(crops))

    def tensors(self) -> dict:
        """The sample's entries: per kind of file, the bytes joined, each file's length, the crop table
        (file, x, y, side, flip, negate: float64) and the paths (for messages)."""
        out: dict = {}
        for group in GROUPS:
            joined = bytearray().join(self.data[group])
            out[key(group, "bytes")] = (torch.frombuffer(joined, dtype=torch.uint8) if joined
                                        else torch.empty(0, dtype=torch.uint8))
            out[key(group, "lengths")] = torch.tensor([len(d) for d in self.data[group]], dtype=torch.int64)
            out[key(group, "crops")] = torch.tensor(list(self.crops[group]), dtype=torch.float64).reshape(
                -1, _CROP_COLUMNS)
            out[key(group, "paths")] = [str(self.folder / name) for name in self.files[group]]
        return out


def collate_encoded(items: list[dict]) -> dict:
    """A batch of `JpegPacker` samples: bytes, lengths, crop tables and paths joined (file and crop indices
    shifted past the samples before), placement tables stacked; the other entries as the default collate."""
    out: dict = {}
    crop_offsets = {}
    for group in GROUPS:
        files, crops, tables = 0, [0], []
        for item in items:
            table = item[key(group, "crops")].clone()
            table[:, 0] += files
            tables.append(table)
            files += len(item[key(group, "lengths")])
            crops.append(crops[-1] + len(table))
        crop_offsets[group] = crops
        out[key(group, "bytes")] = torch.cat([item[key(group, "bytes")] for item in items])
        out[key(group, "lengths")] = torch.cat([item[key(group, "lengths")] for item in items])
        out[key(group, "crops")] = torch.cat(tables)
        out[key(group, "paths")] = [path for item in items for path in item[key(group, "paths")]]
    for name, group in PLACES.items():
        if at_key(name) in items[0]:
            out[at_key(name)] = torch.stack([
                torch.where(item[at_key(name)] >= 0, item[at_key(name)] + offset, -1)
                for item, offset in zip(items, crop_offsets[group])])
    rest = [{k: v for k, v in item.items() if not k.startswith(PREFIX)} for item in items]
    return {**default_collate(rest), **out}


def decode_batch(batch: dict, device: torch.device, size: int) -> dict:
    """A `collate_encoded` batch -> the uint8 layout of ``data.normalize_on_device`` on `device`: ``rgb``
    (B, S, T, size, size, 3) BGR, ``rgbdiff`` (B, S, T', 6, size, size, 3), ``flow`` (B, S, T, 10, size, size);
    the other entries unchanged (still where they were)."""
    out = {k: v for k, v in batch.items() if not k.startswith(PREFIX)}
    crops = {group: decoded_crops(batch, group, device, size) for group in GROUPS
             if any(PLACES[name] == group and at_key(name) in batch for name in PLACES)}
    for name, group in PLACES.items():
        if at_key(name) in batch:
            out[name] = place(crops[group], batch[at_key(name)].to(device, non_blocking=True))
    return out


def place(crops: Tensor, at: Tensor) -> Tensor:
    """Crops (C, ...) gathered by the index table `at` (any shape; -1: a slot with no file, `NO_MOTION`)."""
    filler = torch.full((1, *crops.shape[1:]), NO_MOTION, dtype=crops.dtype, device=crops.device)
    table = torch.cat([crops, filler])
    index = torch.where(at >= 0, at, len(crops)).reshape(-1)
    return table[index].view(*at.shape, *crops.shape[1:])


def decoded_crops(batch: dict, group: str, device: torch.device, size: int) -> Tensor:
    """Every crop of kind `group`'s table, decoded and warped on `device`: (C, size, size, 3) uint8 BGR frames or
    (C, size, size) flow."""
    table = batch[key(group, "crops")]  # (C, 6) on the CPU
    channels = 3 if GROUPS[group] == ImageReadMode.RGB else 1
    out = torch.empty((len(table), channels, size, size), dtype=torch.uint8, device=device)
    if len(table):
        buffers = list(torch.split(batch[key(group, "bytes")], batch[key(group, "lengths")].tolist()))
        images = decode(buffers, GROUPS[group], device, batch[key(group, "paths")])
        warp_all(images, table, out)
    if channels == 3:
        return out.flip(1).permute(0, 2, 3, 1).contiguous()  # RGB (C, 3, H, W) -> BGR (C, H, W, 3)
    return out[:, 0]


def warp_all(images: list[Tensor], table: Tensor, out: Tensor) -> None:
    """Write into `out` (C, channels, size, size) each crop of `table` (C, 6) taken of its file among the decoded
    `images`, warped in batches of images of one size (at most `_CHUNK_ELEMENTS` float pixels at a time)."""
    files = table[:, 0].long().tolist()
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for c, f in enumerate(files):
        by_shape.setdefault(tuple(images[f].shape), []).append(c)
    for shape, members in by_shape.items():
        step = max(1, _CHUNK_ELEMENTS // (shape[0] * shape[1] * shape[2]))
        for i in range(0, len(members), step):
            chunk = members[i:i + step]
            source = torch.stack([images[files[c]] for c in chunk])  # (n, channels, H, W) uint8
            out[chunk] = warp(source, table[chunk].to(out.device, non_blocking=True), out.shape[-1])


def decode(buffers: list[Tensor], mode: ImageReadMode, device: torch.device, paths: list[str]) -> list[Tensor]:
    """`decode_jpeg` of a batch of files on `device`; a file it cannot decode named in a `StoreError`."""
    try:
        return _decode_jpeg(buffers, mode, device)
    except RuntimeError:
        for buffer, path in zip(buffers, paths):
            try:
                _decode_jpeg(buffer, mode, device)
            except RuntimeError as one:
                reason = str(one).strip().splitlines()[-1].split(", ")[-1]
                raise StoreError(f"{path}: not a decodable JPEG ({reason}); run the same `adamml prepare` again "
                                 "to redo it") from one
        raise


def _decode_jpeg(data: Tensor | list[Tensor], mode: ImageReadMode, device: torch.device) -> Tensor | list[Tensor]:
    """torchvision's decoder without its deprecation warning (torchvision 0.29, which the project pins, marks its
    image decoders deprecated in favour of TorchCodec; they work, and the warning would repeat in every run)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                                category=DeprecationWarning)
        return decode_jpeg(data, mode=mode, device=device)


def warp(source: Tensor, table: Tensor, size: int) -> Tensor:
    """(n, C, H, W) uint8 images -> (n, C, size, size) uint8: each image's crop (row of `table`: file, x, y, side,
    flip, negate) as `adamml.data.transforms.apply_crop` and `flow_component_u8` take it."""
    height, width = source.shape[-2:]
    x, y, side, flip, negate = table[:, 1:].unbind(1)  # (n,) float64 each
    u = torch.arange(size, dtype=torch.float64, device=source.device)
    columns = torch.where(flip[:, None] > 0, size - 1 - u, u)  # a flip reads the columns right to left
    step = (side / size)[:, None]
    gx = 2 * (x[:, None] + columns * step) / max(width - 1, 1) - 1  # (n, size)
    gy = 2 * (y[:, None] + u * step) / max(height - 1, 1) - 1  # (n, size)
    gx, gy = gx.float(), gy.float()  # positions in float64 above, the grid itself float32
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (n, size, size, 2)
    warped = F.grid_sample(source.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    q = warped.round_().clamp_(0, 255).to(torch.uint8)
    return torch.where(negate[:, None, None, None] > 0, 255 - q, q)  # flipped flow x: 255 - q
