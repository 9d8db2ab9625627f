"""A run's data: make it usable (:func:`ensure_dataset`), build its train / val / test datasets once
(:func:`build_datasets` -> :class:`Splits`), and fill its frame cache (:func:`prepare_cache`).

Stage functions take the :class:`Splits` a caller built; they do not rebuild them from the config
(building probes every video under ``on_error="skip"``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from darknb.config import CACHE_FORMATS, RunConfig, default_cache_dir
from darknb.data.dataset import VideoListDataset
from darknb.data.datasets import build_dataset, dataset_class, write_folder_index
from darknb.data.framecache import (
    CACHE_MANIFEST,
    TRANSFORM_MANIFEST,
    check_cache_root,
    prepare_dataset,
)
from darknb.data.lists import shared_entries
from darknb.data.sampling import gamma_lut
from darknb.data.synthetic import make_synthetic_dark, stored_spec, synthetic_is_current
from darknb.errors import ConfigError, DatasetError
from darknb.files import RunDir, read_json, require_writable, write_json

__all__ = ["Splits", "adopt_moved_cache", "build_datasets", "check_disjoint", "ensure_dataset",
           "ensure_light_cache", "light_cache_dir", "prepare_cache", "prepare_command", "split_sizes"]


def adopt_moved_cache(cache_dir: str | os.PathLike | None, data_root: str | os.PathLike) -> bool:
    """A frame cache records the absolute path of its dataset root, and holds that root's videos
    under their paths relative to it. When the project was moved or copied, the recorded root
    differs from ``data_root`` although the cache is this dataset's: it is adopted (its record
    updated, True returned) when the recorded root no longer exists, or the cache sits where
    ``cache_dir="auto"`` puts this root's (``<root's parent>/cache/<name>``), and both roots have
    the same name. Any other cache of another root is refused with a remedy that works."""
    if cache_dir is None:
        return False
    marker = Path(cache_dir) / CACHE_MANIFEST
    if not marker.is_file():
        return False
    manifest = read_json(marker)
    recorded, root = manifest.get("root"), Path(data_root).resolve()
    if not recorded or Path(recorded) == root:
        return False
    fmt = manifest.get("format", "npy")  # "auto" gives every format its own folder
    beside = Path(cache_dir).resolve() == default_cache_dir(root, fmt if fmt in CACHE_FORMATS else "npy").resolve()
    if Path(recorded).name == root.name and (beside or not Path(recorded).exists()):
        write_json({**manifest, "root": str(root)}, marker)
        print(f"[darknb] frame cache {cache_dir} was made for {recorded}; the project was moved "
              f"or copied, and it now serves {root} (videos are found relative to the root)")
        return True
    raise ConfigError(
        f"frame cache {cache_dir} holds videos of {recorded}, not of {root}: a cache serves one "
        f"dataset root. Give this dataset its own: cache_dir='auto' puts it at "
        f"{default_cache_dir(root)}, or set cache_dir to an empty folder; or delete {cache_dir} "
        "to rebuild it here")


def check_disjoint(splits: "Splits") -> None:
    """Refuse a video listed in two of train / validation / test (it would be trained and tested
    on, or chosen on), naming the entries and their lines in each list file."""
    named = {name: (ds.list_file, [rel for rel, _ in ds.samples])
             for name, ds in zip(("train", "val", "test"), splits) if ds is not None}
    # a validation holdout is a part of the training list: its lines are the train list's
    shared = shared_entries(named)
    if shared:
        shown = "; ".join(shared[:5]) + (f" (and {len(shared) - 5} more)" if len(shared) > 5 else "")
        raise DatasetError(f"{len(shared)} video(s) are listed in two splits, so the run would train "
                           f"and test (or select) on the same clips: {shown}. Each video must be in "
                           "one list only")


def ensure_dataset(cfg: RunConfig) -> Path:
    """Make ``cfg``'s data usable. The synthetic set is generated (with its frame cache) when
    absent or made by another darknb version; an existing one is used as it is, whatever its size.
    A real dataset must already be in place; its frame cache is prepared when missing
    (resumable, see :func:`darknb.data.framecache.prepare_dataset`)."""
    root = Path(cfg.data_root)
    adopt_moved_cache(cfg.frame_cache, root)
    if cfg.frame_cache is not None and (cfg.frame_cache / TRANSFORM_MANIFEST).is_file():
        raise ConfigError(f"cache_dir {str(cfg.frame_cache)!r} holds enhanced frames; the student's "
                          "cache must be raw (give the enhanced one as enhanced_cache_dir)")
    if cfg.dataset == "synthetic":
        if cfg.frame_cache is None:
            raise ConfigError("the synthetic set lives in its frame cache: cache_dir must not be "
                              "empty (default 'auto')")
        if not synthetic_is_current(root, cfg.frame_cache, cfg.cache_format):
            require_writable(cfg.frame_cache, "cache_dir", _CACHE_HINT)
            require_writable(root, "data_root", "the synthetic set is rendered into it: set data_root "
                             "to a writable folder")
            # a set already in root keeps its spec (its cache is rendered again, identically)
            make_synthetic_dark(root, cache_dir=cfg.frame_cache, spec=stored_spec(root),
                                cache_format=cfg.cache_format)
        return root
    if not root.is_dir():
        raise ConfigError(f"data_root {str(root)!r} for dataset {cfg.dataset!r} does not exist; "
                          "see the README section 'Datasets and layouts'")
    if cfg.frame_cache is not None:
        marker = cfg.frame_cache / CACHE_MANIFEST
        if marker.is_file():
            check_cache_root(read_json(marker), cfg.frame_cache, root.resolve())
        else:
            require_writable(cfg.frame_cache, "cache_dir", _CACHE_HINT)
            prepare_cache(cfg)
    return root


_CACHE_HINT = ("the frame cache is written there ('auto': beside data_root); set cache_dir to a "
               "writable folder (`--set cache_dir=DIR`, `prepare --cache-dir DIR`)")


class Splits(NamedTuple):
    """A run's datasets. ``val`` is None when the dataset has no validation list and
    ``val_fraction`` is 0 (then the last epoch is the final model, and reports say so)."""

    train: VideoListDataset
    val: VideoListDataset | None
    test: VideoListDataset

    def present(self) -> list[VideoListDataset]:
        """The datasets that exist (``val`` may be None)."""
        return [ds for ds in self if ds is not None]

    def with_cache(self, cache_dir: str | os.PathLike | None) -> "Splits":
        """The same splits (same samples, same order) reading their frames from another cache:
        the teacher's enhanced frames are the student's clips, enhanced before the resize."""
        return Splits(*(None if ds is None else ds.with_cache(cache_dir) for ds in self))


def build_datasets(cfg: RunConfig, *, train_sampling: bool = True, check_videos: bool = True
                   ) -> Splits:
    """``cfg.dataset``'s train / val / test datasets; training clips are augmented, every item is
    index-tagged. Validation: see :func:`darknb.data.datasets.build_dataset` (own list, or a group
    holdout of train). A video in two of them is refused (:func:`check_disjoint`), and a list
    naming a video twice (:func:`darknb.data.lists.read_list`). With ``on_error="skip"`` every
    video is probed here (``check_videos=False``: not yet). Training crops follow
    ``cfg.train_crop``; a model of two views (``cfg.light_gamma``: DarkLight's) gets clips carrying
    both (:meth:`VideoListDataset.add_light_view`, the light cache made here when missing)."""
    common = dict(num_frames=cfg.num_frames, size=cfg.size, sampling=cfg.sampling, seed=cfg.seed,
                  on_error=cfg.on_error, return_index=True, cache_dir=cfg.frame_cache,
                  val_fraction=cfg.val_fraction,
                  lists={"train": cfg.train_list, "test": cfg.test_list, "val": cfg.val_list})
    adopt_moved_cache(cfg.frame_cache, cfg.data_root)
    if cfg.dataset in ("arid", "arid1.5"):
        common["split"] = cfg.split
    if cfg.dataset == "folder":  # without lists, the run's own split (made once, in the run folder)
        common["split_dir"] = RunDir(cfg.output_dir).lists
    train = build_dataset(cfg.dataset, cfg.data_root, "train", train=train_sampling,
                          **({"crop": cfg.train_crop} if train_sampling else {}), **common)
    has_val = (cfg.val_fraction > 0 or bool(cfg.val_list)
               or dataset_class(cfg.dataset).own_val_list(cfg.data_root))
    val = build_dataset(cfg.dataset, cfg.data_root, "val", train=False, **common) if has_val else None
    test = build_dataset(cfg.dataset, cfg.data_root, "test", train=False, **common)
    check_disjoint(Splits(train, val, test))
    if cfg.on_error == "skip" and check_videos:
        # probe every video here, in the parent process: a skip recorded inside a DataLoader
        # worker would never reach the run's report
        for dataset in (train, val, test):
            if dataset is not None:
                dataset.check()
    splits = Splits(train, val, test)
    if cfg.light_gamma is not None:
        light = ensure_light_cache(cfg, splits) if cfg.frame_cache is not None else None
        for dataset in splits.present():
            dataset.add_light_view(cfg.light_gamma, light)
    return splits


def light_cache_dir(cfg: RunConfig) -> Path:
    """Where the gamma view of ``cfg``'s frame cache lives: beside it, ``<cache>-gamma<g>``
    (``data/cache/ARID`` -> ``data/cache/ARID-gamma1.8``). A lookup table has no weights, so
    unlike the teacher's enhanced cache it is shared by every run on that data."""
    cache = cfg.frame_cache
    if cache is None or cfg.light_gamma is None:
        raise ConfigError(f"light_cache_dir: model {cfg.model!r} with cache_dir={cfg.cache_dir!r} "
                          "has no gamma-view cache")
    return cache.with_name(f"{cache.name}-gamma{cfg.light_gamma:g}")


class _GammaLUT:
    """DarkLight's gamma lookup table as a frame-cache transform (uint8 frames -> uint8 frames)."""

    def __init__(self, gamma: float):
        self.gamma, self.table = float(gamma), gamma_lut(gamma)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.table[frames]


def ensure_light_cache(cfg: RunConfig, splits: Splits) -> Path:
    """The gamma view of ``cfg``'s frame cache (:func:`light_cache_dir`), written when missing or
    incomplete: every native frame through DarkLight's lookup table, then resized exactly as the
    raw cache (:func:`darknb.data.framecache.prepare_dataset` with a transform), so a clip's gamma
    view is the LUT applied before the resize, as DarkLight's loader does. Resumable; a cache made
    with another table is refused (its ``transform.json``). The synthetic set's native frames are
    its raw cache's."""
    raw = cfg.frame_cache / CACHE_MANIFEST
    if not raw.is_file():
        raise ConfigError(f"the gamma view is resized as the raw cache, and {cfg.frame_cache} holds "
                          "none yet: prepare the raw cache first (ensure_dataset)")
    out = light_cache_dir(cfg)
    marker = out / CACHE_MANIFEST
    rels = {rel for ds in splits.present() for rel, _ in ds.samples}
    if marker.is_file() and rels <= set(read_json(marker).get("videos", {})):
        return out
    lut = _GammaLUT(cfg.light_gamma)
    signature = {"transform": "darklight_gamma_lut", "gamma": lut.gamma,
                 "table": "uint8(((i / 255) ** (1 / gamma)) * 255)"}
    lists = sorted({ds.list_file for ds in splits.present()})
    prepare_dataset(cfg.data_root, lists, out, short_side=read_json(raw)["short_side"],
                    on_error=cfg.on_error, transform=lut, signature=signature,
                    source_cache=cfg.frame_cache if cfg.dataset == "synthetic" else None,
                    cache_format=cfg.cache_format,
                    remedy=f"delete {out} (the next run makes the gamma view again)")
    return out


def prepare_cache(cfg: RunConfig, *, short_side: int | None = None,
                  progress: bool | Callable[[int, int, str], None] | None = None,
                  transform: Callable[[np.ndarray], np.ndarray] | None = None,
                  signature: dict | None = None,
                  cache_dir: str | os.PathLike | None = None) -> dict:
    """Decode ``cfg``'s train, val and test videos once into its frame cache (uint8 frames in
    ``cfg.cache_format``), re-decoding every cached file that fails its checksum or whose video
    changed (the result's ``redecoded``). ``cfg.on_error`` applies (``"skip"``: bad videos are
    listed in the result's ``failed``).

    With ``transform`` (and its ``signature``): a TRANSFORMED cache in ``cache_dir`` (default
    ``cfg.enhanced_frame_cache``), the frames transformed at native resolution, then resized as
    the raw cache, which must exist (see :func:`darknb.data.framecache.prepare_dataset`); the
    synthetic set's native frames are its raw cache's."""
    if cfg.frame_cache is None:
        raise ConfigError("prepare_cache: cache_dir is empty")
    adopt_moved_cache(cfg.frame_cache, cfg.data_root)
    if transform is not None:
        adopt_moved_cache(cache_dir or cfg.enhanced_frame_cache, cfg.data_root)
    # the list files only: prepare_dataset meets (and, under "skip", records) every bad video itself;
    # a validation holdout is part of the training list. A transformed cache reads them through the
    # raw cache (the synthetic set's clips are mostly only there)
    if transform is None and cfg.dataset == "folder" and not (cfg.train_list and cfg.test_list):
        # no split before a run makes one (in its folder): every video of the folder
        with tempfile.TemporaryDirectory() as tmp:
            lists = [write_folder_index(cfg.data_root, Path(tmp) / "videos.txt")]
            return prepare_dataset(cfg.data_root, lists, cfg.frame_cache,
                                   short_side=short_side or 128, on_error=cfg.on_error,
                                   progress=progress, cache_format=cfg.cache_format,
                                   remedy=prepare_command(cfg))
    splits = build_datasets(cfg.replace(val_fraction=0.0) if transform is not None
                            else cfg.replace(cache_dir="", val_fraction=0.0), check_videos=False)
    lists = sorted({ds.list_file for ds in splits.present()})
    if transform is not None:
        raw = cfg.frame_cache / CACHE_MANIFEST
        if not raw.is_file():
            raise ConfigError(f"an enhanced cache is resized as the raw one, and {cfg.frame_cache} "
                              "holds none yet: prepare the raw cache first (ensure_dataset)")
        # the synthetic set is rendered straight into its cache, at its own size: those are its
        # native frames; a real dataset's are decoded from the videos
        source = cfg.frame_cache if cfg.dataset == "synthetic" else None
        return prepare_dataset(cfg.data_root, lists, cache_dir or cfg.enhanced_frame_cache,
                               short_side=short_side or read_json(raw)["short_side"],
                               on_error=cfg.on_error, progress=progress, transform=transform,
                               signature=signature, source_cache=source,
                               cache_format=cfg.cache_format,
                               remedy="run the teacher stage again (it re-makes every enhanced "
                                      "file that fails its checksum)")
    if cfg.dataset == "synthetic":
        raise ConfigError("the synthetic set renders its own frame cache: use ensure_dataset or "
                          "`python -m darknb synth`")
    return prepare_dataset(cfg.data_root, lists, cfg.frame_cache, short_side=short_side or 128,
                           on_error=cfg.on_error, progress=progress, cache_format=cfg.cache_format,
                           remedy=prepare_command(cfg))


def prepare_command(cfg: RunConfig) -> str:
    """The command that re-makes ``cfg``'s frame cache (a real dataset's), as the errors of a
    damaged one name it (the synthetic set's cache names its own remedy)."""
    lists = "".join(f" --{k.replace('_', '-')} {getattr(cfg, k)}"
                    for k in ("train_list", "test_list", "val_list") if getattr(cfg, k))
    return (f"run `python -m darknb prepare --dataset {cfg.dataset} --root {cfg.data_root} "
            f"--cache-dir {cfg.frame_cache} --split {cfg.split}{lists} --format {cfg.cache_format}`")


def split_sizes(splits: Splits) -> dict:
    """``{"train", "val", "test", "scene_disjoint"}``: clips per split and whether the splits share
    no group (scene / actor)."""
    groups = {name: {ds.group_of(rel) for rel, _ in ds.samples}
              for name, ds in zip(("train", "val", "test"), splits) if ds is not None}
    names = list(groups)
    disjoint = all(groups[x].isdisjoint(groups[y]) for i, x in enumerate(names) for y in names[i + 1:])
    return {"train": len(splits.train), "val": len(splits.val) if splits.val is not None else 0,
            "test": len(splits.test), "scene_disjoint": bool(disjoint)}
