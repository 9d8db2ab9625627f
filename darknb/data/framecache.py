"""The frame cache: its format, its reader and its writer.

One uint8 ``.npy`` per video, ``cache_dir/<relative path>.npy``, shape ``(N, h, w, 3)`` (short
side ``short_side``), written atomically; then ``cache_dir/cache.json`` (written last: its presence
marks a complete cache) with the dataset root, the short side and every video's frame count.
A cache holds one dataset root's videos.

The writer (:func:`prepare_dataset`) decodes every listed video once, frame-exactly, and can pass
the native-resolution frames through a ``transform`` before the resize (the teacher's enhanced
cache: :mod:`darknb.engine.teacher` gives Zero-DCE as the transform). The cache knows no enhancer:
it records the transform's ``signature`` (a dict) in ``transform.json`` and refuses to mix frames
of two transforms, or raw frames with transformed ones.

Format choice (measured by benchmarks/bench_video.py on ARID-like 320x240 MPEG-4 AVIs, short
side 128): one uint8 .npy per video, read through np.load(mmap_mode="r"). It is lossless (dark
frames are mostly sensor noise at a few grey levels; JPEG at usual qualities visibly smooths
exactly that low-level signal an enhancer amplifies), reading a 64-frame clip touches only those
frames, and it needs no decoder. The cost is disk: ~65 KB per 170x128 frame (ARID v1: ~3,784
videos x ~100 frames ~ 25 GB). Measured (--quick, loaded 2-core machine): a 64-frame clip reads
in 1-2 ms from the cache vs 54-172 ms frame-exact decoding of the AVI, i.e. 48-79x faster.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from darknb.config import default_cache_dir
from darknb.data.lists import nonempty_list, safe_relpath
from darknb.data.video import probe, read_frames
from darknb.errors import ConfigError, VideoReadError
from darknb.files import read_json, save_npy, write_json

__all__ = ["CACHE_MANIFEST", "TRANSFORM_MANIFEST", "cache_file", "cache_manifest", "check_cache_root",
           "default_cache_dir", "prepare_dataset", "read_cached", "resize_short_uint8"]

CACHE_MANIFEST = "cache.json"
FORMAT = "npy-uint8-NHWC"


def cache_file(cache_dir: str | Path, rel: str) -> Path:
    """Where video ``rel`` (relative to its dataset root) lives in the cache."""
    return Path(cache_dir) / (rel + ".npy")


def cache_manifest(*, root: Path, short_side: int, videos: dict, failed: dict | None = None,
                   seconds: float = 0.0, **extra) -> dict:
    """The content of ``cache.json``: ``videos`` maps rel -> {"frames": N, "shape": [N, h, w, 3]}."""
    return dict(format=FORMAT, short_side=int(short_side), root=str(Path(root).resolve()),
                videos=videos, failed=dict(failed or {}), seconds=round(float(seconds), 3), **extra)


# Reading: a small video's cache file is read whole and kept in this process's memory (least
# recently used first out, ``DARKNB_CACHE_MEMORY_MB``, default 512 MB, 0 = never): the synthetic
# set's clips are 38 KB each, and opening a memory map per clip cost 11 % of a demo training run
# (0.18 ms vs 0.12 ms per read, then ~0.01 ms from memory). Larger files are memory-mapped, so a
# clip reads only its frames. An entry is keyed by the file's size and mtime: a rewritten file is
# read again.
SMALL_FILE = 4 << 20


class _Memory:
    def __init__(self):
        self.arrays: OrderedDict[str, tuple[tuple, np.ndarray]] = OrderedDict()
        self.bytes = 0

    def limit(self) -> int:
        return int(float(os.environ.get("DARKNB_CACHE_MEMORY_MB", "512")) * (1 << 20))

    def get(self, path: str, stamp: tuple) -> np.ndarray | None:
        hit = self.arrays.get(path)
        if hit is None or hit[0] != stamp:
            return None
        self.arrays.move_to_end(path)
        return hit[1]

    def put(self, path: str, stamp: tuple, array: np.ndarray) -> None:
        old = self.arrays.pop(path, None)
        if old is not None:
            self.bytes -= old[1].nbytes
        limit = self.limit()
        if array.nbytes > limit:
            return
        while self.arrays and self.bytes + array.nbytes > limit:
            self.bytes -= self.arrays.popitem(last=False)[1][1].nbytes
        array.flags.writeable = False  # shared by every read: callers copy what they cut out
        self.arrays[path] = (stamp, array)
        self.bytes += array.nbytes


_memory = _Memory()


def read_cached(path: str | Path) -> np.ndarray:
    """The frames ``(N, h, w, 3)`` uint8 of one cache file, read-only: from this process's memory
    when it holds the file (small files, see above), else read (and kept) or memory-mapped."""
    path = str(path)
    st = os.stat(path)
    stamp = (st.st_size, st.st_mtime_ns)
    array = _memory.get(path, stamp)
    if array is not None:
        return array
    if st.st_size > SMALL_FILE:
        return np.load(path, mmap_mode="r")
    array = np.load(path)
    _memory.put(path, stamp, array)
    return array


def resize_short_uint8(frames: np.ndarray, short_side: int) -> np.ndarray:
    T, H, W, _ = frames.shape
    scale = short_side / min(H, W)
    h, w = round(H * scale), round(W * scale)
    if (h, w) == (H, W):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def check_cache_root(manifest: dict, cache_dir: Path, root_resolved: Path) -> None:
    """A cache holds one dataset root's videos: refuse to mix another root into it."""
    if manifest.get("root") and Path(manifest["root"]) != root_resolved:
        raise ConfigError(f"frame cache {cache_dir} holds videos of {manifest['root']}, not of "
                          f"{root_resolved}; give this dataset its own cache_dir (or cache_dir='')")


TRANSFORM_MANIFEST = "transform.json"  # a transformed cache's transform signature, written before any frame


def _check_cache_transform(cache_dir: Path, signature: dict | None) -> None:
    """A transformed cache holds ONE transform's frames, a raw cache none: refuse to mix them."""
    path = cache_dir / TRANSFORM_MANIFEST
    held = read_json(path) if path.is_file() else None
    if held is None and signature is not None and any(cache_dir.rglob("*.npy")):
        raise ConfigError(f"{cache_dir} holds raw (untransformed) frames; give the transformed "
                          "(e.g. enhanced) cache its own directory")
    if held is not None and held != signature:
        raise ConfigError(f"frame cache {cache_dir} was made with {held}, asked for "
                          f"{signature or 'raw frames'}; use another directory or delete it")
    if signature is not None and held is None:
        write_json(signature, path)


def _cache_one(root: Path, rel: str, out: Path, short_side: int, on_error: str, videos: dict,
               failed: dict, *, transform=None, source_cache: Path | None = None) -> str:
    """Cache one video; returns ``"written"``, ``"reused"`` or ``"failed"``. With ``transform``
    its native-resolution frames are transformed (e.g. enhanced) before the resize; ``source_cache`` holds the native
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
    if transform is not None:
        frames = transform(frames)
    frames = resize_short_uint8(frames, short_side)
    save_npy(frames, out, verify=True)  # read back before it becomes visible
    videos[rel] = dict(frames=int(frames.shape[0]), shape=list(frames.shape))
    return "written"


def prepare_dataset(root, list_files: Sequence, cache_dir, *, short_side: int = 128,
                    on_error: str = "raise",
                    progress: bool | Callable[[int, int, str], None] | None = None,
                    transform: Callable[[np.ndarray], np.ndarray] | None = None,
                    signature: dict | None = None,
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

    With ``transform`` (uint8 ``(N, H, W, 3)`` -> uint8, same shape; e.g. a frozen Zero-DCE, see
    :func:`darknb.engine.teacher.ensure_enhanced_cache`) every native-resolution frame is
    transformed before the resize: a clip of item i from this cache is the raw clip's crop of the
    same frames (same frame counts and sizes, so the same sampling), transformed before resizing.
    ``signature`` (required with ``transform``: what it is, e.g. the enhancer's class, settings
    and weights' sha256) goes to ``cache_dir/transform.json`` and ``cache.json``'s ``transform``;
    a cache made with another transform, or a raw one, is refused. ``source_cache``: read the
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
    check_cache_root(old, cache_dir, root_resolved)
    if old and old.get("short_side") != int(short_side):
        raise ConfigError(f"prepare_dataset: {cache_dir} holds short_side={old.get('short_side')}, "
                          f"asked {short_side}; use another cache_dir")
    if (transform is None) != (signature is None):
        raise ConfigError("prepare_dataset: a transform needs its signature (and a signature its "
                          "transform): the cache records what made its frames")
    _check_cache_transform(cache_dir, signature)

    rels: list[str] = []
    seen: set[str] = set()
    for lf in list_files:
        lf = Path(lf) if Path(lf).is_file() else root / lf
        entries = nonempty_list(lf)
        for lineno, (rel, _) in enumerate(entries, start=1):
            safe_relpath(root_resolved, rel, f"{lf}:{lineno}")
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
                                 videos, failed, transform=transform,
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
                              seconds=time.perf_counter() - t0, transform=signature)
    write_json(manifest, marker)
    return dict(manifest, written=written, reused=reused)

