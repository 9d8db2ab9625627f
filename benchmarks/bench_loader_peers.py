"""darknb's loader against the peers' own loading paths, on a CPU, in one process, alternating.

    python benchmarks/bench_loader_peers.py              # 64 videos x 64 frames, 3 rounds
    python benchmarks/bench_loader_peers.py --quick      # 16 videos, 2 rounds (a minute)
    python benchmarks/bench_loader_peers.py --rounds 5 --frames 64 --workers 2

The data: ``--videos`` synthetic dark videos (darknb's renderer and its low-exposure camera model,
``darknb.data.synthetic``), 64 frames at 170 x 128, stored twice, each side's own way:

- the peers' way: JPEG frames on disk, ``<video>/img_%05d.jpg``, written with ``cv2.imwrite``
  (quality 95, its default) as DarkLight's extraction script does, at 170 x 128;
- darknb's way: its frame cache (one uint8 ``.npy`` per video, short side 128; for DarkLight's
  model also the gamma view's cache, the table applied before the resize).

The paths, each ending in finished float clips (normalised, as the peers' loaders deliver them):

- ``LateTemporal``: LateTemporalModeling3DCNN (artest08, ``two_stream_bert2.py`` for
  ``rgb_r2plus1d_64f_34_bert10``, ``datasets/hmdb51.py``, ``video_transforms.py``): the offsets of
  ``__getitem__`` (one segment), ``ReadSegmentRGB`` (``cv2.imread`` per frame, ``cv2.resize`` to
  170 x 128, BGR -> RGB, ``np.concatenate`` to H x W x 3T), ``MultiScaleCrop((112, 112),
  [1, .875, .75, .66])`` (13 fixed offsets, ``cv2.resize`` INTER_LINEAR into float64),
  ``RandomHorizontalFlip``, ``ToTensor`` (``.float().div(255)``), ``Normalize`` (Kinetics).
- ``DarkLight``: Darklight-Pytorch (Ticuby, ``darklight.py``, ``datasets/ARID.py``,
  ``datasets/img_to_gamma.py``, ``video_transforms.py``): the same reading done twice per clip,
  the second time through ``gamma_intensity_correction`` (the table rebuilt for every frame, then
  ``cv2.LUT`` on the native frame, before the resize), one ``MultiScaleCrop`` / flip for both
  views, ``ToTensor``, ``Normalize`` (ImageNet) on each.
- ``darknb``: ``VideoListDataset`` on the frame cache (consecutive frames, ``crop="multiscale"``)
  through ``make_loader(transform_in_workers=True)``: darknb's CPU training path, the batched
  ``ClipTransform`` (exact crops: ``F.interpolate`` antialiased) in the workers; with 0 workers in
  the main process. ``darknb 2 views``: the same with DarkLight's gamma view (6 channels).
  ``--before`` adds ``darknb roi_align``: the same clips resampled by ``roi_align`` (darknb's path
  before exact crops), against LateTemporal too.

It also prints how far the values of the exact-crop path move from roi_align's on the same crops
(grey levels, 0-255), and the uint8 ``F.interpolate`` (measured, not used: it rounds to whole grey
levels after each of its two passes).

Every loader keeps its workers between rounds (``persistent_workers``; the peers' own code starts
fresh workers each epoch, so this favours them) and uses batch 8. The main process runs torch
and OpenCV with ``--threads`` threads (1: a worker's share). Each round times one pass of every
path over the same videos, in a rotating order; the table gives the median clips/s over rounds
and the ratio darknb / peer (LateTemporal against darknb's one view, DarkLight against its two).
Timings on a shared machine are noisy: compare the ratios, measured side by side.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import darknb.data.dataset as dataset_module  # noqa: E402
from darknb.data.dataset import VideoListDataset  # noqa: E402
from darknb.data.framecache import (  # noqa: E402
    CACHE_MANIFEST,
    cache_file,
    cache_manifest,
    prepare_dataset,
    write_cache_file,
)
from darknb.data.loader import (  # noqa: E402
    ClipKey,
    ClipSampler,
    ClipTransform,
    ReadyBatch,
    _RawClips,
    collate_raw,
    make_loader,
)
from darknb.data.sampling import gamma_lut  # noqa: E402
from darknb.data.synthetic import TARGET_CLASSES, Darkening, _scene, render_lit  # noqa: E402
from darknb.files import write_json  # noqa: E402

H, W, S = 128, 170, 112                      # the peers' frame size (width 170, height 128), input 112
SCALES = [1.0, 0.875, 0.75, 0.66]
KINETICS = ([0.43216, 0.394666, 0.37645], [0.22803, 0.22145, 0.216989])  # LateTemporal's r2plus1d
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])                # DarkLight's
GAMMA = 1.8
BATCH = 8


# ------------------------------------------------------------------------------------------ data
def make_data(root: Path, videos: int, frames: int) -> dict:
    """Render the dark videos once; write the peers' JPEG frames and darknb's frame caches."""
    jpeg_root, cache = root / "frames", root / "cache"
    classes = TARGET_CLASSES[:8]
    darken = Darkening()
    rels, manifest = [], {}
    jpeg_bytes = 0
    for k in range(videos):
        cls = classes[k % len(classes)]
        rel = f"{cls}/{cls}_{k // len(classes) + 1}_1"
        rng = np.random.default_rng([0, k])
        clip = darken(render_lit(_scene(0, k, H, W), cls, rng, frames, H, W), rng)  # (T, H, W, 3) RGB
        out = jpeg_root / rel
        out.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(clip, start=1):
            path = out / f"img_{t:05d}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))  # as cv2 writes video frames
            jpeg_bytes += path.stat().st_size
        # written as prepare writes it: the manifest entry holds the file's checksum
        manifest[rel + ".avi"] = write_cache_file(clip, cache_file(cache, rel + ".avi"))
        rels.append((rel, k % len(classes)))
    write_json(cache_manifest(root=root, short_side=H, videos=manifest), cache / CACHE_MANIFEST)
    # the peers' split file: "<path> <frames> <label>"; darknb's: ARID's TAB list
    (root / "peers_split.txt").write_text("".join(f"{r} {frames} {y}\n" for r, y in rels))
    (root / "list.txt").write_text("".join(f"{i}\t{y}\t{r}.avi\n" for i, (r, y) in enumerate(rels)))
    # darknb's gamma view: the table on the native frames, resized as the raw cache (a no-op here)
    table = gamma_lut(GAMMA)
    prepare_dataset(root, [root / "list.txt"], root / "cache-gamma", short_side=H,
                    transform=lambda x: table[x], signature={"transform": "darklight_gamma_lut",
                                                             "gamma": GAMMA},
                    source_cache=cache)
    return {"classes": classes, "jpeg_mb": jpeg_bytes / 1e6,
            "cache_mb": sum(p.stat().st_size for p in cache.rglob("*.npy")) / 1e6}


# ---------------------------------------------------------------------- the peers' loading paths
# Reimplemented from their published code (the operations and their order as written there; the
# argument names are theirs). Both peers share ReadSegmentRGB, the offsets and MultiScaleCrop.
def peer_offset(duration: int, new_length: int) -> int:
    """``__getitem__``'s training offset with ``num_segments=1`` (hmdb51.py / ARID.py)."""
    duration = duration - 1
    average_duration = int(duration / 1)
    average_part_length = int(np.floor((duration - new_length) / 1))
    if average_duration >= new_length:
        return random.randint(0, average_duration - new_length)
    if duration >= new_length:
        return random.randint(0, average_part_length)
    random.randint(0, duration)  # `increase`, multiplied by seg_id = 0
    return 0


def read_segment_rgb(path, offset, new_height, new_width, new_length, duration, gamma=None):
    """``ReadSegmentRGB`` (and, with ``gamma``, DarkLight's ``ReadSegmentRGB_light``)."""
    sampled_list = []
    for length_id in range(1, new_length + 1):
        loaded_frame_index = length_id + offset
        moded_loaded_frame_index = loaded_frame_index % (duration + 1)
        if moded_loaded_frame_index == 0:
            moded_loaded_frame_index = duration + 1
        cv_img_origin = cv2.imread(f"{path}/img_{moded_loaded_frame_index:05d}.jpg", cv2.IMREAD_COLOR)
        if gamma is not None:  # img_to_gamma.gamma_intensity_correction: the table per frame
            inv_gamma = 1.0 / gamma
            lu_table = np.array([((i / 255.0) ** inv_gamma) * 255
                                 for i in np.arange(0, 256)]).astype("uint8")
            cv_img_origin = cv2.LUT(cv_img_origin, lu_table)
        cv_img = cv2.resize(cv_img_origin, (new_width, new_height), cv2.INTER_LINEAR)
        sampled_list.append(cv2.cvtColor(cv_img, cv2.COLOR_BGR2RGB))
    return np.concatenate(sampled_list, axis=2)


def fill_fix_offset(datum_height, datum_width, height, width):
    h_off, w_off = int((datum_height - height) / 4), int((datum_width - width) / 4)
    return [(0, 0), (0, 4 * w_off), (4 * h_off, 0), (4 * h_off, 4 * w_off), (2 * h_off, 2 * w_off),
            (0, 2 * w_off), (4 * h_off, 2 * w_off), (2 * h_off, 0), (2 * h_off, 4 * w_off),
            (1 * h_off, 1 * w_off), (1 * h_off, 3 * w_off), (3 * h_off, 1 * w_off), (3 * h_off, 3 * w_off)]


def fill_crop_size(input_height, input_width, scale_rates, max_distort=1):
    crop_sizes = []
    base_size = np.min((input_height, input_width))
    for h in range(len(scale_rates)):
        crop_h = int(base_size * scale_rates[h])
        for w in range(len(scale_rates)):
            crop_w = int(base_size * scale_rates[w])
            if np.absolute(h - w) <= max_distort:
                crop_sizes.append((crop_h, crop_w))
    return crop_sizes


def multi_scale_crop(views, height=S, width=S, scale_ratios=SCALES):
    """``MultiScaleCrop.__call__`` over one view (LateTemporal) or two (DarkLight), float64 out."""
    h, w, c = views[0].shape
    crop_size_pairs = fill_crop_size(h, w, scale_ratios)
    crop_height, crop_width = crop_size_pairs[random.randint(0, len(crop_size_pairs) - 1)]
    offsets = fill_fix_offset(h, w, height, width)
    h_off, w_off = offsets[random.randint(0, len(offsets) - 1)]
    out = [np.zeros((height, width, c)) for _ in views]
    for frame_id in range(c // 3):
        for clips, scaled in zip(views, out):
            cur_img = clips[:, :, frame_id * 3:frame_id * 3 + 3]
            crop_img = cur_img[h_off:h_off + crop_height, w_off:w_off + crop_width, :]
            scaled[:, :, frame_id * 3:frame_id * 3 + 3] = cv2.resize(crop_img, (width, height),
                                                                     cv2.INTER_LINEAR)
    return out


def flip_to_tensor_normalize(views, mean, std):
    """``RandomHorizontalFlip`` (one draw for every view), ``ToTensor``, ``Normalize``."""
    if random.random() < 0.5:
        views = [np.ascontiguousarray(np.fliplr(v)) for v in views]
    out = []
    for clips in views:
        tensor = torch.from_numpy(clips.transpose((2, 0, 1))).float().div(255.0)
        torch_mean = torch.tensor([[mean]]).view(-1, 1, 1).float()
        torch_std = torch.tensor([[std]]).view(-1, 1, 1).float()
        out.append((tensor - torch_mean) / torch_std)
    return out


class PeerClips(torch.utils.data.Dataset):
    """LateTemporal's (``two_views=False``) or DarkLight's (``True``) training dataset."""

    def __init__(self, root: Path, split: Path, length: int, two_views: bool):
        self.clips = []
        for line in split.read_text().splitlines():
            name, duration, target = line.split()
            self.clips.append((str(root / name), int(duration), int(target)))
        self.length, self.two_views = length, two_views
        stats = IMAGENET if two_views else KINETICS
        self.mean, self.std = stats[0] * length, stats[1] * length

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        path, duration, target = self.clips[index]
        offset = peer_offset(duration, self.length)
        views = [read_segment_rgb(path, offset, H, W, self.length, duration - 1)]
        if self.two_views:  # DarkLight decodes every JPEG again for its gamma view
            views.append(read_segment_rgb(path, offset, H, W, self.length, duration - 1, gamma=GAMMA))
        views = flip_to_tensor_normalize(multi_scale_crop(views), self.mean, self.std)
        return (*views, target)


# ------------------------------------------------------------------------------------- darknb
def darknb_dataset(root: Path, length: int, two_views: bool, classes) -> VideoListDataset:
    ds = VideoListDataset(root, root / "list.txt", num_frames=length, size=S, sampling="consecutive",
                          train=True, crop="multiscale", cache_dir=root / "cache", return_index=True,
                          normalize=True, mean=(IMAGENET if two_views else KINETICS)[0],
                          std=(IMAGENET if two_views else KINETICS)[1], classes=list(classes))
    return ds.add_light_view(GAMMA, root / "cache-gamma") if two_views else ds


class RoiAlignCollate:
    """darknb's path before exact crops: every clip through the batched roi_align."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, items):
        batch = collate_raw(items)
        batch = batch._replace(exact=torch.zeros_like(batch.exact))
        return ReadyBatch(self.transform(batch), batch.labels, batch.indices)


def value_check(root: Path, classes, length: int = 64, clips: int = 8) -> dict:
    """The exact-crop path against roi_align on the same clips (0-255 grey levels), and the
    uint8 interpolation's distance from the float one, with their times per clip (1 thread)."""
    ds = darknb_dataset(root, length, False, classes)
    ds.normalize, ds.clip_transform = False, ClipTransform(S)
    clips = min(clips, len(ds))
    batch = collate_raw([ds.raw(ClipKey(i, 1)) for i in range(clips)])
    exact_cut = dataset_module.make_raw_clip
    try:  # the same clips as darknb cut them before (a pixel of margin, the roi_align path)
        dataset_module.make_raw_clip = lambda *a, **k: exact_cut(*a, **{**k, "exact": False})
        before = collate_raw([ds.raw(ClipKey(i, 1)) for i in range(clips)])
    finally:
        dataset_module.make_raw_clip = exact_cut
    times = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        times[name] = 1e3 * (time.perf_counter() - start) / clips
        return out

    exact = timed("interpolate", lambda: ds.clip_transform(batch)) * 255
    roi = timed("roi_align", lambda: ds.clip_transform(before)) * 255
    u8 = []
    for b, (y0, x0, y1, x1) in enumerate(batch.boxes.int().tolist()):
        crop = batch.frames[b, :, y0:y1, x0:x1].permute(0, 3, 1, 2)
        if batch.flips[b]:
            crop = crop.flip(-1)
        u8.append(F.interpolate(crop, size=(S, S), mode="bilinear", antialias=True).float())
    u8 = torch.stack(u8).transpose(1, 2)
    d, du = (exact - roi).abs(), (u8 - exact).abs()
    return {"interp_vs_roi_max": d.max().item(), "interp_vs_roi_mean": d.mean().item(),
            "interp_vs_roi_p999": d.flatten().kthvalue(int(0.999 * d.numel())).values.item(),
            "u8_vs_float_max": du.max().item(), "u8_vs_float_mean": du.mean().item(),
            "ms_per_clip": times}


# ------------------------------------------------------------------------------------ timing
def one_pass(loader, epoch: int) -> tuple[float, int, tuple]:
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    clips, shape = 0, None
    start = time.perf_counter()
    for batch in loader:
        x = batch.clips if hasattr(batch, "clips") else batch[0]
        clips += len(x)
        shape = tuple(x.shape[1:])
    return time.perf_counter() - start, clips, shape


def measure(root: Path, classes, length: int, workers: int, rounds: int, before: bool = False
            ) -> list[dict]:
    kw = {"batch_size": BATCH, "num_workers": workers, "persistent_workers": workers > 0}
    split = root / "peers_split.txt"
    loaders = {
        "darknb": make_loader(darknb_dataset(root, length, False, classes), batch_size=BATCH,
                              train=True, num_workers=workers, transform_in_workers=True),
        "LateTemporal": torch.utils.data.DataLoader(PeerClips(root / "frames", split, length, False),
                                                    shuffle=True, **kw),
        "darknb 2 views": make_loader(darknb_dataset(root, length, True, classes), batch_size=BATCH,
                                      train=True, num_workers=workers, transform_in_workers=True),
        "DarkLight": torch.utils.data.DataLoader(PeerClips(root / "frames", split, length, True),
                                                 shuffle=True, **kw),
    }
    if before:
        ds = darknb_dataset(root, length, False, classes)
        loaders["darknb roi_align"] = torch.utils.data.DataLoader(
            _RawClips(ds), batch_size=BATCH, sampler=ClipSampler(len(ds), train=True), num_workers=workers,
            collate_fn=RoiAlignCollate(ds.clip_transform), persistent_workers=workers > 0)
    names = list(loaders)
    rates = {n: [] for n in names}
    shapes = {}
    for n in names:  # warm-up: workers started, files in the page cache, nothing timed
        one_pass(loaders[n], 0)
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            seconds, clips, shapes[n] = one_pass(loaders[n], r + 1)
            rates[n].append(clips / seconds)
    del loaders
    rows = []
    pairs = [("darknb", "LateTemporal"), ("darknb 2 views", "DarkLight")]
    pairs += [("darknb roi_align", "LateTemporal")] if before else []
    for ours, theirs in pairs:
        a, b = float(np.median(rates[ours])), float(np.median(rates[theirs]))
        per_round = [x / y for x, y in zip(rates[ours], rates[theirs])]
        rows.append({"frames": length, "workers": workers, "darknb path": ours, "clips/s": a,
                     "peer path": theirs, "peer clips/s": b, "ratio": a / b,
                     "ratio range": f"{min(per_round):.2f}-{max(per_round):.2f}",
                     "shapes": f"{shapes[ours]} / {shapes[theirs]}"})
    return rows


def table(rows: list[dict]) -> str:
    cols = ["frames", "workers", "darknb path", "clips/s", "peer path", "peer clips/s", "ratio",
            "ratio range"]
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 64], help="clip lengths")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads in the main process")
    ap.add_argument("--quick", action="store_true", help="16 videos, 2 rounds")
    ap.add_argument("--smoke", action="store_true", help="4 videos, 1 round, 8 frames, 0 workers (tests)")
    ap.add_argument("--before", action="store_true", help="add darknb's roi_align path (slow)")
    args = ap.parse_args(argv)
    if args.quick:
        args.videos, args.rounds = 16, 2
    if args.smoke:
        args.videos, args.rounds, args.frames, args.workers = 4, 1, [8], [0]
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    random.seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        info = make_data(root, args.videos, max(64, max(args.frames)))
        print(f"{args.videos} dark videos x {max(64, max(args.frames))} frames at {W}x{H}: JPEG frames "
              f"{info['jpeg_mb']:.1f} MB, darknb frame cache {info['cache_mb']:.1f} MB "
              f"(made in {time.perf_counter() - t0:.0f} s); torch {torch.__version__}, OpenCV "
              f"{cv2.__version__}, {os.cpu_count()} CPUs, {args.threads} main-process thread(s)")
        check = value_check(root, info["classes"])
        print("values, exact crops (F.interpolate, antialiased) vs roi_align on the same 64-frame "
              f"clips: max |d| {check['interp_vs_roi_max']:.2f}, mean {check['interp_vs_roi_mean']:.3f} "
              f"(99.9th percentile {check['interp_vs_roi_p999']:.2f}) grey levels; uint8 F.interpolate vs float: max {check['u8_vs_float_max']:.2f}, mean "
              f"{check['u8_vs_float_mean']:.3f}; ms per clip (whole transform, 1 thread): "
              + ", ".join(f"{k} {v:.1f}" for k, v in check["ms_per_clip"].items()))
        for length in args.frames:
            for workers in args.workers:
                got = measure(root, info["classes"], length, workers, args.rounds, args.before)
                for row in got:
                    print(f"  {length} frames, {workers} workers: {row['darknb path']} "
                          f"{row['clips/s']:.2f} clips/s vs {row['peer path']} "
                          f"{row['peer clips/s']:.2f} ({row['ratio']:.2f}x)", flush=True)
                rows += got
    print(f"\nclips/s, median of {args.rounds} alternating rounds, batch {BATCH}, {S}x{S} crops "
          "(ratio: darknb / peer; range over rounds)")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
