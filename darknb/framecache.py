"""The frame cache's format, shared by its writers (data.prepare_dataset, the synthetic set) and
its reader (data.VideoListDataset).

One uint8 ``.npy`` per video, ``cache_dir/<relative path>.npy``, shape ``(N, h, w, 3)`` (short
side ``short_side``), written atomically; then ``cache_dir/cache.json`` (written last: its presence
marks a complete cache) with the dataset root, the short side and every video's frame count.
A cache holds one dataset root's videos.
"""

from __future__ import annotations

from pathlib import Path

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
