"""Figures for the report notebooks: loss and accuracy curves, confusion matrices, accuracy
against cost, the ablation. Every function takes plain dicts / DataFrames (what the stages wrote)
and returns a labelled matplotlib figure; matplotlib is imported when a figure is drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["history_curves", "plot_ablation", "plot_accuracy_vs_cost", "plot_confusion",
           "plot_histories", "plot_history"]


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



def plot_ablation(points: list[dict], *, teacher: dict | None = None, no_kd: dict | None = None,
                  value: str = "top1", title: str = ""):
    """The ablation: test (or validation, ``value="val_top1"``) top-1 against beta, one line per
    temperature, error bars = sd over seeds; beta = 0 (no KD, T irrelevant) starts every line. The
    teacher's and the no-KD student's levels (study arms: ``{"top1", "top1_std"}``) are reference
    lines. ``points``: the ``points`` of :func:`darknb.study.experiments.ablation_summary`."""
    import matplotlib.pyplot as plt  # lazy: matplotlib only for figures (slow to import)

    table = pd.DataFrame(points)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    base = table[table.beta == 0]
    markers = "osD^v"
    for k, T in enumerate(sorted(table[table.beta > 0].temperature.unique(), reverse=True)):
        line = pd.concat([base, table[(table.temperature == T) & (table.beta > 0)]]).sort_values("beta")
        err = line[f"{value}_std"] if f"{value}_std" in line else None
        ax.errorbar(line.beta, line[value], yerr=err, marker=markers[k % len(markers)], capsize=3,
                    lw=1.6, label=f"student, T = {T:g}")
    for ref, name, style in ((teacher, "teacher (enhanced input)", "--"),
                             (no_kd, "student without KD", ":")):
        level = (ref or {}).get(value if value != "val_top1" else "val_top1")
        if level is not None:
            ax.axhline(level, color="grey", ls=style, lw=1.2, label=name)
    ax.set(xlabel="beta (weight of the KD term; alpha = 1)", ylabel=f"{'validation' if value == 'val_top1' else 'test'} top-1 (%)",
           title=title or "Ablation: top-1 against beta (mean ± sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
