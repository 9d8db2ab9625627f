"""The teacher as the paper runs it: enhancement of native-resolution frames before resizing, from
an enhanced frame cache, with the student's clips and the teacher's clips the same crops."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from darknb.config import RunConfig
from darknb.data.framecache import CACHE_MANIFEST
from darknb.data.framecache import resize_short_uint8 as _resize_short_uint8
from darknb.data.splits import build_datasets, prepare_cache
from darknb.data.video import probe, read_frames
from darknb.engine.checkpoint import load_checkpoint
from darknb.engine.distill import TeacherCache
from darknb.engine.stages import train_student, train_teacher
from darknb.engine.teacher import load_teacher
from darknb.errors import ConfigError, TrainingError
from darknb.files import RunDir, read_json
from darknb.models.enhancers import GammaCorrection, IdentityEnhancer, enhance_uint8, enhancer_signature


def prepare_enhanced(cfg, enhancer, cache_dir=None):
    """The enhanced frame cache through the cache's generic transform (what the teacher's
    ensure_enhanced_cache does with its Zero-DCE)."""
    return prepare_cache(cfg, transform=partial(enhance_uint8, enhancer),
                         signature=enhancer_signature(enhancer), cache_dir=cache_dir)


@pytest.fixture
def cfg(tiny_synthetic, tmp_path):
    # the tiny set's raw cache is beside it (cache_dir="auto"); its clips are also video files
    return RunConfig(data_root=str(tiny_synthetic), output_dir=str(tmp_path / "online"), epochs=2,
                     batch_size=4, num_frames=4, size=32, sampling="uniform", enhancer="none",
                     seed=0, save_every=1, val_fraction=0.0, pretrained="", teacher_input="online")


def test_enhanced_cache_is_enhance_then_the_raw_resize(cfg, tmp_path):
    gamma = GammaCorrection(1.8)
    report = prepare_enhanced(cfg, gamma, cache_dir=tmp_path / "gamma")
    raw = read_json(cfg.frame_cache / CACHE_MANIFEST)
    lists = {line.split("\t")[2].strip() for name in ("train", "val", "test")
             for line in (Path(cfg.data_root) / "list_cvt" / f"synthetic_split1_{name}.txt").read_text().splitlines()}
    assert report["written"] == len(lists) and report["transform"]["gamma"] == 1.8
    rel = sorted(lists)[0]
    # the native frames: the video file (lossless: the same as the rendered, cached frames)
    native = read_frames(cfg.data_root + "/" + rel, range(probe(cfg.data_root + "/" + rel).num_frames))
    assert np.array_equal(native, np.load(cfg.frame_cache / (rel + ".npy")))
    enhanced = np.round(255 * (native / 255.0) ** (1 / 1.8))  # enhance the native frames ...
    expected = _resize_short_uint8(enhanced.astype(np.uint8), raw["short_side"])  # ... then resize
    cached = np.load(tmp_path / "gamma" / (rel + ".npy"))
    assert cached.shape == tuple(raw["videos"][rel]["shape"])
    assert np.abs(cached.astype(int) - expected.astype(int)).max() <= 1  # float32 vs float64 rounding
    # the same clip of the same item: the raw crop, enhanced before instead of after resizing
    student = build_datasets(cfg).train
    teacher = build_datasets(cfg.replace(cache_dir=str(tmp_path / "gamma"))).train
    for ds in (student, teacher):
        ds.set_epoch(1)
    raw_clip, enh_clip = student[2][0], teacher[2][0]
    after = raw_clip.clamp(0, 1) ** (1 / 1.8)
    assert enh_clip.shape == raw_clip.shape
    assert (enh_clip - after).abs().mean() < 0.02 < (enh_clip - raw_clip).abs().mean()


def test_an_enhanced_cache_refuses_another_enhancer_and_raw_frames(cfg, tmp_path):
    prepare_enhanced(cfg, GammaCorrection(1.8), cache_dir=tmp_path / "gamma")
    with pytest.raises(ConfigError, match="gamma"):
        prepare_enhanced(cfg, GammaCorrection(2.2), cache_dir=tmp_path / "gamma")
    with pytest.raises(ConfigError, match="raw"):
        prepare_enhanced(cfg, GammaCorrection(1.8), cache_dir=cfg.frame_cache)
    again = prepare_enhanced(cfg, GammaCorrection(1.8), cache_dir=tmp_path / "gamma")
    assert again["written"] == 0 and again["reused"] > 0  # resumable, like the raw cache


def _weights(result):
    return load_checkpoint(result["checkpoint"])["model"]


def test_enhanced_cache_teacher_and_its_kd_targets_equal_the_online_ones_for_an_identity(cfg, tmp_path):
    """With the identity enhancer the enhanced cache IS the raw cache, so the two paths must train
    the same teacher and, through the prefilled targets, the same distilled student."""
    cached_cfg = cfg.replace(output_dir=str(tmp_path / "cached"), teacher_input="enhanced_cache")
    online = train_teacher(cfg, build_datasets(cfg), progress=False)
    cached = train_teacher(cached_cfg, build_datasets(cached_cfg), progress=False)
    assert cached["enhancer"]["teacher_input"] == "enhanced_cache"
    assert cached["enhancer"]["enhanced_cache"]["dir"] == str(cached_cfg.enhanced_frame_cache)
    assert online["history"] == cached["history"]
    a, b = _weights(online), _weights(cached)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    teacher = load_teacher(cached_cfg, RunDir(cached_cfg.output_dir).checkpoint("teacher"), build_datasets(cached_cfg))
    assert teacher.enhanced_cache == str(tmp_path / "cached" / "enhanced_cache")
    assert isinstance(teacher.enhancer, IdentityEnhancer) and load_teacher(cfg, RunDir(cfg.output_dir).checkpoint("teacher"), build_datasets(cfg)).enhanced_cache is None
    online_targets, cached_targets = TeacherCache(), TeacherCache()
    student_online = train_student(cfg, build_datasets(cfg), teacher_cache=online_targets, progress=False)
    student_cached = train_student(cached_cfg, build_datasets(cached_cfg), teacher_cache=cached_targets, progress=False)
    assert student_cached["teacher_seconds"] > 0  # the targets were computed up front ...
    assert online_targets.store.keys() == cached_targets.store.keys()  # ... for every clip seen ...
    for key, logits in online_targets.store.items():  # ... and are the same (up to batching)
        torch.testing.assert_close(cached_targets.store[key], logits, atol=1e-5, rtol=1e-5)
    # the students: the same up to Adam's amplification of those float-rounding differences
    a, b = _weights(student_online), _weights(student_cached)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=1e-3)


def test_the_student_never_gets_enhanced_cache_targets_from_raw_clips(cfg, tmp_path):
    from darknb.engine.teacher import _PrefilledTargetsOnly

    with pytest.raises(TrainingError, match="missing from the teacher cache"):
        _PrefilledTargetsOnly()(torch.rand(1, 3, 4, 32, 32))
    cached_cfg = cfg.replace(output_dir=str(tmp_path / "cached"), teacher_input="enhanced_cache",
                             enhanced_cache_dir=str(tmp_path / "elsewhere"))
    train_teacher(cached_cfg.replace(epochs=1), build_datasets(cached_cfg.replace(epochs=1)), progress=False)
    assert (tmp_path / "elsewhere" / CACHE_MANIFEST).is_file()
    teacher = load_teacher(cached_cfg, RunDir(cached_cfg.output_dir).checkpoint("teacher"), build_datasets(cached_cfg))
    (tmp_path / "elsewhere" / CACHE_MANIFEST).unlink()  # a lost cache must not fall back to raw videos
    with pytest.raises(ConfigError, match="elsewhere"):
        train_student(cached_cfg.replace(output_dir=str(tmp_path / "student"), epochs=1), build_datasets(cached_cfg.replace(output_dir=str(tmp_path / "student"), epochs=1)), teacher=teacher, progress=False)
    with pytest.raises(ConfigError, match="teacher_input"):
        RunConfig(teacher_input="enhanced")


def test_the_students_cache_must_be_raw(cfg, tmp_path):
    from darknb.data.splits import ensure_dataset

    prepare_enhanced(cfg, GammaCorrection(1.8), cache_dir=tmp_path / "gamma")
    with pytest.raises(ConfigError, match="enhanced frames"):
        ensure_dataset(cfg.replace(cache_dir=str(tmp_path / "gamma")))
    ensure_dataset(cfg)  # the raw one is fine


def test_the_synthetic_sets_clips_that_live_only_in_its_cache_are_enhanced_too(tmp_path):
    from conftest import TINY_SPEC

    from darknb.data.synthetic import make_synthetic_dark

    root = make_synthetic_dark(tmp_path / "data" / "synthetic", **{**TINY_SPEC, "video_every": 2})
    cfg = RunConfig(data_root=str(root), output_dir=str(tmp_path / "run"), pretrained="")
    train = build_datasets(cfg).train
    cache_only = [rel for rel, _ in train.samples if not (Path(root) / rel).is_file()]
    assert cache_only  # the demo's case: most clips are not video files
    prepare_enhanced(cfg, GammaCorrection(1.8))
    rel = cache_only[0]
    raw = np.load(cfg.frame_cache / (rel + ".npy"))
    enhanced = np.load(cfg.enhanced_frame_cache / (rel + ".npy"))
    assert np.array_equal(enhanced, np.round(255 * (raw / 255.0) ** (1 / 1.8)).astype(np.uint8))
