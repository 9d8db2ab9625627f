"""The engine before and after issue 9 on the same cached clips: loader clips/s and end-to-end
``fit`` clips/s, each tree through its own code path. Run it once per tree:

    git archive fb28659 darknb | tar -x -C /tmp/old       # the engine before issue 9
    PYTHONPATH=/tmp/old python benchmarks/engine_before_after.py demo 2 1
    PYTHONPATH=$PWD     python benchmarks/engine_before_after.py demo 2 1

Arguments: size (``demo``: 8 x 32^2 clips from 72 x 96 frames, loader and a 3-epoch fit of the
tiny ViT; ``paper``: 64 x 112^2 clips from 128 x 171 frames, loader only), DataLoader workers,
torch threads. Prints one JSON line. Self-contained on purpose: it must run on the old tree too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

import darknb
from darknb.config import RunConfig
from darknb.data.dataset import VideoListDataset, collate_clips
from darknb.engine.loop import fit
from darknb.files import save_npy

CLASSES = [f"C{k}" for k in range(11)]


class TinyVideoViT(nn.Module):
    """The demo's tiny ViT per frame, frames averaged, a linear head: defined here so that both
    trees train the very same network (the registered tiny preset changed between them)."""

    def __init__(self, num_classes: int, size: int):
        super().__init__()
        self.vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                                     img_size=size, patch_size=8, embed_dim=64, depth=3, num_heads=4)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)
        return self.fc(self.vit(frames).view(B, T, -1).mean(1))


def make_cached_set(root: Path, *, videos: int, frames: int, native, distinct: int = 16):
    """Cache-only videos (uint8 .npy, short side as `prepare` writes it), hard-linked copies."""
    H, W = native
    h = 128 if H >= 128 else H
    w = round(W * h / H)
    rng = np.random.default_rng(0)
    base = [save_npy(rng.gamma(2.0, 6.0, size=(frames, h, w, 3)).clip(0, 255).astype(np.uint8),
                     root / "cache" / "base" / f"{k}.npy", verify=False) for k in range(distinct)]
    lines = []
    for i in range(videos):
        rel = f"C{i % 11}/C{i % 11}_{i}_1.avi"
        target = root / "cache" / f"{rel}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(base[i % distinct], target)
        lines.append(f"{i}\t{i % 11}\t{rel}\n")
    (root / "list.txt").write_text("".join(lines))
    return root / "list.txt", root / "cache"


def main() -> None:
    size, workers, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    new = importlib.util.find_spec("darknb.loader") is not None
    T, S, native, frames, batch, videos = {"demo": (8, 32, (72, 96), 40, 8, 96),
                                           "paper": (64, 112, (240, 320), 80, 8, 48)}[size]
    root = Path(tempfile.mkdtemp(prefix="darknb-before-after-"))
    list_file, cache = make_cached_set(root, videos=videos, frames=frames, native=native)
    ds = VideoListDataset(root, list_file, num_frames=T, size=S, sampling="consecutive", train=True,
                          cache_dir=cache, return_index=True, classes=CLASSES)
    out = {"tree": "after" if new else "before", "darknb": darknb.__file__, "size": size,
           "workers": workers, "threads": threads, "clip": f"{T}x{S}^2"}

    # the loader as each engine runs it: 2 epochs, worker start-up included
    start, n = time.perf_counter(), 0
    if new:
        from darknb.data.loader import make_loader

        loader = make_loader(ds, batch_size=batch, train=True, num_workers=workers)
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            for b in loader:
                n += len(ds.clip_transform(b))
    else:
        for epoch in range(2):
            ds.set_epoch(epoch)
            for _, y, _ in torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True,
                                                       num_workers=workers, collate_fn=collate_clips):
                n += len(y)
    out["loader_clips_per_s"] = n / (time.perf_counter() - start)
    if new:  # what the workers deliver (uint8 batches), without the transform
        start, n = time.perf_counter(), 0
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            n += sum(len(b.labels) for b in loader)
        out["loader_uint8_only_clips_per_s"] = n / (time.perf_counter() - start)

    if size == "demo":
        test = VideoListDataset(root, list_file, num_frames=T, size=S, sampling="consecutive",
                                cache_dir=cache, return_index=True, classes=CLASSES)
        test.samples = test.samples[:16]
        cfg = RunConfig(num_frames=T, size=S, batch_size=batch, epochs=3, num_workers=workers,
                        output_dir=str(root / "run"), save_every=1, sampling="consecutive",
                        seed=0, pretrained="")
        torch.manual_seed(0)
        result = fit(TinyVideoViT(11, S), ds, test, cfg, name="m", progress=False)
        out["fit_seconds_3_epochs"] = result["train_seconds"]
        out["fit_clips_per_s"] = 3 * len(ds) / result["train_seconds"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
