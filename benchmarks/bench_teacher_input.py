"""Teacher epoch time: Zero-DCE online on every resized crop vs. an enhanced frame cache.

    python benchmarks/bench_teacher_input.py                 # demo size: the synthetic set, 10 epochs
    python benchmarks/bench_teacher_input.py --epochs 3 --threads 1

Both runs train the demo teacher (``RunConfig()`` defaults: vit_bert_tiny, 8 x 32 x 32 clips, batch
8) with the SAME Zero-DCE (fitted once, ``--fit-steps`` steps, then passed as a checkpoint) on the
same data: ``teacher_input="online"`` (Zero-DCE on each 32-px training and validation crop) and
``"enhanced_cache"`` (Zero-DCE once on every native 96x72 frame, then the raw cache's resize).
Prints seconds per training epoch, wall (``fit``'s train_seconds / epochs: training steps plus
the per-epoch validation pass) and CPU (process time of ``train_teacher`` / epochs, steadier on a
shared machine), the one-time cost of writing the enhanced cache, and after how many epochs the
cache has paid for itself. Wall-clock depends on whatever else the machine runs: run it twice, or
in both orders (``--cached-first``), before trusting a difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darknb.config import RunConfig  # noqa: E402
from darknb.data.splits import build_datasets, ensure_dataset  # noqa: E402
from darknb.engine.stages import train_teacher  # noqa: E402
from darknb.engine.teacher import build_teacher_enhancer, ensure_enhanced_cache  # noqa: E402
from darknb.models.enhancers import build_enhancer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--fit-steps", type=int, default=20, help="Zero-DCE fit (its quality does not matter here)")
    parser.add_argument("--data-root", default="data/synthetic")
    parser.add_argument("--cache-dir", default="auto")
    parser.add_argument("--cached-first", action="store_true", help="run the enhanced-cache teacher first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        # from scratch (pretrained=""): the weights do not change the time an epoch takes
        base = RunConfig(data_root=args.data_root, cache_dir=args.cache_dir, epochs=args.epochs,
                         enhancer_fit_steps=args.fit_steps, save_every=args.epochs, output_dir=tmp,
                         pretrained="")
        ensure_dataset(base)
        enhancer_dir = Path(tmp) / "enhancer"
        build_teacher_enhancer(base, build_datasets(base).train, enhancer_dir)
        checkpoint = str(next(enhancer_dir.glob("*_fitted.pth")))
        runs = {mode: base.replace(teacher_input=mode, enhancer_checkpoint=checkpoint,
                                   output_dir=str(Path(tmp) / mode))
                for mode in (("enhanced_cache", "online") if args.cached_first else ("online", "enhanced_cache"))}
        rows = {}
        for mode, cfg in runs.items():
            cache = {"wall": 0.0, "cpu": 0.0}
            if mode == "enhanced_cache":  # written here so its cost is timed apart from training
                wall, cpu = time.perf_counter(), time.process_time()
                ensure_enhanced_cache(cfg, build_enhancer(cfg.enhancer, checkpoint=checkpoint))
                cache = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
            wall, cpu = time.perf_counter(), time.process_time()
            result = train_teacher(cfg, build_datasets(cfg), progress=False)  # reuses the cache written above
            cpu = time.process_time() - cpu
            rows[mode] = {"epoch_s": result["train_seconds"] / cfg.epochs,
                          "epoch_cpu_s": cpu / cfg.epochs,  # all of train_teacher, test pass included
                          "cache_s": cache["wall"], "cache_cpu_s": cache["cpu"],
                          "top1": result["metrics"]["top1"]}

    print(f"teacher epoch time, demo size ({base.model}, {base.num_frames}x{base.size}x{base.size}, "
          f"batch {base.batch_size}), {args.epochs} epochs, {args.threads} CPU threads, "
          f"torch {torch.__version__}; wall = fit's train_seconds / epochs, CPU = process time")
    print(f"{'teacher_input':>15} {'wall s/epoch':>13} {'CPU s/epoch':>12} {'cache wall s':>13} "
          f"{'cache CPU s':>12} {'test top-1':>10}")
    for mode, row in rows.items():
        print(f"{mode:>15} {row['epoch_s']:13.2f} {row['epoch_cpu_s']:12.2f} {row['cache_s']:13.1f} "
              f"{row['cache_cpu_s']:12.1f} {row['top1']:10.1f}")
    for unit, key, cache_key in (("wall", "epoch_s", "cache_s"), ("CPU", "epoch_cpu_s", "cache_cpu_s")):
        online, cached = rows["online"][key], rows["enhanced_cache"][key]
        if online > cached:
            print(f"{unit}: the enhanced cache saves {online - cached:.2f} s per epoch ({online / cached:.2f}x) "
                  f"and pays for itself after {rows['enhanced_cache'][cache_key] / (online - cached):.1f} epochs")
        else:
            print(f"{unit}: no per-epoch saving measured")


if __name__ == "__main__":
    main()
