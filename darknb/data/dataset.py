"""The clip dataset: videos named in a list file -> clips, in two halves (worker / device).

A dataset item is built in two halves. ``VideoListDataset.raw`` (what DataLoader workers run)
samples the frames and the crop box and returns uint8 frames cut to the box
(:class:`darknb.data.loader.RawClip`); :class:`darknb.data.loader.ClipTransform` resamples, flips
and scales a whole batch of them on the device. ``dataset[i]`` runs both halves and gives the
float32 clip ``(3, T, H, W)`` in [0, 1] (not mean/std normalised unless asked: the classifier
normalises internally so that an enhancer such as Zero-DCE can sit in front of it).

Determinism contract (relied on by the training engine for exact resume and teacher-output
caching): all randomness of item ``index`` comes from ``np.random.default_rng([seed, epoch, index])``
so a clip is a pure function of (seed, epoch, index), whichever DataLoader worker builds it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from darknb.data.framecache import FrameCache, check_cache_root
from darknb.data.lists import read_list, read_mapping, safe_relpath
from darknb.data.loader import ClipKey, ClipTransform, RawClip, collate_raw
from darknb.data.sampling import (
    TRAIN_CROPS,
    crop_box,
    default_resize_short,
    make_raw_clip,
    resized_size,
    sample_frame_indices,
    with_light_view,
)
from darknb.data.video import probe, read_frames
from darknb.errors import ConfigError, DatasetError, VideoReadError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "VideoListDataset", "collate_clips", "group_holdout"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoListDataset(torch.utils.data.Dataset):
    """Clips from videos named in an ARID-format list (see :func:`read_list` for accepted forms).

    Item ``index`` -> ``(clip, label)`` (``+ index`` when ``return_index``): ``clip`` float32
    ``(3, T, size, size)`` in [0, 1] (normalised with ``mean``/``std`` only when ``normalize``).
    It is built in two halves that the engine runs apart: :meth:`raw` (uint8 frames cut to the
    crop, the crop box, the flip; what DataLoader workers run) and ``clip_transform`` (a
    :class:`darknb.loader.ClipTransform`, run on whole batches on the device).

    Sampling (DarkLight): ``"consecutive"`` = T consecutive frames, random offset in training,
    centred in test, looping short videos; ``"uniform"`` = T equal segments, one frame from each
    (random in training, centre in test). The real frame count (:func:`darknb.video.probe`, cached)
    is used, so no index past the end is ever asked for. Training crop: ``crop`` (one of
    :data:`darknb.data.sampling.TRAIN_CROPS`; ``"multiscale"`` is DarkLight's MultiScaleCrop);
    without it ``multiscale`` picks ``"scale_jitter"`` (the default) or ``"random"``.

    Two views (DarkLight's two-stream model, :meth:`add_light_view`): every clip carries its frames
    and their gamma view (the gamma lookup table applied to the native frames before any resize);
    ``dataset[i]`` and the loader's clips are then ``(6, T, size, size)``: the clip, then the view.

    Errors: list entries outside ``root`` -> ``DatasetError`` naming list file and line. Missing
    video files -> ``DatasetError`` naming them (``on_error="raise"``) or recorded in ``.skipped``
    and dropped from ``.samples`` (``on_error="skip"``). A video that fails to decode in
    ``__getitem__`` raises ``VideoReadError`` or, with ``on_error="skip"``, is appended to
    ``.skipped`` and the item returns None (drop it with :func:`collate_clips`). ``.skipped`` filled
    inside DataLoader workers is not seen by the parent process: call :meth:`check` first to probe
    every video in the parent (it drops and records bad ones), then train with workers. Frames
    from ``cache_dir`` are checked (:class:`darknb.data.framecache.FrameCache`): a cache file
    that fails its checksum, or whose video changed since it was cached, raises ``CacheError``
    naming both and the command that re-decodes it, whatever ``on_error`` (the cache is repaired,
    the data do not change).
    """

    def __init__(self, root, list_file, *, num_frames: int = 8, size: int = 32,
                 resize_short: int | None = None, sampling: str = "consecutive",
                 train: bool = False, flip: bool | None = None, multiscale: bool | None = None,
                 normalize: bool = False, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, seed: int = 0, return_index: bool = False,
                 on_error: str = "raise", backend: str | None = None,
                 cache_dir: str | os.PathLike | None = None, classes: Sequence[str] | None = None,
                 label_base: int = 0, crop: str | None = None):
        # ---- validate parameters (ConfigError names the parameter)
        if int(num_frames) < 1:
            raise ConfigError(f"VideoListDataset: num_frames must be >= 1, got {num_frames}")
        if int(size) < 8:
            raise ConfigError(f"VideoListDataset: size must be >= 8, got {size}")
        if resize_short is None:
            resize_short = default_resize_short(size)
        if int(resize_short) < int(size):
            raise ConfigError(f"VideoListDataset: resize_short ({resize_short}) must be >= size ({size})")
        if sampling not in ("consecutive", "uniform"):
            raise ConfigError(f"VideoListDataset: sampling must be 'consecutive' or 'uniform', got {sampling!r}")
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"VideoListDataset: on_error must be 'raise' or 'skip', got {on_error!r}")
        if backend not in (None, "decord", "pyav"):
            raise ConfigError(f"VideoListDataset: backend must be None, 'decord' or 'pyav', got {backend!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"VideoListDataset: seed must be a non-negative int, got {seed!r}")
        if crop is not None and crop not in TRAIN_CROPS:
            raise ConfigError(f"VideoListDataset: crop must be one of {TRAIN_CROPS}, got {crop!r}")
        if not train and (flip or multiscale):
            raise ConfigError("VideoListDataset: flip/multiscale are training augmentations; "
                              f"got flip={flip}, multiscale={multiscale} with train=False")
        if normalize:
            mean = tuple(IMAGENET_MEAN if mean is None else mean)
            std = tuple(IMAGENET_STD if std is None else std)
            if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                raise ConfigError(f"VideoListDataset: mean/std must be 3 values (std > 0), got {mean}, {std}")
        elif mean is not None or std is not None:
            raise ConfigError("VideoListDataset: mean/std given but normalize=False")

        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset root is not a directory: {self.root}")
        list_file = Path(list_file)
        if not list_file.is_file() and (self.root / list_file).is_file():
            list_file = self.root / list_file
        self.list_file = list_file
        self.num_frames, self.size, self.resize_short = int(num_frames), int(size), int(resize_short)
        self.sampling, self.train = sampling, bool(train)
        self.flip = self.train if flip is None else bool(flip)
        self.multiscale = self.train if multiscale is None else bool(multiscale)
        self.crop = crop or ("scale_jitter" if self.multiscale else "random")  # training crop
        self.light_gamma: float | None = None  # DarkLight's gamma view (add_light_view)
        self._light: VideoListDataset | None = None
        self.normalize, self.mean, self.std = bool(normalize), mean, std
        # the device half of every item: see darknb.loader (the engine applies it to whole batches)
        self.clip_transform = ClipTransform(self.size, mean if normalize else None,
                                            std if normalize else None)
        self.seed, self.epoch = int(seed), 0
        self.return_index, self.on_error, self.backend = bool(return_index), on_error, backend
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._cache = self._open_cache(self.cache_dir)
        self.skipped: list[tuple[str, str]] = []
        self._frame_counts: dict[str, int] = {}

        # ---- samples
        entries = read_list(list_file, label_base=label_base)
        if not entries:
            raise DatasetError(f"list file {list_file} names no video (it is empty)")
        root_resolved = self.root.resolve()
        samples, missing = [], []
        for lineno, (rel, label) in enumerate(entries, start=1):
            full = safe_relpath(root_resolved, rel, f"{list_file}:{lineno}")
            cached = self._cache is not None and self._cache.path(rel) is not None
            if not cached and not full.is_file():
                missing.append(rel)
                continue
            samples.append((rel, int(label)))
        if missing:
            if on_error == "raise":
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise DatasetError(f"{len(missing)} of {len(entries)} videos listed in {list_file} "
                                   f"are missing under {self.root}: {shown}")
            self.skipped.extend((rel, "missing file") for rel in missing)
        self.samples = samples

        # ---- classes
        if classes is None:
            mapping = list_file.parent / "mapping_table.txt"
            classes = read_mapping(mapping) if mapping.is_file() else self._classes_from_paths(entries)
        self.classes = list(classes)
        bad = [(rel, y) for rel, y in samples if not 0 <= y < len(self.classes)]
        if bad:
            raise DatasetError(f"{list_file}: label {bad[0][1]} of {bad[0][0]} is outside "
                               f"0..{len(self.classes) - 1} ({len(self.classes)} classes)")

    @staticmethod
    def _classes_from_paths(entries) -> list[str]:
        names: dict[int, str] = {}
        for rel, y in entries:
            parts = Path(rel).parts
            names.setdefault(y, parts[0] if len(parts) > 1 else str(y))
        k = max(names) + 1 if names else 0
        return [names.get(i, str(i)) for i in range(k)]

    # ---------------------------------------------------------------- groups and validation
    @staticmethod
    def group_of(rel: str) -> str:
        """The group (scene / actor) a video belongs to, for group-disjoint splits: ARID's
        ``<Class>_<group>`` of ``<Class>/<Class>_<group>_<clip>.avi``; a name without ``_`` is its
        own group."""
        stem = Path(rel).stem
        return stem.rsplit("_", 1)[0] if "_" in stem else stem

    @classmethod
    def own_val_list(cls, root) -> bool:
        """Whether the dataset ships its own validation list (else val is a training holdout)."""
        return False

    def keep_groups(self, groups: set[str], keep: bool) -> None:
        """Keep only the samples whose group is (``keep=True``) or is not in ``groups``."""
        self.samples = [(rel, y) for rel, y in self.samples if (self.group_of(rel) in groups) == keep]

    # ---------------------------------------------------------------- bookkeeping
    @property
    def targets(self) -> list[int]:
        return [y for _, y in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops/offsets items use (a clip = f(seed, epoch, index))."""
        if int(epoch) < 0:
            raise ConfigError(f"set_epoch: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def check(self) -> list[tuple[str, str]]:
        """Probe every sample in this process; with ``on_error="skip"`` drop bad ones into
        ``.skipped`` (so DataLoader workers never meet them), else raise on the first bad one.
        Returns the newly skipped entries."""
        good, bad = [], []
        for rel, label in self.samples:
            try:
                self.frame_count(rel)
                good.append((rel, label))
            except (VideoReadError, DatasetError) as exc:
                if self.on_error == "raise":
                    raise
                bad.append((rel, str(exc)))
        self.samples = good
        self.skipped.extend(bad)
        return bad

    def frame_count(self, rel: str) -> int:
        """Real number of frames of sample ``rel`` (from the cache's manifest when the cache holds
        it, else probed)."""
        if rel not in self._frame_counts:
            if self._cached_path(rel) is not None:
                n = self._cache.frame_count(rel, self.root)  # refuses a video replaced since
            else:
                n = probe(self.root / rel).num_frames
            self._frame_counts[rel] = n
        return self._frame_counts[rel]

    def with_cache(self, cache_dir: str | os.PathLike | None) -> "VideoListDataset":
        """This dataset (same samples, order, sampling and classes) reading its frames from
        ``cache_dir``: e.g. the teacher's enhanced frames of the student's clips. Every sample must
        be in that cache (a missing one would silently decode the raw video instead)."""
        clone = copy.copy(self)
        clone.cache_dir = Path(cache_dir) if cache_dir else None
        clone._cache = clone._open_cache(clone.cache_dir)
        clone._frame_counts = {}
        clone.light_gamma, clone._light = None, None  # a view of its own; add_light_view again
        clone.skipped = list(self.skipped)
        if clone.cache_dir is not None:
            missing = [rel for rel, _ in self.samples if clone._cached_path(rel) is None]
            if missing:
                raise DatasetError(f"frame cache {clone.cache_dir} lacks {len(missing)} of the "
                                   f"{len(self.samples)} videos of {self.list_file.name}: "
                                   f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        return clone

    def _open_cache(self, cache_dir: Path | None) -> FrameCache | None:
        """The frame cache in ``cache_dir`` (checked to hold this dataset root's videos), or None."""
        cache = FrameCache.open(cache_dir)
        if cache is not None:
            check_cache_root(cache.manifest, cache.dir, self.root.resolve())
        return cache

    @property
    def frame_cache(self) -> FrameCache | None:
        """The frame cache this dataset reads (its format, its content identity), or None."""
        return self._cache

    def add_light_view(self, gamma: float, light_cache_dir: str | os.PathLike | None = None
                       ) -> VideoListDataset:
        """Give every clip DarkLight's second view: the frames through its gamma lookup table
        (:func:`darknb.data.sampling.gamma_lut`), applied to the NATIVE frames before any resize
        (DarkLight's ``ReadSegmentRGB_light``: LUT, then the 170x128 resize, then the crop).
        Decoded videos are native: the table is applied in the worker. A frame cache holds
        resized frames, so a cached dataset reads the view from ``light_cache_dir``, a cache
        whose frames were passed through the table at native resolution, then resized as the raw
        cache (:func:`darknb.data.splits.ensure_light_cache`). Returns self."""
        if self.cache_dir is not None and light_cache_dir is None:
            raise ConfigError(f"{type(self).__name__}: the gamma view of cached frames needs "
                              "light_cache_dir (the table must be applied before the resize that "
                              f"made the frames of {self.cache_dir}); see ensure_light_cache")
        if not float(gamma) > 0:
            raise ConfigError(f"add_light_view: gamma must be > 0, got {gamma!r}")
        self.light_gamma = float(gamma)
        self._light = self.with_cache(light_cache_dir) if self.cache_dir is not None else None
        return self

    def _cached_path(self, rel: str) -> Path | None:
        return None if self._cache is None else self._cache.path(rel)

    # ---------------------------------------------------------------- sampling
    def frame_indices(self, n: int, rng: np.random.Generator, *, clip: int = 0,
                      clips: int = 1) -> np.ndarray:
        """The T frame indices of a clip from a video with ``n`` real frames."""
        return sample_frame_indices(n, self.num_frames, self.sampling, self.train, rng,
                                    clip=clip, clips=clips)

    def frames(self, rel: str, indices) -> np.ndarray:
        """uint8 frames ``(len(indices), H, W, 3)`` of video ``rel`` as the dataset stores them:
        from the frame cache when it has the video (the synthetic set's clips mostly live only
        there), else decoded frame-exactly."""
        return self._load(rel, np.asarray(indices, dtype=np.int64))

    def _load(self, rel: str, indices: np.ndarray) -> np.ndarray:
        if self._cached_path(rel) is not None:
            # (T, h, w, 3) uint8, short side already resized; the file verified against its
            # checksum on this process's first read, its video against a replacement
            return self._cache.read(rel, indices, self.root)
        return read_frames(self.root / rel, indices.tolist(), backend=self.backend)

    # ---------------------------------------------------------------- items
    def raw(self, key: ClipKey) -> RawClip | None:
        """The worker half of an item: uint8 frames cut to the crop, the crop box and the flip
        (see :mod:`darknb.loader`); None for a skipped video (``on_error="skip"``). A pure
        function of (seed, key): the key carries the epoch and, in evaluation, the view."""
        index = int(key.index)
        if not 0 <= index < len(self.samples):
            raise IndexError(f"index {index} out of range for {len(self.samples)} samples")
        rel, label = self.samples[index]
        rng = np.random.default_rng([self.seed, int(key.epoch), index])
        try:
            n = self.frame_count(rel)
            indices = self.frame_indices(n, rng, clip=key.clip, clips=key.clips)
            frames = self._load(rel, indices)
            if self.light_gamma is not None:  # DarkLight's gamma view, from native frames
                light = None if self._light is None else self._light.frames(rel, indices)
                frames = with_light_view(frames, self.light_gamma, light)
        except (VideoReadError, DatasetError) as exc:
            if self.on_error == "raise":
                raise
            self.skipped.append((rel, str(exc)))
            return None
        H, W = frames.shape[1:3]
        box = crop_box(H, W, size=self.size, resize_short=self.resize_short, train=self.train,
                       multiscale=self.multiscale, rng=rng, crop=key.crop, crops=key.crops,
                       train_crop=self.crop)
        flip = self.train and self.flip and rng.random() < 0.5
        # frames already at the crop's resized size (a cache at short side resize_short): an
        # integral box, cut exactly and resampled with the antialiased filter (darknb.data.loader)
        exact = resized_size(H, W, size=self.size, resize_short=self.resize_short) == (H, W)
        return make_raw_clip(frames, box, flip=flip, label=label, index=index, view=key.view,
                             exact=exact, streams=1 if self.light_gamma is None else 2)

    def __getitem__(self, index: int):
        item = self.raw(ClipKey(int(index), self.epoch))
        if item is None:
            return None
        clip = self.clip_transform(collate_raw([item]))[0]  # (3, T, size, size) float32
        return (clip, item.label, item.index) if self.return_index else (clip, item.label)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, list={self.list_file.name!r}, "
                f"n={len(self)}, classes={len(self.classes)}, T={self.num_frames}, size={self.size}, "
                f"sampling={self.sampling!r}, train={self.train})")


def collate_clips(batch):
    """DataLoader ``collate_fn`` that drops None items (skipped videos); None if nothing is left."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.utils.data.default_collate(batch)


def group_holdout(dataset: VideoListDataset, fraction: float, *, seed: int = 0) -> set[str]:
    """Groups of ``dataset`` held out for validation: in every class, ``round(fraction * groups)``
    (at least one where the class has two or more) of its groups, drawn with a fixed seed, so the
    holdout is the same for every training seed. Groups are whole scenes/actors
    (:meth:`VideoListDataset.group_of`), so validation is group-disjoint from training as the
    official test split is."""
    by_class: dict[int, set[str]] = {}
    for rel, y in dataset.samples:
        by_class.setdefault(y, set()).add(dataset.group_of(rel))
    rng = np.random.default_rng([seed, 4099])
    chosen: set[str] = set()
    for y in sorted(by_class):
        groups = sorted(by_class[y])
        want = max(1, round(fraction * len(groups))) if len(groups) > 1 else 0
        have = len(chosen & set(groups))
        for g in rng.permutation(groups):
            if have >= want:
                break
            if g not in chosen:
                chosen.add(str(g))
                have += 1
    return chosen

