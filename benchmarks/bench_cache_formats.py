"""Frame cache formats side by side (issue 18 item 3), and the cost of verifying the cache (issue 15
item 2), measured through the code as training runs it.

    python benchmarks/bench_cache_formats.py                 # everything (~10 min on 2 busy cores)
    python benchmarks/bench_cache_formats.py --part formats  # the format table only
    python benchmarks/bench_cache_formats.py --part verify   # the verification cost per epoch only
    python benchmarks/bench_cache_formats.py --smoke         # seconds: that every section runs

Sets are built here, from darknb's synthetic renderer:

- **ARID-like**: dark clips rendered at 320x240 (``render_lit`` + ``Darkening``), written as
  MPEG-4 Part 2 AVIs with B-frames (ARID's codec) and prepared at short side 128 (170x128) by
  ``prepare_dataset`` in every format. Reads are ``VideoListDataset.raw`` of 64x112x112
  consecutive training clips (the worker half of the loader: frames, crop box, flip). ARID's
  videos (~100 frames, > 4 MB raw) take the large-file path (a memory-mapped .npy, a container
  decoding only the clip's frames), forced here for these 64-frame ones, with darknb's in-memory
  copy off, as it is for a 25 GB cache; files are in the page cache (a disk-bound epoch favours
  the smaller formats further).
- **peers**: the same decoded frames stored as the peers store them (one JPEG per frame at native
  320x240; DarkLight's published extraction writes them with ``cv2.imwrite``, quality 95; the
  ffmpeg command line's default, ``ffmpeg -i v.avi img_%05d.jpg``, is reproduced with PyAV's
  mjpeg encoder at libavcodec's defaults), read back as their loaders do (``cv2.imread`` per
  frame, BGR->RGB, resize to 170x128), then the same crop.
- **demo**: the synthetic set's own 8-frame 40x40 clips, rendered into a cache of every format,
  read through ``VideoListDataset.raw`` at 8x32x32 as the demo reads them (small files kept in
  memory): the first pass of a process (decode + verify) and the later ones.

Every format's pass over the clips is timed in turn, rounds alternate the order, and the table
prints medians and the median of the per-round ratios to ``npy``. The verification cost: one
demo epoch (``vit_bert_tiny``, 8x32x32, batch 16, ``fit`` with 1 epoch: training, validation,
test) in a fresh-process state (darknb's memory and verified-file record cleared) with the
checksums checked, and with the check replaced by a no-op, alternating; medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darknb.data import framecache  # noqa: E402
from darknb.data.dataset import VideoListDataset  # noqa: E402
from darknb.data.framecache import FORMATS, cache_file, prepare_dataset  # noqa: E402
from darknb.data.loader import ClipKey  # noqa: E402
from darknb.data.synthetic import Darkening, TARGET_CLASSES, _scene, make_synthetic_dark, render_lit  # noqa: E402
from darknb.data.video import read_frames, write_video  # noqa: E402

try:
    import cv2
except ImportError:  # the peers' rows then use Pillow, and say so
    cv2 = None


# =========================================================================== sets

def make_arid_like(root: Path, n: int, frames: int) -> list[str]:
    """``n`` dark 320x240 MPEG-4 AVIs (B-frames, as ARID) of ``frames`` frames; ``list.txt``."""
    rels = []
    for k in range(n):
        cls = TARGET_CLASSES[k % len(TARGET_CLASSES)]
        rng = np.random.default_rng([7, k])
        dark = Darkening()(render_lit(_scene(7, k, 240, 320), cls, rng, frames, 240, 320), rng)
        rel = f"{cls}/{cls}_{k}_1.avi"
        write_video(root / rel, dark, bframes=2, gop=12)
        rels.append(rel)
    (root / "list.txt").write_text("".join(f"{i}\t{i % 9}\t{r}\n" for i, r in enumerate(rels)))
    return rels


def write_peer_frames(root: Path, rels: list[str], out: Path, how: str) -> None:
    """Each video's frames as the peers store them: ``out/<video>/img_00001.jpg ...`` at native
    size. ``how``: "darklight" (cv2.imwrite, quality 95) or "ffmpeg" (libavcodec's mjpeg at the
    ffmpeg command line's defaults: rate control at 200 kb/s, qmin 2, qmax 31)."""
    import av

    for rel in rels:
        frames = read_frames(root / rel, range(_frame_total(root / rel)))
        folder = out / Path(rel).with_suffix("")
        folder.mkdir(parents=True, exist_ok=True)
        if how == "darklight":
            for i, frame in enumerate(frames, start=1):
                _imwrite(folder / f"img_{i:05d}.jpg", frame)
            continue
        container = av.open(str(folder / "img_%05d.jpg"), "w", format="image2")
        stream = container.add_stream("mjpeg", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuvj420p"
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuvj420p")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        container.close()


def _frame_total(path: Path) -> int:
    from darknb.data.video import probe

    return probe(path).num_frames


def _imwrite(path: Path, frame: np.ndarray) -> None:
    if cv2 is not None:
        cv2.imwrite(str(path), frame[..., ::-1])  # DarkLight: cv2.imwrite's default quality, 95
    else:
        from PIL import Image

        Image.fromarray(frame).save(path, quality=95)


def _imread(path: Path) -> np.ndarray:
    if cv2 is not None:
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _resize(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    if cv2 is not None:
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))


def peer_read(folder: Path, n_frames: int, T: int, rng: np.random.Generator, size: int = 112
              ) -> np.ndarray:
    """A peer loader's clip: T consecutive JPEGs (random start), imread, resized to short side
    128, cropped ``size`` at a random position (the crop as darknb's raw clip)."""
    start = int(rng.integers(0, n_frames - T + 1))
    frames = [_resize(_imread(folder / f"img_{i + 1:05d}.jpg"), 170, 128) for i in range(start, start + T)]
    clip = np.stack(frames)
    y, x = int(rng.integers(0, 128 - size + 1)), int(rng.integers(0, 170 - size + 1))
    return np.ascontiguousarray(clip[:, y:y + size, x:x + size])


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def cache_mb(cache: Path, fmt: str, rels: list[str]) -> float:
    return sum(cache_file(cache, rel, fmt).stat().st_size for rel in rels) / 1e6


# =========================================================================== timing

def alternate(passes: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each pass per round, the order rotated every round."""
    names = list(passes)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            passes[name](r)
            out[name].append(time.perf_counter() - t)
    return out


def ratio_to(times: dict[str, list[float]], base: str, name: str) -> float:
    """Median over rounds of speed(name) / speed(base) (>1: faster than base)."""
    return statistics.median(b / t for b, t in zip(times[base], times[name]))


def fresh_process_state() -> None:
    """As a new process starts: no frame in darknb's memory, no file verified yet."""
    framecache._memory.clear()
    framecache._verified.clear()


def raw_pass(ds: VideoListDataset, *, fresh: bool) -> callable:
    def run(r: int) -> None:
        if fresh:
            fresh_process_state()
        for i in range(len(ds)):
            ds.raw(ClipKey(i, r))
    return run


# =========================================================================== parts

def part_formats(work: Path, args) -> list[dict]:
    rows = []
    # ---- ARID-like: 64-frame 320x240 AVIs -> short side 128
    root = work / f"arid_like_{args.videos}x{args.frames}"
    t = time.perf_counter()
    if (root / "list.txt").is_file():  # kept in --work-dir from an earlier run
        rels = [line.split("\t")[2] for line in (root / "list.txt").read_text().splitlines()]
    else:
        rels = make_arid_like(root, args.videos, args.frames)
    print(f"[bench] {args.videos} ARID-like videos ({args.frames} frames, 320x240 MPEG-4) in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    for old in [*work.glob("cache_*"), *work.glob("peer_*"), work / "demo"]:
        shutil.rmtree(old, ignore_errors=True)  # every cache written (and timed) anew
    datasets, prepare_s = {}, {}
    for fmt in FORMATS:
        t = time.perf_counter()
        prepare_dataset(root, ["list.txt"], work / f"cache_{fmt}", short_side=128, cache_format=fmt)
        prepare_s[fmt] = (time.perf_counter() - t) / len(rels)
        datasets[fmt] = VideoListDataset(root, "list.txt", cache_dir=work / f"cache_{fmt}",
                                         num_frames=args.frames, size=112, resize_short=128,
                                         sampling="consecutive", train=True)
    peers = {}
    for how in ("darklight", "ffmpeg"):
        write_peer_frames(root, rels, work / f"peer_{how}", how)
        peers[how] = [work / f"peer_{how}" / Path(rel).with_suffix("") for rel in rels]

    def peer_pass(how):
        def run(r):
            rng = np.random.default_rng([r])
            for folder in peers[how]:
                peer_read(folder, args.frames, args.frames, rng)
        return run

    os.environ["DARKNB_CACHE_MEMORY_MB"] = "0"  # a 25 GB cache does not fit darknb's 512 MB
    small, framecache.SMALL_FILE = framecache.SMALL_FILE, 0  # ARID's videos: the large-file path
    npy_mb = cache_mb(work / "cache_npy", "npy", rels) / len(rels)
    try:
        # first pass of a process (every file verified) and the later passes (read only)
        for state, fresh in (("later passes", False), ("first pass of a process", True)):
            passes = {fmt: raw_pass(ds, fresh=fresh) for fmt, ds in datasets.items()}
            if not fresh:
                passes.update({f"peers: {how}": peer_pass(how) for how in peers})
            for p in passes.values():  # warm-up: page cache, codecs
                p(0)
            times = alternate(passes, args.rounds)
            for name in passes:
                fmt = name if name in FORMATS else None
                mb = (cache_mb(work / f"cache_{fmt}", fmt, rels) if fmt else
                      folder_mb(work / f"peer_{name.split(': ')[1]}")) / len(rels)
                rows.append(dict(set=f"ARID-like {args.frames}x112x112 (170x128 cache), {state}",
                                 format=name, lossless=FORMATS[fmt].lossless if fmt else False,
                                 mb_per_clip=mb, size_vs_npy=npy_mb / mb,
                                 clips_per_s=len(rels) / statistics.median(times[name]),
                                 speed_vs_npy=ratio_to(times, "npy", name),
                                 prepare_ms=prepare_s.get(fmt, float("nan")) * 1e3))
    finally:
        framecache.SMALL_FILE = small
        os.environ.pop("DARKNB_CACHE_MEMORY_MB")

    # ---- pixel fidelity of the lossy rows (dark frames: what an enhancer amplifies)
    ref = datasets["npy"].frames(rels[0], range(args.frames)).astype(int)
    jpeg = datasets["jpeg"].frames(rels[0], range(args.frames)).astype(int)
    print(f"[bench] jpeg cache vs the decoded frames (first video, mean level {ref.mean():.1f}): "
          f"mean |diff| {np.abs(jpeg - ref).mean():.2f}, max {np.abs(jpeg - ref).max()} grey levels")

    # ---- the demo's clips: 8 frames at 40x40, read at 8x32x32, small files kept in memory
    demo_root = work / "demo" / "synthetic"
    spec = dict(train_scenes=args.demo_scenes, val_scenes=1, test_scenes=1, pretrain_scenes=1,
                pretrain_val_scenes=1)
    demo = {}
    for fmt in FORMATS:
        make_synthetic_dark(demo_root, cache_dir=work / "demo" / f"cache_{fmt}", cache_format=fmt, **spec)
        demo[fmt] = VideoListDataset(demo_root, "list_cvt/synthetic_split1_train.txt",
                                     cache_dir=work / "demo" / f"cache_{fmt}", num_frames=8,
                                     size=32, sampling="uniform", train=True)
    demo_rels = [rel for rel, _ in demo["npy"].samples]
    npy_mb = cache_mb(work / "demo" / "cache_npy", "npy", demo_rels) / len(demo_rels)
    for state, fresh in (("first pass of a process", True), ("later passes", False)):
        passes = {fmt: raw_pass(ds, fresh=fresh) for fmt, ds in demo.items()}
        for p in passes.values():
            p(0)
        times = alternate(passes, args.rounds)
        for fmt in FORMATS:
            mb = cache_mb(work / "demo" / f"cache_{fmt}", fmt, demo_rels) / len(demo_rels)
            rows.append(dict(set=f"demo 8x32x32 (40x40 cache), {state}", format=fmt,
                             lossless=FORMATS[fmt].lossless, mb_per_clip=mb, size_vs_npy=npy_mb / mb,
                             clips_per_s=len(demo_rels) / statistics.median(times[fmt]),
                             speed_vs_npy=ratio_to(times, "npy", fmt), prepare_ms=float("nan")))
    return rows


def part_verify(work: Path, args) -> dict:
    """One demo epoch with and without checking the cache's checksums, alternating."""
    from darknb.config import RunConfig
    from darknb.data.splits import build_datasets, ensure_dataset
    from darknb.engine.build import build_classifier
    from darknb.engine.loop import fit

    root = work / "verify" / "synthetic"
    cfg = RunConfig(data_root=str(root), output_dir=str(work / "verify" / "run"), epochs=1,
                    warmup_epochs=0, pretrained="", resume=False)
    spec = {} if not args.smoke else dict(train_scenes=2, val_scenes=1, test_scenes=1,
                                          pretrain_scenes=1, pretrain_val_scenes=1)
    t = time.perf_counter()
    make_synthetic_dark(root, cache_dir=cfg.frame_cache, **spec)
    ensure_dataset(cfg)
    splits = build_datasets(cfg)
    print(f"[bench] demo set ({len(splits.train)} train, {len(splits.val)} val, {len(splits.test)} "
          f"test clips) in {time.perf_counter() - t:.0f} s", flush=True)
    verify = framecache._verify
    spent = {"wall": 0.0, "cpu": 0.0, "files": 0}

    def timed_verify(*a):  # the real check, its time summed (wall and this process's CPU)
        w, c = time.perf_counter(), time.process_time()
        try:
            verify(*a)
        finally:
            spent["wall"] += time.perf_counter() - w
            spent["cpu"] += time.process_time() - c
            spent["files"] += 1

    inside = {"wall": [], "cpu": [], "files": [], "epoch_cpu": []}

    def epoch(check: bool):
        def run(r):
            fresh_process_state()
            spent.update(wall=0.0, cpu=0.0, files=0)
            framecache._verify = timed_verify if check else (lambda path, data, stamp, checksum: None)
            c = time.process_time()
            try:
                model = build_classifier(cfg, len(splits.train.classes))
                fit(model, splits, cfg, name=f"verify_{check}_{r}", progress=False)
            finally:
                framecache._verify = verify
            if check and r >= 0:
                inside["epoch_cpu"].append(time.process_time() - c)
                for k in ("wall", "cpu", "files"):
                    inside[k].append(spent[k])
        return run

    passes = {"checked": epoch(True), "not checked": epoch(False)}
    epoch(True)(-1)  # warm-up: imports, the first fit's one-time costs
    times = alternate(passes, args.verify_rounds)
    on, off = statistics.median(times["checked"]), statistics.median(times["not checked"])
    paired = statistics.median(a - b for a, b in zip(times["checked"], times["not checked"]))
    return dict(checked_s=on, unchecked_s=off, paired_diff_s=paired, percent=100 * paired / off,
                rounds=args.verify_rounds, times=times,
                verify_wall_s=statistics.median(inside["wall"]),
                verify_cpu_s=statistics.median(inside["cpu"]), files=int(statistics.median(inside["files"])),
                verify_wall_pct=statistics.median(100 * w / t for w, t in zip(inside["wall"], times["checked"])),
                verify_cpu_pct=statistics.median(100 * c / e for c, e in zip(inside["cpu"], inside["epoch_cpu"])))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["formats", "verify", "all"], default="all")
    parser.add_argument("--videos", type=int, default=12, help="ARID-like videos")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--demo-scenes", type=int, default=12, help="x 9 demo clips")
    parser.add_argument("--verify-rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs")
    parser.add_argument("--work-dir", default=None, help="keep the sets here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.videos, args.frames, args.rounds, args.demo_scenes, args.verify_rounds = 2, 8, 1, 1, 1
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_cache_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"[bench] {os.cpu_count()} CPUs (shared with other jobs: compare the ratios, measured "
          f"side by side, not absolute numbers); peers' JPEG via {'OpenCV' if cv2 else 'Pillow'}",
          flush=True)
    try:
        if args.part in ("formats", "all"):
            rows = part_formats(work, args)
            print("\n| set | format | lossless | MB per clip | size vs npy | clips/s | speed vs npy | prepare ms/video |")
            print("|---|---|---|---:|---:|---:|---:|---:|")
            for r in rows:
                print(f"| {r['set']} | {r['format']} | {'yes' if r['lossless'] else 'NO'} | "
                      f"{r['mb_per_clip']:.3f} | {r['size_vs_npy']:.1f}x smaller | {r['clips_per_s']:.0f} | "
                      f"{r['speed_vs_npy']:.2f}x | {r['prepare_ms']:.0f} |")
        if args.part in ("verify", "all"):
            v = part_verify(work, args)
            print(f"\n[bench] one demo epoch (fit, 1 epoch: train + val + test, in a fresh process "
                  f"state), median of {v['rounds']} rounds, alternating:")
            print(f"[bench]   time inside the checksum check: {v['verify_wall_s']:.3f} s wall "
                  f"({v['verify_wall_pct']:.2f} % of the epoch), {v['verify_cpu_s']:.3f} s CPU "
                  f"({v['verify_cpu_pct']:.2f} % of the epoch's CPU), {v['files']} files verified "
                  "(each once per process: all of it on a process's first epoch)")
            print(f"[bench]   epoch wall time, checks on {v['checked_s']:.2f} s vs off "
                  f"{v['unchecked_s']:.2f} s; paired difference {v['paired_diff_s']:+.2f} s "
                  f"({v['percent']:+.1f} %; on a shared machine this difference is noise-bound, the "
                  "timed check above is the cost)")
            print(f"[bench]   per round: on {[round(t, 2) for t in v['times']['checked']]}, "
                  f"off {[round(t, 2) for t in v['times']['not checked']]}")
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
