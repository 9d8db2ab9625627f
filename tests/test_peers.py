"""DarkLight and LateTemporalModeling3DCNN as their code runs them: input statistics, the gamma
lookup table before the resize, MultiScaleCrop's fixed positions, the classifier's initialisation;
and the loader's exact-crop path.

The expected values are written from the peers' published definitions:
- Ticuby/Darklight-Pytorch ``darklight.py`` (``clip_mean = [0.485, 0.456, 0.406]``, ``clip_std =
  [0.229, 0.224, 0.225]``), ``datasets/img_to_gamma.py`` (the table), ``datasets/ARID.py``
  (``ReadSegmentRGB_light``: table, then ``cv2.resize``), ``video_transforms.py``
  (``MultiScaleCrop``), ``models/dark_light.py`` (``xavier_uniform_``, bias zero);
- artest08/LateTemporalModeling3DCNN ``two_stream_bert2.py`` (``"r2plus1d"`` archs: ``clip_mean =
  [0.43216, 0.394666, 0.37645]``, ``clip_std = [0.22803, 0.22145, 0.216989]``; ``scale_ratios =
  [1.0, 0.875, 0.75, 0.66]``; width 170, height 128, input 112), ``video_transforms.py``
  (the same ``MultiScaleCrop``), ``models/rgb_r2plus1d.py`` (the same classifier init).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from darknb.config import RunConfig
from darknb.data.dataset import VideoListDataset
from darknb.data.framecache import (
    cache_file,
    prepare_dataset,
    read_cached,
    resize_short_uint8,
)
from darknb.data.loader import (
    ClipKey,
    ClipTransform,
    batch_clips,
    collate_raw,
    make_loader,
)
from darknb.data.sampling import (
    crop_box,
    gamma_lut,
    make_raw_clip,
    multiscale_offsets,
    multiscale_sizes,
    with_light_view,
)
from darknb.data.splits import Splits, ensure_light_cache
from darknb.errors import ConfigError
from darknb.models.classifiers import (
    BERTTemporalHead,
    R2Plus1DBERT,
    TwoStreamR2Plus1DBERT,
    create_model,
)

DARKLIGHT_MEAN, DARKLIGHT_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
LATETEMPORAL_MEAN, LATETEMPORAL_STD = [0.43216, 0.394666, 0.37645], [0.22803, 0.22145, 0.216989]


# ------------------------------------------------------------------ the peers' definitions
def darklight_table(gamma):
    """img_to_gamma.gamma_intensity_correction's table, as written there."""
    invGamma = 1.0 / gamma
    return np.array([((i / 255.0) ** invGamma) * 255 for i in np.arange(0, 256)]).astype("uint8")


def their_fill_fix_offset(datum_height, datum_width, height, width):
    """MultiScaleCrop.fillFixOffset (more_fix_crop=True), as written there."""
    h_off = int((datum_height - height) / 4)
    w_off = int((datum_width - width) / 4)
    offsets = []
    offsets.append((0, 0))
    offsets.append((0, 4 * w_off))
    offsets.append((4 * h_off, 0))
    offsets.append((4 * h_off, 4 * w_off))
    offsets.append((2 * h_off, 2 * w_off))
    offsets.append((0, 2 * w_off))
    offsets.append((4 * h_off, 2 * w_off))
    offsets.append((2 * h_off, 0))
    offsets.append((2 * h_off, 4 * w_off))
    offsets.append((1 * h_off, 1 * w_off))
    offsets.append((1 * h_off, 3 * w_off))
    offsets.append((3 * h_off, 1 * w_off))
    offsets.append((3 * h_off, 3 * w_off))
    return offsets


def their_fill_crop_size(input_height, input_width, scale_rates=(1.0, 0.875, 0.75, 0.66), max_distort=1):
    """MultiScaleCrop.fillCropSize, as written there."""
    crop_sizes = []
    base_size = np.min((input_height, input_width))
    for h in range(len(scale_rates)):
        crop_h = int(base_size * scale_rates[h])
        for w in range(len(scale_rates)):
            crop_w = int(base_size * scale_rates[w])
            if np.absolute(h - w) <= max_distort:
                crop_sizes.append((crop_h, crop_w))
    return crop_sizes


# ------------------------------------------------------------------------------- fixtures
H, W, SIZE, SHORT = 48, 64, 21, 24  # native frames; clips of 21 px crop from short side 24


@pytest.fixture(scope="module")
def dark_videos(tmp_path_factory) -> Path:
    """Two lossless videos of dark, fine-grained noise (0-40): the order of a table and a resize
    shows there. Their frame cache at short side 24 (the crop's resized size for 21-px clips)."""
    from darknb.data.video import write_video

    root = tmp_path_factory.mktemp("dark")
    rng = np.random.default_rng(0)
    lines = []
    for k, cls in enumerate(("A", "B")):
        frames = rng.integers(0, 41, size=(10, H, W, 3), dtype=np.uint8)
        write_video(root / cls / f"{cls}_1_1.mp4", frames, lossless=True)
        lines.append(f"{k}\t{k}\t{cls}/{cls}_1_1.mp4\n")
    (root / "list.txt").write_text("".join(lines))
    prepare_dataset(root, [root / "list.txt"], root.parent / f"{root.name}-cache", short_side=SHORT)
    return root


def cache_of(root: Path) -> Path:
    return root.parent / f"{root.name}-cache"


# ---------------------------------------------------------------------------- statistics
class Recorder(nn.Module):
    """A stand-in backbone: records what it is given, returns R(2+1)D's output layout."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        B, _, T = x.shape[:3]
        return torch.zeros(B, 512, max(1, T // 8), 1, 1)


def with_recorder(model):
    model.backbone = Recorder()
    return model


def test_darklight_normalises_both_streams_with_imagenet_statistics_latetemporal_with_kinetics():
    torch.manual_seed(0)
    x = torch.rand(2, 6, 8, 16, 16)
    darklight = with_recorder(TwoStreamR2Plus1DBERT(3, depth=18, num_frames=8))  # input_norm="backbone"
    darklight.forward_features(x)
    mean, std = torch.tensor(DARKLIGHT_MEAN).view(1, 3, 1, 1, 1), torch.tensor(DARKLIGHT_STD).view(1, 3, 1, 1, 1)
    raw, light = darklight.backbone.seen
    torch.testing.assert_close(raw, (x[:, :3] - mean) / std)
    torch.testing.assert_close(light, (x[:, 3:] - mean) / std)  # the loader's view, used as given
    single = with_recorder(R2Plus1DBERT(3, depth=18, num_frames=8))
    single.forward_features(x[:, :3])
    mean = torch.tensor(LATETEMPORAL_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(LATETEMPORAL_STD).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(single.backbone.seen[0], (x[:, :3] - mean) / std)
    with torch.device("meta"):  # the registered models: DarkLight's and LateTemporal's statistics
        assert create_model("two_stream_r2plus1d_34_bert", 11).input_norm == "imagenet"
        assert create_model("r2plus1d_34_bert", 11).input_norm == "kinetics"
    with pytest.raises(ConfigError, match="input_norm"):
        R2Plus1DBERT(3, depth=18, input_norm="imagenet21k")


def test_a_single_view_still_gets_the_in_model_gamma_view():
    """Cost counting and the CPU demo's two-stream pass one view: the model makes the second."""
    torch.manual_seed(0)
    model = with_recorder(TwoStreamR2Plus1DBERT(3, depth=18, num_frames=8, input_norm="clip"))
    x = torch.rand(1, 3, 8, 16, 16) * 0.2
    model.forward_features(x)
    from darknb.models.classifiers import _standardise_clip

    torch.testing.assert_close(model.backbone.seen[1], _standardise_clip(x ** (1 / 1.8)))
    with pytest.raises(ConfigError, match="channels"):
        model.forward_features(torch.rand(1, 4, 8, 16, 16))


# ----------------------------------------------------------------------------- the table
@pytest.mark.parametrize("gamma", [1.8, 1.0, 2.2, 0.5])
def test_gamma_table_is_darklights(gamma):
    assert np.array_equal(gamma_lut(gamma), darklight_table(gamma))
    assert gamma_lut(gamma).dtype == np.uint8


def test_gamma_table_values():
    table = gamma_lut(1.8)
    # truncated, not rounded: .astype("uint8") of ((i / 255) ** (1 / 1.8)) * 255
    assert [int(table[i]) for i in (0, 1, 2, 10, 40, 128, 254, 255)] == [
        int(((i / 255.0) ** (1 / 1.8)) * 255) for i in (0, 1, 2, 10, 40, 128, 254, 255)]
    assert table[1] == 11 and table[255] == 255 and table[0] == 0


def test_gamma_view_is_the_table_on_native_frames_before_the_resize(dark_videos):
    """Decoded videos are native: the worker applies the table, then the crop is resampled."""
    kw = {"num_frames": 4, "size": SIZE}
    one = VideoListDataset(dark_videos, "list.txt", **kw)
    two = VideoListDataset(dark_videos, "list.txt", **kw).add_light_view(1.8)
    clip = two[0][0]
    assert clip.shape == (6, 4, SIZE, SIZE)
    torch.testing.assert_close(clip[:3], one[0][0], rtol=0, atol=0)  # the raw view is unchanged
    rel = two.samples[0][0]
    native = two.frames(rel, two.frame_indices(two.frame_count(rel), None))  # (4, 48, 64, 3)
    box = crop_box(H, W, size=SIZE, resize_short=SHORT, train=False, multiscale=False, rng=None)
    expect = ClipTransform(SIZE)(collate_raw([make_raw_clip(darklight_table(1.8)[native], box, flip=False,
                                                            label=0, index=0)]))[0]
    torch.testing.assert_close(clip[3:], expect, rtol=0, atol=0)
    # the order matters on dark noise: the table after the resize is another image
    after = torch.from_numpy(darklight_table(1.8))[(clip[:3] * 255).round().long()].float() / 255
    assert (after - clip[3:]).abs().mean() > 2 / 255


def test_gamma_view_of_a_frame_cache_is_made_before_its_resize(dark_videos):
    cache = cache_of(dark_videos)
    cfg = RunConfig(dataset="arid", data_root=str(dark_videos), cache_dir=str(cache),
                    model="two_stream_r2plus1d_34_bert")
    assert cfg.light_gamma == 1.8
    ds = VideoListDataset(dark_videos, "list.txt", num_frames=4, size=SIZE, cache_dir=cache)
    with pytest.raises(ConfigError, match="light_cache_dir"):
        VideoListDataset(dark_videos, "list.txt", num_frames=4, size=SIZE, cache_dir=cache).add_light_view(1.8)
    light = ensure_light_cache(cfg, Splits(ds, None, ds))
    assert light == cache.with_name(f"{cache.name}-gamma1.8")
    from darknb.data.video import read_frames

    rel = ds.samples[1][0]
    native = read_frames(dark_videos / rel, range(10))
    table = darklight_table(1.8)
    stored = np.asarray(read_cached(cache_file(light, rel)))
    assert np.array_equal(stored, resize_short_uint8(table[native], SHORT))  # table, then resize
    assert not np.array_equal(stored, table[np.asarray(read_cached(cache_file(cache, rel)))])
    ds.add_light_view(1.8, light)
    clip = ds[1][0]
    assert clip.shape == (6, 4, SIZE, SIZE)
    plain = VideoListDataset(dark_videos, "list.txt", num_frames=4, size=SIZE, cache_dir=light)
    torch.testing.assert_close(clip[3:], plain[1][0], rtol=0, atol=0)  # the light cache's clip
    assert ensure_light_cache(cfg, Splits(ds, None, ds)) == light  # complete: reused as it is


def test_two_view_batches_through_the_loader(dark_videos):
    cache = cache_of(dark_videos)
    cfg = RunConfig(dataset="arid", data_root=str(dark_videos), cache_dir=str(cache),
                    model="two_stream_r2plus1d_34_bert")
    ds = VideoListDataset(dark_videos, "list.txt", num_frames=4, size=SIZE, cache_dir=cache, train=True,
                          crop="multiscale", seed=1)
    ds.add_light_view(1.8, ensure_light_cache(cfg, Splits(ds, None, ds)))
    loader = make_loader(ds, batch_size=2, train=True, seed=1)
    batch = next(iter(loader))
    assert batch.streams == 2 and batch.frames.shape[1] == 8  # 2 streams x 4 frames, stacked in time
    clips = batch_clips(ds, batch)
    assert clips.shape == (2, 6, 4, SIZE, SIZE)
    for k, i in enumerate(batch.indices.tolist()):
        torch.testing.assert_close(clips[k], ds[i][0], rtol=0, atol=0)


def test_with_light_view_stacks_whole_frames():
    frames = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    both = with_light_view(frames, 1.8)
    assert both.shape == (4, 3, 4, 3)
    assert np.array_equal(both[:2], frames) and np.array_equal(both[2:], darklight_table(1.8)[frames])


# --------------------------------------------------------------------------- the crop
def test_multiscale_positions_and_sizes_are_darklights():
    # DarkLight / LateTemporal at the paper's size: 170 x 128 frames, a 112 input
    assert multiscale_offsets(128, 170, 112) == [
        (0, 0), (0, 56), (16, 0), (16, 56), (8, 28),       # corners, centre (steps 4 and 14)
        (0, 28), (16, 28), (8, 0), (8, 56),                 # edge centres
        (4, 14), (4, 42), (12, 14), (12, 42)]               # quarter points
    assert multiscale_sizes(128, 170) == [(128, 128), (128, 112), (112, 128), (112, 112), (112, 96),
                                          (96, 112), (96, 96), (96, 84), (84, 96), (84, 84)]
    for h, w, size in ((128, 170, 112), (128, 171, 112), (256, 340, 224), (37, 37, 32), (24, 32, 21)):
        assert multiscale_offsets(h, w, size) == their_fill_fix_offset(h, w, size, size)
        assert multiscale_sizes(h, w) == their_fill_crop_size(h, w)


def test_multiscale_crop_box_is_their_slice():
    """Every box crop_box draws is MultiScaleCrop's ``cur_img[h_off:h_off + crop_height,
    w_off:w_off + crop_width]`` for one of its 10 sizes and 13 offsets (clipped at the frame's
    edge as numpy slicing clips it), and every one of them is drawn."""
    h, w = 128, 170
    image = np.arange(h * w).reshape(h, w)
    theirs = {}
    for ch, cw in their_fill_crop_size(h, w):
        for top, left in their_fill_fix_offset(h, w, 112, 112):
            cut = image[top:top + ch, left:left + cw]
            theirs[(int(cut[0, 0]), int(cut[-1, -1]) + 1 + w)] = cut.shape
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(4000):
        y0, x0, y1, x1 = crop_box(h, w, size=112, resize_short=128, train=True, multiscale=True, rng=rng,
                                  train_crop="multiscale")
        assert all(float(v).is_integer() for v in (y0, x0, y1, x1))  # frames at the resized size
        cut = image[int(y0):int(y1), int(x0):int(x1)]
        key = (int(cut[0, 0]), int(cut[-1, -1]) + 1 + w)
        assert key in theirs and theirs[key] == cut.shape
        seen.add(key)
    assert seen == set(theirs)  # all 130 (size, offset) pairs (some coincide once clipped)
    # a 128-row crop at row offset 16 keeps 112 rows: clipped as their slicing clips it
    assert any(theirs[k] == (112, 114) for k in theirs)


def old_scale_jitter(H, W, *, size, resize_short, rng):
    """darknb's training crop before train_crop existed (the demo's), transcribed."""
    scale = resize_short / min(H, W)
    h, w = max(size, round(H * scale)), max(size, round(W * scale))
    short = min(h, w)
    sides = [int(short * s) for s in (1.0, 0.875, 0.75, 0.66)]
    pairs = [(a, b) for i, a in enumerate(sides) for j, b in enumerate(sides) if abs(i - j) <= 1]
    ch, cw = pairs[int(rng.integers(len(pairs)))]
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    sy, sx = H / h, W / w
    return np.array([top * sy, left * sx, (top + ch) * sy, (left + cw) * sx])


def test_scale_jitter_is_the_demos_crop_unchanged():
    for seed in range(50):
        for H_, W_, size in ((40, 40, 32), (128, 171, 112), (240, 320, 112)):
            a = crop_box(H_, W_, size=size, resize_short=round(size * 128 / 112), train=True,
                         multiscale=True, rng=np.random.default_rng(seed))
            b = crop_box(H_, W_, size=size, resize_short=round(size * 128 / 112), train=True,
                         multiscale=True, rng=np.random.default_rng(seed), train_crop="scale_jitter")
            c = old_scale_jitter(H_, W_, size=size, resize_short=round(size * 128 / 112),
                                 rng=np.random.default_rng(seed))
            assert np.array_equal(a, c) and np.array_equal(b, c)


def test_crop_auto_is_multiscale_for_the_r2plus1d_models_only():
    assert RunConfig().train_crop == "scale_jitter"  # the demo's vit_bert_tiny
    for model in ("r2plus1d_34_bert", "two_stream_r2plus1d_34_bert", "r2plus1d_bert"):
        assert RunConfig(model=model).train_crop == "multiscale"
    for model in ("vit_bert", "two_stream_bert", "two_stream_bert_tiny", "r2plus1d_bert_tiny"):
        assert RunConfig(model=model).train_crop == "scale_jitter"
    assert RunConfig(model="r2plus1d_34_bert", crop="random").train_crop == "random"
    with pytest.raises(ConfigError, match="'crop'"):
        RunConfig(crop="fixed")
    assert RunConfig(model="two_stream_r2plus1d_34_bert").light_gamma == 1.8
    assert RunConfig(model="two_stream_bert").light_gamma == 1.8
    assert RunConfig(model="two_stream_bert_tiny").light_gamma is None  # the demo's: in the model
    assert RunConfig().light_gamma is None


# ------------------------------------------------------------------- classifier init
def test_bert_heads_initialise_their_classifier_as_bert5():
    torch.manual_seed(0)
    head = BERTTemporalHead(512, 11, num_frames=8)
    bound = math.sqrt(6.0 / (512 + 11))  # xavier_uniform_ (gain 1) of a 512 -> 11 Linear
    assert torch.equal(head.fc.bias, torch.zeros(11))
    assert head.fc.weight.abs().max() <= bound and head.fc.weight.abs().max() > 0.95 * bound
    assert abs(head.fc.weight.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    torch_default = BERTTemporalHead(512, 11, num_frames=8, fc_init="torch")
    assert torch_default.fc.bias.abs().max() > 0  # nn.Linear's own init
    with torch.device("meta"):
        for name in ("vit_bert", "r2plus1d_bert", "r2plus1d_34_bert", "two_stream_bert",
                     "two_stream_r2plus1d_34_bert"):
            assert create_model(name, 11).head.fc_init == "xavier", name
        for name in ("vit_bert_tiny", "two_stream_bert_tiny", "r2plus1d_bert_tiny"):
            assert create_model(name, 11).head.fc_init == "torch", name  # the demo's, unchanged
    with pytest.raises(ConfigError, match="fc_init"):
        BERTTemporalHead(8, 2, num_frames=2, fc_init="orthogonal")


# --------------------------------------------------------------------- exact crops
def test_exact_crops_are_cut_and_resized_with_the_antialiased_filter():
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 20, 26, 3), dtype=torch.uint8, generator=g).numpy()
    box = np.array([2.0, 3.0, 18.0, 19.0])  # a 16 x 16 box, shrunk to 7 x 7
    for flip in (False, True):
        item = make_raw_clip(frames, box, flip=flip, label=0, index=0, exact=True)
        assert item.exact and item.frames.shape == (3, 16, 16, 3)  # cut exactly, no margin
        got = ClipTransform(7)(collate_raw([item]))[0]
        crop = torch.from_numpy(frames[:, 2:18, 3:19]).permute(0, 3, 1, 2).float()
        want = F.interpolate(crop, size=(7, 7), mode="bilinear", antialias=True, align_corners=False)
        want = (want.flip(-1) if flip else want).div(255).clamp(0, 1).transpose(0, 1)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # a flip before vs after: rounding
    # a fractional box never takes this path
    assert not make_raw_clip(frames, box + 0.5, flip=False, label=0, index=0, exact=True).exact


def test_a_mixed_batch_resamples_each_clip_by_its_own_path():
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (2, 12, 12, 3), dtype=torch.uint8, generator=g).numpy()
    exact = make_raw_clip(frames, np.array([0.0, 0.0, 12.0, 12.0]), flip=False, label=0, index=0, exact=True)
    frac = make_raw_clip(frames, np.array([0.5, 0.0, 11.5, 12.0]), flip=True, label=0, index=1)
    both = ClipTransform(6, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.25))(collate_raw([exact, frac]))
    for k, item in enumerate((exact, frac)):
        alone = ClipTransform(6, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.25))(collate_raw([item]))[0]
        torch.testing.assert_close(both[k], alone, rtol=0, atol=1e-6)


def test_which_clips_are_exact(dark_videos, tiny_synthetic):
    """A cache at the crop's resized size gives exact crops; the demo's geometry (36-px synthetic
    frames, virtually resized to 27 for 24-px clips) and decoded native frames do not, so their
    clips are roi_align's as before."""
    from darknb.data.datasets import SyntheticDark

    cached = VideoListDataset(dark_videos, "list.txt", num_frames=4, size=SIZE, cache_dir=cache_of(dark_videos),
                              train=True, crop="multiscale")
    assert all(cached.raw(ClipKey(i, e)).exact for i in range(2) for e in range(3))
    native = VideoListDataset(dark_videos, "list.txt", num_frames=4, size=SIZE)
    assert not native.raw(ClipKey(0)).exact
    demo = SyntheticDark(tiny_synthetic, "train", num_frames=4, size=24, train=True)
    assert not any(demo.raw(ClipKey(i, e)).exact for i in range(len(demo)) for e in range(3))


# -------------------------------------------------------------------------------- predict
def test_predict_gives_darklight_its_gamma_view(dark_videos):
    """``predict`` reads native frames and adds the table's view itself: 6 channels arrive."""
    from darknb.engine.inference import Classifier

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = None

        def forward(self, x):
            self.seen = x
            return torch.zeros(len(x), 2)

    cfg = RunConfig(model="two_stream_r2plus1d_34_bert", num_frames=4, size=SIZE, sampling="consecutive")
    spy = Spy()
    result = Classifier(spy, cfg, ["A", "B"], device="cpu", path=Path("spy.ckpt"))(dark_videos / "A" / "A_1_1.mp4")
    assert spy.seen.shape == (1, 6, 4, SIZE, SIZE) and len(result["top"]) == 2
    assert (spy.seen[:, 3:] >= spy.seen[:, :3] - 1e-6).all()  # gamma 1.8 brightens every pixel


def test_bench_loader_peers_smoke(capsys):
    """benchmarks/bench_loader_peers.py runs both sides and prints its table (speed is measured
    there, never asserted here)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loader_peers.py"
    spec = importlib.util.spec_from_file_location("bench_loader_peers", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--smoke"])
    assert {(r["darknb path"], r["peer path"]) for r in rows} == {("darknb", "LateTemporal"),
                                                                 ("darknb 2 views", "DarkLight")}
    assert all(r["clips/s"] > 0 and r["peer clips/s"] > 0 for r in rows)
    # the same finished clips on both sides: darknb (C, T, H, W), the peers (3T, H, W)
    assert rows[0]["shapes"] == "(3, 8, 112, 112) / (24, 112, 112)"
    assert rows[1]["shapes"] == "(6, 8, 112, 112) / (24, 112, 112)"
    assert "| frames | workers |" in capsys.readouterr().out
