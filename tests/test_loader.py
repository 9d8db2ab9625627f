"""darknb.loader: uint8 worker output, the batched device transform, the epoch-keyed sharded sampler."""

from __future__ import annotations

import pytest
import torch

from darknb.data.datasets import SyntheticDark
from darknb.data.loader import (
    ClipBatch,
    ClipKey,
    ClipSampler,
    ClipTransform,
    RawClip,
    ReadyBatch,
    collate_raw,
    make_loader,
)


@pytest.fixture
def synth(tiny_synthetic):
    return tiny_synthetic  # 3 classes x 2 training scenes, every clip also a video file


def test_persistent_workers_return_uint8_and_follow_the_epoch(synth):
    """Workers started in epoch 0 still build epoch 1's clips (the key carries the epoch), and the
    device half applied to a batch gives exactly ``dataset[i]``."""
    ds = SyntheticDark(synth, "train", num_frames=4, size=24, train=True, flip=True, seed=3)
    loader = make_loader(ds, batch_size=3, train=True, num_workers=2, seed=3)
    assert loader.persistent_workers
    orders = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        ds.set_epoch(epoch)  # for ds[i] below (in this process only)
        order = []
        for batch in loader:
            assert batch.frames.dtype == torch.uint8 and batch.frames.shape[-1] == 3
            clips = ds.clip_transform(batch)
            assert clips.shape[1:] == (3, 4, 24, 24) and clips.dtype == torch.float32
            for k, i in enumerate(batch.indices.tolist()):
                # equal up to float rounding: a clip padded to its batch's largest frame blends
                # an edge pixel with its copy where alone it reads the pixel itself
                assert torch.allclose(clips[k], ds[i][0], rtol=0, atol=1e-6)
            order += batch.indices.tolist()
        assert sorted(order) == list(range(len(ds)))
        orders.append(order)
    assert orders[0] != orders[1]  # the shuffle is a function of the epoch too


def test_sampler_shards_training_and_evaluation():
    n = 7
    train = [ClipSampler(n, train=True, seed=0, rank=r, world=2) for r in (0, 1)]
    shards = [s.indices() for s in train]
    assert len(shards[0]) == len(shards[1]) == 4  # padded to 8: equal steps on both
    assert set(shards[0]) | set(shards[1]) == set(range(n))
    evals = [ClipSampler(n, train=False, rank=r, world=2, clips=2, crops=3) for r in (0, 1)]
    assert sorted(evals[0].indices() + evals[1].indices()) == list(range(n))  # no padding
    keys = list(evals[1])
    assert len(keys) == len(evals[1]) == 3 * 6 and keys[0] == ClipKey(1, 0, 0, 2, 0, 3)
    assert [k.view for k in keys[:6]] == list(range(6))
    with pytest.raises(ValueError):
        ClipSampler(n, train=True, clips=2)


def _batch(frames, boxes, flips):
    items = [RawClip(f, torch.tensor(b, dtype=torch.float32), fl, 0, i)
             for i, (f, b, fl) in enumerate(zip(frames, boxes, flips))]
    return collate_raw(items)


def test_clip_transform_resamples_flips_and_scales():
    T, H, W = 2, 8, 12
    ramp = torch.arange(W, dtype=torch.uint8).mul(20).view(1, 1, W, 1).expand(T, H, W, 3).contiguous()
    batch = _batch([ramp, ramp], [(0, 0, 8, 8), (0, 0, 8, 8)], [False, True])
    out = ClipTransform(8)(batch)  # an 8x8 box to 8x8: the pixels themselves
    assert out.shape == (2, 3, T, 8, 8)
    assert torch.equal(out[0, 0, 0, 0], ramp[0, 0, :8, 0].float() / 255)
    assert torch.equal(out[1], out[0].flip(-1))
    half = ClipTransform(4)(_batch([ramp], [(0, 0, 8, 8)], [False]))  # shrink 2x: mean of pairs
    assert torch.allclose(half[0, 0, 0, 0] * 255, torch.tensor([10.0, 50, 90, 130]))
    norm = ClipTransform(8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(batch)
    assert torch.allclose(norm, (out - 0.5) / 0.25)


def test_clips_of_different_sizes_are_padded_without_changing_them():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (2, 10, 14, 3), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (2, 7, 9, 3), dtype=torch.uint8, generator=g)
    boxes = [(1.5, 2.0, 9.5, 13.0), (0.0, 0.25, 7.0, 8.5)]
    both = _batch([a, b], boxes, [False, False])
    assert isinstance(both, ClipBatch) and both.frames.shape == (2, 2, 10, 14, 3)
    alone = [ClipTransform(6)(_batch([x], [box], [False])) for x, box in zip((a, b), boxes)]
    together = ClipTransform(6)(both)
    assert torch.equal(together[0], alone[0][0])  # the largest: not padded
    assert torch.allclose(together[1], alone[1][0], rtol=0, atol=1e-6)  # edge copies: rounding only
    assert collate_raw([None]) is None


def test_workers_can_transform_on_a_cpu_with_identical_clips(synth):
    """Training on a CPU: the workers run the same batched transform; the clips are identical."""
    ds = SyntheticDark(synth, "train", num_frames=4, size=24, train=True, flip=True, seed=3)
    kw = dict(batch_size=3, train=True, num_workers=2, seed=3)
    plain, ready = make_loader(ds, **kw), make_loader(ds, transform_in_workers=True, **kw)
    for loader in (plain, ready):
        loader.sampler.set_epoch(1)
    for a, b in zip(plain, ready):
        assert isinstance(b, ReadyBatch) and torch.equal(a.indices, b.indices)
        assert torch.equal(ds.clip_transform(a), b.clips)
