"""Feeding the model: uint8 clips from the workers, resize / crop / flip / scale batched on the device.

A clip crosses the worker -> trainer boundary as uint8 frames (the cache's resolution, cut to the
crop's bounding box) plus a crop box and a flip flag (:class:`RawClip`): 4-8x fewer bytes than the
float32 clip it becomes. :class:`ClipTransform` then does, for a whole batch at once on the
batch's device, what each worker used to do clip by clip: resample the box to ``size x size``,
flip, scale to [0, 1] and optionally normalise. On a CPU the same code runs and is exactly
reproducible. A clip may carry several streams (DarkLight's two-stream model: the frames, then
their gamma view): the worker stacks them along time (``RawClip.streams``: whole-frame copies,
no channel interleaving in uint8) and the transform returns them on the channel axis,
``(B, 3 x streams, T, size, size)``.

Two resampling paths, both antialiased (each output pixel averages its whole footprint when the
box shrinks), chosen per clip by :attr:`RawClip.exact`:

- ``exact`` (the frames are at the crop's resized size, so the box is integral: a frame cache at
  short side 128 for 112-px clips, i.e. every real dataset at the paper's size): the box is cut
  and resized with ``F.interpolate(mode="bilinear", antialias=True)`` (PIL's antialiased
  bilinear filter). Measured on this project's 2-core CPU (benchmarks/bench_loader_peers.py), it
  is ~3-5x faster than ``roi_align`` on a 64 x 128 x 128 crop.
- otherwise (a fractional box: frames at another size, e.g. decoded native video, or the CPU
  demo's 40-px synthetic frames for 32-px clips): every frame's box in one
  ``torchvision.ops.roi_align`` call (bilinear, averaging ``ceil(scale)`` samples per output pixel
  when it shrinks), exactly as before, so the demo's clips are bit-identical to earlier darknb's.

Which clip a worker builds is named by a :class:`ClipKey` ``(index, epoch, clip, clips, crop,
crops)`` that the sampler hands out, so a clip stays a pure function of (seed, epoch, index[, view])
even with persistent workers, which never see ``set_epoch`` calls made after they started.
:class:`ClipSampler` also shards the keys across processes (DDP): training pads its permutation to
a multiple of the world size, as ``DistributedSampler`` does, so every process takes the same
number of steps; evaluation strides the videos without padding, so each is counted exactly once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torchvision.ops import roi_align

from darknb.config import parse_views
from darknb.errors import ConfigError

# Names what clips this module makes: stored with anything computed from clips (the teacher's
# cached logits), so that results of an older clip pipeline are never reused for this one.
# 2: exact (integral) boxes are resampled with F.interpolate's antialiased filter, others as in 1.
PIPELINE = "uint8-roi_align-1+exact-crop-aa-2"

__all__ = ["PIPELINE", "ClipBatch", "ClipKey", "ClipSampler", "ClipTransform", "RawClip",
           "ReadyBatch", "batch_clips", "collate_raw", "make_loader", "parse_views"]


class ClipKey(NamedTuple):
    """Which clip of video ``index``: the epoch's random draw in training; in evaluation temporal
    clip ``clip`` of ``clips`` evenly spaced ones and spatial crop ``crop`` of ``crops``."""

    index: int
    epoch: int = 0
    clip: int = 0
    clips: int = 1
    crop: int = 0
    crops: int = 1

    @property
    def view(self) -> int:
        return self.clip * self.crops + self.crop


class RawClip(NamedTuple):
    """What a worker returns: uint8 frames ``(streams x T, h, w, 3)`` (the streams one after the
    other along time), the crop ``box`` ``(y0, x0, y1, x1)`` in their pixel coordinates (float32,
    the same for every stream), whether to ``flip`` it, the label, index and view; ``exact``: the
    box is integral (the frames are at the crop's resized size) and the clip takes the
    cut-and-interpolate path of :class:`ClipTransform`; ``streams``: 1, or 2 for DarkLight's
    frames + gamma view."""

    frames: torch.Tensor
    box: torch.Tensor
    flip: bool
    label: int
    index: int
    view: int = 0
    exact: bool = False
    streams: int = 1


class ClipBatch(NamedTuple):
    """A collated batch of :class:`RawClip`: ``frames`` ``(B, streams x T, H, W, 3)`` uint8
    (edge-padded to the largest ``h, w``), ``boxes`` ``(B, 4)``, ``flips`` ``(B,)``, ``labels``,
    ``indices``, ``views``, ``exact`` ``(B,)`` bool, ``streams`` (an int). Only ``frames`` and
    ``labels`` move to the device: the boxes, flips and the rest stay on the CPU, so bookkeeping
    and the choice of resampling path never wait for the device."""

    frames: torch.Tensor
    boxes: torch.Tensor
    flips: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    views: torch.Tensor
    exact: torch.Tensor | None = None
    streams: int = 1

    def to(self, device, non_blocking: bool = True) -> "ClipBatch":
        move = dict(device=device, non_blocking=non_blocking)
        return self._replace(frames=self.frames.to(**move), labels=self.labels.to(**move))


def _pad_edge_into(out: torch.Tensor, frames: torch.Tensor) -> None:
    """Copy ``(T, h, w, 3)`` into ``out`` ``(T, H, W, 3)``, repeating the last row / column into
    the rest: resampling near the edge then sees what it sees unpadded (roi_align clamps there)."""
    T, h, w, _ = frames.shape
    out[:, :h, :w] = frames
    if out.shape[1] > h:
        out[:, h:, :w] = frames[:, h - 1:h]
    if out.shape[2] > w:
        out[:, :, w:] = out[:, :, w - 1:w]


def _new_empty(shape, like: torch.Tensor) -> torch.Tensor:
    """An empty tensor of ``like``'s dtype (uint8 frames, float32 clips); inside a DataLoader
    worker in shared memory, as ``default_collate`` makes its batches, so that it leaves the
    worker without another copy."""
    if torch.utils.data.get_worker_info() is None or like.device.type != "cpu":
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    numel = int(np.prod(shape))
    return like.new(like._typed_storage()._new_shared(numel, device=like.device)).resize_(shape)


def collate_raw(items) -> ClipBatch | None:
    """DataLoader ``collate_fn`` for :class:`RawClip` items; drops None (skipped videos) and returns
    None when nothing is left."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    T = items[0].frames.shape[0]
    streams = {int(it.streams) for it in items}
    if len(streams) > 1:
        raise ValueError(f"collate_raw: clips of {sorted(streams)} streams in one batch")
    H = max(it.frames.shape[1] for it in items)
    W = max(it.frames.shape[2] for it in items)
    frames = _new_empty((len(items), T, H, W, 3), items[0].frames)
    for k, it in enumerate(items):
        _pad_edge_into(frames[k], it.frames)
    return ClipBatch(frames=frames,
                     boxes=torch.stack([it.box for it in items]),
                     flips=torch.tensor([bool(it.flip) for it in items]),
                     labels=torch.tensor([int(it.label) for it in items]),
                     indices=torch.tensor([int(it.index) for it in items]),
                     views=torch.tensor([int(it.view) for it in items]),
                     exact=torch.tensor([bool(it.exact) for it in items]), streams=streams.pop())


class ClipTransform:
    """``ClipBatch`` -> float32 clips ``(B, 3 x streams, T, size, size)`` in [0, 1] (then ``(x -
    mean) / std`` when given, repeated over the streams), on the batch's device: every box
    resampled to ``size x size`` (exact boxes cut and interpolated clip by clip, the others in one
    ``roi_align`` call; see the module doc), per-clip horizontal flip, scaling."""

    def __init__(self, size: int, mean=None, std=None):
        self.size = int(size)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    def __call__(self, batch: ClipBatch) -> torch.Tensor:
        B, ST = batch.frames.shape[:2]  # uint8 frames of B clips, streams x T of them
        V = int(batch.streams)
        exact = [False] * B if batch.exact is None else batch.exact.tolist()
        if not any(exact):  # the whole batch at once
            return self._roi_align(batch.frames, batch.boxes, batch.flips, V).contiguous()
        x = _new_empty((B, 3 * V, ST // V, self.size, self.size),
                       torch.empty(0, device=batch.frames.device))  # float32, shared in a worker
        boxes, flips = batch.boxes.tolist(), batch.flips.tolist()
        for b in (b for b in range(B) if exact[b]):
            x[b] = self._crop_interpolate(batch.frames[b], boxes[b], flips[b], V)
        rest = [b for b in range(B) if not exact[b]]
        if rest:
            idx = torch.tensor(rest)
            x[idx.to(x.device)] = self._roi_align(batch.frames[idx.to(x.device)], batch.boxes[idx],
                                                  batch.flips[idx], V)
        return x

    def _roi_align(self, frames: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor,
                   streams: int) -> torch.Tensor:
        """Fractional boxes: ``(n, V x T, H, W, 3)`` uint8 -> ``(n, 3V, T, size, size)`` in [0, 1],
        normalised when asked (the operations and their order of darknb before exact crops)."""
        B, T = frames.shape[:2]
        device = frames.device
        # channels first while still uint8 (4x fewer bytes to move than after the float cast)
        x = rearrange(frames, "b t h w c -> (b t) c h w").contiguous().float()
        y0, x0, y1, x1 = boxes.to(device, torch.float32).repeat_interleave(T, dim=0).unbind(1)
        frame_id = torch.arange(B * T, device=device, dtype=torch.float32)
        rois = torch.stack([frame_id, x0, y0, x1, y1], dim=1)  # roi_align's (k, x1, y1, x2, y2)
        x = roi_align(x, rois, (self.size, self.size), spatial_scale=1.0, sampling_ratio=-1,
                      aligned=True)  # aligned: pixel i covers [i, i+1), the box is exact
        flips = flips.to(device).repeat_interleave(T).view(B * T, 1, 1, 1)
        x = torch.where(flips, x.flip(-1), x).div_(255.0).clamp_(0.0, 1.0)
        x = rearrange(x, "(b v t) c h w -> b (v c) t h w", b=B, v=streams)
        if self.mean is not None:
            reps = x.shape[1] // self.mean.shape[1]
            mean, std = self.mean.repeat(1, reps, 1, 1, 1), self.std.repeat(1, reps, 1, 1, 1)
            x = (x - mean.to(device)) / std.to(device)
        return x

    def _crop_interpolate(self, frames: torch.Tensor, box, flip: bool, streams: int) -> torch.Tensor:
        """An integral box: ``(V x T, H, W, 3)`` uint8 -> ``(3V, T, size, size)`` in [0, 1]
        (normalised when asked): the box cut out, resized with the antialiased bilinear filter
        (the geometry of roi_align's ``aligned=True``: pixel i covers [i, i+1)). The flip is done
        on the uint8 crop (a quarter of the bytes) and the scaling in place."""
        y0, x0, y1, x1 = (int(v) for v in box)
        crop = frames[:, y0:y1, x0:x1]
        if flip:
            crop = crop.flip(2)
        # channels first and float in one pass (4-9x faster than .contiguous() then .float())
        crop = crop.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        x = F.interpolate(crop, size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=True)  # (VT, 3, size, size)
        x = x.div_(255.0).clamp_(0.0, 1.0)
        if self.mean is not None:
            x = x.sub_(self.mean.to(x.device).view(1, 3, 1, 1)).div_(self.std.to(x.device).view(1, 3, 1, 1))
        return rearrange(x, "(v t) c h w -> (v c) t h w", v=streams)


class ClipSampler(torch.utils.data.Sampler):
    """The :class:`ClipKey` s of one epoch for process ``rank`` of ``world``.

    Training: a permutation of the videos drawn from (seed, epoch), padded by repeating its start
    to a multiple of ``world``, every ``world``-th key from ``rank``. Evaluation: videos ``rank,
    rank + world, ...`` in order, each with all its ``clips x crops`` views, no padding.
    """

    def __init__(self, size: int, *, train: bool, seed: int = 0, rank: int = 0, world: int = 1,
                 clips: int = 1, crops: int = 1):
        if train and (clips, crops) != (1, 1):
            raise ValueError("ClipSampler: several views are an evaluation protocol")
        self.size, self.train, self.seed = int(size), bool(train), int(seed)
        self.rank, self.world, self.clips, self.crops = int(rank), int(world), int(clips), int(crops)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        """This process's video indices for the current epoch, in order."""
        if not self.train:
            return list(range(self.rank, self.size, self.world))
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.size).tolist()
        if self.world > 1 and order:
            pad = -len(order) % self.world
            order += (order * (pad // len(order) + 1))[:pad]
        return order[self.rank::self.world]

    def __iter__(self):
        for index in self.indices():
            for clip in range(self.clips):
                for crop in range(self.crops):
                    yield ClipKey(index, self.epoch, clip, self.clips, crop, self.crops)

    def __len__(self) -> int:
        return len(self.indices()) * self.clips * self.crops


class ReadyBatch(NamedTuple):
    """A batch of finished float clips, from a dataset that has no uint8 half (any dataset whose
    items are ``(clip, label, index)``): ``clips`` ``(B, 3, T, H, W)``."""

    clips: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    def to(self, device, non_blocking: bool = True) -> "ReadyBatch":
        move = dict(device=device, non_blocking=non_blocking)
        return self._replace(clips=self.clips.to(**move), labels=self.labels.to(**move))


def _collate_ready(items) -> ReadyBatch | None:
    items = [it for it in items if it is not None]
    if not items:
        return None
    clips, labels, indices = torch.utils.data.default_collate(items)[:3]
    return ReadyBatch(clips, labels, indices)


def batch_clips(dataset, batch) -> torch.Tensor:
    """The network input of a loader batch (on the batch's device): the dataset's device
    transform for a :class:`ClipBatch`, the clips themselves for a :class:`ReadyBatch`."""
    return batch.clips if isinstance(batch, ReadyBatch) else dataset.clip_transform(batch)


class _CollateAndTransform:
    """``collate_raw`` then the dataset's clip transform, inside the worker: for training on a CPU,
    where "the device" is the CPU and the main process would otherwise do it between steps. The
    same batched transform on the same batch: the clips are identical."""

    def __init__(self, transform: ClipTransform):
        self.transform = transform

    def __call__(self, items) -> ReadyBatch | None:
        batch = collate_raw(items)
        if batch is None:
            return None
        return ReadyBatch(self.transform(batch), batch.labels, batch.indices)


class _ItemClips(torch.utils.data.Dataset):
    """A plain clip dataset addressed by :class:`ClipKey`: its epoch is set from the key (in the
    worker's own copy), then ``dataset[index]`` is returned as it is."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: ClipKey):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(key.epoch)
        return self.dataset[key.index]


class _RawClips(torch.utils.data.Dataset):
    """A dataset's :class:`RawClip` s addressed by :class:`ClipKey` (what the workers run)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: ClipKey) -> RawClip | None:
        return self.dataset.raw(key)


def make_loader(dataset, *, batch_size: int, train: bool, num_workers: int = 0, seed: int = 0,
                rank: int = 0, world: int = 1, views: str = "1x1", pin_memory: bool | None = None,
                transform_in_workers: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader of :class:`ClipBatch` es over ``dataset`` (a ``VideoListDataset``): keys from a
    :class:`ClipSampler` (``loader.sampler.set_epoch(e)`` each epoch), persistent workers, pinned
    memory on CUDA hosts. Turn a batch into clips with :func:`batch_clips` after moving it.
    A dataset without the uint8 half (no ``raw``) gives :class:`ReadyBatch` es of its own items
    ``(clip, label, index)`` (single view only). ``transform_in_workers`` (training on a CPU with
    workers): the workers apply the transform too and return :class:`ReadyBatch` es."""
    clips, crops = parse_views(views) if not train else (1, 1)
    raw = hasattr(dataset, "raw") and hasattr(dataset, "clip_transform")
    if not raw and clips * crops > 1:
        raise ConfigError(f"views {views!r} need a dataset that samples views (VideoListDataset); "
                          f"{type(dataset).__name__} gives one clip per video")
    sampler = ClipSampler(len(dataset), train=train, seed=seed, rank=rank, world=world,
                          clips=clips, crops=crops)
    return torch.utils.data.DataLoader(
        _RawClips(dataset) if raw else _ItemClips(dataset), batch_size=batch_size, sampler=sampler,
        num_workers=num_workers,
        collate_fn=(_CollateAndTransform(dataset.clip_transform) if raw and transform_in_workers
                    else collate_raw if raw else _collate_ready),
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None)
