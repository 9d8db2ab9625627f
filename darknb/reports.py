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
from darknb.framecache import CACHE_MANIFEST
from darknb.protocol import dataset_identity, protocol_label
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


def _identity(name: str | None, datasets) -> dict | None:
    datasets = [ds for ds in datasets if ds is not None and hasattr(ds, "list_file")]
    return dataset_identity(name or "", datasets) if datasets else None


def provenance(*, seed: int | None = None, params: dict | None = None, datasets=()) -> dict:
    """Where an artifact came from; with ``datasets``, also ``data_protocol``: whether the
    lists are the official ones (:func:`darknb.protocol.protocol_label`) or a "custom list"."""
    files = [f for ds in datasets if ds is not None for f in dataset_files(ds)]
    identity = _identity((params or {}).get("dataset"), datasets)
    return {
        "git": git_state(),
        "packages": package_versions(),
        "seed": seed,
        "params": params,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "data_checksum": data_checksum(files) if files else None,
        "data_files": [str(f) for f in files],
        "data_protocol": protocol_label(identity) if identity else None,
        "data_lists": identity["lists"] if identity else None,
    }


def stage_summary(result: dict, *, cfg, datasets=()) -> dict:
    """What summary.json keeps of one stage: top-1/top-5, config, provenance (no per-video arrays)."""
    metrics = result["metrics"]
    identity = result.get("dataset") or _identity(cfg.dataset, datasets)
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
        # official lists or a "custom list": said in every report and table row
        "data_protocol": protocol_label(identity) if identity else None, "dataset_identity": identity,
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


def history_curves(history: list[dict]) -> dict[str, list]:
    """The loss curves worth drawing: ``loss`` always; ``ce`` and ``kd`` only when they carry
    information (a curve equal to the total loss, e.g. CE without KD, or all zeros is dropped and
    the total's label says so, so no line is hidden under another)."""
    loss = np.asarray([h.get("loss", np.nan) for h in history], dtype=float)
    curves, same = {}, []
    for key in ("ce", "kd"):
        values = np.asarray([h.get(key, np.nan) for h in history], dtype=float)
        if np.all(np.isnan(values)) or np.allclose(values, 0.0, equal_nan=True):
            continue
        if np.allclose(values, loss, rtol=1e-6, atol=1e-9, equal_nan=True):
            same.append(key.upper())
            continue
        curves[f"{key.upper()} part"] = values.tolist()
    label = "loss" + (f" (= {' = '.join(same)})" if same else " (total)")
    return {label: loss.tolist(), **curves}


def plot_history(history: list[dict], *, title: str = ""):
    """Training loss (total and its CE / KD parts, see :func:`history_curves`) and top-1 per
    epoch: training, and validation where the run was validated. Each line has its own style and
    markers are drawn only for short runs, so overlapping curves stay distinguishable."""
    import matplotlib.pyplot as plt  # lazy: matplotlib only for figures (slow to import)

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.4))
    epochs = [h["epoch"] for h in history]
    marker = "o" if len(epochs) <= 30 else None
    styles = [dict(lw=2.2, ls="-"), dict(lw=1.5, ls="--"), dict(lw=1.5, ls=":")]
    for (label, values), style in zip(history_curves(history).items(), styles):
        ax_loss.plot(epochs, values, marker=marker, ms=3, label=label, **style)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title=f"{title} loss".strip())
    ax_loss.legend(fontsize=8)
    ax_acc.plot(epochs, [h["train_top1"] for h in history], marker=marker, ms=3, lw=2,
                label="train (augmented clips)")
    if any("val_top1" in h for h in history):
        ax_acc.plot(epochs, [h.get("val_top1", np.nan) for h in history], marker=marker, ms=3,
                    lw=1.5, ls="--", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title=f"{title} accuracy".strip(), ylim=(0, 100))
    ax_acc.legend(fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
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
    """One row per measured stage: top-1/top-5, test-set size and its lists (official, or
    "custom list"), labelled ``measured``."""
    rows = [{"source": "measured", "dataset": dataset, "model": name,
             "top1": s["top1"] if "top1" in s else s["metrics"]["top1"],
             "top5": s["top5"] if "top5" in s else s["metrics"]["top5"],
             "test_videos": s.get("num_videos") or s.get("metrics", {}).get("num_videos"),
             "lists": s.get("data_protocol") or (protocol_label(s["dataset"])
                                                 if isinstance(s.get("dataset"), dict) else None)}
            for name, s in stages.items()]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Readable report tables (what the HTML reports show): units in headers, rounding, blanks for NaN
# ----------------------------------------------------------------------------------------------

BLANK = ""


def format_number(value, digits: int = 1, *, significant: bool = False) -> str:
    """``value`` rounded for a report: ``digits`` decimals (or significant digits), "" for a
    missing value (None, NaN), thousands separated."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return BLANK
    try:
        if pd.isna(value):
            return BLANK
    except (TypeError, ValueError):
        pass
    if isinstance(value, str):
        return value
    value = float(value)
    if significant:
        if value == 0:
            return "0"
        decimals = max(0, digits - 1 - int(np.floor(np.log10(abs(value)))))
        return f"{value:,.{decimals}f}"
    return f"{value:,.{digits}f}"


def _interval(low, high, digits: int = 1) -> str:
    a, b = format_number(low, digits), format_number(high, digits)
    return f"{a}–{b}" if a and b else BLANK


def accuracy_table(table, *, source: str | None = None) -> pd.DataFrame:
    """The accuracy half of a comparison table (``experiments.comparison_table``), for reading:
    one row per method, top-1 / top-5 in % with one decimal (the mean over seeds where a method
    ran for several, with their standard deviation), the 95% interval as "low–high", the test set
    size, epochs and seeds, and the lists the run used; blanks where a value is missing (reported
    rows have no interval), and columns empty for every row left out. ``source`` ("measured" or
    "reported") keeps those rows only: two narrow tables instead of one wide one."""
    table = pd.DataFrame(table)
    if source is not None:
        table = table[table["source"] == source]
    rows = []
    for r in table.to_dict("records"):
        seeds = r.get("seeds")
        several = seeds is not None and pd.notna(seeds) and seeds > 1
        rows.append({
            "source": r.get("source", BLANK), "dataset": r.get("dataset", BLANK),
            "method": r.get("method", BLANK),
            "top-1 (%)": format_number(r.get("top1")),
            "std over seeds (pts)": format_number(r.get("top1_seed_std")) if several else BLANK,
            "top-1 95% CI (%)": _interval(r.get("top1_ci95_low"), r.get("top1_ci95_high")),
            "top-5 (%)": format_number(r.get("top5")),
            "seeds": format_number(seeds, 0),
            "test videos": format_number(r.get("test_videos"), 0),
            "epochs": format_number(r.get("epochs"), 0),
            "lists": r.get("lists") if isinstance(r.get("lists"), str) else BLANK,
        })
    out = pd.DataFrame(rows)
    return out.loc[:, [c for c in out.columns if (out[c] != BLANK).any()]]  # drop empty columns


def cost_table(costs) -> pd.DataFrame:
    """Inference cost per clip (``experiments.cost_of_models`` rows), for reading: parameters in
    millions, GFLOPs (FLOPs = 2 x MACs) to 3 significant digits, CPU latency in ms with its
    spread and thread count; blanks where not measured (e.g. paper-size latency skipped)."""
    rows = []
    for r in pd.DataFrame(costs).to_dict("records"):
        params, latency = r.get("params"), r.get("latency_ms_per_clip")
        rows.append({
            "model": r.get("model"), "setting": r.get("setting"),
            "params (M)": format_number(params / 1e6 if params is not None and pd.notna(params)
                                        else None, 2),
            "GFLOPs / clip": format_number(r.get("gflops_per_clip"), 3, significant=True),
            "CPU latency (ms / clip)": format_number(
                latency, 0 if latency is not None and pd.notna(latency) and latency >= 100 else 1),
            "latency std (ms)": format_number(r.get("latency_std_ms"), 1),
            "threads": format_number(r.get("latency_threads"), 0)})
    out = pd.DataFrame(rows)
    return out.loc[:, [c for c in out.columns if (out[c].fillna(BLANK) != BLANK).any()]]


def plot_accuracy_vs_cost(table, *, cost: str = "gflops_per_clip", title: str = ""):
    """Measured top-1 (with its 95% interval) against inference cost per clip, one point per
    method of a comparison table; ``cost`` is a column: ``gflops_per_clip`` (as run),
    ``paper_size_gflops_per_clip`` or ``cpu_latency_ms_per_clip``. Log-scaled cost axis."""
    import matplotlib.pyplot as plt  # lazy: matplotlib only for figures (slow to import)

    df = pd.DataFrame(table)
    df = df[(df.get("source") == "measured") & df[cost].notna() & df["top1"].notna()]
    unit = {"gflops_per_clip": "GFLOPs per clip (as run)",
            "paper_size_gflops_per_clip": "GFLOPs per clip (paper size)",
            "cpu_latency_ms_per_clip": "CPU latency (ms per clip, as run)"}.get(cost, cost)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    markers = "osD^v<>ph"
    for k, r in enumerate(df.to_dict("records")):
        low, high = r.get("top1_ci95_low"), r.get("top1_ci95_high")
        yerr = None
        if pd.notna(low) and pd.notna(high):
            yerr = [[r["top1"] - low], [high - r["top1"]]]
        ax.errorbar(r[cost], r["top1"], yerr=yerr, fmt=markers[k % len(markers)], capsize=3,
                    label=r["method"])
    if len(df):
        ax.set_xscale("log")
    ax.set(xlabel=unit, ylabel="top-1 (%, test set)", ylim=(0, 100),
           title=title or "accuracy against inference cost (measured)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def claims_summary(claims: dict) -> str:
    """The closing summary of ``experiments.paper_claims`` as Markdown bullet points (show it with
    ``IPython.display.Markdown``): each claim of the paper, what was measured, and how sure."""
    lines = []
    beats = claims.get("student_beats_teacher") or {}
    if beats:
        verdict = "yes" if beats.get("measured") else "no"
        detail = (f"student {format_number(beats.get('student_top1'))} % vs teacher "
                  f"{format_number(beats.get('teacher_top1'))} % top-1")
        if beats.get("mean_diff") is not None:
            detail += (f", difference {beats['mean_diff']:+.1f} points, 95% CI "
                       f"{beats['ci95_low']:+.1f} to {beats['ci95_high']:+.1f} over "
                       f"{beats.get('n_seeds')} seeds; Holm p = {beats.get('p_holm', float('nan')):.3f}, "
                       f"{'significant' if beats.get('significant_after_holm') else 'not significant'}"
                       " at 0.05")
            mde = beats.get("mde_top1")
            if mde is not None and abs(beats["mean_diff"]) < mde:
                detail += f"; this design detects {mde:.1f} points with 80% power"
        lines.append(f"- **The student beats the teacher** (paper: yes): measured **{verdict}** "
                     f"({detail}).")
    cheaper = claims.get("student_is_cheaper") or {}
    if cheaper:
        verdict = "yes" if cheaper.get("measured") else "no"
        parts = []
        for key, label in (("teacher_over_student_gflops", "teacher / student GFLOPs"),
                           ("two_stream_over_student_gflops", "two-stream / student GFLOPs"),
                           ("teacher_over_student_latency", "teacher / student CPU latency")):
            ratios = cheaper.get(key) or {}
            shown = [f"{format_number(v, 2, significant=True)}× {where.replace('_', ' ')}"
                     for where, v in ratios.items() if v]
            if shown:
                parts.append(f"{label}: {', '.join(shown)}")
        lines.append(f"- **The student costs less at inference** (paper: yes, no figures given): "
                     f"measured **{verdict}**" + (f" ({'; '.join(parts)})." if parts else "."))
    return "\n".join(lines)


def skipped_table(stages: dict | None = None, *, cache_dir=None) -> pd.DataFrame:
    """Every video a run skipped or failed to prepare, for the HTML reports: one row per video
    (columns ``video``, ``reason``, ``where``). ``stages`` maps a name to a training result or a
    stage summary (their ``skipped`` lists); ``cache_dir`` adds the frame cache's failures
    (``cache.json``'s ``failed``). Empty (with those columns) when nothing was skipped."""
    from darknb.files import read_json

    where: dict[str, list[str]] = {}
    reason: dict[str, str] = {}
    for name, stage in (stages or {}).items():
        for rel, why in (stage or {}).get("skipped", []) or []:
            where.setdefault(rel, []).append(name)
            reason.setdefault(rel, why)
    if cache_dir:
        manifest = Path(cache_dir) / CACHE_MANIFEST
        if manifest.is_file():
            for rel, why in read_json(manifest).get("failed", {}).items():
                where.setdefault(rel, []).append("frame cache (prepare)")
                reason.setdefault(rel, why)
    rows = [{"video": rel, "reason": reason[rel], "where": ", ".join(dict.fromkeys(where[rel]))}
            for rel in sorted(where)]
    return pd.DataFrame(rows, columns=["video", "reason", "where"])


# ----------------------------------------------------------------------------------------------
# The README's demo numbers, generated from a run's summary.json (`python -m darknb readme`)
# ----------------------------------------------------------------------------------------------

README_BEGIN = ("<!-- darknb:demo-results begin: generated from reports/<run>/summary.json by "
                "`python -m darknb readme`; edits inside are overwritten -->")
README_END = "<!-- darknb:demo-results end -->"


def demo_results_markdown(summary: dict) -> str:
    """The README block of a finished run (``summary.json``): where and how long it ran, one row
    per measured model of the comparison table (top-1, mean over seeds where there were several,
    its spread and 95% interval, GFLOPs per clip as run and at paper size), then the paper's
    claims (:func:`claims_summary`) and the study's stated comparisons in words."""
    run = summary.get("run", {})
    prov = run.get("provenance", {}) or {}
    git = prov.get("git", {}) or {}
    teacher = summary.get("teacher", {})
    cfg = teacher.get("config") or {}
    lines = []
    where = f"{prov.get('device') or 'unknown device'}, {prov.get('torch_threads', '?')} torch threads"
    sha = (git.get("sha") or "unknown")[:7] + (", uncommitted changes" if git.get("dirty") else "")
    lines.append(f"**Measured on {where}** (commit {sha}, run `{run.get('name', '?')}`, "
                 f"preset `{run.get('preset')}`).")
    seconds = run.get("seconds_per_notebook") or {}
    if seconds:
        parts = ", ".join(f"{nb.split('_')[0]} {format_number(s, 0)} s" for nb, s in seconds.items())
        lines.append(f"The notebooks took {format_number(sum(seconds.values()), 0)} s: {parts}.")
    lines.append("")
    dataset = cfg.get("dataset", "?")
    protocol = ((teacher.get("provenance") or {}).get("data_protocol")
                or teacher.get("data_protocol") or "unknown")
    seeds = summary.get("seeds") or teacher.get("seeds")
    about = (f"Top-1 on the {dataset} test split of {teacher.get('num_videos', '?')} clips "
             f"(lists: {protocol})")
    if seeds:
        about += f", mean over {len(seeds)} seeds ({', '.join(str(s) for s in seeds)})"
    lines.append(f"{about}; {cfg.get('epochs', '?')} epochs unless a row says otherwise.")
    lines.append("")
    lines.append(f"| model (measured, {dataset}) | top-1 % | std over seeds | 95% CI | "
                 "GFLOPs per clip (as run) | GFLOPs per clip (paper size) |")
    lines.append("|---|---|---|---|---|---|")
    table = [r for r in (summary.get("comparison", {}) or {}).get("table", [])
             if r.get("source") == "measured"]
    if not table:  # the comparison did not run: the study's arms alone
        for name in ("teacher", "student_no_kd", "student", "student_selfkd"):
            arm = summary.get(name)
            if isinstance(arm, dict) and "top1" in arm:
                low, high = arm.get("top1_ci95") or (None, None)
                table.append({"method": arm.get("label", name), "top1": arm["top1"],
                              "seeds": len(arm.get("seeds") or []), "top1_seed_std": arm.get("top1_std"),
                              "top1_ci95_low": low, "top1_ci95_high": high})
    for r in table:
        method = r.get("method", "?")
        epochs = r.get("epochs")
        if epochs is not None and pd.notna(epochs) and cfg.get("epochs") not in (None, epochs):
            method += f" ({format_number(epochs, 0)} epochs)"
        several = r.get("seeds") is not None and pd.notna(r.get("seeds")) and r["seeds"] > 1
        spread = format_number(r.get("top1_seed_std")) if several else "one run"
        lines.append(f"| {method} | {format_number(r.get('top1'))} | {spread} | "
                     f"{_interval(r.get('top1_ci95_low'), r.get('top1_ci95_high'))} | "
                     f"{format_number(r.get('gflops_per_clip'), 3, significant=True)} | "
                     f"{format_number(r.get('paper_size_gflops_per_clip'), 4, significant=True)} |")
    claims = (summary.get("comparison", {}) or {}).get("claims")
    if claims:
        lines += ["", claims_summary(claims)]
    if summary.get("comparisons"):
        from darknb.study import study_findings  # lazy: the study module trains

        lines += [""] + [f"- {line}" for line in study_findings(summary)]
    control = (summary.get("ablation") or {}).get("clip_norm_control")
    if control:
        main = control.get("main_runs_input_norm_backbone") or {}
        lines.append(f"- Control, per-clip standardisation instead of the pre-training statistics "
                     f"(seed {control['seed']}): teacher {format_number(control['teacher_top1'])} %, "
                     f"no-KD student {format_number(control['student_no_kd_top1'])} % (teacher - "
                     f"no-KD {control['teacher_minus_no_kd']:+.1f} points); the main runs of that "
                     f"seed: teacher {format_number(main.get('teacher'))} %, no-KD student "
                     f"{format_number(main.get('student_no_kd'))} %.")
    return "\n".join(lines)


def update_readme(summary_path, readme_path) -> tuple[str, bool]:
    """Replace the README's block between :data:`README_BEGIN` and :data:`README_END` with
    :func:`demo_results_markdown` of ``summary_path``; returns (the block, whether the README
    changed). Raises :class:`ConfigError` when the markers are missing."""
    from darknb.errors import ConfigError
    from darknb.files import read_json, write_text

    readme_path = Path(readme_path)
    text = readme_path.read_text(encoding="utf-8")
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1:
        raise ConfigError(f"{readme_path}: needs exactly one {README_BEGIN!r} and one "
                          f"{README_END!r} line around the demo numbers")
    block = demo_results_markdown(read_json(summary_path))
    head, rest = text.split(README_BEGIN)
    _, tail = rest.split(README_END)
    new = f"{head}{README_BEGIN}\n{block}\n{README_END}{tail}"
    if new != text:
        write_text(new, readme_path)
    return block, new != text
