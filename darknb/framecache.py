"""The frame cache's format, shared by its writers (data.prepare_dataset, the synthetic set) and
its reader (data.VideoListDataset).

One uint8 ``.npy`` per video, ``cache_dir/<relative path>.npy``, shape ``(N, h, w, 3)`` (short
side ``short_side``), written atomically; then ``cache_dir/cache.json`` (written last: its presence
marks a complete cache) with the dataset root, the short side and every video's frame count.
A cache holds one dataset root's videos.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

CACHE_MANIFEST = "cache.json"
FORMAT = "npy-uint8-NHWC"


def default_cache_dir(data_root: str | Path) -> Path:
    """``cache_dir="auto"``: beside the dataset, ``<parent>/cache/<name>`` (``data/ARID`` ->
    ``data/cache/ARID``), so every dataset root gets its own cache."""
    root = Path(data_root)
    return root.parent / "cache" / root.name


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
