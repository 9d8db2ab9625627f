"""A run's data: make it usable (:func:`ensure_dataset`), build its train / val / test datasets once
(:func:`build_datasets` -> :class:`Splits`), and fill its frame cache (:func:`prepare_cache`).

Stage functions take the :class:`Splits` a caller built; they do not rebuild them from the config
(building probes every video under ``on_error="skip"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from darknb.config import RunConfig
from darknb.data.dataset import VideoListDataset
from darknb.data.datasets import build_dataset, dataset_class
from darknb.data.framecache import (
    CACHE_MANIFEST,
    TRANSFORM_MANIFEST,
    check_cache_root,
    prepare_dataset,
)
from darknb.data.synthetic import make_synthetic_dark, stored_spec, synthetic_is_current
from darknb.errors import ConfigError
from darknb.files import read_json

__all__ = ["Splits", "build_datasets", "ensure_dataset", "prepare_cache", "prepare_command",
           "split_sizes"]


def ensure_dataset(cfg: RunConfig) -> Path:
    """Make ``cfg``'s data usable. The synthetic set is generated (with its frame cache) when
    absent or made by another darknb version; an existing one is used as it is, whatever its size.
    A real dataset must already be in place; its frame cache is prepared when missing
    (resumable, see :func:`darknb.data.framecache.prepare_dataset`)."""
    root = Path(cfg.data_root)
    if cfg.frame_cache is not None and (cfg.frame_cache / TRANSFORM_MANIFEST).is_file():
        raise ConfigError(f"cache_dir {str(cfg.frame_cache)!r} holds enhanced frames; the student's "
                          "cache must be raw (give the enhanced one as enhanced_cache_dir)")
    if cfg.dataset == "synthetic":
        if cfg.frame_cache is None:
            raise ConfigError("the synthetic set lives in its frame cache: cache_dir must not be "
                              "empty (default 'auto')")
        if not synthetic_is_current(root, cfg.frame_cache, cfg.cache_format):
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
            prepare_cache(cfg)
    return root


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
    holdout of train). With ``on_error="skip"`` every video is probed here
    (``check_videos=False``: not yet)."""
    common = dict(num_frames=cfg.num_frames, size=cfg.size, sampling=cfg.sampling, seed=cfg.seed,
                  on_error=cfg.on_error, return_index=True, cache_dir=cfg.frame_cache,
                  val_fraction=cfg.val_fraction)
    if cfg.dataset in ("arid", "arid1.5"):
        common["split"] = cfg.split
    train = build_dataset(cfg.dataset, cfg.data_root, "train", train=train_sampling, **common)
    has_val = cfg.val_fraction > 0 or dataset_class(cfg.dataset).own_val_list(cfg.data_root)
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
    # the list files only: prepare_dataset meets (and, under "skip", records) every bad video itself;
    # a validation holdout is part of the training list. A transformed cache reads them through the
    # raw cache (the synthetic set's clips are mostly only there)
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
    return (f"run `python -m darknb prepare --dataset {cfg.dataset} --root {cfg.data_root} "
            f"--cache-dir {cfg.frame_cache} --split {cfg.split} --format {cfg.cache_format}`")


def split_sizes(splits: Splits) -> dict:
    """``{"train", "val", "test", "scene_disjoint"}``: clips per split and whether the splits share
    no group (scene / actor)."""
    groups = {name: {ds.group_of(rel) for rel, _ in ds.samples}
              for name, ds in zip(("train", "val", "test"), splits) if ds is not None}
    names = list(groups)
    disjoint = all(groups[x].isdisjoint(groups[y]) for i, x in enumerate(names) for y in names[i + 1:])
    return {"train": len(splits.train), "val": len(splits.val) if splits.val is not None else 0,
            "test": len(splits.test), "scene_disjoint": bool(disjoint)}
