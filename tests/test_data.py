"""darknb.data: VideoListDataset (sampling, transforms, errors) on the synthetic set and level videos."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from darknb.data.dataset import VideoListDataset, collate_clips
from darknb.data.datasets import SyntheticDark
from darknb.errors import ConfigError, DatasetError, VideoReadError

try:
    from videohelpers import clip_levels, make_level_video
except ImportError:  # tests/ imported as a package
    from tests.videohelpers import clip_levels, make_level_video

@pytest.fixture
def synth(tiny_synthetic):
    return tiny_synthetic  # every clip is also a video file: these datasets decode them


def test_synthetic_dataset(synth):
    ds = SyntheticDark(synth, "train", num_frames=8, size=24)
    assert ds.train and len(ds) == len(ds.targets) and ds.classes[0] == "MoveLeft"
    clip, label = ds[0]
    assert clip.shape == (3, 8, 24, 24) and clip.dtype == torch.float32
    assert 0.0 <= clip.min() and clip.max() <= 1.0 and label == ds.targets[0]
    te = SyntheticDark(synth, "test", num_frames=8, size=24)
    assert not te.train and set(te.samples).isdisjoint(ds.samples)


# ============================================================================ VideoListDataset

@pytest.fixture(scope="module")
def levels(tmp_path_factory):
    """Tiny tree of 'level' videos: frame i has grey level 6*i, so clips reveal their indices."""
    root = tmp_path_factory.mktemp("levels")
    make_level_video(root / "A" / "A_1_1.mp4", 30)
    make_level_video(root / "A" / "A_1_2.avi", 30, bframes=2, gop=6)  # risky codec path
    make_level_video(root / "B" / "B_2_1.mp4", 5)  # shorter than a clip: wraps around
    (root / "list.txt").write_text("0\t0\tA/A_1_1.mp4\n1\t0\tA/A_1_2.avi\n2\t1\tB/B_2_1.mp4\n")
    return root


def test_consecutive_centred_in_test(levels):
    ds = VideoListDataset(levels, "list.txt", num_frames=8, size=16)
    assert ds.classes == ["A", "B"]  # from the paths (no mapping_table.txt here)
    assert clip_levels(ds[0][0]) == list(range(11, 19))  # (30 - 8) // 2 = 11
    assert clip_levels(ds[1][0]) == list(range(11, 19))  # same through the AVI (B-frames)
    # shorter than the clip: looped, the loop centred (clip middle = video middle, frame 2)
    assert clip_levels(ds[2][0]) == [3, 4, 0, 1, 2, 3, 4, 0]


def test_short_videos_loop_from_a_random_start_in_training(levels):
    """DarkLight draws the loop's start in training; darknb used to start every loop at 0."""
    ds = VideoListDataset(levels, "list.txt", num_frames=8, size=16, train=True, seed=1)
    starts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        got = clip_levels(ds[2][0])
        assert got == [(got[0] + k) % 5 for k in range(8)]  # still 8 consecutive looped frames
        starts.add(got[0])
    assert len(starts) >= 3


def test_multi_view_sampling_spreads_clips_and_crops():
    import numpy as np

    from darknb.data.sampling import crop_box, sample_frame_indices

    starts = [int(sample_frame_indices(30, 8, "consecutive", False, None, clip=k, clips=3)[0])
              for k in range(3)]
    assert starts == [0, 11, 22]  # evenly over [0, n - T]; the middle one is the centred clip
    assert sample_frame_indices(30, 8, "consecutive", False, None)[0] == 11
    short = [sample_frame_indices(5, 8, "consecutive", False, None, clip=k, clips=5)[0] for k in range(5)]
    assert sorted(short) == [0, 1, 2, 3, 4]  # every loop start once
    uni = [sample_frame_indices(30, 5, "uniform", False, None, clip=k, clips=3) for k in range(3)]
    assert [u[0] for u in uni] == [1, 3, 5] and all(np.all(np.diff(u) == 6) for u in uni)
    boxes = [crop_box(48, 64, size=16, resize_short=18, train=False, multiscale=False, rng=None,
                      crop=c, crops=3) for c in range(3)]
    centre = crop_box(48, 64, size=16, resize_short=18, train=False, multiscale=False, rng=None)
    assert np.allclose(boxes[1], centre) and boxes[0][1] == 0 and boxes[2][3] == 64
    assert len({tuple(b[[0, 2]]) for b in boxes}) == 1  # same rows: crops slide along the width


def test_consecutive_random_in_train_is_a_function_of_seed_epoch_index(levels):
    kw = dict(num_frames=8, size=16, train=True, seed=5)
    ds, ds2 = VideoListDataset(levels, "list.txt", **kw), VideoListDataset(levels, "list.txt", **kw)
    starts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        ds2.set_epoch(epoch)
        a, b = ds[0][0], ds2[0][0]
        assert torch.equal(a, b)
        idx = clip_levels(a)
        assert idx == list(range(idx[0], idx[0] + 8)) and 0 <= idx[0] <= 22
        starts.add(idx[0])
    assert len(starts) > 2  # offsets (and crops) really change with the epoch
    other_seed = VideoListDataset(levels, "list.txt", **dict(kw, seed=6))
    assert any(not torch.equal(other_seed[i][0], ds[i][0]) for i in range(3))  # seed matters


def test_uniform_sampling(levels):
    ds = VideoListDataset(levels, "list.txt", num_frames=5, size=16, sampling="uniform")
    assert clip_levels(ds[0][0]) == [2, 8, 14, 20, 26]  # centres of 5 segments of 6 frames
    tr = VideoListDataset(levels, "list.txt", num_frames=5, size=16, sampling="uniform", train=True)
    for epoch in range(3):
        tr.set_epoch(epoch)
        got = clip_levels(tr[0][0])
        assert all(6 * k <= i < 6 * (k + 1) for k, i in enumerate(got))


def test_train_augmentation_and_normalize(synth):
    kw = dict(num_frames=4, size=24, return_index=True)
    plain = SyntheticDark(synth, "train", train=True, multiscale=False, flip=False, **kw)
    aug = SyntheticDark(synth, "train", train=True, **kw)
    clip, label, index = aug[3]
    assert index == 3 and clip.shape == (3, 4, 24, 24)
    assert not torch.equal(plain[3][0], clip)
    norm = SyntheticDark(synth, "test", normalize=True, num_frames=4, size=24)
    raw = SyntheticDark(synth, "test", num_frames=4, size=24)
    m, s = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expect = (raw[0][0] - m.view(3, 1, 1, 1)) / s.view(3, 1, 1, 1)
    assert torch.allclose(norm[0][0], expect, atol=1e-6)


def test_parameter_validation(levels):
    for bad in (dict(num_frames=0), dict(size=4), dict(sampling="random"), dict(on_error="ignore"),
                dict(backend="cv2"), dict(seed=-1), dict(flip=True), dict(size=32, resize_short=20),
                dict(mean=(0.5, 0.5, 0.5))):
        with pytest.raises(ConfigError):
            VideoListDataset(levels, "list.txt", **bad)


def test_bad_videos_raise_or_skip(levels, tmp_path):
    root = tmp_path / "bad"
    (root / "A").mkdir(parents=True)
    make_level_video(root / "A" / "A_1_1.mp4", 12)
    (root / "A" / "A_1_2.mp4").write_bytes(b"\x00not a video" * 100)
    (root / "list.txt").write_text("0\t0\tA/A_1_1.mp4\n1\t0\tA/A_1_2.mp4\n2\t0\tA/A_9_9.mp4\n")
    with pytest.raises(DatasetError, match=r"1 of 3 videos.*missing.*A/A_9_9.mp4"):
        VideoListDataset(root, "list.txt", num_frames=4, size=16)
    ds = VideoListDataset(root, "list.txt", num_frames=4, size=16, on_error="skip")
    assert len(ds) == 2 and ds.skipped == [("A/A_9_9.mp4", "missing file")]
    assert ds[0] is not None and ds[1] is None
    assert len(ds.skipped) == 2 and ds.skipped[1][0] == "A/A_1_2.mp4"
    batch = collate_clips([ds[0], ds[1]])
    assert batch[0].shape == (1, 3, 4, 16, 16)
    assert collate_clips([None, None]) is None
    # check(): probe everything up front (in the parent), drop bad ones before workers start.
    ds2 = VideoListDataset(root, "list.txt", num_frames=4, size=16, on_error="skip")
    dropped = ds2.check()
    assert [r for r, _ in dropped] == ["A/A_1_2.mp4"] and len(ds2) == 1
    strict = VideoListDataset(root, "list.txt", num_frames=4, size=16, on_error="skip")
    strict.on_error = "raise"  # (the missing file is gone from .samples; the corrupt one stays)
    with pytest.raises(VideoReadError, match="A_1_2.mp4"):
        strict[1]


def test_path_escape_refused(levels, tmp_path):
    root = tmp_path / "esc"
    (root / "A").mkdir(parents=True)
    make_level_video(tmp_path / "outside.mp4", 4)
    os.symlink(tmp_path / "outside.mp4", root / "A" / "link.mp4")
    for line, why in (("0\t0\t../outside.mp4", r"'\.\.'"), ("0\t0\t/etc/passwd", "absolute"),
                      ("0\t0\tA/link.mp4", "outside the dataset root")):
        (root / "l.txt").write_text("0\t0\tA/ok.mp4\n" + line + "\n")
        with pytest.raises(DatasetError, match=rf"l\.txt:2: .*{why}"):
            VideoListDataset(root, root / "l.txt", on_error="skip")


def test_dataloader_workers_match_main_process(synth):
    ds = SyntheticDark(synth, "train", num_frames=4, size=16, train=True, return_index=True)
    ds.set_epoch(2)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_clips)
    clips, labels, index = next(iter(loader))
    for k in range(4):
        assert torch.equal(clips[k], ds[int(index[k])][0])


def test_small_cache_files_are_kept_in_memory_and_reread_when_rewritten(tmp_path, monkeypatch):
    from darknb.data.framecache import SMALL_FILE, read_cached
    from darknb.files import save_npy

    path = tmp_path / "clip.mp4.npy"
    frames = np.arange(4 * 6 * 6 * 3, dtype=np.uint8).reshape(4, 6, 6, 3)
    save_npy(frames, path)
    first = read_cached(path)
    assert np.array_equal(first, frames) and not first.flags.writeable
    assert read_cached(path) is first  # from memory
    os.utime(path, ns=(1, 1))  # the file "changed": read again
    again = read_cached(path)
    assert again is not first and np.array_equal(again, frames)
    save_npy(frames + 1, path)
    assert np.array_equal(read_cached(path), frames + 1)
    monkeypatch.setenv("DARKNB_CACHE_MEMORY_MB", "0")  # never kept
    other = tmp_path / "other.npy"
    save_npy(frames, other)
    assert read_cached(other) is not read_cached(other)
    big = tmp_path / "big.npy"
    np.save(big, np.zeros(SMALL_FILE + 1, dtype=np.uint8))
    assert isinstance(read_cached(big), np.memmap)  # large files: memory-mapped, read per clip
