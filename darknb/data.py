"""Dark-video data: list files, clip sampling, the clip dataset, named datasets, the frame cache,
and the preparation a run needs (generate / cache / build its train and test sets).

Reads top to bottom in that order. The synthetic renderer lives in :mod:`darknb.synthetic`.

Clip protocol (PAPER.md, "Details from the methods it builds on", DarkLight, Chen et al. 2021):
T consecutive frames, random offset in training, centred in test, wrap-around (loop) for videos
shorter than T (a random loop start in training, as DarkLight; the loop centred in test); resize
(DarkLight: 170x128, i.e. short side 128 for a 112 crop), multi-scale crop to 112 + horizontal flip
in training (the same crop for every frame of a clip), centre crop in test. Evaluation can also
average several views (:func:`sample_frame_indices` / :func:`crop_box` ``clip``/``crop``).

A dataset item is built in two halves. ``VideoListDataset.raw`` (what DataLoader workers run)
samples the frames and the crop box and returns uint8 frames cut to the box
(:class:`darknb.loader.RawClip`); :class:`darknb.loader.ClipTransform` resamples, flips and scales a
whole batch of them on the device. ``dataset[i]`` runs both halves and gives the float32 clip
``(3, T, H, W)`` in [0, 1] (not mean/std normalised unless asked: the classifier normalises
internally so that an enhancer such as Zero-DCE can sit in front of it).

Determinism contract (relied on by the training engine for exact resume and teacher-output
caching): all randomness of item ``index`` comes from ``np.random.default_rng([seed, epoch, index])``
so a clip is a pure function of (seed, epoch, index), whichever DataLoader worker builds it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from darknb.config import RunConfig
from darknb.enhance import enhancer_signature
from darknb.errors import ConfigError, DatasetError, VideoReadError
from darknb.files import RunDir, read_json, save_npy, write_json
from darknb.framecache import CACHE_MANIFEST, cache_file, cache_manifest, read_cached
from darknb.loader import ClipKey, ClipTransform, RawClip, collate_raw
from darknb.registry import Registry
from darknb.synthetic import MANIFEST as SYNTHETIC_MANIFEST
from darknb.synthetic import (  # SYNTHETIC_CLASSES, make_synthetic_dark: re-exported
    SYNTHETIC_CLASSES,
    make_synthetic_dark,
    stored_spec,
    synthetic_is_current,
)
from darknb.video import probe, read_frames

__all__ = [
    "ARID",
    "ARID11",
    "CACHE_MANIFEST",
    "Dark48",
    "SYNTHETIC_CLASSES",
    "Splits",
    "SyntheticDark",
    "SyntheticLit",
    "VideoListDataset",
    "build_dataset",
    "build_datasets",
    "collate_clips",
    "crop_box",
    "default_resize_short",
    "enhanced_cache_dir",
    "enhancer_fit_frames",
    "group_holdout",
    "ensure_dataset",
    "list_datasets",
    "make_raw_clip",
    "make_synthetic_dark",
    "prepare_cache",
    "prepare_dataset",
    "read_list",
    "read_mapping",
    "register_dataset",
    "sample_frame_indices",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# =========================================================================== list files
def _is_int(tok: str) -> bool:
    return re.fullmatch(r"-?\d+", tok) is not None


def read_list(list_file: str | os.PathLike, *, label_base: int = 0) -> list[tuple[str, int]]:
    """Parse a video list into ``[(relative path, label)]``, auto-detecting the format.

    Accepted forms (one clip per line; blank lines ignored):
    * ARID TAB form ``idx<TAB>label<TAB>Class/Class_group_clip.avi`` (no header);
    * DarkLight / UG2+ CSV ``VideoID,Video,ClassID`` (with that header);
    * ``path label`` (whitespace separated), e.g. a Dark-48-style list.
    ``label_base`` is subtracted from every label (1 for 1-based lists).
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise DatasetError(f"list file not found: {list_file}")
    text = list_file.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    out: list[tuple[str, int]] = []
    first = next((ln for ln in lines if ln.strip()), "")
    if first.replace(" ", "").lower().startswith("videoid,video,classid"):
        reader = csv.reader(io.StringIO(text))
        next(reader)
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3 or not _is_int(row[2].strip()):
                raise DatasetError(f"{list_file}:{lineno}: expected 'VideoID,Video,ClassID', got {row!r}")
            out.append((row[1].strip(), int(row[2]) - label_base))
        return out
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        toks = line.split("\t") if "\t" in line else line.split()
        toks = [t.strip() for t in toks if t.strip()]
        if len(toks) == 3 and _is_int(toks[0]) and _is_int(toks[1]):
            out.append((toks[2], int(toks[1]) - label_base))
        elif len(toks) == 2 and _is_int(toks[1]):
            out.append((toks[0], int(toks[1]) - label_base))
        else:
            raise DatasetError(
                f"{list_file}:{lineno}: unrecognised list line {line!r} (expected "
                f"'idx<TAB>label<TAB>path', 'path label' or a 'VideoID,Video,ClassID' CSV)")
    return out


def read_mapping(path: str | os.PathLike) -> list[str]:
    """Read ``id<TAB>Name`` (or ``id Name``) lines into names in id order (ids must be 0..K-1)."""
    path = Path(path)
    pairs = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        toks = line.split(None, 1)
        if len(toks) != 2 or not _is_int(toks[0]):
            raise DatasetError(f"{path}:{lineno}: expected 'id<TAB>Name', got {line!r}")
        pairs[int(toks[0])] = toks[1].strip()
    if sorted(pairs) != list(range(len(pairs))):
        raise DatasetError(f"{path}: class ids must be 0..{len(pairs) - 1}, got {sorted(pairs)}")
    return [pairs[i] for i in range(len(pairs))]


def _safe_relpath(root_resolved: Path, rel: str, where: str) -> Path:
    """Refuse list entries that escape the dataset root (absolute, '..', symlinks out)."""
    p = Path(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise DatasetError(f"{where}: absolute path {rel!r} refused (entries must be relative to the root)")
    if ".." in p.parts:
        raise DatasetError(f"{where}: path {rel!r} refused: '..' would leave the dataset root")
    full = (root_resolved / p).resolve()
    if full != root_resolved and root_resolved not in full.parents:
        raise DatasetError(f"{where}: path {rel!r} resolves to {full}, outside the dataset root "
                           f"{root_resolved} (symlink?)")
    return full


# =========================================================================== clip sampling

def sample_frame_indices(n: int, num_frames: int, sampling: str, train: bool,
                         rng: np.random.Generator | None, *, clip: int = 0, clips: int = 1) -> np.ndarray:
    """The T frame indices of a clip from a video with ``n`` real frames.

    ``"consecutive"`` (DarkLight): T consecutive frames, random offset in training, centred in test.
    A video shorter than T is looped: training draws the loop's start (DarkLight's random start);
    test centres the loop (the clip's middle frame is the video's). ``"uniform"``: T equal
    segments, one frame from each (random in training, the centre in test).

    Evaluation views (``train=False``): clip ``clip`` of ``clips`` evenly spaced ones; with
    ``clips=1`` it is the centred clip above. Consecutive: starts spread evenly over [0, n - T]
    (over the loop's n starts for a short video); uniform: the position inside every segment moves
    from its start to its end.
    """
    T = num_frames
    if sampling == "consecutive":
        if train:
            start = int(rng.integers(0, n - T + 1)) if n >= T else int(rng.integers(0, n))
        elif clips == 1:
            start = (n - T) // 2 % n  # == (n - T) // 2 when n >= T; a centred loop when shorter
        elif n >= T:
            start = round(clip * (n - T) / (clips - 1))
        else:
            start = ((n - T) // 2 + clip * n // clips) % n
        return (start + np.arange(T)) % n
    edges = np.linspace(0, n, T + 1)
    lo = np.floor(edges[:-1]).astype(int)
    hi = np.maximum(lo + 1, np.floor(edges[1:]).astype(int))
    if train:
        idx = rng.integers(lo, hi)
    elif clips == 1:
        idx = (lo + hi - 1) // 2
    else:
        idx = lo + ((hi - lo) * (2 * clip + 1)) // (2 * clips)
    return np.minimum(idx, n - 1)


def default_resize_short(size: int) -> int:
    """DarkLight's resize before cropping: short side 128 for a 112 crop, scaled with ``size``."""
    return round(int(size) * 128 / 112)


def crop_box(H: int, W: int, *, size: int, resize_short: int, train: bool, multiscale: bool,
             rng: np.random.Generator | None, crop: int = 0, crops: int = 1) -> np.ndarray:
    """The crop of an ``H x W`` frame, as ``(y0, x0, y1, x1)`` in its pixels (float64), that ends
    up as the ``size x size`` network input.

    The frame is (virtually) resized so that its short side is ``resize_short``; the crop is drawn
    there and mapped back, so the frame is resampled once. Training with ``multiscale``:
    DarkLight's GroupMultiScaleCrop (sides from scales 1, .875, .75, .66 of the short side, at
    most one scale step of aspect distortion, random position); training without: a random
    ``size`` square; test: the centre ``size`` square, or crop ``crop`` of ``crops`` = 3 at the
    start, centre and end of the long side.
    """
    scale = resize_short / min(H, W)
    h, w = max(size, round(H * scale)), max(size, round(W * scale))
    if train and multiscale:
        short = min(h, w)
        sides = [int(short * s) for s in (1.0, 0.875, 0.75, 0.66)]
        pairs = [(a, b) for i, a in enumerate(sides) for j, b in enumerate(sides) if abs(i - j) <= 1]
        ch, cw = pairs[int(rng.integers(len(pairs)))]
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    elif train:
        ch = cw = size
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    else:
        ch = cw = size
        top, left = (h - size) // 2, (w - size) // 2
        if crops == 3:
            along = h - size if h > w else w - size  # slide along the long side
            offset = (0, along // 2, along)[crop]
            top, left = (offset, left) if h > w else (top, offset)
    sy, sx = H / h, W / w
    return np.array([top * sy, left * sx, (top + ch) * sy, (left + cw) * sx])


def make_raw_clip(frames: np.ndarray, box: np.ndarray, *, flip: bool, label: int, index: int,
                  view: int = 0) -> RawClip:
    """Cut ``frames`` ``(T, H, W, 3)`` to the rows and columns the resampling of ``box`` reads
    (its bounding box and one pixel around it), shift the box accordingly, and wrap it up."""
    T, H, W, _ = frames.shape
    y0, x0, y1, x1 = box
    r0, c0 = max(0, int(np.floor(y0)) - 1), max(0, int(np.floor(x0)) - 1)
    r1, c1 = min(H, int(np.floor(y1)) + 2), min(W, int(np.floor(x1)) + 2)
    cut = np.ascontiguousarray(frames[:, r0:r1, c0:c1])
    shifted = torch.tensor([y0 - r0, x0 - c0, y1 - r0, x1 - c0], dtype=torch.float32)
    return RawClip(torch.from_numpy(cut), shifted, bool(flip), int(label), int(index), int(view))


# =========================================================================== clip dataset

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
    is used, so no index past the end is ever asked for.

    Errors: list entries outside ``root`` -> ``DatasetError`` naming list file and line. Missing
    video files -> ``DatasetError`` naming them (``on_error="raise"``) or recorded in ``.skipped``
    and dropped from ``.samples`` (``on_error="skip"``). A video that fails to decode in
    ``__getitem__`` raises ``VideoReadError`` or, with ``on_error="skip"``, is appended to
    ``.skipped`` and the item returns None (drop it with :func:`collate_clips`). ``.skipped`` filled
    inside DataLoader workers is not seen by the parent process: call :meth:`check` first to probe
    every video in the parent (it drops and records bad ones), then train with workers.
    """

    def __init__(self, root, list_file, *, num_frames: int = 8, size: int = 32,
                 resize_short: int | None = None, sampling: str = "consecutive",
                 train: bool = False, flip: bool | None = None, multiscale: bool | None = None,
                 normalize: bool = False, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, seed: int = 0, return_index: bool = False,
                 on_error: str = "raise", backend: str | None = None,
                 cache_dir: str | os.PathLike | None = None, classes: Sequence[str] | None = None,
                 label_base: int = 0):
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
        self.normalize, self.mean, self.std = bool(normalize), mean, std
        # the device half of every item: see darknb.loader (the engine applies it to whole batches)
        self.clip_transform = ClipTransform(self.size, mean if normalize else None,
                                            std if normalize else None)
        self.seed, self.epoch = int(seed), 0
        self.return_index, self.on_error, self.backend = bool(return_index), on_error, backend
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None and (self.cache_dir / CACHE_MANIFEST).is_file():
            _check_cache_root(read_json(self.cache_dir / CACHE_MANIFEST), self.cache_dir,
                              self.root.resolve())
        self.skipped: list[tuple[str, str]] = []
        self._frame_counts: dict[str, int] = {}

        # ---- samples
        entries = read_list(list_file, label_base=label_base)
        if not entries:
            raise DatasetError(f"list file {list_file} names no video (it is empty)")
        root_resolved = self.root.resolve()
        samples, missing = [], []
        for lineno, (rel, label) in enumerate(entries, start=1):
            full = _safe_relpath(root_resolved, rel, f"{list_file}:{lineno}")
            cached = self.cache_dir is not None and cache_file(self.cache_dir, rel).is_file()
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
        """Real number of frames of sample ``rel`` (from the cache when present, else probed)."""
        if rel not in self._frame_counts:
            cache = self._cached_path(rel)
            if cache is not None:
                n = int(read_cached(cache).shape[0])
            else:
                n = probe(self.root / rel).num_frames
            self._frame_counts[rel] = n
        return self._frame_counts[rel]

    def _cached_path(self, rel: str) -> Path | None:
        if self.cache_dir is None:
            return None
        p = cache_file(self.cache_dir, rel)
        return p if p.is_file() else None

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
        cache = self._cached_path(rel)
        if cache is not None:
            arr = read_cached(cache)  # (N, h, w, 3) uint8, short side already resized
            return np.ascontiguousarray(arr[indices])  # a copy: the cached array is shared
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
            frames = self._load(rel, self.frame_indices(n, rng, clip=key.clip, clips=key.clips))
        except (VideoReadError, DatasetError) as exc:
            if self.on_error == "raise":
                raise
            self.skipped.append((rel, str(exc)))
            return None
        H, W = frames.shape[1:3]
        box = crop_box(H, W, size=self.size, resize_short=self.resize_short, train=self.train,
                       multiscale=self.multiscale, rng=rng, crop=key.crop, crops=key.crops)
        flip = self.train and self.flip and rng.random() < 0.5
        return make_raw_clip(frames, box, flip=flip, label=label, index=index, view=key.view)

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



# =========================================================================== named datasets

_DATASETS = Registry("dataset")
register_dataset = _DATASETS.register
list_datasets = _DATASETS.names


def _pick_subset(subset: str, allowed=("train", "test")) -> str:
    if subset not in allowed:
        raise ConfigError(f"subset must be one of {allowed}, got {subset!r}")
    return subset


class ARID(VideoListDataset):
    """ARID (Xu et al. 2021), 11 classes, official lists ``ARID_split{1,2,3}_{train,test}.txt``.

    Layout: videos under ``root/<Class>/...``, lists + ``mapping_table.txt`` under
    ``root/list_cvt`` (or ``list_dir``). ``version="1.5"``: ARID v1.5 (~5,572 .mp4, same 11 classes,
    same TAB format); its official list names are UNCONFIRMED, so give ``train_list``/``test_list``
    (file names inside ``list_dir``); the v1 names are tried by default.
    """

    NUM_CLASSES = 11
    VERSION = "1.0"

    def __init__(self, root, split: int = 1, subset: str = "train", version: str | None = None,
                 list_dir=None, *, train_list: str | None = None, test_list: str | None = None,
                 **clip_options):
        version = self.VERSION if version is None else version
        if int(split) not in (1, 2, 3):
            raise ConfigError(f"ARID: split must be 1, 2 or 3, got {split}")
        if str(version) not in ("1.0", "1.5"):
            raise ConfigError(f"ARID: version must be '1.0' or '1.5', got {version!r}")
        _pick_subset(subset, ("train", "test", "other"))
        list_dir = Path(list_dir) if list_dir is not None else Path(root) / "list_cvt"
        name = {"train": train_list, "test": test_list}.get(subset) or f"ARID_split{int(split)}_{subset}.txt"
        list_file = list_dir / name
        if not list_file.is_file():
            hint = (" (ARID v1.5 list names are unconfirmed: pass train_list=/test_list=)"
                    if version == "1.5" else "")
            raise DatasetError(f"ARID v{version}: list file not found: {list_file}{hint}")
        mapping = list_dir / "mapping_table.txt"
        if "classes" not in clip_options:
            if not mapping.is_file():
                raise DatasetError(f"ARID: class mapping not found: {mapping}")
            clip_options["classes"] = read_mapping(mapping)
        if len(clip_options["classes"]) != self.NUM_CLASSES:
            raise DatasetError(f"ARID: expected {self.NUM_CLASSES} classes in {mapping}, "
                               f"got {len(clip_options['classes'])}")
        clip_options.setdefault("train", subset == "train")
        self.split, self.subset, self.version = int(split), subset, str(version)
        super().__init__(root, list_file, **clip_options)


class ARIDv15(ARID):
    """ARID v1.5: :class:`ARID` with ``version="1.5"`` (give ``train_list`` / ``test_list``)."""

    VERSION = "1.5"


class ARID11(VideoListDataset):
    """ARID v1.1 (UG2+ 2021 Track 2.1), the 6-class subset, in DarkLight's CSV form.

    Lists ``ARID1.1_t1_{train,test}_pub.csv`` (``VideoID,Video,ClassID``, class ids 5..10 of ARID's
    mapping) in ``list_dir`` (default ``root``). Labels are re-indexed to 0..5 in ARID id order
    (Run, Sit, Stand, Turn, Walk, Wave); ``.original_ids`` keeps ARID's ids.
    """

    ARID_IDS = (5, 6, 7, 8, 9, 10)
    CLASSES = ("Run", "Sit", "Stand", "Turn", "Walk", "Wave")

    def __init__(self, root, subset: str = "train", list_dir=None, **clip_options):
        _pick_subset(subset)
        list_dir = Path(list_dir) if list_dir is not None else Path(root)
        list_file = list_dir / f"ARID1.1_t1_{subset}_pub.csv"
        labels = {y for _, y in read_list(list_file)}
        if not labels <= set(self.ARID_IDS):
            raise DatasetError(f"ARID11: {list_file} has class ids {sorted(labels - set(self.ARID_IDS))} "
                               f"outside ARID's 5..10")
        clip_options.setdefault("train", subset == "train")
        clip_options.setdefault("classes", list(self.CLASSES))
        self.subset, self.original_ids = subset, list(self.ARID_IDS)
        super().__init__(root, list_file, label_base=self.ARID_IDS[0], **clip_options)


class Dark48(VideoListDataset):
    """Dark-48 (48 classes). No public list was found (shared/reference/dark48/README.md), so this
    is the generic loader: ``list_file`` or a unique ``*{subset}*.{txt,csv}`` in ``list_dir``, in any
    :func:`read_list` form; class names from ``classes.txt``/``mapping_table.txt`` when present."""

    NUM_CLASSES = 48

    def __init__(self, root, list_dir=None, subset: str = "train", *, list_file=None,
                 label_base: int = 0, **clip_options):
        _pick_subset(subset)
        list_dir = Path(list_dir) if list_dir is not None else Path(root)
        if list_file is None:
            found = sorted(p for p in list_dir.glob(f"*{subset}*")
                           if p.suffix in (".txt", ".csv") and p.is_file())
            if len(found) != 1:
                raise DatasetError(f"Dark48: need exactly one '*{subset}*.txt|csv' list in {list_dir}, "
                                   f"found {[p.name for p in found]}; pass list_file=")
            list_file = found[0]
        if "classes" not in clip_options:
            for name in ("mapping_table.txt", "classes.txt"):
                if (list_dir / name).is_file():
                    clip_options["classes"] = read_mapping(list_dir / name)
                    break
        clip_options.setdefault("train", subset == "train")
        self.subset = subset
        super().__init__(root, list_file, label_base=label_base, **clip_options)


class SyntheticDark(VideoListDataset):
    """The synthetic dark target set written by :func:`darknb.synthetic.make_synthetic_dark`:
    scene-disjoint ``train`` / ``val`` / ``test`` lists. Its clips live in the frame cache (only
    a part also as video files), so give ``cache_dir``."""

    LISTS = {"train": "synthetic_split1_train", "val": "synthetic_split1_val",
             "test": "synthetic_split1_test"}
    MAPPING = "mapping_table.txt"

    def __init__(self, root, subset: str = "train", **clip_options):
        _pick_subset(subset, tuple(self.LISTS))
        root = Path(root)
        if not (root / SYNTHETIC_MANIFEST).is_file():
            raise DatasetError(f"{type(self).__name__}: {root / SYNTHETIC_MANIFEST} not found; "
                               "create the set with `python -m darknb synth` (make_synthetic_dark)")
        clip_options.setdefault("train", subset == "train")
        # No horizontal flip: it would turn MoveLeft into MoveRight and RotateCW into RotateCCW,
        # i.e. relabel half the training clips (measured: the demo stayed at chance with it).
        clip_options.setdefault("flip", False)
        clip_options.setdefault("classes", read_mapping(root / "list_cvt" / self.MAPPING))
        self.subset = subset
        list_file = self.list_file_of(root, subset)
        if not list_file.is_file():
            raise DatasetError(f"{type(self).__name__}: {list_file} not found (a set made by an "
                               "older darknb? delete it and generate it again)")
        super().__init__(root, list_file, **clip_options)

    @classmethod
    def list_file_of(cls, root, subset: str) -> Path:
        return Path(root) / "list_cvt" / f"{cls.LISTS[subset]}.txt"

    @staticmethod
    def group_of(rel: str) -> str:
        """The scene number: every class is rendered in every scene (``<Class>_<scene>_<clip>``)."""
        return Path(rel).stem.split("_")[1]

    @classmethod
    def own_val_list(cls, root) -> bool:
        return cls.list_file_of(root, "val").is_file()


class SyntheticLit(SyntheticDark):
    """The synthetic WELL-LIT pre-training set (its own classes, scenes of its own): ``train`` /
    ``val``, and ``val_dark``: the same validation clips through the dark camera, for the
    zero-shot check of :func:`darknb.pretrain.zero_shot`."""

    LISTS = {"train": "pretrain_train", "val": "pretrain_val", "val_dark": "pretrain_val_dark"}
    MAPPING = "pretrain_mapping.txt"


register_dataset(SyntheticDark, name="synthetic")
register_dataset(SyntheticLit, name="synthetic_lit")
register_dataset(ARID, name="arid")
register_dataset(ARIDv15, name="arid1.5")
register_dataset(ARID11, name="arid1.1")
register_dataset(Dark48, name="dark48")


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


def build_dataset(name: str, root, subset: str = "train", *, val_fraction: float = 0.0,
                  **kw) -> VideoListDataset:
    """Build a registered dataset by name (:func:`list_datasets`): ``synthetic``, ``arid``,
    ``arid1.5``, ``arid1.1``, ``dark48``; ``subset`` is ``train``, ``val`` or ``test``.

    Validation: a dataset's own validation list where it has one (the synthetic set); otherwise
    ``val`` is a group-disjoint holdout of the TRAINING list (:func:`group_holdout`,
    ``val_fraction`` of its groups) and ``train`` excludes those groups. Never the test list, and
    never ARID's ``*_other.txt`` lists: they share 20-26 of the 42 test groups of their split.
    """
    builder = _DATASETS.get(str(name).lower())
    if subset not in ("train", "val", "test") and subset not in getattr(builder, "LISTS", {}):
        raise ConfigError(f"build_dataset: subset must be 'train', 'val' or 'test', got {subset!r}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"build_dataset: val_fraction must be in [0, 1), got {val_fraction!r}")
    kw.setdefault("train", subset == "train")
    own_val = builder.own_val_list(root)
    if subset not in ("train", "val") or own_val or (subset == "train" and not val_fraction):
        return builder(root, subset=subset, **kw)
    if not val_fraction:
        raise DatasetError(f"{name}: no validation list; set val_fraction > 0 to hold out part of "
                           "the training groups")
    dataset = builder(root, subset="train", **kw)
    held = group_holdout(dataset, val_fraction)
    if not held:
        raise DatasetError(f"{name}: cannot hold out validation groups from {dataset.list_file}: no "
                           "class has two or more groups; use val_fraction=0 (last epoch is final)")
    dataset.keep_groups(held, keep=subset == "val")
    dataset.subset = subset
    return dataset


# =========================================================================== frame cache
#
# Format choice (measured by benchmarks/bench_video.py on ARID-like 320x240 MPEG-4 AVIs, short
# side 128): one uint8 .npy per video, read through np.load(mmap_mode="r"). It is lossless (dark
# frames are mostly sensor noise at a few grey levels; JPEG at usual qualities visibly smooths
# exactly that low-level signal an enhancer amplifies), reading a 64-frame clip touches only those
# frames, and it needs no decoder. The cost is disk: ~65 KB per 170x128 frame (ARID v1: ~3,784
# videos x ~100 frames ~ 25 GB). Measured (--quick, loaded 2-core machine): a 64-frame clip reads
# in 1-2 ms from the cache vs 54-172 ms frame-exact decoding of the AVI, i.e. 48-79x faster.

def _resize_short_uint8(frames: np.ndarray, short_side: int) -> np.ndarray:
    T, H, W, _ = frames.shape
    scale = short_side / min(H, W)
    h, w = round(H * scale), round(W * scale)
    if (h, w) == (H, W):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _check_cache_root(manifest: dict, cache_dir: Path, root_resolved: Path) -> None:
    """A cache holds one dataset root's videos: refuse to mix another root into it."""
    if manifest.get("root") and Path(manifest["root"]) != root_resolved:
        raise ConfigError(f"frame cache {cache_dir} holds videos of {manifest['root']}, not of "
                          f"{root_resolved}; give this dataset its own cache_dir (or cache_dir='')")


def _nonempty_list(list_file: Path) -> list[tuple[str, int]]:
    """``read_list`` that refuses a list without a single video (it would only fail later, in
    training, far from its cause)."""
    entries = read_list(list_file)
    if not entries:
        raise DatasetError(f"list file {list_file} names no video (it is empty)")
    return entries


ENHANCER_MANIFEST = "enhancer.json"  # an enhanced cache's enhancer, written before any frame


def _enhance_uint8(frames: np.ndarray, enhancer, *, device, chunk: int = 16) -> np.ndarray:
    """``enhancer`` on native-resolution uint8 frames ``(N, H, W, 3)``, back to uint8 (as if the
    enhanced video were saved, then resized like the raw one)."""
    out = []
    for part in torch.from_numpy(frames).split(chunk):
        x = part.permute(0, 3, 1, 2).float().div_(255.0).to(device)
        with torch.no_grad():
            y = enhancer(x).clamp_(0.0, 1.0).mul_(255.0).round_()
        out.append(y.to("cpu", torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(out).contiguous().numpy()


def _check_cache_enhancer(cache_dir: Path, enhancer) -> dict | None:
    """An enhanced cache holds ONE enhancer's frames, a raw cache none: refuse to mix them."""
    wanted = enhancer_signature(enhancer) if enhancer is not None else None
    path = cache_dir / ENHANCER_MANIFEST
    held = read_json(path) if path.is_file() else None
    if held is None and wanted is not None and any(cache_dir.rglob("*.npy")):
        raise ConfigError(f"{cache_dir} holds raw (not enhanced) frames; give the enhanced cache its "
                          "own directory")
    if held is not None and held != wanted:
        raise ConfigError(f"frame cache {cache_dir} was enhanced with {held}, asked for "
                          f"{wanted or 'raw frames'}; use another directory or delete it")
    if wanted is not None and held is None:
        write_json(wanted, path)
    return wanted


def _cache_one(root: Path, rel: str, out: Path, short_side: int, on_error: str, videos: dict,
               failed: dict, *, enhancer=None, device=None, source_cache: Path | None = None) -> str:
    """Cache one video; returns ``"written"``, ``"reused"`` or ``"failed"``. With ``enhancer``
    its native-resolution frames are enhanced before the resize; ``source_cache`` holds the native
    frames of a set that has no videos for them (the synthetic one)."""
    if out.is_file():
        try:
            shape = np.load(out, mmap_mode="r").shape
            videos[rel] = dict(frames=int(shape[0]), shape=list(shape))
            return "reused"
        except (ValueError, OSError):  # a damaged file (cannot happen via rename, but be safe)
            out.unlink()
    try:
        if source_cache is not None:
            frames = np.load(cache_file(source_cache, rel))
        else:
            n = probe(root / rel).num_frames  # a truncated video raises here
            frames = read_frames(root / rel, range(n), backend="pyav")
    except (VideoReadError, FileNotFoundError) as exc:
        if on_error == "raise":
            raise
        failed[rel] = str(exc)
        videos.pop(rel, None)
        return "failed"
    if enhancer is not None:
        frames = _enhance_uint8(frames, enhancer, device=device)
    frames = _resize_short_uint8(frames, short_side)
    save_npy(frames, out, verify=True)  # read back before it becomes visible
    videos[rel] = dict(frames=int(frames.shape[0]), shape=list(frames.shape))
    return "written"


def prepare_dataset(root, list_files: Sequence, cache_dir, *, short_side: int = 128,
                    on_error: str = "raise",
                    progress: bool | Callable[[int, int, str], None] | None = None,
                    enhancer: torch.nn.Module | None = None, device: str | None = None,
                    source_cache: str | os.PathLike | None = None) -> dict:
    """Decode every video named in ``list_files`` once (sequentially: exact) into a frame cache.

    Each video becomes ``cache_dir/<relative path>.npy`` (uint8 ``(N, h, w, 3)``, short side
    ``short_side``), written atomically (temp file + rename) and verified by reading it back, so
    an interrupted run resumes where it stopped: finished videos are skipped. ``cache_dir/cache.json``
    (the done-marker) is written last with parameters and per-video frame counts.
    :class:`VideoListDataset` reads the cache transparently when given ``cache_dir``.

    A missing, empty, corrupt or truncated video raises :class:`VideoReadError` naming it, or with
    ``on_error="skip"`` is listed in the manifest's ``failed`` (video -> reason) and not cached (a
    dataset then meets the same error and skips it too). An empty list file is refused.
    ``progress``: True shows a tqdm bar; a callable gets ``(done, total, video)`` after each video.
    Returns the manifest dict with ``written`` / ``reused`` counts (``failed`` is the dict).

    With ``enhancer`` (frozen, e.g. Zero-DCE) this writes an ENHANCED cache, the paper's order:
    every native-resolution frame is enhanced (on ``device``, default CUDA when present), stored
    as uint8, then resized exactly as the raw cache. A clip of item i from it is the raw clip's
    crop of the same frames (same frame counts and sizes, so the same sampling), enhanced before
    resizing. ``cache_dir/enhancer.json`` records the enhancer (class, settings, weights' sha256);
    a cache made with another enhancer, or a raw one, is refused. ``source_cache``: read the
    native frames from that cache instead of decoding (a set rendered into its cache at its own
    size: the synthetic one).
    """
    if int(short_side) < 8:
        raise ConfigError(f"prepare_dataset: short_side must be >= 8, got {short_side}")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"prepare_dataset: on_error must be 'raise' or 'skip', got {on_error!r}")
    root, cache_dir = Path(root), Path(cache_dir)
    root_resolved = root.resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    marker = cache_dir / CACHE_MANIFEST
    old = read_json(marker) if marker.is_file() else {}
    _check_cache_root(old, cache_dir, root_resolved)
    if old and old.get("short_side") != int(short_side):
        raise ConfigError(f"prepare_dataset: {cache_dir} holds short_side={old.get('short_side')}, "
                          f"asked {short_side}; use another cache_dir")
    signature = _check_cache_enhancer(cache_dir, enhancer)
    if enhancer is not None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        enhancer = enhancer.eval().to(device)

    rels: list[str] = []
    seen: set[str] = set()
    for lf in list_files:
        lf = Path(lf) if Path(lf).is_file() else root / lf
        entries = _nonempty_list(lf)
        for lineno, (rel, _) in enumerate(entries, start=1):
            _safe_relpath(root_resolved, rel, f"{lf}:{lineno}")
            if rel not in seen:
                seen.add(rel)
                rels.append(rel)

    videos, failed = dict(old.get("videos", {})), {}
    written = reused = 0
    t0 = time.perf_counter()
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rels), desc=f"prepare {cache_dir.name}", unit="video")
    try:
        for k, rel in enumerate(rels):
            outcome = _cache_one(root, rel, cache_file(cache_dir, rel), int(short_side), on_error,
                                 videos, failed, enhancer=enhancer, device=device,
                                 source_cache=Path(source_cache) if source_cache is not None else None)
            written += outcome == "written"
            reused += outcome == "reused"
            if bar is not None:
                bar.update(1)
                bar.set_postfix(written=written, reused=reused, failed=len(failed), refresh=False)
            elif callable(progress):
                progress(k + 1, len(rels), rel)
    finally:
        if bar is not None:
            bar.close()

    manifest = cache_manifest(root=root_resolved, short_side=short_side, videos=videos, failed=failed,
                              seconds=time.perf_counter() - t0, enhancer=signature)
    write_json(manifest, marker)
    return dict(manifest, written=written, reused=reused)



# =========================================================================== a run's data

def ensure_dataset(cfg: RunConfig) -> Path:
    """Make ``cfg``'s data usable. The synthetic set is generated (with its frame cache) when
    absent or made by another darknb version; an existing one is used as it is, whatever its size.
    A real dataset must already be in place; its frame cache is prepared when missing
    (resumable, see :func:`prepare_dataset`)."""
    root = Path(cfg.data_root)
    if cfg.frame_cache is not None and (cfg.frame_cache / ENHANCER_MANIFEST).is_file():
        raise ConfigError(f"cache_dir {str(cfg.frame_cache)!r} holds enhanced frames; the student's "
                          "cache must be raw (give the enhanced one as enhanced_cache_dir)")
    if cfg.dataset == "synthetic":
        if cfg.frame_cache is None:
            raise ConfigError("the synthetic set lives in its frame cache: cache_dir must not be "
                              "empty (default 'auto')")
        if not synthetic_is_current(root, cfg.frame_cache):
            # a set already in root keeps its spec (its cache is rendered again, identically)
            make_synthetic_dark(root, cache_dir=cfg.frame_cache, spec=stored_spec(root))
        return root
    if not root.is_dir():
        raise ConfigError(f"data_root {str(root)!r} for dataset {cfg.dataset!r} does not exist; "
                          "see the README section 'Datasets and layouts'")
    if cfg.frame_cache is not None:
        marker = cfg.frame_cache / CACHE_MANIFEST
        if marker.is_file():
            _check_cache_root(read_json(marker), cfg.frame_cache, root.resolve())
        else:
            prepare_cache(cfg)
    return root


class Splits(NamedTuple):
    """A run's datasets. ``val`` is None when the dataset has no validation list and
    ``val_fraction`` is 0 (then the last epoch is the final model, and reports say so)."""

    train: VideoListDataset
    val: VideoListDataset | None
    test: VideoListDataset


def build_datasets(cfg: RunConfig, *, train_sampling: bool = True, check_videos: bool = True
                   ) -> Splits:
    """``cfg.dataset``'s train / val / test datasets; training clips are augmented, every item is
    index-tagged. Validation: see :func:`build_dataset` (own list, or a group holdout of train).
    With ``on_error="skip"`` every video is probed here (``check_videos=False``: not yet)."""
    common = dict(num_frames=cfg.num_frames, size=cfg.size, sampling=cfg.sampling, seed=cfg.seed,
                  on_error=cfg.on_error, return_index=True, cache_dir=cfg.frame_cache,
                  val_fraction=cfg.val_fraction)
    if cfg.dataset in ("arid", "arid1.5"):
        common["split"] = cfg.split
    train = build_dataset(cfg.dataset, cfg.data_root, "train", train=train_sampling, **common)
    has_val = cfg.val_fraction > 0 or _DATASETS.get(cfg.dataset).own_val_list(cfg.data_root)
    val = build_dataset(cfg.dataset, cfg.data_root, "val", train=False, **common) if has_val else None
    test = build_dataset(cfg.dataset, cfg.data_root, "test", train=False, **common)
    if cfg.on_error == "skip" and check_videos:
        # probe every video here, in the parent process: a skip recorded inside a DataLoader
        # worker would never reach the run's report
        for dataset in (train, val, test):
            if dataset is not None:
                dataset.check()
    return Splits(train, val, test)


def prepare_cache(cfg: RunConfig, *, short_side: int | None = None,
                  progress: bool | Callable[[int, int, str], None] | None = None, enhancer=None,
                  cache_dir: str | os.PathLike | None = None, device: str | None = None) -> dict:
    """Decode ``cfg``'s train, val and test videos once into its frame cache (uint8 frames).
    ``cfg.on_error`` applies (``"skip"``: bad videos are listed in the result's ``failed``).

    With ``enhancer``: its ENHANCED cache ``cache_dir`` (default :func:`enhanced_cache_dir`), the
    frames enhanced at native resolution, then resized as the raw cache, which must exist (see
    :func:`prepare_dataset`); the synthetic set's native frames are its raw cache's."""
    if cfg.frame_cache is None:
        raise ConfigError("prepare_cache: cache_dir is empty")
    # the list files only: prepare_dataset meets (and, under "skip", records) every bad video itself;
    # a validation holdout is part of the training list. An enhanced cache reads them through the
    # raw cache (the synthetic set's clips are mostly only there)
    splits = build_datasets(cfg.replace(val_fraction=0.0) if enhancer is not None
                            else cfg.replace(cache_dir="", val_fraction=0.0), check_videos=False)
    lists = sorted({ds.list_file for ds in splits if ds is not None})
    if enhancer is not None:
        raw = cfg.frame_cache / CACHE_MANIFEST
        if not raw.is_file():
            raise ConfigError(f"an enhanced cache is resized as the raw one, and {cfg.frame_cache} "
                              "holds none yet: prepare the raw cache first (ensure_dataset)")
        # the synthetic set is rendered straight into its cache, at its own size: those are its
        # native frames; a real dataset's are decoded from the videos
        source = cfg.frame_cache if cfg.dataset == "synthetic" else None
        return prepare_dataset(cfg.data_root, lists, cache_dir or enhanced_cache_dir(cfg),
                               short_side=short_side or read_json(raw)["short_side"],
                               on_error=cfg.on_error, progress=progress, enhancer=enhancer,
                               device=device, source_cache=source)
    if cfg.dataset == "synthetic":
        raise ConfigError("the synthetic set renders its own frame cache: use ensure_dataset or "
                          "`python -m darknb synth`")
    return prepare_dataset(cfg.data_root, lists, cfg.frame_cache, short_side=short_side or 128,
                           on_error=cfg.on_error, progress=progress)


def enhanced_cache_dir(cfg: RunConfig) -> Path:
    """Where ``cfg``'s enhanced frames live: ``cfg.enhanced_cache_dir`` or the run's own folder
    (``<output_dir>/enhanced_cache``: a zero-reference-fitted enhancer belongs to its run)."""
    return Path(cfg.enhanced_cache_dir) if cfg.enhanced_cache_dir else RunDir(cfg.output_dir).enhanced_cache


def enhancer_fit_frames(dataset, *, num_videos: int = 48, per_video: int = 2, seed: int = 0) -> torch.Tensor:
    """Unlabelled native-resolution frames ``(N, 3, H, W)`` in [0, 1] from a training set, for
    fitting Zero-DCE zero-reference."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset.samples))[:num_videos]
    frames = []
    for i in order:
        rel = dataset.samples[i][0]
        n = dataset.frame_count(rel)
        idx = sorted(rng.choice(n, size=min(per_video, n), replace=False).tolist())
        frames.append(dataset.frames(rel, idx))
    shapes = {f.shape[1:] for f in frames}
    if len(shapes) > 1:  # mixed resolutions: crop all to the smallest common size
        h = min(s[0] for s in shapes)
        w = min(s[1] for s in shapes)
        frames = [f[:, :h, :w] for f in frames]
    array = np.concatenate(frames)  # (N, H, W, 3) uint8
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255.0
