"""Your own videos: ``dataset="folder"`` (classes from folders, lists or a split made once per run),
and the ``train_list`` / ``test_list`` / ``val_list`` parameters for every dataset."""

from __future__ import annotations

import numpy as np
import pytest

from darknb.config import RunConfig
from darknb.data.datasets import ARIDv15, Folder, folder_split
from darknb.data.splits import build_datasets, prepare_cache, split_sizes
from darknb.data.video import write_video
from darknb.errors import DatasetError

CLASSES = ["jump", "run", "wave"]


def make_tree(root, classes=CLASSES, groups=4, clips=2, frames=6):
    """root/<Class>/<actor>_<clip>.mp4: small dark videos, ``groups`` actors per class."""
    rng = np.random.default_rng(0)
    for c in classes:
        for g in range(groups):
            for k in range(clips):
                write_video(root / c / f"actor{g}_{k}.mp4",
                            (rng.random((frames, 24, 32, 3)) * 40).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("clips") / "myclips")


def _cfg(tree, tmp_path, **kw):
    return RunConfig(**{"dataset": "folder", "data_root": str(tree), "cache_dir": "", "num_frames": 4,
                        "output_dir": str(tmp_path / "run"), **kw})


def test_a_folder_without_lists_is_split_once_by_group_and_the_split_is_kept(tree, tmp_path):
    splits = build_datasets(_cfg(tree, tmp_path))
    assert splits.train.classes == CLASSES
    sizes = split_sizes(splits)
    assert sizes["scene_disjoint"] and sizes["test"] > 0 and sizes["val"] > 0
    assert sizes["train"] + sizes["val"] + sizes["test"] == 3 * 4 * 2
    lists = tmp_path / "run" / "lists"
    written = {p.name: p.read_text() for p in lists.iterdir()}
    assert set(written) == {"folder_train.txt", "folder_test.txt", "classes.txt"}
    # seeded: another run folder gets the same split; the run keeps its own when videos arrive
    again = folder_split(tree, tmp_path / "other")
    assert again["test"].read_text() == written["folder_test.txt"]
    extra = make_tree(tmp_path / "grown", groups=5)
    assert folder_split(extra, lists)["train"].read_text() == written["folder_train.txt"]


def test_folder_lists_in_both_forms_and_a_contradicting_label(tree, tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{k}\t{y}\t{c}/actor{g}_0.mp4\n" for k, (y, c, g) in enumerate(
        (y, c, g) for y, c in enumerate(CLASSES) for g in range(3))))
    test = tmp_path / "test.txt"
    test.write_text("".join(f"{c}/actor3_1.mp4 {y}\n" for y, c in enumerate(CLASSES)))
    splits = build_datasets(_cfg(tree, tmp_path, train_list=str(train), test_list=str(test),
                                 val_fraction=0.0))
    assert (len(splits.train), splits.val, len(splits.test)) == (9, None, 3)
    assert not (tmp_path / "run" / "lists").exists()  # lists given: no split of its own
    val = tmp_path / "val.txt"
    val.write_text("jump/actor3_0.mp4 0\n")
    splits = build_datasets(_cfg(tree, tmp_path, train_list=str(train), test_list=str(test),
                                 val_list=str(val)))
    assert len(splits.val) == 1 and len(splits.train) == 9  # a val list: no holdout of train
    bad = tmp_path / "bad.txt"
    bad.write_text("run/actor0_0.mp4 0\n")
    with pytest.raises(DatasetError, match=r"bad.txt:1: run/actor0_0.mp4 has label 0, but its "
                                           r"folder 'run' is class 1"):
        Folder(tree, "train", list_file=bad)


def test_prepare_caches_every_video_of_a_folder_without_writing_a_split(tree, tmp_path):
    cfg = _cfg(tree, tmp_path, cache_dir=str(tmp_path / "cache"))
    report = prepare_cache(cfg)
    assert report["written"] == 24 and not (tmp_path / "run").exists()
    splits = build_datasets(cfg)
    assert splits.train.frame_count(splits.train.samples[0][0]) == 6  # read from the cache


def test_arid15_reads_the_lists_it_is_given(tmp_path):
    root = tmp_path / "ARID1.5"
    names = ["Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk", "Wave"]
    rng = np.random.default_rng(0)
    rows = {"train": [], "test": []}
    for y, name in enumerate(names):
        for g in range(3):
            rel = f"{name}/{name}_{g}_1.mp4"
            write_video(root / rel, (rng.random((6, 24, 32, 3)) * 40).astype(np.uint8))
            rows["test" if g == 2 else "train"].append(f"{len(rows['train'])}\t{y}\t{rel}\n")
    (root / "list_cvt").mkdir()
    (root / "list_cvt" / "mapping_table.txt").write_text("".join(f"{k}\t{n}\n" for k, n in enumerate(names)))
    for subset, lines in rows.items():
        (tmp_path / f"v15_{subset}.txt").write_text("".join(lines))
    cfg = RunConfig(dataset="arid1.5", data_root=str(root), cache_dir="", num_frames=4,
                    train_list=str(tmp_path / "v15_train.txt"), test_list=str(tmp_path / "v15_test.txt"))
    splits = build_datasets(cfg)
    assert isinstance(splits.train, ARIDv15) and len(splits.test) == 11
    assert len(splits.train) + len(splits.val) == 22 and splits.train.classes == names
