"""Peak memory of ``python -m darknb predict`` on a long HD video, one view vs the 10x3 protocol.

    python benchmarks/bench_predict.py                      # 3,000 frames of 1280x720 H.264
    python benchmarks/bench_predict.py --frames 300 --repeats 1   # a quick look
    python benchmarks/bench_predict.py --code /path/to/other/checkout   # the same, other darknb

Generates the video once (streamed to the encoder: never all frames in memory) and a finished
checkpoint of the demo's student (``vit_bert_tiny``, T = 8, 32 px, uniform sampling; random
weights: memory does not depend on them), then runs ``predict --protocol 1x1`` and ``--protocol
10x3`` in fresh processes under ``/usr/bin/time -v``, alternating, and prints the maximum resident
set size of each (median over repeats) and their ratio. ``--code`` runs another checkout's darknb
on the same files (e.g. the commit before a change), so before / after come from one run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_video(path: Path, *, frames: int, width: int, height: int, fps: int = 30) -> Path:
    """A dark H.264 MP4 of ``frames`` frames: a moving gradient with sensor-like noise, encoded
    one frame at a time."""
    import av

    if path.is_file():
        return path
    tmp = path.with_suffix(".part.mp4")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "28"}
        for i in range(frames):
            base = 20 + 15 * np.sin((xx + 4 * i) / 90.0) * np.cos(yy / 70.0)
            noise = rng.integers(0, 6, size=(height, width), dtype=np.uint8)
            grey = (base + noise).clip(0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(grey[..., None], 3, axis=2), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def make_checkpoint(path: Path) -> Path:
    """A finished checkpoint of the demo's student (the demo's config, random weights)."""
    import torch

    from darknb.config import RunConfig
    from darknb.engine.build import build_classifier
    from darknb.engine.checkpoint import save_checkpoint

    if path.is_file():
        return path
    cfg = RunConfig(epochs=1, pretrained="", output_dir=str(path.parent))
    classes = [f"class{k}" for k in range(9)]
    torch.manual_seed(0)
    model = build_classifier(cfg, len(classes))
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 1, "config": cfg.to_dict(),
                           "classes": classes, "best": {"epoch": 0}, "name": "student_s0"})
    return path


def peak_rss_mb(code: Path, video: Path, ckpt: Path, protocol: str) -> tuple[float, float]:
    """(max RSS in MB, wall seconds) of one ``predict`` process running ``code``'s darknb."""
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="2")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "darknb", "predict", str(video),
           "--checkpoint", str(ckpt), "--protocol", protocol, "--device", "cpu"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(code))
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
    seconds = sum(float(part) * 60 ** k for k, part in enumerate(reversed(wall.split(":"))))
    return rss / 1024, seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "darknb_bench_predict"))
    parser.add_argument("--code", action="append", default=[],
                        help="another darknb checkout to measure too (repeatable)")
    args = parser.parse_args(argv)

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    video = make_video(work / f"dark_{args.frames}f_{args.width}x{args.height}.mp4",
                       frames=args.frames, width=args.width, height=args.height)
    ckpt = make_checkpoint(work / "student_s0.ckpt")
    codes = {"this checkout": REPO, **{str(c): Path(c).resolve() for c in args.code}}
    protocols = ("1x1", "10x3")
    runs = {(name, p): [] for name in codes for p in protocols}
    for _ in range(args.repeats):  # alternating, so a change in machine load hits every column
        for name, code in codes.items():
            for p in protocols:
                runs[(name, p)].append(peak_rss_mb(code, video, ckpt, p))
    print(f"predict on {video.name} ({args.frames} frames, {args.width}x{args.height} H.264), "
          f"demo student (T = 8, 32 px, uniform); median of {args.repeats} fresh processes")
    print(f"{'code':<40} {'protocol':>8} {'max RSS (MB)':>13} {'wall (s)':>9}")
    report = {}
    for name in codes:
        for p in protocols:
            rss = statistics.median(r for r, _ in runs[(name, p)])
            wall = statistics.median(s for _, s in runs[(name, p)])
            report[(name, p)] = rss
            print(f"{name:<40} {p:>8} {rss:13.0f} {wall:9.2f}")
        print(f"{name:<40} {'10x3/1x1':>8} {report[(name, '10x3')] / report[(name, '1x1')]:13.2f}")
    return {f"{n} {p}": v for (n, p), v in report.items()}


if __name__ == "__main__":
    main()
