"""Named datasets (ARID with its real official lists, ARID v1.1 CSV, Dark-48 list forms), the
``build_dataset`` registry, and the prepared frame cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from darknb.data.dataset import VideoListDataset
from darknb.data.datasets import ARID, ARID11, Dark48, build_dataset
from darknb.data.lists import read_list
from darknb.data.splits import prepare_dataset
from darknb.errors import ConfigError, DatasetError

try:
    from videohelpers import clip_levels, make_level_video, require_reference
except ImportError:  # tests/ imported as a package
    from tests.videohelpers import clip_levels, make_level_video, require_reference


# ============================================================================ ARID v1

@pytest.fixture(scope="module")
def arid_lists():
    return require_reference("arid")


@pytest.fixture(scope="module")
def arid_tree(tmp_path_factory, arid_lists):
    """ARID layout with a handful of generated videos named as in the real split-1 lists."""
    root = tmp_path_factory.mktemp("arid")
    made = {}
    for subset in ("train", "test"):
        entries = read_list(arid_lists / f"ARID_split1_{subset}.txt")
        for rel, label in entries[::400][:3]:
            make_level_video(root / rel, 20, bframes=2, gop=6)  # .avi, MPEG-4 Part 2 + B-frames
            made[rel] = label
    return root, made


def test_arid_official_lists_are_group_disjoint(arid_lists):
    for split in (1, 2, 3):
        groups = {}
        for subset in ("train", "test"):
            rels = [rel for rel, _ in read_list(arid_lists / f"ARID_split{split}_{subset}.txt")]
            groups[subset] = {"_".join(r.split("/")[1].split("_")[:2]) for r in rels}
        assert groups["train"].isdisjoint(groups["test"]), split


def test_arid_missing_videos_are_reported(arid_tree, arid_lists):
    root, _ = arid_tree
    with pytest.raises(DatasetError, match=r"2285 of 2288 videos listed in .*ARID_split1_train.txt are missing"):
        ARID(root, split=1, subset="train", list_dir=arid_lists)


def test_arid_with_real_lists(arid_tree, arid_lists):
    root, made = arid_tree
    ds = ARID(root, split=1, subset="train", list_dir=arid_lists, on_error="skip",
              num_frames=8, size=16)
    assert ds.classes == ["Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn",
                          "Walk", "Wave"]
    assert len(ds) == 3 and len(ds.skipped) == 2288 - 3 and ds.train
    assert all(made[rel] == y for rel, y in ds.samples)
    clip, label = ds[0]
    assert clip.shape == (3, 8, 16, 16) and label == made[ds.samples[0][0]]
    te = ARID(root, split=1, subset="test", list_dir=arid_lists, on_error="skip", num_frames=8, size=16)
    assert not te.train and len(te) == 3 and clip_levels(te[0][0]) == list(range(6, 14))
    with pytest.raises(ConfigError, match="split"):
        ARID(root, split=4, list_dir=arid_lists)


def test_arid15_needs_list_names(arid_tree, arid_lists, tmp_path):
    root, made = arid_tree
    with pytest.raises(DatasetError, match="unconfirmed"):
        ARID(root, subset="train", version="1.5", list_dir=tmp_path)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "mapping_table.txt").write_bytes((arid_lists / "mapping_table.txt").read_bytes())
    (lists / "v15_train.txt").write_text(
        "".join(f"{i}\t{y}\t{rel}\n" for i, (rel, y) in enumerate(made.items())))
    ds = build_dataset("arid1.5", root, "train", list_dir=lists, train_list="v15_train.txt",
                       num_frames=4, size=16)
    assert ds.version == "1.5" and len(ds) == len(made) and len(ds.classes) == 11


# ============================================================================ ARID v1.1 (CSV)

def test_arid11_csv(tmp_path):
    lists = require_reference("arid", "darklight_arid1.1")
    entries = read_list(lists / "ARID1.1_t1_train_pub.csv")
    assert len(entries) == 1837 and entries[0] == ("Wave/Wave_10_1.mp4", 10)
    keep = [entries[0], next(e for e in entries if e[1] == 5)]
    for rel, _ in keep:
        make_level_video(tmp_path / rel, 12)
    ds = ARID11(tmp_path, "train", list_dir=lists, on_error="skip", num_frames=4, size=16)
    assert ds.classes == ["Run", "Sit", "Stand", "Turn", "Walk", "Wave"]
    assert sorted(ds.samples) == sorted((rel, y - 5) for rel, y in keep)  # ids 5..10 -> 0..5
    assert ds[0][0].shape == (3, 4, 16, 16)


# ============================================================================ Dark-48 list forms

@pytest.mark.parametrize("form", ["tab", "space", "csv"])
def test_dark48_list_forms(tmp_path, form):
    rels = [("Cls00/a.mp4", 0), ("Cls47/b.mp4", 47)]
    for rel, _ in rels:
        make_level_video(tmp_path / rel, 10)
    text = {
        "tab": "".join(f"{i}\t{y}\t{r}\n" for i, (r, y) in enumerate(rels)),
        "space": "".join(f"{r} {y}\n" for r, y in rels),
        "csv": "VideoID,Video,ClassID\n" + "".join(f"{i},{r},{y}\n" for i, (r, y) in enumerate(rels)),
    }[form]
    (tmp_path / ("dark48_train." + ("csv" if form == "csv" else "txt"))).write_text(text)
    (tmp_path / "classes.txt").write_text("".join(f"{i}\tCls{i:02d}\n" for i in range(48)))
    ds = build_dataset("dark48", tmp_path, "train", num_frames=4, size=16)
    assert ds.samples == rels and len(ds.classes) == 48 and ds.classes[47] == "Cls47"
    assert ds[1][1] == 47


def test_dark48_list_discovery_and_bad_lines(tmp_path):
    (tmp_path / "a_train.txt").write_text("x.mp4 0\n")
    (tmp_path / "b_train.txt").write_text("y.mp4 0\n")
    with pytest.raises(DatasetError, match="exactly one"):
        Dark48(tmp_path, subset="train")
    (tmp_path / "weird_train.txt").write_text("just-a-path\n")
    with pytest.raises(DatasetError, match=r"weird_train.txt:1: unrecognised"):
        Dark48(tmp_path, subset="train", list_file=tmp_path / "weird_train.txt")


def test_build_dataset_names(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'ucf101'"):
        build_dataset("ucf101", tmp_path, "train")
    with pytest.raises(DatasetError, match="make_synthetic_dark"):
        build_dataset("synthetic", tmp_path, "train")


# ============================================================================ frame cache

@pytest.fixture()
def small_tree(tmp_path):
    root = tmp_path / "tree"
    lines = []
    for k in range(4):
        rel = f"C{k % 2}/C{k % 2}_{k}_1" + (".avi" if k % 2 else ".mp4")
        make_level_video(root / rel, 20 + k, height=48, width=64, bframes=2 if k % 2 else None)
        lines.append(f"{k}\t{k % 2}\t{rel}\n")
    (root / "list.txt").write_text("".join(lines))
    return root


def test_cache_gives_the_same_clips(small_tree, tmp_path):
    cache = tmp_path / "cache"
    # short_side = the videos' own (48): the cache holds the decoded frames unchanged.
    info = prepare_dataset(small_tree, ["list.txt"], cache, short_side=48)
    assert info["written"] == 4 and json.loads((cache / "cache.json").read_text())["short_side"] == 48
    kw = dict(num_frames=8, size=32, train=True, seed=1)
    raw = VideoListDataset(small_tree, "list.txt", **kw)
    cached = VideoListDataset(small_tree, "list.txt", cache_dir=cache, **kw)
    for i in range(4):
        assert cached._cached_path(raw.samples[i][0]) is not None
        assert torch.equal(raw[i][0], cached[i][0])
    # Default short side 128: same frames up to the extra resize.
    cache128 = tmp_path / "cache128"
    prepare_dataset(small_tree, ["list.txt"], cache128)
    arr = np.load(cache128 / "C0/C0_0_1.mp4.npy")
    assert arr.shape == (20, 128, 171, 3) and arr.dtype == np.uint8
    c128 = VideoListDataset(small_tree, "list.txt", cache_dir=cache128, **kw)
    for i in range(4):
        assert (raw[i][0] - c128[i][0]).abs().max() < 0.02
        assert clip_levels(c128[i][0]) == clip_levels(raw[i][0])
    # Videos absent from the cache fall back to decoding, and a missing video that IS cached is fine.
    (small_tree / "C0" / "C0_0_1.mp4").unlink()
    again = VideoListDataset(small_tree, "list.txt", cache_dir=cache, **kw)
    assert torch.equal(again[0][0], cached[0][0])


def test_cache_resumes_after_interruption(small_tree, tmp_path):
    cache = tmp_path / "cache"

    def stop_after_two(done, total, rel):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(small_tree, ["list.txt"], cache, short_side=48, progress=stop_after_two)
    assert not (cache / "cache.json").exists()  # no done-marker for an unfinished pass
    assert len(list(cache.rglob("*.npy"))) == 2
    info = prepare_dataset(small_tree, ["list.txt"], cache, short_side=48)
    assert (info["reused"], info["written"]) == (2, 2)
    assert sorted(v["frames"] for v in info["videos"].values()) == [20, 21, 22, 23]
    with pytest.raises(ConfigError, match="short_side=48"):
        prepare_dataset(small_tree, ["list.txt"], cache, short_side=128)


def test_arid_validation_is_a_group_holdout_of_the_training_list(arid_lists, tmp_path):
    """Never the test list, never ARID's *_other.txt (it shares test groups): a group-disjoint
    holdout of the official training list, every class represented, the same for every seed."""
    entries = {s: read_list(arid_lists / f"ARID_split1_{s}.txt") for s in ("train", "test")}
    for rel, _ in entries["train"] + entries["test"]:  # placeholders: only names are read here
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    kw = dict(split=1, list_dir=arid_lists, val_fraction=0.15)
    train, val = (build_dataset("arid", tmp_path, s, **kw) for s in ("train", "val"))
    test = build_dataset("arid", tmp_path, "test", **kw)
    groups = lambda ds: {ds.group_of(rel) for rel, _ in ds.samples}  # noqa: E731
    assert groups(val) and groups(val).isdisjoint(groups(train))
    assert groups(val).isdisjoint(groups(test)) and groups(train).isdisjoint(groups(test))
    assert sorted(train.samples + val.samples) == sorted(entries["train"])
    assert {y for _, y in val.samples} == set(range(11))
    assert 0.10 < len(groups(val)) / (len(groups(val)) + len(groups(train))) < 0.25
    other_seed = build_dataset("arid", tmp_path, "val", seed=5, **kw)
    assert other_seed.samples == val.samples
    with pytest.raises(ConfigError, match="subset"):
        build_dataset("arid", tmp_path, "other", **kw)
