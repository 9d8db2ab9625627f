"""Named datasets (ARID, ARID v1.5, ARID v1.1, Dark-48, the synthetic sets) and their registry.

Each is a thin :class:`darknb.data.dataset.VideoListDataset` that knows where its lists and class
names live. :func:`build_dataset` builds one by name, with a group-disjoint validation holdout of
the training list where a dataset has no validation list of its own.
"""

from __future__ import annotations

from pathlib import Path

from darknb.data.dataset import VideoListDataset, group_holdout
from darknb.data.lists import read_list, read_mapping
from darknb.data.synthetic import MANIFEST as SYNTHETIC_MANIFEST
from darknb.errors import ConfigError, DatasetError
from darknb.registry import Registry

__all__ = ["ARID", "ARIDv15", "ARID11", "Dark48", "SyntheticDark", "SyntheticLit", "build_dataset",
           "dataset_class", "list_datasets", "register_dataset"]

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


def dataset_class(name: str) -> type[VideoListDataset]:
    """The registered class of dataset ``name`` (an unknown name is a :class:`ConfigError`)."""
    return _DATASETS.get(str(name).lower())


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

