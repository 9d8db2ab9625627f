"""Provenance, run summaries and the paper's published tables.

Every artifact records where it came from: parameters, seed, git SHA, package versions, device and a
checksum of the data lists. Published numbers are labelled ``reported``; ours ``measured``.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from darknb.config import REPO_ROOT
from darknb.files import RunDir, write_json
from darknb.synthetic import MANIFEST as SYNTHETIC_MANIFEST
from darknb.video import read_stats

PACKAGES = ("darknb", "torch", "torchvision", "timm", "accelerate", "decord", "av", "numpy",
            "papermill", "einops")


def git_state(repo: Path = REPO_ROOT) -> dict:
    """Commit SHA and whether the work tree had uncommitted changes (None outside a git checkout)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def package_versions(names=PACKAGES) -> dict:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def data_checksum(paths) -> str:
    """sha256 over the given files (list files, manifests): identifies the exact protocol used."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def dataset_files(dataset) -> list[Path]:
    """The list/mapping/manifest files that define a dataset object's protocol."""
    files = [Path(p) for p in getattr(dataset, "list_files", []) if Path(p).is_file()]
    list_file = getattr(dataset, "list_file", None)
    if list_file and Path(list_file).is_file():
        files.append(Path(list_file))
    manifest = Path(getattr(dataset, "root", ".")) / SYNTHETIC_MANIFEST
    if manifest.is_file():
        files.append(manifest)
    return sorted(set(files))


def provenance(*, seed: int | None = None, params: dict | None = None, datasets=()) -> dict:
    files = [f for ds in datasets if ds is not None for f in dataset_files(ds)]
    return {
        "git": git_state(),
        "packages": package_versions(),
        "seed": seed,
        "params": params,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "data_checksum": data_checksum(files) if files else None,
        "data_files": [str(f) for f in files],
    }


def stage_summary(result: dict, *, cfg, datasets=()) -> dict:
    """What summary.json keeps of one stage: top-1/top-5, config, provenance (no per-video arrays)."""
    metrics = result["metrics"]
    return {
        # which decoding path served this process's reads ("cache" reads never decode); DataLoader
        # workers keep their own counters, so with num_workers > 0 this undercounts
        "video_reads": dict(read_stats), "cache_dir": getattr(cfg, "cache_dir", "") or None,
        "top1": metrics["top1"], "top5": metrics["top5"], "num_videos": metrics["num_videos"],
        "protocol": metrics.get("protocol"),  # test views: clips x crops, how they were averaged
        "selection": result.get("selection"),
        "per_class": metrics["per_class"], "train_seconds": result.get("train_seconds"),
        "history": result.get("history"), "checkpoint": result.get("checkpoint"),
        "skipped": result.get("skipped", []), "config": cfg.to_dict(),
        "provenance": provenance(seed=cfg.seed, params=cfg.to_dict(), datasets=datasets),
    }


def save_stage(out_dir, name: str, result: dict, *, cfg, datasets=(), **extra) -> dict:
    """Write a trained stage's two files: ``<name>.json`` (:func:`stage_summary` + ``extra``) and
    ``<name>_predictions.json`` (per-video metrics). Returns the summary. With several training
    processes (torchrun) only the main one writes."""
    # lazy: the engine is not needed to read reports
    from darknb.train import process_state

    run = RunDir(out_dir)
    summary = {**stage_summary(result, cfg=cfg, datasets=datasets), **extra}
    if process_state().is_main_process:
        write_json(summary, run.stage(name))
        write_json(result["metrics"], run.predictions(name))
    return summary


# ----------------------------------------------------------------------------------------------
# Published numbers (PAPER.md "Reported results"); every row is labelled "reported".
# ----------------------------------------------------------------------------------------------

REPORTED = [
    # dataset, method, top1, top5
    ("ARID", "I3D-RGB", 68.29, None),
    ("ARID", "I3D two-stream", 72.78, None),
    ("ARID", "3D-ResNext-101", 74.73, None),
    ("ARID", "DarkLight", 94.04, None),
    ("ARID", "DTCM", 96.36, None),
    ("ARID", "R(2+1)D-GCN+BERT", 96.60, None),
    ("ARID", "R(2+1)D + BERT (DarkLight setting)", 92.44, None),
    ("ARID", "DL-KDD teacher: ZeroDCE + ViT + BERT", 95.87, None),
    ("ARID", "DL-KDD student: ViT + BERT", 97.36, None),
    ("ARID v1.5", "I3D-RGB", 48.75, None),
    ("ARID v1.5", "I3D two-stream", 51.24, None),
    ("ARID v1.5", "DarkLight", 84.13, None),
    ("ARID v1.5", "R(2+1)D-GCN+BERT", 86.93, None),
    ("ARID v1.5", "DL-KDD student: ViT + BERT", 88.15, None),
    ("ARID v1.5", "ActLumos (arXiv 2502.03724v2)", 88.27, None),
    ("Dark-48", "I3D-RGB", 32.25, 65.35),
    ("Dark-48", "3D-ResNext-101", 37.23, 68.86),
    ("Dark-48", "DarkLight", 42.27, 70.47),
    ("Dark-48", "DTCM", 46.68, 75.92),
    ("Dark-48", "DL-KDD student: ViT + BERT", 51.14, 78.49),
]


def reported_table():
    return pd.DataFrame([{"source": "reported", "dataset": d, "method": m, "top1": t1, "top5": t5}
                         for d, m, t1, t5 in REPORTED])


# ----------------------------------------------------------------------------------------------
# Figures and tables for the stage notebooks
# ----------------------------------------------------------------------------------------------


def plot_history(history: list[dict], *, title: str = ""):
    """Training loss parts and training top-1 per epoch."""
    import matplotlib.pyplot as plt  # lazy: matplotlib only for figures (slow to import)

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = [h["epoch"] for h in history]
    for key in ("loss", "ce", "kd"):
        values = [h.get(key) for h in history]
        if any(v for v in values):
            ax_loss.plot(epochs, values, marker="o", label=key)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title=f"{title} loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [h["train_top1"] for h in history], marker="o")
    ax_acc.set(xlabel="epoch", ylabel="train top-1 (%)", title=f"{title} train accuracy", ylim=(0, 100))
    fig.tight_layout()
    return fig


def plot_histories(histories: dict[str, list[dict]], *, title: str = ""):
    """Several runs (e.g. one per seed) side by side: training loss, train top-1 and validation
    top-1 per epoch, one line per run (distinct colour and marker, so no line hides another)."""
    import matplotlib.pyplot as plt  # lazy: matplotlib only for figures (slow to import)

    has_val = any("val_top1" in h for hist in histories.values() for h in hist)
    panels = 3 if has_val else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.2))
    markers = "os^vDP*Xh"
    for k, (label, history) in enumerate(histories.items()):
        style = dict(marker=markers[k % len(markers)], markersize=3, linewidth=1.2, label=label)
        epochs = [h["epoch"] for h in history]
        axes[0].plot(epochs, [h["loss"] for h in history], **style)
        axes[1].plot(epochs, [h["train_top1"] for h in history], **style)
        if has_val:
            axes[2].plot(epochs, [h.get("val_top1") for h in history], **style)
    axes[0].set(xlabel="epoch", ylabel="training loss", title=f"{title}: training loss")
    axes[1].set(xlabel="epoch", ylabel="top-1 (%)", title=f"{title}: train top-1", ylim=(0, 100))
    if has_val:
        axes[2].set(xlabel="epoch", ylabel="top-1 (%)", title=f"{title}: validation top-1",
                    ylim=(0, 100))
    axes[-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_confusion(confusion, classes, *, title: str = ""):
    import matplotlib.pyplot as plt  # lazy: matplotlib only for figures (slow to import)

    matrix = np.asarray(confusion, dtype=float)
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(classes), 1 + 0.4 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, int(count), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion (test)")
    fig.tight_layout()
    return fig


def results_table(stages: dict, *, dataset: str):
    """One row per measured stage: top-1/top-5 and test-set size (labelled ``measured``)."""
    rows = [{"source": "measured", "dataset": dataset, "model": name,
             "top1": s["top1"] if "top1" in s else s["metrics"]["top1"],
             "top5": s["top5"] if "top5" in s else s["metrics"]["top5"],
             "test_videos": s.get("num_videos") or s.get("metrics", {}).get("num_videos")}
            for name, s in stages.items()]
    return pd.DataFrame(rows)
