"""Training throughput: is the GPU fed? Model-only, loader-only and end-to-end clips/s side by side.

    python benchmarks/bench_train.py             # paper size on a GPU, the demo's on a CPU
    python benchmarks/bench_train.py --paper     # ViT-B/16 + BERT, 64 x 112^2 (needs a GPU)
    python benchmarks/bench_train.py --compile   # + torch.compile rows
    python benchmarks/bench_train.py --demo      # the demo's size (tiny ViT, 8 x 32^2)
    python benchmarks/bench_train.py --smoke     # seconds on a CPU (the test suite runs it)

Sections (each printed as a table, all numbers also in ``--json``):
- peak: a measured matmul peak (bf16 8192^3 on a GPU, fp32 on a CPU), the MFU denominator;
- model: one training step (forward + backward + AdamW) on clips already on the device, per batch
  size: clips/s, TFLOP/s (3 x the counted forward FLOPs: backward = 2 x forward), MFU, peak memory;
- loader: clips/s delivered ready on the device from a prepared frame cache, by the old path
  (float32 clips built in fresh workers every epoch) and the new one (uint8 from persistent
  workers, resize/crop/flip/scale batched on the device), and raw items read in one process;
- end-to-end: ``darknb.train.fit`` on that cache (the engine as the stages run it), clips/s of
  its steady epochs;
- inference: ms per clip at one batch size: student, teacher with Zero-DCE at native 240 x 320,
  two-stream, R(2+1)D + BERT; student fp32 vs bf16; Zero-DCE alone fp32 vs bf16 channels-last;
- ratios: end-to-end / model-only, new loader / old loader, loader / model-only (>= 1: the loader
  keeps up).
Numbers are measured and printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darknb.config import RunConfig  # noqa: E402
from darknb.data.dataset import VideoListDataset, collate_clips  # noqa: E402
from darknb.data.loader import ClipKey, make_loader  # noqa: E402
from darknb.data.splits import Splits  # noqa: E402
from darknb.data.framecache import CACHE_MANIFEST, cache_manifest, write_cache_file  # noqa: E402
from darknb.files import write_json  # noqa: E402
from darknb.models.classifiers import NativeResolutionTeacher, create_model, list_models  # noqa: E402
from darknb.models.enhancers import ZeroDCE  # noqa: E402
from darknb.study.flops import count_flops  # noqa: E402

NUM_CLASSES = 11  # ARID's

SIZES = {
    # model, T, S, batch sizes, end-to-end batch, timed steps, warm-up steps, native frame (H, W),
    # frames per cached video, videos per epoch (end-to-end), inference batch, matmul n
    "paper": dict(model="vit_bert", T=64, S=112, batches=[2, 8, 16, 32], e2e_batch=32, steps=10,
                  warmup=3, native=(240, 320), video_frames=80, e2e_videos=512, infer_batch=16,
                  matmul=8192, workers=min(16, os.cpu_count() or 1), epochs=3, repeats=5),
    "demo": dict(model="vit_bert_tiny", T=8, S=32, batches=[8, 32], e2e_batch=8, steps=8,
                 warmup=2, native=(72, 96), video_frames=40, e2e_videos=96, infer_batch=8,
                 matmul=1024, workers=min(2, os.cpu_count() or 1), epochs=3, repeats=3),
    "smoke": dict(model="vit_bert_tiny", T=2, S=16, batches=[2], e2e_batch=2, steps=2,
                  warmup=1, native=(16, 24), video_frames=4, e2e_videos=4, infer_batch=1,
                  matmul=128, workers=1, epochs=2, repeats=1),
}
TINY = {"vit_bert": "vit_bert_tiny", "two_stream_bert": "two_stream_bert_tiny",
        "r2plus1d_bert": "r2plus1d_bert_tiny"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


# ---------------------------------------------------------------------------------------- peak
def matmul_peak(device: torch.device, n: int, repeats: int = 10) -> dict:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    seconds = (time.perf_counter() - start) / repeats
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "tflops": 2 * n**3 / seconds / 1e12}


# ----------------------------------------------------------------------------------- model-only
def forward_flops(model_name: str, T: int, S: int, **kw) -> int:
    with torch.device("meta"):
        model = create_model(model_name, NUM_CLASSES, img_size=S, num_frames=T, **kw)
    return count_flops(model, input_shape=(1, 3, T, S, S), device="meta", train=True)["flops"]


def model_only(model_name: str, T: int, S: int, batch: int, *, steps: int, warmup: int,
               device: torch.device, bf16: bool, compile_: bool, flops_per_clip: int,
               peak_tflops: float) -> dict:
    torch.manual_seed(0)
    model = create_model(model_name, NUM_CLASSES, img_size=S, num_frames=T).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compile_ else model
    x = torch.rand(batch, 3, T, S, S, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)

    def step():
        with autocast(device, bf16):
            loss = F.cross_entropy(forward(x).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    reset_memory(device)
    tick = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm_seconds = time.perf_counter() - tick
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    clips_per_s = batch * steps / (time.perf_counter() - start)
    tflops = clips_per_s * 3 * flops_per_clip / 1e12
    return {"batch": batch, "compile": compile_, "clips_per_s": clips_per_s, "tflops": tflops,
            "mfu": tflops / peak_tflops, "peak_gib": peak_memory_gib(device),
            "warmup_s": warm_seconds}


# --------------------------------------------------------------------------------------- loader
def make_cached_set(root: Path, *, videos: int, frames: int, native: tuple[int, int], S: int,
                    distinct: int = 16) -> tuple[Path, Path]:
    """A dataset that exists only as a prepared frame cache (uint8 .npy per video, short side as
    ``prepare`` writes it): ``distinct`` dark noise videos, hard-linked under ``videos`` names."""
    H, W = native
    short = 128 if H >= 128 else H  # as `prepare` writes: short side 128 (synthetic: native)
    h, w = short, round(W * short / H)
    cache = root / "cache"
    rng = np.random.default_rng(0)
    base, entries = [], []
    for k in range(distinct):
        arr = (rng.gamma(2.0, 6.0, size=(frames, h, w, 3))).clip(0, 255).astype(np.uint8)
        base.append(cache / "base" / f"{k}.npy")
        entries.append(write_cache_file(arr, base[-1], "npy"))
    lines, videos_ = [], {}
    for i in range(videos):
        rel = f"C{i % NUM_CLASSES}/C{i % NUM_CLASSES}_{i}_1.avi"
        target = cache / f"{rel}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(base[i % distinct], target)
        except OSError:
            target.write_bytes(base[i % distinct].read_bytes())
        videos_[rel] = entries[i % distinct]
        lines.append(f"{i}\t{i % NUM_CLASSES}\t{rel}\n")
    (root / "list.txt").write_text("".join(lines))
    # the manifest with every file's checksum, as prepare writes it (datasets read only such a cache)
    write_json(cache_manifest(root=root, short_side=h, videos=videos_), cache / CACHE_MANIFEST)
    return root / "list.txt", cache


def dataset_for(root: Path, list_file: Path, cache: Path, T: int, S: int, *, train: bool,
                limit: int | None = None) -> VideoListDataset:
    ds = VideoListDataset(root, list_file, num_frames=T, size=S, sampling="consecutive",
                          train=train, cache_dir=cache, return_index=True,
                          classes=[f"C{k}" for k in range(NUM_CLASSES)])
    if limit is not None:
        ds.samples = ds.samples[:limit]
    return ds


def loader_old(ds, batch: int, workers: int, device: torch.device, epochs: int) -> float:
    """float32 clips built in the workers, fresh workers every epoch (the engine before issue 9)."""
    clips = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                             collate_fn=collate_clips, persistent_workers=False,
                                             pin_memory=device.type == "cuda")
        for x, y, _ in loader:
            x.to(device, non_blocking=True)
            clips += len(y)
    sync(device)
    return clips / (time.perf_counter() - start)


def loader_new(ds, batch: int, workers: int, device: torch.device, epochs: int, *,
               transform: bool = True) -> float:
    """uint8 from persistent workers, the clip transform batched on the device; the first epoch
    (worker start-up) is not timed: persistent workers pay it once per run. ``transform=False``:
    the uint8 batches only, what the workers deliver (on a CPU the transform competes with them)."""
    loader = make_loader(ds, batch_size=batch, train=True, num_workers=workers)
    clips, start = 0, None
    for epoch in range(epochs + 1):
        if epoch == 1:
            sync(device)
            start = time.perf_counter()
        loader.sampler.set_epoch(epoch)
        for b in loader:
            b = b.to(device, non_blocking=True)
            out = ds.clip_transform(b) if transform else b.frames
            clips += len(out) if epoch else 0
    sync(device)
    return clips / (time.perf_counter() - start)


def raw_in_process(ds, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        ds.raw(ClipKey(i % len(ds), 0))
    return n / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------- end-to-end
def end_to_end(ds_train, ds_test, model_name: str, T: int, S: int, batch: int, *, workers: int,
               epochs: int, out: Path, compile_: bool) -> dict:
    from darknb.engine.loop import fit

    cfg = RunConfig(model=model_name, num_frames=T, size=S, batch_size=batch, epochs=epochs,
                    num_workers=workers, output_dir=str(out), save_every=10**6, resume=False,
                    sampling="consecutive", lr=1e-4, compile=compile_, seed=0)
    torch.manual_seed(0)
    model = create_model(model_name, NUM_CLASSES, img_size=S, num_frames=T)
    result = fit(model, Splits(ds_train, None, ds_test), cfg, name="bench", progress=False)
    steady = result["speed"][1:] or result["speed"]
    clips = sum(s["clips"] for s in steady)
    return {"batch": batch, "compile": compile_, "clips_per_s": clips / sum(s["seconds"] for s in steady),
            "epochs_timed": len(steady), "first_epoch_s": result["speed"][0]["seconds"]}


# ----------------------------------------------------------------------------------- inference
def per_clip_ms(model, x, *, device, bf16: bool, repeats: int) -> float:
    model = model.to(device).eval()
    with torch.inference_mode(), autocast(device, bf16):
        model(x)
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        sync(device)
    return (time.perf_counter() - start) / repeats / x.shape[0] * 1e3


def inference_table(size: str, T: int, S: int, batch: int, native, *, device, bf16: bool,
                    repeats: int) -> list[dict]:
    def name(n):
        return TINY.get(n, n) if size != "paper" else n

    rows = []
    clip = torch.rand(batch, 3, T, S, S, device=device)
    big = torch.rand(batch, 3, T, *native, device=device) * 0.1
    torch.manual_seed(0)
    student = create_model(name("vit_bert"), NUM_CLASSES, img_size=S, num_frames=T)
    rows.append({"model": f"student {name('vit_bert')}", "input": f"{T}x{S}^2",
                 "ms_per_clip": per_clip_ms(student, clip, device=device, bf16=bf16, repeats=repeats)})
    zdce = ZeroDCE()
    if bf16:
        zdce.set_precision(torch.bfloat16, channels_last=True)
    teacher = NativeResolutionTeacher(zdce, create_model(name("vit_bert"), NUM_CLASSES, img_size=S,
                                                         num_frames=T), S)
    rows.append({"model": "teacher Zero-DCE (native) + ViT + BERT", "input": f"{T}x{native[0]}x{native[1]}",
                 "ms_per_clip": per_clip_ms(teacher, big, device=device, bf16=bf16, repeats=repeats)})
    for base in ("two_stream_bert", "r2plus1d_bert", "r2plus1d_34_bert"):
        if name(base) not in list_models():
            continue  # r2plus1d_34_bert arrives with issue 10's baselines
        model = create_model(name(base), NUM_CLASSES, img_size=S, num_frames=T)
        rows.append({"model": name(base), "input": f"{T}x{S}^2",
                     "ms_per_clip": per_clip_ms(model, clip, device=device, bf16=bf16, repeats=repeats)})
    if bf16:  # the same student in fp32, for the precision row
        rows.append({"model": f"student {name('vit_bert')}, fp32", "input": f"{T}x{S}^2",
                     "ms_per_clip": per_clip_ms(student, clip, device=device, bf16=False, repeats=repeats)})
    frames = big[0].transpose(0, 1).contiguous()  # (T, 3, H, W): one clip's native frames
    exact = ZeroDCE()
    rows.append({"model": "Zero-DCE alone, fp32", "input": f"{T}x{native[0]}x{native[1]}",
                 "ms_per_clip": per_clip_ms(exact, frames[None].transpose(1, 2), device=device,
                                            bf16=False, repeats=repeats)})
    if device.type == "cuda":
        fast = ZeroDCE().set_precision(torch.bfloat16, channels_last=True)
        rows.append({"model": "Zero-DCE alone, bf16 channels-last", "input": f"{T}x{native[0]}x{native[1]}",
                     "ms_per_clip": per_clip_ms(fast, frames[None].transpose(1, 2), device=device,
                                                bf16=False, repeats=repeats)})
    for row in rows:
        row["batch"] = batch
    return rows


# ------------------------------------------------------------------------------------- printing
def table(title: str, rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [[k for k in keys]] + [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    lines = [f"== {title}"] + ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def main(argv=None) -> dict:
    threads = torch.get_num_threads()
    try:
        return _main(argv)
    finally:  # leave the process as found (the test suite calls main in-process)
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def _main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny sizes: seconds on a CPU")
    mode.add_argument("--demo", action="store_true", help="the demo's sizes (CPU)")
    mode.add_argument("--paper", action="store_true", help="the paper's sizes (GPU)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (model + end-to-end)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (--smoke: 1; on a shared CPU, oversubscribed "
                             "OpenMP threads can cost 10x)")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: "
                                                    "model,loader,e2e,inference")
    parser.add_argument("--json", default=None, help="write every number to this file")
    args = parser.parse_args(argv)
    size = ("smoke" if args.smoke else "demo" if args.demo else "paper" if args.paper
            else "paper" if torch.cuda.is_available() else "demo")
    p = dict(SIZES[size])
    if args.workers is not None:
        p["workers"] = args.workers
    skip = set(filter(None, args.skip.split(",")))
    # freshly initialised Zero-DCE drives activations into subnormal floats, which cost a CPU ~45x
    # (see README, "Subnormal weights"); trained weights do not: time what a trained model costs
    torch.set_flush_denormal(True)
    threads = args.threads or (1 if size == "smoke" else None)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if size == "paper" and device.type != "cuda":
        print("[bench] paper size needs a GPU; on a CPU use --demo or --smoke", file=sys.stderr)
    T, S = p["T"], p["S"]
    report = {"size": size, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else
              f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
              "precision": "bf16 autocast" if bf16 else "fp32", "model": p["model"],
              "clip": f"3x{T}x{S}x{S}", "workers": p["workers"]}
    print(f"[bench] {size}: {p['model']} on {report['clip']}, {report['device']}, {report['precision']}")

    report["peak"] = matmul_peak(device, p["matmul"])
    print(table("peak (matmul)", [report["peak"]]))
    flops = forward_flops(p["model"], T, S)
    report["gflops_forward_per_clip"] = flops / 1e9

    compiles = [False, True] if args.compile else [False]
    if "model" not in skip:
        report["model_only"] = [model_only(p["model"], T, S, b, steps=p["steps"], warmup=p["warmup"],
                                           device=device, bf16=bf16, compile_=c, flops_per_clip=flops,
                                           peak_tflops=report["peak"]["tflops"])
                                for c in compiles for b in p["batches"]]
        print(table(f"model only: train step, {flops / 1e9:.3g} GFLOPs forward per clip",
                    report["model_only"]))

    with tempfile.TemporaryDirectory(prefix="darknb-bench-") as tmp:
        tmp = Path(tmp)
        need = p["e2e_videos"]
        list_file, cache = make_cached_set(tmp / "data", videos=need, frames=p["video_frames"],
                                           native=p["native"], S=S)
        train = dataset_for(tmp / "data", list_file, cache, T, S, train=True)
        if "loader" not in skip:
            b, w = p["e2e_batch"], p["workers"]
            n_epochs = 1 if size == "smoke" else 2
            rows = [{"path": "old: float32 clips, fresh workers each epoch", "workers": w,
                     "clips_per_s": loader_old(train, b, w, device, n_epochs)},
                    {"path": "new: uint8, persistent workers, device transform", "workers": w,
                     "clips_per_s": loader_new(train, b, w, device, n_epochs)},
                    {"path": "new, workers only: uint8 batches on the device", "workers": w,
                     "clips_per_s": loader_new(train, b, w, device, n_epochs, transform=False)},
                    {"path": "raw items in one process (no DataLoader)", "workers": 0,
                     "clips_per_s": raw_in_process(train, min(len(train), 4 * b))}]
            report["loader"] = rows
            print(table(f"loader: batch {b}, {p['video_frames']}-frame cached videos "
                        f"{cache_shape(cache)}", rows))
        if "e2e" not in skip:
            test = dataset_for(tmp / "data", list_file, cache, T, S, train=False,
                               limit=p["e2e_batch"])
            report["end_to_end"] = [end_to_end(train, test, p["model"], T, S, p["e2e_batch"],
                                               workers=p["workers"], epochs=p["epochs"],
                                               out=tmp / f"run{int(c)}", compile_=c)
                                    for c in compiles]
            print(table(f"end to end: darknb.train.fit, {len(train)} clips per epoch",
                        report["end_to_end"]))

    if "inference" not in skip:
        report["inference"] = inference_table(size, T, S, p["infer_batch"], p["native"],
                                              device=device, bf16=bf16, repeats=p["repeats"])
        print(table(f"inference ({report['precision']})", report["inference"]))

    report["ratios"] = ratios(report)
    print(table("ratios", report["ratios"]))
    report["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"[bench] peak host memory (RSS) of this process: {report['peak_rss_gib']:.2f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return report


def cache_shape(cache: Path) -> str:
    arr = np.load(next((cache / "base").glob("*.npy")), mmap_mode="r")
    return "x".join(map(str, arr.shape[1:3]))


def ratios(report: dict) -> list[dict]:
    rows = []
    model = {(r["batch"], r["compile"]): r["clips_per_s"] for r in report.get("model_only", [])}
    for r in report.get("end_to_end", []):
        base = model.get((r["batch"], r["compile"]))
        if base:
            rows.append({"ratio": f"end-to-end / model-only, batch {r['batch']}"
                                  f"{', compiled' if r['compile'] else ''}",
                         "a": r["clips_per_s"], "b": base, "a/b": r["clips_per_s"] / base})
    loader = {r["path"].split(":")[0]: r["clips_per_s"] for r in report.get("loader", [])}
    if "new" in loader and "old" in loader:
        rows.append({"ratio": "loader new / old", "a": loader["new"], "b": loader["old"],
                     "a/b": loader["new"] / loader["old"]})
    eager = [v for (b, c), v in model.items() if not c]
    if "new" in loader and eager:
        top = max(eager)
        rows.append({"ratio": "loader new / fastest model-only (>= 1: keeps up)", "a": loader["new"],
                     "b": top, "a/b": loader["new"] / top})
    return rows


if __name__ == "__main__":
    main()
