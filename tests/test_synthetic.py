"""darknb.synthetic: the well-lit pre-training set and the physically darkened target set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from darknb.data import video
from darknb.data.datasets import build_dataset
from darknb.data.framecache import CACHE_MANIFEST, cache_file, default_cache_dir
from darknb.data.lists import read_list
from darknb.data.synthetic import (
    PRETRAIN_CLASSES,
    TARGET_CLASSES,
    Darkening,
    SyntheticSpec,
    make_synthetic_dark,
    render_lit,
    stored_spec,
    synthetic_is_current,
)
from darknb.errors import ConfigError

SMALL = dict(num_classes=3, train_scenes=3, val_scenes=2, test_scenes=3, pretrain_scenes=2,
             pretrain_val_scenes=1, num_frames=6, size=32, video_every=2, seed=3)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dark(tmp_path_factory.mktemp("data") / "synthetic", **SMALL)


def _scenes(rels):
    return {rel.split("/")[-1].split("_")[1] for rel in rels}


def test_layout_lists_and_scene_disjoint_splits(synth):
    manifest = json.loads((synth / "synthetic.json").read_text())
    assert manifest["classes"] == list(TARGET_CLASSES[:3])
    assert set(PRETRAIN_CLASSES).isdisjoint(TARGET_CLASSES)  # pre-training has its own classes
    lists = {s: read_list(synth / "list_cvt" / f"synthetic_split1_{s}.txt") for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in lists.items()} == {"train": 9, "val": 6, "test": 9}
    scenes = {s: _scenes(rel for rel, _ in v) for s, v in lists.items()}
    assert scenes["train"].isdisjoint(scenes["val"]) and scenes["train"].isdisjoint(scenes["test"])
    assert scenes["val"].isdisjoint(scenes["test"])
    for rels in lists.values():  # every scene shows every class once
        per_scene = {}
        for rel, label in rels:
            per_scene.setdefault(_scenes([rel]).pop(), []).append(label)
        assert all(sorted(labels) == [0, 1, 2] for labels in per_scene.values())
    # ARID's line form, and a hash for every file and list
    first = (synth / "list_cvt" / "synthetic_split1_train.txt").read_text().splitlines()[0]
    assert first.split("\t")[0] == "0" and len(first.split("\t")) == 3
    import hashlib
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((synth / rel).read_bytes()).hexdigest() == digest
    lit = read_list(synth / "list_cvt" / "pretrain_train.txt")
    assert len(lit) == 2 * len(PRETRAIN_CLASSES)


def test_every_clip_is_cached_and_video_files_decode_to_the_cached_frames(synth):
    cache = default_cache_dir(synth)
    assert json.loads((cache / CACHE_MANIFEST).read_text())["root"] == str(synth.resolve())
    rels = [rel for s in ("train", "val", "test")
            for rel, _ in read_list(synth / "list_cvt" / f"synthetic_split1_{s}.txt")]
    as_video = [rel for rel in rels if (synth / rel).is_file()]
    assert 0 < len(as_video) < len(rels)  # every 2nd scene is a real video file (lossless H.264)
    for rel in as_video:
        assert np.array_equal(video.read_frames(synth / rel, range(6)), np.load(cache_file(cache, rel)))
    for rel in rels:
        assert np.load(cache_file(cache, rel)).shape == (6, 32, 32, 3)


def test_dark_clips_are_dark_lit_clips_are_not(synth):
    cache = default_cache_dir(synth)
    dark = [np.load(cache_file(cache, rel)).mean() / 255
            for rel, _ in read_list(synth / "list_cvt" / "synthetic_split1_test.txt")]
    lit = [np.load(cache_file(cache, rel)).mean() / 255
           for rel, _ in read_list(synth / "list_cvt" / "pretrain_val.txt")]
    dark_lit = [np.load(cache_file(cache, rel)).mean() / 255
                for rel, _ in read_list(synth / "list_cvt" / "pretrain_val_dark.txt")]
    assert 0.06 < np.mean(dark) < 0.10 and max(dark) < 0.11   # Darkening(mean=0.08), jitter 0.7-1.3
    assert np.mean(lit) > 0.3 and 0.06 < np.mean(dark_lit) < 0.10


def test_darkening_is_the_documented_sensor_model():
    """Constant radiance: the mean is the exposure target, the variance is shot + read noise
    (+ 8-bit rounding): Var = m / photons + sigma^2 + 1 / (12 * 255^2)."""
    dark = Darkening(mean=0.05, jitter=(1.0, 1.0), photons=200.0, read_noise=0.004)
    radiance = np.full((64, 64, 64, 3), 0.5, np.float32)
    y = dark(radiance, np.random.default_rng(0)).astype(np.float64) / 255
    expected_var = 0.05 / 200 + 0.004 ** 2 + 1 / (12 * 255 ** 2)
    assert abs(y.mean() - 0.05) < 0.001
    assert abs(y.var() / expected_var - 1) < 0.05
    with pytest.raises(ConfigError, match="Darkening"):
        Darkening(mean=0.0)


def test_motion_needs_time_reversed_twins_to_be_told_apart():
    from darknb.data.synthetic import _scene

    scene = _scene(0, 1, 32, 32)
    a = render_lit(scene, "MoveLeft", np.random.default_rng(5), 8, 32, 32)
    b = render_lit(scene, "MoveRight", np.random.default_rng(5), 8, 32, 32)
    # the same path travelled in opposite directions: alike on average over time, not frame by frame
    assert np.abs(a.mean(0) - b.mean(0)).mean() < 0.3 * np.abs(a[0] - b[0]).mean()


def test_deterministic_noop_and_regenerated_when_changed(synth, tmp_path):
    other = make_synthetic_dark(tmp_path / "again", **SMALL)
    a = json.loads((synth / "synthetic.json").read_text())["files"]
    assert json.loads((other / "synthetic.json").read_text())["files"] == a  # same seed, same bytes
    manifest = other / "synthetic.json"
    mtime = manifest.stat().st_mtime_ns
    make_synthetic_dark(other, **SMALL)
    assert manifest.stat().st_mtime_ns == mtime  # complete and unchanged: no-op
    assert synthetic_is_current(other, default_cache_dir(other))
    victim = other / next(rel for rel in a if rel.endswith(".mp4"))
    victim.unlink()
    make_synthetic_dark(other, **SMALL)  # incomplete: rendered again, identically
    assert json.loads(manifest.read_text())["files"] == a
    c = make_synthetic_dark(tmp_path / "seed4", **dict(SMALL, seed=4))
    assert json.loads((c / "synthetic.json").read_text())["files"] != a


def test_a_set_given_a_new_cache_keeps_its_spec(synth, tmp_path):
    """ensure_dataset with another cache_dir renders the same set into it: it never replaces a
    small set with the default one (the failure that broke a shared test fixture)."""
    from darknb.config import RunConfig
    from darknb.data.splits import ensure_dataset

    assert stored_spec(synth) == SyntheticSpec(**SMALL)
    before = json.loads((synth / "synthetic.json").read_text())
    cfg = RunConfig(data_root=str(synth), cache_dir=str(tmp_path / "other_cache"))
    ensure_dataset(cfg)
    assert json.loads((synth / "synthetic.json").read_text())["params"] == before["params"]
    assert (tmp_path / "other_cache" / CACHE_MANIFEST).is_file()
    rel = next(iter(before["files"]))
    assert np.array_equal(np.load(cache_file(tmp_path / "other_cache", rel)),
                          np.load(cache_file(default_cache_dir(synth), rel)))
    assert stored_spec(tmp_path / "nothing_here") is None


def test_datasets_read_the_three_splits_and_the_pretraining_set(synth):
    train = build_dataset("synthetic", synth, "train", cache_dir=default_cache_dir(synth), num_frames=4, size=24)
    val = build_dataset("synthetic", synth, "val", cache_dir=default_cache_dir(synth), num_frames=4, size=24)
    assert len(train) == 9 and len(val) == 6 and not val.train and train.classes == list(TARGET_CLASSES[:3])
    lit = build_dataset("synthetic_lit", synth, "val_dark", cache_dir=default_cache_dir(synth), num_frames=4, size=24)
    assert lit.classes == list(PRETRAIN_CLASSES) and len(lit) == len(PRETRAIN_CLASSES)
    clip, label = lit[0]
    assert clip.shape == (3, 4, 24, 24)


@pytest.mark.parametrize("bad", [dict(num_classes=1), dict(num_classes=99), dict(size=8),
                                 dict(train_scenes=0), dict(video_every=0), dict(seed=-1)])
def test_bad_parameters_are_refused_by_name(tmp_path, bad):
    with pytest.raises(ConfigError, match=list(bad)[0]):
        make_synthetic_dark(tmp_path / "x", **bad)
