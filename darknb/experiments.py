"""Experiments built on the engine: the alpha/beta/T ablation and the comparison with baselines.

Both write CSV next to the run (``ablation.csv``, ``comparison.csv``) and are what notebooks 03 and
04 call. Published numbers are labelled ``reported``; everything computed here ``measured``.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from darknb.config import RunConfig
from darknb.data import build_datasets
from darknb.enhance import build_enhancer
from darknb.errors import ConfigError
from darknb.files import RunDir, read_json, write_json
from darknb.flops import count_flops, count_parameters, measure_latency
from darknb.models import NativeResolutionTeacher, Teacher, create_model
from darknb.protocol import CUSTOM
from darknb.reports import reported_table
from darknb.stats import accuracy_ci, mcnemar
from darknb.train import (
    build_classifier,
    fit,
    load_teacher,
    teacher_cache_for,
    train_student,
)

# ----------------------------------------------------------------------------------------------
# alpha / beta / temperature ablation
# ----------------------------------------------------------------------------------------------


def ablation_grid(alphas, betas, temperatures, seeds) -> list[dict]:
    """The grid points; T is irrelevant without KD (beta = 0), so it is run once there, and
    alpha = beta = 0 (no loss at all) is dropped."""
    points = []
    for seed, a, b in itertools.product(seeds, alphas, betas):
        if a == 0 and b == 0:
            continue
        for T in (temperatures if b > 0 else temperatures[:1]):
            points.append({"alpha": float(a), "beta": float(b), "temperature": float(T), "seed": int(seed)})
    if not points:
        raise ConfigError("ablation grid is empty (every point had alpha = beta = 0)")
    return points


def run_ablation(cfg: RunConfig, *, alphas=(1.0,), betas=(0.0, 1.0), temperatures=(1.0,), seeds=(0,),
                 teacher: nn.Module | None = None, progress: bool = False):
    """Train one student per grid point against the frozen teacher; returns a DataFrame.

    Teacher soft targets are cached per (seed, epoch, video index): a training clip is a pure
    function of those, so the cached logits equal what the teacher would compute online and the
    sweep runs the teacher once per seed instead of once per grid point. ``teacher_s`` is the time a
    run spent computing teacher logits; ``uncached_estimate_s`` = that run's time + the first run's
    teacher time, i.e. what it would have cost without the cache (measured, per run).
    """
    run = RunDir(cfg.output_dir)
    out_dir = run.subdir("ablation").root
    splits = build_datasets(cfg)
    train_set = splits.train
    if teacher is None:
        teacher = load_teacher(cfg, len(train_set.classes), splits=splits)
    cache = teacher_cache_for(cfg)  # shared with 02_student: its KD run filled it
    rows = []
    for point in ablation_grid(alphas, betas, temperatures, seeds):
        run_cfg = cfg.replace(output_dir=str(out_dir), **point)
        name = "student_a{alpha:g}_b{beta:g}_T{temperature:g}_s{seed}".format(**point)
        kd = point["beta"] > 0
        started = time.perf_counter()
        result = train_student(run_cfg, kd=kd, name=name, teacher=teacher if kd else None,
                               teacher_cache=cache if kd else None, progress=progress)
        seconds = time.perf_counter() - started
        teacher_s = result.get("teacher_seconds", 0.0)
        # a run served from the cache would, without it, also pay the teacher time measured when
        # the cache was filled (for this seed: the same clips)
        saved = cache.fill_seconds.get(point["seed"], 0.0) if kd and teacher_s == 0 else 0.0
        rows.append({**point, "top1": result["metrics"]["top1"], "top5": result["metrics"]["top5"],
                     "seconds": round(seconds, 2), "teacher_s": round(teacher_s, 2),
                     "uncached_estimate_s": round(seconds + saved, 2),
                     "checkpoint": result["checkpoint"]})
        cache.save()
    table = pd.DataFrame(rows)
    table.to_csv(run.table("ablation"), index=False)
    return table


def cache_speedup(table) -> dict:
    """Measured: KD runs served from the cache vs. the same runs plus the teacher's forward time."""
    kd = table[table.beta > 0]
    cached = kd[kd.teacher_s == 0]
    if cached.empty:
        return {"kd_runs": int(len(kd)), "cached_runs": 0, "speedup": None}
    return {"kd_runs": int(len(kd)), "cached_runs": int(len(cached)),
            "cached_seconds_mean": float(cached.seconds.mean()),
            "uncached_estimate_seconds_mean": float(cached.uncached_estimate_s.mean()),
            "speedup": float(cached.uncached_estimate_s.sum() / cached.seconds.sum())}


def plot_ablation(table, *, value: str = "top1"):
    """Heatmap of alpha x beta (mean over seeds), one panel per temperature."""
    import matplotlib.pyplot as plt  # lazy: matplotlib only for figures (slow to import)

    temps = sorted(table.temperature.unique())
    fig, axes = plt.subplots(1, len(temps), figsize=(3.6 * len(temps), 3.2), squeeze=False)
    for ax, T in zip(axes[0], temps):
        # beta = 0 rows were run once (T irrelevant): show them in every panel
        sub = table[(table.temperature == T) | (table.beta == 0)]
        grid = sub.pivot_table(index="alpha", columns="beta", values=value, aggfunc="mean")
        image = ax.imshow(grid.values, cmap="viridis", vmin=0, vmax=100)
        ax.set_xticks(range(len(grid.columns)), [f"{b:g}" for b in grid.columns])
        ax.set_yticks(range(len(grid.index)), [f"{a:g}" for a in grid.index])
        for (i, j), v in np.ndenumerate(grid.values):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="white", fontsize=9)
        ax.set(xlabel="beta (KD weight)", ylabel="alpha (CE weight)", title=f"T = {T:g}, {value} (%)")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    return fig


# ----------------------------------------------------------------------------------------------
# Baselines and the comparison table
# ----------------------------------------------------------------------------------------------

# the baselines that match each classifier preset: (raw R(2+1)D-18 + BERT, DarkLight-style two-stream)
BASELINES = {
    "vit_bert_tiny": {"r2plus1d_bert": "r2plus1d_bert_tiny", "two_stream": "two_stream_bert_tiny"},
    "vit_bert": {"r2plus1d_bert": "r2plus1d_bert", "two_stream": "two_stream_bert"},
}
PAPER_CLIP = (3, 64, 112, 112)   # C, T, H, W of the paper's input
ARID_FRAME = (240, 320)          # ARID's native H, W: the paper enhances before resizing


def train_baselines(cfg: RunConfig, *, r2plus1d_epochs: int | None = None, progress: bool = False) -> dict:
    """Train the raw R(2+1)D-18 + BERT and the two-stream on the same data and optimiser.

    ``r2plus1d_epochs`` (default ``cfg.epochs``) shortens only the R(2+1)D-18 run: with 34 M
    parameters it costs ~30x a tiny ViT step on CPU. The epochs are recorded with the predictions.
    """
    if cfg.model not in BASELINES:
        raise ConfigError(f"no baselines defined for model {cfg.model!r}; known: {sorted(BASELINES)}")
    train_set, val_set, test_set = build_datasets(cfg)
    results = {}
    for name, model_name in BASELINES[cfg.model].items():
        epochs = (r2plus1d_epochs or cfg.epochs) if name == "r2plus1d_bert" else cfg.epochs
        run_cfg = cfg.replace(model=model_name, beta=0.0, epochs=epochs)
        model = build_classifier(run_cfg, len(train_set.classes))
        results[name] = fit(model, train_set, test_set, run_cfg, name=name, val_set=val_set,
                            progress=progress)
        write_json({**results[name]["metrics"], "epochs": epochs},
                   RunDir(cfg.output_dir).predictions(name))
    return results


def _cost(model: nn.Module, shape, *, latency_repeats: int, device: str | None = None) -> dict:
    flops = count_flops(model, input_shape=(1, *shape), device=device)
    row = {"params": count_parameters(model), "gflops_per_clip": flops["flops"] / 1e9,
           "uncounted_ops": ",".join(sorted(flops.get("uncounted_ops", {}) or []))}
    if latency_repeats > 0:
        # one repeat (the demo's paper-size setting) runs without a warm-up call
        lat = measure_latency(model.eval(), torch.rand(1, *shape), warmup=min(1, latency_repeats - 1),
                              repeats=latency_repeats)
        row.update(latency_ms_per_clip=lat["mean_ms"], latency_std_ms=lat["std_ms"],
                   latency_threads=lat["threads"])
    return row


def cost_of_models(cfg: RunConfig, num_classes: int, *, paper_latency_repeats: int = 1,
                   run_latency_repeats: int = 3) -> list[dict]:
    """Params, GFLOPs (FlopCounterMode: FLOPs = 2 x MACs) and CPU latency per clip, for the models
    as run and for their paper-size versions at the paper's input."""
    rows = []
    run_shape = (3, cfg.num_frames, cfg.size, cfg.size)
    baselines = BASELINES.get(cfg.model, {})
    as_run = {  # name: (the architecture that ran, how to build it)
        "teacher": (f"{cfg.enhancer} + {cfg.model}",
                    lambda: Teacher(build_enhancer(cfg.enhancer), build_classifier(cfg, num_classes))),
        "student": (cfg.model, lambda: build_classifier(cfg, num_classes)),
        **{name: (m, lambda m=m: build_classifier(cfg.replace(model=m), num_classes))
           for name, m in baselines.items()},
    }
    for name, (arch, make) in as_run.items():
        rows.append({"model": name, "setting": f"as run ({arch}, 3x{cfg.num_frames}x{cfg.size}x{cfg.size})",
                     **_cost(make(), run_shape, latency_repeats=run_latency_repeats)})
    C, T, H, W = PAPER_CLIP
    paper = {
        "student": (lambda: create_model("vit_bert", num_classes), PAPER_CLIP),
        "teacher": (lambda: NativeResolutionTeacher(build_enhancer(cfg.enhancer),
                                                    create_model("vit_bert", num_classes), H),
                    (C, T, *ARID_FRAME)),
        "r2plus1d_bert": (lambda: create_model("r2plus1d_bert", num_classes), PAPER_CLIP),
        "two_stream": (lambda: create_model("two_stream_bert", num_classes), PAPER_CLIP),
    }
    for name, (make, shape) in paper.items():
        rows.append({"model": name, "setting": f"paper size (input 3x{shape[1]}x{shape[2]}x{shape[3]})",
                     **_cost(make(), shape, latency_repeats=paper_latency_repeats, device="meta")})
    return rows


def _correct(predictions: dict) -> tuple[np.ndarray, np.ndarray]:
    """(video indices, 0/1 correct) sorted by index, for pairing two models' predictions."""
    order = np.argsort(predictions["indices"])
    idx = np.asarray(predictions["indices"])[order]
    return idx, (np.asarray(predictions["pred"]) == np.asarray(predictions["labels"]))[order].astype(int)


MEASURED_MODELS = {
    "teacher": "Teacher: Zero-DCE + ViT + BERT",
    "student": "Student: ViT + BERT, KD (raw frames)",
    "student_no_kd": "Student without KD (beta = 0)",
    "r2plus1d_bert": "R(2+1)D-18 + BERT (raw frames)",
    "two_stream": "Two-stream raw + gamma (DarkLight-style)",
}


def comparison_table(out_dir: str | Path, *, dataset: str, costs: list[dict] | None = None,
                     seeds_table=None, n_boot: int = 2000, epochs: int | None = None,
                     lists: str | None = None):
    """Reported rows (PAPER.md) and measured rows (this run) in one DataFrame.

    ``lists`` labels the measured rows' data protocol (official lists or "custom list"); by default
    the teacher stage's ``data_protocol`` (``teacher.json``), else "custom list"."""
    out_dir = Path(out_dir)
    if lists is None:
        stage = RunDir(out_dir).stage("teacher")
        lists = (read_json(stage).get("data_protocol") if stage.is_file() else None) or CUSTOM
    measured = []
    cost_by = {}
    for row in costs or []:
        key = "as_run" if row["setting"].startswith("as run") else "paper"
        cost_by[(row["model"], key)] = row
    for key, label in MEASURED_MODELS.items():
        path = RunDir(out_dir).predictions(key)
        if not path.is_file():
            continue
        pred = read_json(path)
        _, correct = _correct(pred)
        ci = accuracy_ci(correct, n_boot=n_boot)
        base = key if key in ("teacher", "r2plus1d_bert", "two_stream") else "student"
        run_cost, paper_cost = cost_by.get((base, "as_run"), {}), cost_by.get((base, "paper"), {})
        row = {"source": "measured", "dataset": dataset, "method": label,
               "top1": pred["top1"], "top5": pred["top5"],
               "top1_ci95_low": ci["low"], "top1_ci95_high": ci["high"], "test_videos": len(correct),
               "lists": lists,
               "epochs": pred.get("epochs", epochs),
               "params_M": run_cost.get("params", np.nan) / 1e6,
               "gflops_per_clip": run_cost.get("gflops_per_clip"),
               "cpu_latency_ms_per_clip": run_cost.get("latency_ms_per_clip"),
               "paper_size_params_M": paper_cost.get("params", np.nan) / 1e6,
               "paper_size_gflops_per_clip": paper_cost.get("gflops_per_clip"),
               "paper_size_cpu_latency_ms_per_clip": paper_cost.get("latency_ms_per_clip")}
        if seeds_table is not None and key in ("student", "student_no_kd"):
            beta = 1.0 if key == "student" else 0.0
            sub = seeds_table[(seeds_table.beta == beta) & (seeds_table.alpha == 1.0)]
            if len(sub.seed.unique()) > 1:
                row["top1_seed_mean"] = float(sub.top1.mean())
                row["top1_seed_std"] = float(sub.top1.std(ddof=1))
                row["seeds"] = int(len(sub.seed.unique()))
        measured.append(row)
    return pd.concat([reported_table(), pd.DataFrame(measured)], ignore_index=True)


def paper_claims(out_dir: str | Path, costs: list[dict]) -> dict:
    """The paper's two claims as measured yes/no with the evidence (McNemar, cost ratios)."""
    out_dir = Path(out_dir)
    teacher, student = (read_json(RunDir(out_dir).predictions(k)) for k in ("teacher", "student"))
    ti, tc = _correct(teacher)
    si, sc = _correct(student)
    if not np.array_equal(ti, si):
        raise ConfigError("teacher and student were evaluated on different test videos")
    test = mcnemar(sc, tc)
    by = {(r["model"], r["setting"].split(" ")[0]): r for r in costs}

    def ratio(model, setting, field):
        a, b = by.get((model, setting), {}).get(field), by.get(("student", setting), {}).get(field)
        return (a / b) if a and b else None

    beats = student["top1"] > teacher["top1"]
    cheaper = all(by[("student", s)]["gflops_per_clip"] < by[(m, s)]["gflops_per_clip"]
                  for s in ("as", "paper") for m in ("teacher", "two_stream") if (m, s) in by)
    return {
        "student_beats_teacher": {
            "measured": bool(beats), "student_top1": student["top1"], "teacher_top1": teacher["top1"],
            "mcnemar": test, "significant_at_0.05": bool(test["p_value"] < 0.05)},
        "student_is_cheaper": {
            "measured": bool(cheaper),
            "teacher_over_student_gflops": {"as_run": ratio("teacher", "as", "gflops_per_clip"),
                                            "paper_size": ratio("teacher", "paper", "gflops_per_clip")},
            "two_stream_over_student_gflops": {"as_run": ratio("two_stream", "as", "gflops_per_clip"),
                                               "paper_size": ratio("two_stream", "paper", "gflops_per_clip")},
            "teacher_over_student_latency": {"as_run": ratio("teacher", "as", "latency_ms_per_clip"),
                                             "paper_size": ratio("teacher", "paper", "latency_ms_per_clip")}},
    }
