"""Experiments built on the engine and the study: the alpha/beta/T ablation, the per-clip
standardisation control, the baselines, costs and the comparison with published numbers.

They write CSV next to the run (``ablation.csv``, ``comparison.csv``, ``costs.csv``) and are what
notebooks 04 and 05 call. Published numbers are labelled ``reported``; ours ``measured``.
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
from darknb.stats import accuracy_ci, correct_by_video
from darknb.study import arm_name
from darknb.train import (
    build_classifier,
    fit,
    load_teacher,
    resolve_pretrained,
    teacher_cache_for,
    train_student,
    train_teacher,
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
                 progress: bool = False):
    """Train one student per grid point against the frozen teacher of its seed (``teacher_s<seed>``
    of ``02_teacher``); returns a DataFrame with validation and test top-1.

    Teacher soft targets are cached per (seed, epoch, video index): a training clip is a pure
    function of those, so the cached logits equal what the teacher would compute online and the
    sweep runs the teacher once per seed instead of once per grid point (``03_student``'s KD run
    already filled the cache). ``teacher_s`` is the time a run spent computing teacher logits;
    ``uncached_estimate_s`` = that run's time + the teacher time measured when the cache was
    filled, i.e. what it would have cost without the cache (measured, per run).
    """
    run = RunDir(cfg.output_dir)
    out_dir = run.subdir("ablation").root
    base = cfg.replace(pretrained=resolve_pretrained(cfg))  # the run's backbone, from a subfolder
    splits = build_datasets(cfg)
    num_classes = len(splits.train.classes)
    teachers, caches = {}, {}
    rows = []
    for point in ablation_grid(alphas, betas, temperatures, seeds):
        seed, kd = point["seed"], point["beta"] > 0
        teacher_name = arm_name("teacher", seed)
        if kd and seed not in teachers:
            teachers[seed] = load_teacher(cfg, num_classes, run.checkpoint(teacher_name), splits=splits)
            caches[seed] = teacher_cache_for(cfg.replace(seed=seed), teacher_name)
        run_cfg = base.replace(output_dir=str(out_dir), **point)
        name = "student_a{alpha:g}_b{beta:g}_T{temperature:g}_s{seed}".format(**point)
        started = time.perf_counter()
        result = train_student(run_cfg, kd=kd, name=name, teacher=teachers.get(seed) if kd else None,
                               teacher_cache=caches.get(seed) if kd else None, progress=progress)
        seconds = time.perf_counter() - started
        teacher_s = result.get("teacher_seconds", 0.0)
        # a run served from the cache would, without it, also pay the teacher time measured when
        # the cache was filled (for this seed: the same clips)
        saved = caches[seed].fill_seconds.get(seed, 0.0) if kd and teacher_s == 0 else 0.0
        rows.append({**point, "val_top1": (result.get("selection") or {}).get("val_top1"),
                     "top1": result["metrics"]["top1"], "top5": result["metrics"]["top5"],
                     "seconds": round(seconds, 2), "teacher_s": round(teacher_s, 2),
                     "uncached_estimate_s": round(seconds + saved, 2),
                     "checkpoint": result["checkpoint"]})
        if kd:
            caches[seed].save()
    table = pd.DataFrame(rows)
    table.to_csv(run.table("ablation"), index=False)
    return table


def clip_norm_control(cfg: RunConfig, *, seed: int, progress: bool = False) -> dict:
    """The per-clip standardisation control: the teacher and the no-KD student of ``seed`` trained
    again with ``input_norm="clip"`` (everything else equal), in ``<output_dir>/controls``.
    Returns both test top-1 (%) and the difference, next to the same seed's main runs."""
    run = RunDir(cfg.output_dir)
    controls = cfg.replace(output_dir=str(run.subdir("controls").root), input_norm="clip",
                           pretrained=resolve_pretrained(cfg), seed=int(seed))
    Path(controls.output_dir).mkdir(parents=True, exist_ok=True)
    # the same frozen enhancer as the main teachers (fitted once per run, in 00_explore)
    fitted = run.fitted_enhancer(cfg.enhancer)
    if cfg.enhancer in ("zerodce", "zerodce++") and not cfg.enhancer_checkpoint and fitted.is_file():
        controls = controls.replace(enhancer_checkpoint=str(fitted))
    teacher = train_teacher(controls, name=arm_name("teacher", seed), progress=progress)
    student = train_student(controls, kd=False, name=arm_name("student_no_kd", seed), progress=progress)
    main = {arm: read_json(run.stage(arm_name(arm, seed)))["top1"]
            for arm in ("teacher", "student_no_kd") if run.stage(arm_name(arm, seed)).is_file()}
    return {"seed": int(seed), "input_norm": "clip",
            "teacher_top1": teacher["metrics"]["top1"], "student_no_kd_top1": student["metrics"]["top1"],
            "teacher_minus_no_kd": teacher["metrics"]["top1"] - student["metrics"]["top1"],
            "main_runs_input_norm_backbone": main}


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


def baseline_config(cfg: RunConfig, model: str) -> RunConfig:
    """``cfg`` for a baseline: the ViT two-stream starts from the run's ViT backbone like the
    student; R(2+1)D has no such backbone here and trains from scratch (its row says so)."""
    pretrained = resolve_pretrained(cfg) if model.startswith("two_stream") else ""
    return cfg.replace(model=model, pretrained=pretrained)


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
        run_cfg = baseline_config(cfg, model_name).replace(beta=0.0, epochs=epochs)
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
        **{name: (m, lambda m=m: build_classifier(baseline_config(cfg, m), num_classes))
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


BASELINE_LABELS = {
    "r2plus1d_bert": "R(2+1)D-18 + BERT (raw frames)",
    "two_stream": "Two-stream raw + gamma (DarkLight-style)",
}


def comparison_table(out_dir: str | Path, *, dataset: str, study: dict,
                     costs: list[dict] | None = None, n_boot: int = 2000,
                     lists: str | None = None) -> pd.DataFrame:
    """Reported rows (PAPER.md) and measured rows (this run) in one DataFrame.

    The study's arms are measured over seeds (``top1`` = mean, ``top1_seed_std``, a 95 % interval
    over test clips of the seed-averaged accuracy); baselines, when trained, are one run each.
    Costs come from :func:`cost_of_models`: as run, and at paper size. ``lists`` labels every
    measured row's data protocol (official lists or "custom list"); by default the arms'
    provenance says it (``data_protocol``), else "custom list"."""
    if lists is None:
        labels = [(a.get("provenance") or {}).get("data_protocol") for a in study["arms"].values()]
        lists = next((label for label in labels if label), CUSTOM)
    cost_by = {}
    for row in costs or []:
        key = "as_run" if row["setting"].startswith("as run") else "paper"
        cost_by[(row["model"], key)] = row

    def cost_columns(base: str) -> dict:
        run_cost, paper_cost = cost_by.get((base, "as_run"), {}), cost_by.get((base, "paper"), {})
        return {"params_M": run_cost.get("params", np.nan) / 1e6,
                "gflops_per_clip": run_cost.get("gflops_per_clip"),
                "cpu_latency_ms_per_clip": run_cost.get("latency_ms_per_clip"),
                "paper_size_params_M": paper_cost.get("params", np.nan) / 1e6,
                "paper_size_gflops_per_clip": paper_cost.get("gflops_per_clip"),
                "paper_size_cpu_latency_ms_per_clip": paper_cost.get("latency_ms_per_clip")}

    measured = []
    for arm, summary in study["arms"].items():
        measured.append({"source": "measured", "dataset": dataset, "method": summary["label"],
                         "top1": summary["top1"], "top5": summary["top5"],
                         "top1_ci95_low": summary["top1_ci95"][0], "top1_ci95_high": summary["top1_ci95"][1],
                         "top1_seed_std": summary["top1_std"], "seeds": len(summary["seeds"]),
                         "test_videos": summary["num_videos"], "lists": lists,
                         "epochs": (summary.get("config") or {}).get("epochs"),
                         **cost_columns("teacher" if arm == "teacher" else "student")})
    for key, label in BASELINE_LABELS.items():
        path = RunDir(out_dir).predictions(key)
        if not path.is_file():
            continue
        pred = read_json(path)
        _, correct = correct_by_video(pred)
        ci = accuracy_ci(correct, n_boot=n_boot)
        measured.append({"source": "measured", "dataset": dataset, "method": label,
                         "top1": pred["top1"], "top5": pred["top5"], "top1_ci95_low": ci["low"],
                         "top1_ci95_high": ci["high"], "seeds": 1, "test_videos": len(correct),
                         "lists": lists, "epochs": pred.get("epochs"), **cost_columns(key)})
    return pd.concat([reported_table(), pd.DataFrame(measured)], ignore_index=True)


def paper_claims(study: dict, costs: list[dict]) -> dict:
    """The paper's two claims, as measured: does the student beat its teacher (the study's
    paired comparison over seeds, Holm-corrected), and is it cheaper (cost ratios)."""
    by = {(r["model"], r["setting"].split(" ")[0]): r for r in costs}

    def ratio(model, setting, field):
        a, b = by.get((model, setting), {}).get(field), by.get(("student", setting), {}).get(field)
        return (a / b) if a and b else None

    versus = next(c for c in study["comparisons"] if (c["a"], c["b"]) == ("student", "teacher"))
    cheaper = all(by[("student", s)]["gflops_per_clip"] < by[(m, s)]["gflops_per_clip"]
                  for s in ("as", "paper") for m in ("teacher", "two_stream") if (m, s) in by)
    return {
        "student_beats_teacher": {
            "measured": bool(versus["mean_diff"] > 0),
            "significant_after_holm": bool(versus["p_holm"] < 0.05 and versus["mean_diff"] > 0),
            "student_top1": study["arms"]["student"]["top1"],
            "teacher_top1": study["arms"]["teacher"]["top1"],
            **{k: versus[k] for k in ("mean_diff", "ci95_low", "ci95_high", "p_value", "p_holm",
                                      "n_seeds", "mde_top1")}},
        "student_is_cheaper": {
            "measured": bool(cheaper),
            "teacher_over_student_gflops": {"as_run": ratio("teacher", "as", "gflops_per_clip"),
                                            "paper_size": ratio("teacher", "paper", "gflops_per_clip")},
            "two_stream_over_student_gflops": {"as_run": ratio("two_stream", "as", "gflops_per_clip"),
                                               "paper_size": ratio("two_stream", "paper", "gflops_per_clip")},
            "teacher_over_student_latency": {"as_run": ratio("teacher", "as", "latency_ms_per_clip"),
                                             "paper_size": ratio("teacher", "paper", "latency_ms_per_clip")}},
    }
