"""Video reading benchmark on ARID-like files: 320x240 MPEG-4 Part 2 AVIs with B-frames.

    python benchmarks/bench_video.py            # 20 videos x 150 frames, 2,000 reads for RSS
    python benchmarks/bench_video.py --quick    # 6 videos x 100 frames, 300 reads

Prints one table: frame-exact ``read_frames`` (which paths served it) vs the same reads decoded from
frame 0 (``backend="pyav"``) vs decord random access (inexact on these files) vs decoding the whole
video; prepared cache vs decoding; a 2-worker DataLoader at 64x112x112 from the
cache; RSS growth over repeated clip reads. Goals are checked and reported, never assumed.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from darknb.data import video  # noqa: E402
from darknb.data.dataset import VideoListDataset  # noqa: E402
from darknb.data.splits import prepare_dataset  # noqa: E402
from darknb.data.synthetic import _scene, _to_uint8, render_lit  # noqa: E402


def _render_clip(scene, cls, rng, T, H, W):
    """A well-lit synthetic clip as uint8 frames ``(T, H, W, 3)`` (darknb.data.synthetic's renderer)."""
    return _to_uint8(render_lit(scene, cls, rng, T, H, W))

T_CLIP = 64


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_videos(root: Path, n: int, frames: int) -> list[str]:
    classes = ("MoveLeft", "MoveRight", "RotateCW", "RotateCCW", "ZoomIn", "ZoomOut")
    rels = []
    for k in range(n):
        cls = classes[k % len(classes)]
        rel = f"{cls}/{cls}_{k // len(classes) + 1}_{k}.avi"
        clip = _render_clip(_scene(0, k, 240, 320), cls, np.random.default_rng([0, k]), frames, 240, 320)
        video.write_video(root / rel, clip, bframes=2, gop=12)  # MPEG-4 Part 2 + B-frames, as ARID
        rels.append(rel)
    (root / "list.txt").write_text("".join(f"{i}\t{i % 6}\t{r}\n" for i, r in enumerate(rels)))
    return rels


def timed(fn, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_videos, n_frames, n_rss = (6, 100, 300) if args.quick else (20, 150, 2000)
    rng = np.random.default_rng(0)
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "arid_like"
        t0 = time.perf_counter()
        rels = make_videos(root, n_videos, n_frames)
        print(f"generated {n_videos} AVIs x {n_frames} frames 320x240 in {time.perf_counter() - t0:.1f}s")
        paths = [root / r for r in rels]
        for p in paths:
            video.probe(p)  # probe once up front (cached): the dataset does the same
        starts = rng.integers(0, n_frames - T_CLIP + 1, size=len(paths))
        clips = [list(range(s, s + T_CLIP)) for s in starts]

        def exact():
            for p, idx in zip(paths, clips):
                video.read_frames(p, idx)

        def decord_random():
            import decord
            wrong = 0
            for p, idx in zip(paths, clips):
                vr = decord.VideoReader(str(p), num_threads=1)
                vr.get_batch(idx).asnumpy()
                del vr
            return wrong

        def from_zero():  # the exact path before pyav-seek: decode forward from frame 0
            for p, idx in zip(paths, clips):
                video.read_frames(p, idx, backend="pyav")

        def whole():
            for p in paths:
                video.read_frames(p, range(video.probe(p).num_frames), backend="pyav")

        exact()  # warm-up (imports, allocator), not timed
        stats0 = dict(video.read_stats)
        t_exact = timed(exact, 3) / len(paths)
        paths_used = {k: v - stats0.get(k, 0) for k, v in video.read_stats.items()
                      if v != stats0.get(k, 0)}
        t_zero = timed(from_zero, 2) / len(paths)
        t_decord = timed(decord_random, 3) / len(paths) if "decord" in video.available_backends() else float("nan")
        t_whole = timed(whole, 1) / len(paths)
        # How wrong is decord here? Compare its frames with the exact ones on every clip.
        n_wrong = 0
        if "decord" in video.available_backends():
            import decord
            for p, idx in zip(paths, clips):
                vr = decord.VideoReader(str(p), num_threads=1)
                n_wrong += not np.array_equal(vr.get_batch(idx).asnumpy(), video.read_frames(p, idx))
                del vr
        served = ", ".join(f"{k} {v}" for k, v in sorted(paths_used.items()))
        rows += [
            (f"read_frames exact, 64-frame clip (served by: {served})", t_exact * 1e3, "ms/clip"),
            ("read_frames backend='pyav' (decode from frame 0), 64-frame clip", t_zero * 1e3, "ms/clip"),
            (f"decord random access (wrong on {n_wrong}/{len(paths)} clips)", t_decord * 1e3, "ms/clip"),
            ("decode whole video (PyAV, all frames RGB)", t_whole * 1e3, "ms/video"),
        ]

        # ---- prepared cache
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        prepare_dataset(root, [root / "list.txt"], cache)
        t_prep = time.perf_counter() - t0
        cache_bytes = sum(f.stat().st_size for f in cache.rglob("*.npy"))

        def from_cache():
            for r, idx in zip(rels, clips):
                np.ascontiguousarray(np.load(cache / (r + ".npy"), mmap_mode="r")[idx])

        t_cache = timed(from_cache, 3) / len(paths)
        rows += [
            ("prepare_dataset (decode + resize 128 + write)", t_prep / len(paths) * 1e3, "ms/video"),
            ("cache read, 64-frame clip (uint8 .npy memmap)", t_cache * 1e3, "ms/clip"),
            ("cache size", cache_bytes / len(paths) / 2**20, "MiB/video"),
        ]

        # ---- DataLoader from the cache, 64 x 112 x 112, 2 workers
        import torch
        ds = VideoListDataset(root, root / "list.txt", num_frames=64, size=112, train=True,
                              cache_dir=cache)
        sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=len(ds) * 4,
                                                 generator=torch.Generator().manual_seed(0))
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, sampler=sampler,
                                             persistent_workers=False)
        t0 = time.perf_counter()
        n_clips = sum(len(b[1]) for b in loader)
        clips_per_s = n_clips / (time.perf_counter() - t0)
        rows.append(("DataLoader 2 workers, 64x112x112 from cache", clips_per_s, "clips/s"))

        # ---- RSS growth over repeated clip reads (warm up first: allocator pools, caches)
        def rss_growth(read_one) -> float:
            for k in range(20):
                read_one(k)
            gc.collect()
            before = rss_mb()
            for k in range(n_rss):
                read_one(k)
            gc.collect()
            return rss_mb() - before

        grow_exact = rss_growth(lambda k: video.read_frames(paths[k % len(paths)], clips[k % len(paths)]))
        rows.append((f"RSS growth, {n_rss} read_frames clips (AVI, {video.last_backend})", grow_exact, "MB"))
        mp4 = Path(tmp) / "h264.mp4"
        video.write_video(mp4, _render_clip(_scene(0, 99, 240, 320), "ZoomIn",
                                            np.random.default_rng(9), n_frames, 240, 320))
        grow_mp4 = rss_growth(lambda k: video.read_frames(mp4, clips[k % len(paths)]))
        rows.append((f"RSS growth, {n_rss} read_frames clips (H.264, {video.last_backend})", grow_mp4, "MB"))
        if "decord" in video.available_backends():
            import decord
            keep = decord.VideoReader(str(mp4), num_threads=1)

            def reuse(k):  # one long-lived reader: what read_frames deliberately avoids
                keep.get_batch(clips[k % len(paths)]).asnumpy()

            rows.append((f"RSS growth, {n_rss} clips, ONE reused decord reader", rss_growth(reuse), "MB"))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement'.ljust(width)}  {'value':>10}  unit")
    for name, value, unit in rows:
        print(f"{name.ljust(width)}  {value:10.2f}  {unit}")

    goals = [
        ("exact reads within 1.5x of decord random access", t_exact <= 1.5 * t_decord,
         f"{t_exact / t_decord:.2f}x (decode from frame 0: {t_zero / t_decord:.2f}x)"),
        ("cache >= 5x faster than decoding (clip read)", t_exact >= 5 * t_cache,
         f"{t_exact / t_cache:.1f}x vs read_frames, {t_whole / t_cache:.1f}x vs whole video"),
        (">= 20 clips/s from the cache", clips_per_s >= 20, f"{clips_per_s:.1f} clips/s"),
        ("RSS growth < 50 MB", max(grow_exact, grow_mp4) < 50, f"{max(grow_exact, grow_mp4):.1f} MB"),
    ]
    print("\ngoals (measured):")
    for name, ok, detail in goals:
        print(f"  [{'met' if ok else 'NOT met'}] {name}: {detail}")


if __name__ == "__main__":
    main()
