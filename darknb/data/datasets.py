"""Named datasets (ARID, ARID v1.5, ARID v1.1, Dark-48, your own folder of videos, the synthetic
sets) and their registry.

Each is a thin :class:`darknb.data.dataset.VideoListDataset` that knows where its lists and class
names live; any of them reads other lists when given (``list_file``, the ``train_list`` /
``test_list`` / ``val_list`` parameters). :func:`build_dataset` builds one by name, with a
group-disjoint validation holdout of the training list where a dataset has no validation list.
"""

from __future__ import annotations

import types
from pathlib import Path

from darknb.data.dataset import VideoListDataset, group_holdout
from darknb.data.lists import read_list, read_mapping, safe_relpath
from darknb.data.synthetic import MANIFEST as SYNTHETIC_MANIFEST
from darknb.errors import ConfigError, DatasetError
from darknb.files import write_text
from darknb.registry import Registry

__all__ = ["ARID", "ARIDv15", "ARID11", "Dark48", "Folder", "SyntheticDark", "SyntheticLit",
           "build_dataset", "dataset_class", "folder_split", "list_datasets", "register_dataset"]

_DATASETS = Registry("dataset")


register_dataset = _DATASETS.register


list_datasets = _DATASETS.names


def _pick_subset(subset: str, allowed=("train", "test"), list_file=None) -> str:
    if list_file is not None:  # a list given for it: any of train / val / test
        allowed = (*allowed, "val")
    if subset not in allowed:
        raise ConfigError(f"subset must be one of {allowed}, got {subset!r}")
    return subset


class ARID(VideoListDataset):
    """ARID (Xu et al. 2021), 11 classes, official lists ``ARID_split{1,2,3}_{train,test}.txt``.

    Layout: videos under ``root/<Class>/...``, lists + ``mapping_table.txt`` under
    ``root/list_cvt`` (or ``list_dir``). ``version="1.5"``: ARID v1.5 (~5,572 .mp4, same 11 classes,
    same TAB format); its official list names are UNCONFIRMED, so give ``list_file`` (a path; the
    ``train_list`` / ``test_list`` parameters) or ``train_list``/``test_list`` (file names inside
    ``list_dir``); the v1 names are tried by default.
    """

    NUM_CLASSES = 11
    VERSION = "1.0"

    def __init__(self, root, split: int = 1, subset: str = "train", version: str | None = None,
                 list_dir=None, *, train_list: str | None = None, test_list: str | None = None,
                 list_file=None, **clip_options):
        version = self.VERSION if version is None else version
        if int(split) not in (1, 2, 3):
            raise ConfigError(f"ARID: split must be 1, 2 or 3, got {split}")
        if str(version) not in ("1.0", "1.5"):
            raise ConfigError(f"ARID: version must be '1.0' or '1.5', got {version!r}")
        _pick_subset(subset, ("train", "test", "other"), list_file)
        list_dir = Path(list_dir) if list_dir is not None else Path(root) / "list_cvt"
        if list_file is None:
            name = ({"train": train_list, "test": test_list}.get(subset)
                    or f"ARID_split{int(split)}_{subset}.txt")
            list_file = list_dir / name
        list_file = Path(list_file)
        if not list_file.is_file():
            hint = (" (ARID v1.5 list names are unconfirmed: pass train_list=/test_list=, the "
                    "paths of its list files)"
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

    def __init__(self, root, subset: str = "train", list_dir=None, *, list_file=None, **clip_options):
        _pick_subset(subset, list_file=list_file)
        list_dir = Path(list_dir) if list_dir is not None else Path(root)
        list_file = Path(list_file) if list_file is not None else list_dir / f"ARID1.1_t1_{subset}_pub.csv"
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
        _pick_subset(subset, list_file=list_file)
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


# What counts as a video in a folder dataset (the readers decode any of these)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# A folder without lists: this share of every class's groups is its test split (group-aware)
FOLDER_TEST_FRACTION = 0.2
FOLDER_SPLIT_SEED = 1  # fixed: the same folder gives the same split on every machine


class Folder(VideoListDataset):
    """Your own videos: ``root/<Class>/...`` (any depth below the class folder; any number of
    classes). Classes are the class folders' names, sorted, or ``classes.txt`` /
    ``mapping_table.txt`` (``id<TAB>Name`` lines) in ``root`` when present.

    Lists: ``list_file`` (the ``train_list`` / ``test_list`` / ``val_list`` parameters) in
    ARID's TAB form or ``path label`` lines, paths relative to ``root``, labels 0-based class
    ids; a label that contradicts its video's class folder is refused. Without lists, the first
    use writes a split into ``split_dir`` (a run's ``lists/``) and every later use reads it:
    :func:`folder_split`.
    """

    def __init__(self, root, subset: str = "train", *, list_file=None, split_dir=None,
                 **clip_options):
        _pick_subset(subset, list_file=list_file)
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"folder dataset: data_root {root} is not a directory")
        classes = clip_options.pop("classes", None) or self.classes_of(root)
        if list_file is None:
            if split_dir is None:
                raise ConfigError("folder dataset: give train_list/test_list, or a split_dir where "
                                  "the run writes its split (build_datasets does)")
            list_file = folder_split(root, split_dir, classes=classes)[subset]
        list_file = Path(list_file)
        self._check_labels(root, list_file, classes)
        clip_options.setdefault("train", subset == "train")
        self.subset = subset
        super().__init__(root, list_file, classes=classes, **clip_options)

    @staticmethod
    def classes_of(root) -> list[str]:
        """Class names: ``classes.txt`` / ``mapping_table.txt`` in ``root``, else the sorted names
        of the folders that hold at least one video."""
        root = Path(root)
        for name in ("classes.txt", "mapping_table.txt"):
            if (root / name).is_file():
                return read_mapping(root / name)
        classes = sorted(d.name for d in root.iterdir()
                         if d.is_dir() and not d.name.startswith(".") and _videos_in(d))
        if not classes:
            raise DatasetError(f"folder dataset: no video ({', '.join(VIDEO_SUFFIXES)}) in any "
                               f"class folder of {root} (expected {root}/<Class>/<video>)")
        return classes

    @staticmethod
    def _check_labels(root: Path, list_file: Path, classes: list[str]) -> None:
        """A list's label must be its video's class folder (when the path starts with one)."""
        index = {name: k for k, name in enumerate(classes)}
        for lineno, (rel, label) in enumerate(read_list(list_file), start=1):
            folder = Path(rel).parts[0] if len(Path(rel).parts) > 1 else None
            if folder in index and index[folder] != label:
                raise DatasetError(
                    f"{list_file}:{lineno}: {rel} has label {label}, but its folder {folder!r} is "
                    f"class {index[folder]} of {classes} (labels are 0-based ids of the sorted class "
                    f"folders, or of {root / 'classes.txt'} when present)")


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def folder_split(root, split_dir, *, classes: list[str] | None = None,
                 test_fraction: float = FOLDER_TEST_FRACTION) -> dict[str, Path]:
    """A folder of videos split once into ``split_dir/folder_{train,test}.txt`` (ARID's TAB form)
    and ``classes.txt``; later calls read those files (a run keeps its split when videos are added).

    The split is group-aware, as ARID's: a video ``<Class>/<group>_<clip>.<ext>`` belongs to group
    ``<group>`` (everything before the name's last ``_``; a name without ``_`` is its own group), and
    ``test_fraction`` of every class's groups (at least one where a class has two or more, drawn
    with the fixed seed :data:`FOLDER_SPLIT_SEED`) go to test with all their videos; a class with a
    single group stays in training. Validation is then held out of training as for every dataset
    (``val_fraction``)."""
    root, split_dir = Path(root), Path(split_dir)
    lists = {"train": split_dir / "folder_train.txt", "test": split_dir / "folder_test.txt"}
    if all(p.is_file() for p in lists.values()):
        return lists
    classes = classes or Folder.classes_of(root)
    root_resolved = root.resolve()
    entries = []
    for label, name in enumerate(classes):
        for video in _videos_in(root / name):
            rel = video.relative_to(root).as_posix()
            safe_relpath(root_resolved, rel, f"{root / name}")  # no symlink out of the root
            entries.append((rel, label))
    if not entries:
        raise DatasetError(f"folder dataset: no video under {root}/<Class>/ for classes {classes}")
    everything = types.SimpleNamespace(samples=entries, group_of=VideoListDataset.group_of)
    test_groups = group_holdout(everything, test_fraction, seed=FOLDER_SPLIT_SEED)
    if not test_groups:
        raise DatasetError(f"folder dataset: cannot make a test split of {root}: no class has two "
                           "or more groups (name videos <group>_<clip>.<ext>, or give "
                           "train_list/test_list)")
    split = {"train": [], "test": []}
    for rel, label in entries:
        split["test" if VideoListDataset.group_of(rel) in test_groups else "train"].append((rel, label))
    for subset, rows in split.items():
        write_text("".join(f"{k}\t{label}\t{rel}\n" for k, (rel, label) in enumerate(rows)),
                   lists[subset])
    write_text("".join(f"{k}\t{name}\n" for k, name in enumerate(classes)), split_dir / "classes.txt")
    return lists


def write_folder_index(root, path) -> Path:
    """Every video of a folder dataset as one list (``prepare`` caches them all before a run
    splits them)."""
    root = Path(root)
    classes = Folder.classes_of(root)
    rows = [(video.relative_to(root).as_posix(), label) for label, name in enumerate(classes)
            for video in _videos_in(root / name)]
    return write_text("".join(f"{k}\t{label}\t{rel}\n" for k, (rel, label) in enumerate(rows)),
                      path)


class SyntheticDark(VideoListDataset):
    """The synthetic dark target set written by :func:`darknb.synthetic.make_synthetic_dark`:
    scene-disjoint ``train`` / ``val`` / ``test`` lists. Its clips live in the frame cache (only
    a part also as video files), so give ``cache_dir``."""

    LISTS = {"train": "synthetic_split1_train", "val": "synthetic_split1_val",
             "test": "synthetic_split1_test"}
    MAPPING = "mapping_table.txt"

    def __init__(self, root, subset: str = "train", *, list_file=None, **clip_options):
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
        list_file = Path(list_file) if list_file is not None else self.list_file_of(root, subset)
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
register_dataset(Folder, name="folder")


def dataset_class(name: str) -> type[VideoListDataset]:
    """The registered class of dataset ``name`` (an unknown name is a :class:`ConfigError`)."""
    return _DATASETS.get(str(name).lower())


def build_dataset(name: str, root, subset: str = "train", *, val_fraction: float = 0.0,
                  lists: dict | None = None, **kw) -> VideoListDataset:
    """Build a registered dataset by name (:func:`list_datasets`): ``synthetic``, ``arid``,
    ``arid1.5``, ``arid1.1``, ``dark48``, ``folder``; ``subset`` is ``train``, ``val`` or ``test``.
    ``lists`` (``{"train": path, "test": path, "val": path}``, empty values ignored) replace the
    dataset's own list files.

    Validation: a validation list (``lists["val"]``, or the dataset's own: the synthetic set);
    otherwise ``val`` is a group-disjoint holdout of the TRAINING list (:func:`group_holdout`,
    ``val_fraction`` of its groups) and ``train`` excludes those groups. Never the test list, and
    never ARID's ``*_other.txt`` lists: they share 20-26 of the 42 test groups of their split.
    """
    builder = _DATASETS.get(str(name).lower())
    if subset not in ("train", "val", "test") and subset not in getattr(builder, "LISTS", {}):
        raise ConfigError(f"build_dataset: subset must be 'train', 'val' or 'test', got {subset!r}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"build_dataset: val_fraction must be in [0, 1), got {val_fraction!r}")
    lists = {k: v for k, v in (lists or {}).items() if v}
    kw.setdefault("train", subset == "train")
    if subset in ("val", "test") and subset in lists:
        return builder(root, subset=subset, list_file=lists[subset], **kw)
    own_val = "val" in lists or builder.own_val_list(root)
    train_list = {"list_file": lists["train"]} if "train" in lists else {}
    if subset not in ("train", "val") or own_val or (subset == "train" and not val_fraction):
        return builder(root, subset=subset, **(train_list if subset == "train" else {}), **kw)
    if not val_fraction:
        raise DatasetError(f"{name}: no validation list; set val_fraction > 0 to hold out part of "
                           "the training groups")
    dataset = builder(root, subset="train", **train_list, **kw)  # the holdout: of the training list
    held = group_holdout(dataset, val_fraction)
    if not held:
        raise DatasetError(f"{name}: cannot hold out validation groups from {dataset.list_file}: no "
                           "class has two or more groups; use val_fraction=0 (last epoch is final)")
    dataset.keep_groups(held, keep=subset == "val")
    dataset.subset = subset
    return dataset
