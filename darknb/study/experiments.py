"""Experiments built on the engine and the study: the alpha/beta/T ablation, the per-clip
standardisation control, the baselines, costs and the comparison with published numbers.

They write CSV next to the run (``ablation.csv``, ``comparison.csv``, ``costs.csv``) and are what
notebooks 04 and 05 call. Published numbers are labelled ``reported``; ours ``measured``.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from darknb.config import RunConfig
from darknb.data.framecache import CACHE_MANIFEST
from darknb.data.protocol import CUSTOM
from darknb.data.splits import build_datasets
from darknb.engine.build import build_classifier, enhancer_kwargs, resolve_pretrained
from darknb.engine.jobs import Task, run_tasks
from darknb.engine.loop import fit
from darknb.engine.stages import train_student
from darknb.engine.teacher import load_teacher, teacher_cache_for
from darknb.errors import ConfigError
from darknb.files import RunDir, read_json, write_json
from darknb.models.classifiers import NativeResolutionTeacher, Teacher, create_model
from darknb.models.enhancers import build_enhancer
from darknb.paper import ARID_FRAME, PAPER_CLIP, reported_table
from darknb.engine.records import save_stage
from darknb.provenance import run_id
from darknb.study.arms import (
    ARM_SPECS,
    arm_name,
    paired_comparison,
    require_inputs,
    stage_files,
    train_arm,
    with_holm,
)
from darknb.study.flops import count_flops, count_parameters, measure_latency
from darknb.study.stats import accuracy_ci, correct_by_video, mean_std

# ----------------------------------------------------------------------------------------------
# alpha / beta / temperature ablation
# ----------------------------------------------------------------------------------------------


def ablation_points(cfg: RunConfig, *, betas, temperatures) -> list[dict]:
    """The ablation's grid (issue: the alpha/beta ablation the suite promises): beta swept at
    ``alpha = cfg.alpha`` and ``T = cfg.temperature``; T swept at ``beta = cfg.beta``. T is
    irrelevant without KD (beta = 0), so there it is the run's T; each point once, in order;
    alpha = beta = 0 (no loss at all) is refused."""
    points = [(cfg.alpha, float(b), cfg.temperature) for b in betas]
    points += [(cfg.alpha, cfg.beta, float(T)) for T in temperatures]
    unique = []
    for alpha, beta, T in points:
        point = {"alpha": float(alpha), "beta": beta, "temperature": T if beta > 0 else cfg.temperature}
        if alpha == 0 and beta == 0:
            raise ConfigError("ablation point alpha = beta = 0 has no loss at all; drop beta 0 or "
                              "use alpha > 0")
        if point not in unique:
            unique.append(point)
    if not unique:
        raise ConfigError("the ablation grid is empty: give betas or temperatures")
    return unique


def point_name(point: dict) -> str:
    """``a1_b0.5_T4``: a grid point's name in file names and tables."""
    return "a{alpha:g}_b{beta:g}_T{temperature:g}".format(**point)


def study_arm_of(point: dict, cfg: RunConfig) -> str | None:
    """The study arm a grid point coincides with (its runs are reused, not trained again):
    beta = 0 is the no-KD student, the run's (alpha, beta, T) the distilled student."""
    if point["alpha"] == cfg.alpha and point["beta"] == 0:
        return "student_no_kd"
    if (point["alpha"], point["beta"], point["temperature"]) == (cfg.alpha, cfg.beta, cfg.temperature):
        return "student"
    return None


def train_ablation_point(cfg: RunConfig, point: dict, seed: int, progress: bool = False) -> dict:
    """One student of the grid for ``seed``, distilled from that seed's enhanced teacher
    (``teacher_s<seed>`` of 02_teacher) with the study's recipe, in ``<output_dir>/ablation``
    (stage ``student_<point>_s<seed>``). Teacher soft targets come from the teacher's cache
    (filled by the study's KD student: a training clip is a pure function of (seed, epoch, index),
    so the cached logits equal what the teacher would compute)."""
    run = RunDir(cfg.output_dir)
    out = run.subdir("ablation")
    base = cfg.replace(pretrained=resolve_pretrained(cfg), seed=int(seed))  # the run's backbone
    splits = build_datasets(base)
    run_cfg = base.replace(output_dir=str(out.root), **point)
    name = arm_name(f"student_{point_name(point)}", seed)
    kd, teacher, cache = point["beta"] > 0, None, None
    if kd:
        teacher_name = arm_name("teacher", seed)
        teacher = load_teacher(base, run.checkpoint(teacher_name), splits)
        cache = teacher_cache_for(base, teacher_name)
    started = time.perf_counter()
    result = train_student(run_cfg, splits, kd=kd, name=name, teacher=teacher, teacher_cache=cache,
                           progress=progress)
    result["seconds"] = time.perf_counter() - started
    save_stage(out.root, name, result, cfg=run_cfg, datasets=splits.present(), ablation=point)
    return result


def ablation_comparisons(points: list[dict], cfg: RunConfig) -> list[tuple[dict, dict, str]]:
    """The ablation's questions, stated before running: is top-1 monotone in beta (each beta
    against the next smaller one, at the run's T), and does the run's T beat every other T (at
    the run's beta)?"""
    at_T = sorted((p for p in points if p["temperature"] == cfg.temperature or p["beta"] == 0),
                  key=lambda p: p["beta"])
    pairs = [(hi, lo, f"Is top-1 monotone in beta? beta {hi['beta']:g} vs {lo['beta']:g} "
                      f"(T = {cfg.temperature:g})") for lo, hi in zip(at_T, at_T[1:])]
    main = next((p for p in points if (p["beta"], p["temperature"]) == (cfg.beta, cfg.temperature)), None)
    for p in points:
        if main is not None and p["beta"] == cfg.beta and p["temperature"] != cfg.temperature:
            pairs.append((main, p, f"Does T = {cfg.temperature:g} beat T = {p['temperature']:g}? "
                                   f"(beta = {cfg.beta:g})"))
    return pairs


def run_ablation(cfg: RunConfig, *, betas, temperatures, seeds, jobs: int = 1,
                 progress: bool = False) -> dict:
    """The ablation over ``seeds``: every grid point (:func:`ablation_points`) that is not a study
    arm is trained for every seed (``jobs`` side by side), each point's epoch chosen on
    validation, test evaluated once per final model; then :func:`ablation_summary`."""
    points = ablation_points(cfg, betas=betas, temperatures=temperatures)
    require_inputs("04_ablation", cfg, seeds, betas=betas)  # before any student trains
    train = partial(train_ablation_point, progress=progress)
    tasks = [Task((point_name(p), int(s)), train, (cfg, p, int(s)))
             for p in points if study_arm_of(p, cfg) is None for s in seeds]
    run_tasks(tasks, jobs=jobs)
    return ablation_summary(cfg, points, seeds)


def _over_seeds(values) -> tuple[float, float | None]:
    """Mean and sample sd over seeds (:func:`darknb.study.stats.mean_std`); sd None for one seed."""
    mean, sd = mean_std(values)
    return mean, None if np.isnan(sd) else sd


def ablation_summary(cfg: RunConfig, points: list[dict], seeds) -> dict:
    """Per grid point: validation and test top-1 (mean, sd over seeds, the seeds) and where its
    runs live; the stated comparisons (paired over seeds, Holm within the ablation, MDE)."""
    run = RunDir(cfg.output_dir)
    files = {}
    rows = []
    for p in points:
        arm = study_arm_of(p, cfg)
        where = (stage_files(run.root, arm, seeds) if arm is not None else
                 stage_files(run.subdir("ablation").root, f"student_{point_name(p)}", seeds))
        files[point_name(p)] = where
        if not where:
            continue
        stages = [read_json(f) for f in where.values()]
        top1 = [st["top1"] for st in stages]
        val = [(st.get("selection") or {}).get("val_top1") for st in stages]
        val_mean, val_sd = _over_seeds(val) if all(v is not None for v in val) else (None, None)
        top1_mean, top1_sd = _over_seeds(top1)
        rows.append({**p, "point": point_name(p), "study_arm": arm, "val_top1": val_mean,
                     "val_top1_std": val_sd, "top1": top1_mean, "top1_std": top1_sd,
                     "seeds": sorted(where)})
    comparisons = [paired_comparison(files[point_name(a)], files[point_name(b)], a_name=point_name(a),
                                     b_name=point_name(b), question=q)
                   for a, b, q in ablation_comparisons(points, cfg)
                   if len(set(files[point_name(a)]) & set(files[point_name(b)])) >= 2]
    table = pd.DataFrame(rows)
    if not table.empty:
        table.drop(columns=["seeds"]).to_csv(run.table("ablation"), index=False)
    return {"points": rows, "comparisons": with_holm(comparisons), "seeds": [int(s) for s in seeds],
            "alpha": cfg.alpha, "beta": cfg.beta, "temperature": cfg.temperature}


def clip_norm_control(cfg: RunConfig, *, seed: int, jobs: int = 1, progress: bool = False) -> dict:
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
    # and its enhanced frames (the normalisation comes after them): the main teachers' cache when
    # 02_teacher wrote one (it is checked against the enhancer's weights before use)
    if cfg.teacher_input == "enhanced_cache" and (cfg.enhanced_frame_cache / CACHE_MANIFEST).is_file():
        controls = controls.replace(enhanced_cache_dir=str(cfg.enhanced_frame_cache))
    run_arm = partial(train_arm, progress=progress)
    done = run_tasks([Task(arm, run_arm, (controls, arm)) for arm in ("teacher", "student_no_kd")],
                     jobs=jobs)  # independent: side by side when jobs allow
    teacher, student = done["teacher"], done["student_no_kd"]
    main = {arm: read_json(run.stage(arm_name(arm, seed)))["top1"]
            for arm in ("teacher", "student_no_kd") if run.stage(arm_name(arm, seed)).is_file()}
    return {"seed": int(seed), "input_norm": "clip",
            "teacher_top1": teacher["metrics"]["top1"], "student_no_kd_top1": student["metrics"]["top1"],
            "teacher_minus_no_kd": teacher["metrics"]["top1"] - student["metrics"]["top1"],
            "main_runs_input_norm_backbone": main}


# ----------------------------------------------------------------------------------------------
# Baselines and the comparison table
# ----------------------------------------------------------------------------------------------

# The baselines that match each classifier preset. The CPU demo: R(2+1)D-18 + BERT5 from scratch
# and the DarkLight-style two-stream on the tiny ViT. The paper preset: the paper's "R(2+1)D + BERT
# (DarkLight setting)" (R(2+1)D-34, IG65M weights from ``cfg.baseline_pretrained``), the ViT
# two-stream, and DarkLight itself (one R(2+1)D-34 over raw + gamma, no key masking).
BASELINES = {
    "vit_bert_tiny": {"r2plus1d_bert": "r2plus1d_bert_tiny", "two_stream": "two_stream_bert_tiny"},
    "vit_bert": {"r2plus1d_bert": "r2plus1d_34_bert", "two_stream": "two_stream_bert",
                 "darklight": "two_stream_r2plus1d_34_bert"},
}

# What each registered classifier is, for rows that must say which backbone, depth and temporal
# head produced them. BERT5 = LateTemporalModeling3DCNN's head (key mask keep 0.8); DarkLight's
# ``self_attention`` is the same head without key masking (mask_prob=1). ``statistics``: the input
# normalisation of input_norm="backbone"; ``crop``: the training crop of crop="auto" (darknb.config:
# MultiScaleCrop = DarkLight's / LateTemporalModeling's 13 fixed positions, scales 1-.66).
BERT5 = "BERT5 (1 layer, 8 heads, key mask keep 0.8)"
DARKLIGHT_BERT = "DarkLight self_attention (BERT5, no key masking)"
_JITTER = "scale jitter (MultiScaleCrop's scales, random position)"
_MULTISCALE = "MultiScaleCrop (13 fixed positions, scales 1, .875, .75, .66)"
_TWO_VIEWS = "2: raw + gamma 1.8, one shared backbone"
MODEL_CARDS = {
    "vit_bert": dict(backbone="ViT-B/16", depth=12, temporal_head=BERT5, views="1",
                     statistics="the backbone's (timm's for hub weights)", crop=_JITTER),
    "vit_bert_tiny": dict(backbone="ViT (width 64, 8-px patches)", depth=3, temporal_head=BERT5, views="1",
                          statistics="the pre-training set's", crop=_JITTER),
    "r2plus1d_bert": dict(backbone="R(2+1)D", depth=18, temporal_head=BERT5, views="1",
                          statistics="Kinetics-400 (LateTemporalModeling's)", crop=_MULTISCALE),
    "r2plus1d_bert_tiny": dict(backbone="R(2+1)D", depth=18, temporal_head=BERT5, views="1",
                               statistics="per clip", crop=_JITTER),
    "r2plus1d_34_bert": dict(backbone="R(2+1)D", depth=34, temporal_head=BERT5, views="1",
                             statistics="Kinetics-400 (LateTemporalModeling's)", crop=_MULTISCALE),
    "two_stream_bert": dict(backbone="ViT-B/16", depth=12, temporal_head=DARKLIGHT_BERT, views=_TWO_VIEWS,
                            statistics="the backbone's, both views", crop=_JITTER,
                            gamma_view="uint8 table on native frames, before the resize (loader)"),
    "two_stream_bert_tiny": dict(backbone="ViT (width 64, 8-px patches)", depth=3,
                                 temporal_head=DARKLIGHT_BERT, views=_TWO_VIEWS,
                                 statistics="the pre-training set's, both views", crop=_JITTER,
                                 gamma_view="x ** (1 / 1.8) on the resized clip (in the model)"),
    "two_stream_r2plus1d_34_bert": dict(backbone="R(2+1)D", depth=34, temporal_head=DARKLIGHT_BERT,
                                        views=_TWO_VIEWS, statistics="ImageNet, both views (DarkLight's)",
                                        crop=_MULTISCALE,
                                        gamma_view="uint8 table on native frames, before the resize (loader)"),
}
_PAPER_SIZE = {"vit_bert_tiny": "vit_bert", "r2plus1d_bert_tiny": "r2plus1d_bert",
               "two_stream_bert_tiny": "two_stream_bert"}  # the same network at the paper's size


def baseline_config(cfg: RunConfig, model_name: str) -> RunConfig:
    """A baseline's run config: no KD, and its own pre-training. R(2+1)D-34:
    ``cfg.baseline_pretrained`` (an ig65m-pytorch IG65M file, or "" for scratch); R(2+1)D-18:
    scratch (no such weights here); the ViT two-stream: the run's ViT backbone, like the student
    (:func:`darknb.engine.build.resolve_pretrained`). Each row says which."""
    card = MODEL_CARDS.get(model_name, {})
    if card.get("backbone", "").startswith("R(2+1)D"):
        pretrained = cfg.baseline_pretrained if card.get("depth") == 34 else ""
    else:
        pretrained = resolve_pretrained(cfg)
    return cfg.without_kd().replace(model=model_name, pretrained=pretrained)


def describe_pretraining(model_name: str, pretrained: str, info: dict | None = None) -> str:
    """Where a classifier's initial weights came from, in words."""
    if not pretrained:
        return "none (from scratch)"
    if info:  # an ig65m-pytorch checkpoint: what its classifier says it was trained on
        return f"{info['source']} ({info['file']})"
    if pretrained == "hub":
        return f"timm hub weights ({MODEL_CARDS.get(model_name, {}).get('backbone', model_name)})"
    return f"file {Path(pretrained).name}"


def train_baselines(cfg: RunConfig, *, r2plus1d_epochs: int | None = None, progress: bool = False) -> dict:
    """Train ``BASELINES[cfg.model]`` on the same data and optimiser as the student.

    ``r2plus1d_epochs`` (default ``cfg.epochs``) shortens only the R(2+1)D runs: R(2+1)D-18 with
    34 M parameters costs ~30x a tiny ViT step on CPU. Each baseline trains on its own clips
    (``crop="auto"``: MultiScaleCrop for the paper-size R(2+1)D models; DarkLight's gamma view from
    the loader, see ``MODEL_CARDS``). Each predictions file records the model,
    its pre-training and its epochs (what :func:`comparison_table` names the row by).
    """
    if cfg.model not in BASELINES:
        raise ConfigError(f"no baselines defined for model {cfg.model!r}; known: {sorted(BASELINES)}")
    splits = build_datasets(cfg)
    results = {}
    for name, model_name in BASELINES[cfg.model].items():
        r2plus1d = MODEL_CARDS[model_name]["backbone"].startswith("R(2+1)D")
        epochs = (r2plus1d_epochs or cfg.epochs) if r2plus1d else cfg.epochs
        run_cfg = baseline_config(cfg, model_name).replace(epochs=epochs)
        # the model's own clips where they differ: its training crop, its gamma view (DarkLight)
        own = (splits if (run_cfg.train_crop, run_cfg.light_gamma) == (cfg.train_crop, cfg.light_gamma)
               else build_datasets(run_cfg))
        model = build_classifier(run_cfg, len(own.train.classes))
        info = getattr(model, "pretrained_info", None)
        results[name] = fit(model, own, run_cfg, name=name, progress=progress)
        write_json({**results[name]["metrics"], "epochs": epochs, "model": model_name,
                    "pretrained": run_cfg.pretrained, "pretrained_info": info,
                    "config": run_cfg.to_dict(), "fingerprint": results[name]["fingerprint"],
                    "trained_by_run": results[name]["trained_by_run"], "run_id": run_id()},
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


def _architecture(model_name: str) -> str:
    card = MODEL_CARDS[model_name]
    views = " x 2 views (raw + gamma, shared)" if card["views"] != "1" else ""
    return f"{card['backbone']} (depth {card['depth']}){views} + {card['temporal_head']}"


def cost_of_models(cfg: RunConfig, num_classes: int, *, paper_latency_repeats: int = 1,
                   run_latency_repeats: int = 3) -> list[dict]:
    """Params, GFLOPs (FlopCounterMode: FLOPs = 2 x MACs) and CPU latency per clip, for the models
    as run and for their paper-size versions at the paper's input; ``architecture`` names each.

    Paper size always includes DarkLight's real network (``darklight``: one R(2+1)D-34 run on the
    raw and the gamma clip, ~1,219 GFLOPs) and R(2+1)D-34 + BERT5 (``r2plus1d_34_bert``, ~609),
    beside the ViT two-stream. Rows for networks this run did not train are reference costs:
    FLOPs and parameters only (their CPU latency at paper size would take minutes on CPU)."""
    def enhancer():  # the teacher's enhancer as configured (Zero-DCE++'s scale factor)
        return build_enhancer(cfg.enhancer, **enhancer_kwargs(cfg))

    rows = []
    run_shape = (3, cfg.num_frames, cfg.size, cfg.size)
    baselines = BASELINES.get(cfg.model, {})
    as_run = {  # name: (the registered model that ran, how to build it)
        "teacher": (cfg.model, lambda: Teacher(enhancer(), build_classifier(cfg, num_classes))),
        "student": (cfg.model, lambda: build_classifier(cfg, num_classes)),
        # FLOPs and latency do not depend on the weights: no pre-trained file is read here
        **{name: (m, lambda m=m: build_classifier(baseline_config(cfg, m).replace(pretrained=""), num_classes))
           for name, m in baselines.items()},
    }
    for name, (model_name, make) in as_run.items():
        arch = _architecture(model_name)
        short = f"{cfg.enhancer} + {model_name}" if name == "teacher" else model_name
        rows.append({"model": name, "setting": f"as run ({short}, 3x{cfg.num_frames}x{cfg.size}x{cfg.size})",
                     "architecture": f"{cfg.enhancer} on the crop + {arch}" if name == "teacher" else arch,
                     **_cost(make(), run_shape, latency_repeats=run_latency_repeats)})
    C, T, H, W = PAPER_CLIP
    full = {name: _PAPER_SIZE.get(m, m) for name, m in baselines.items()}
    reference = {"r2plus1d_34_bert": "r2plus1d_34_bert", "darklight": "two_stream_r2plus1d_34_bert"}
    full.update({k: m for k, m in reference.items() if m not in full.values()})
    student = _PAPER_SIZE.get(cfg.model, cfg.model)
    paper = {
        "student": (student, lambda: create_model(student, num_classes), PAPER_CLIP),
        "teacher": (student, lambda: NativeResolutionTeacher(enhancer(), create_model(student, num_classes), H),
                    (C, T, *ARID_FRAME)),
        **{name: (m, lambda m=m: create_model(m, num_classes), PAPER_CLIP) for name, m in full.items()},
    }
    for name, (model_name, make, shape) in paper.items():
        arch = _architecture(model_name)
        trained = name in ("student", "teacher") or name in baselines
        repeats = paper_latency_repeats if trained else 0
        if repeats:
            model = make()
        else:  # FLOPs only: build on the meta device, no weights at all
            with torch.device("meta"):
                model = make()
        rows.append({"model": name, "setting": f"paper size (input 3x{shape[1]}x{shape[2]}x{shape[3]})",
                     "architecture": (f"{cfg.enhancer} on native {ARID_FRAME[0]}x{ARID_FRAME[1]} frames, "
                                      f"resized to {H} + {arch}") if name == "teacher" else arch,
                     **_cost(model, shape, latency_repeats=repeats, device="meta")})
    return rows


BASELINE_LABELS = {  # role of each baseline row; its network is named from what was run
    "r2plus1d_bert": "R(2+1)D + BERT",
    "two_stream": "Two-stream raw + gamma (DarkLight-style, the student's backbone)",
    "darklight": "DarkLight two-stream",
}

# The published rows' networks, where the papers say (PAPER.md "Facts measured for this project").
REPORTED_CARDS = {
    "R(2+1)D + BERT (DarkLight setting)": dict(backbone="R(2+1)D", depth=34, pretraining="IG65M",
                                               temporal_head=BERT5, input="raw frames"),
    "DarkLight": dict(backbone="R(2+1)D", depth=34, pretraining="IG65M", temporal_head=DARKLIGHT_BERT,
                      input="raw + gamma 1.8 (2 views, one shared backbone)"),
    "DL-KDD teacher: ZeroDCE + ViT + BERT": dict(backbone="ViT (size not stated)", pretraining="IG65M (as stated)",
                                                 temporal_head="BERT", input="Zero-DCE on original frames, then 112 px"),
    "DL-KDD student: ViT + BERT": dict(backbone="ViT (size not stated)", pretraining="IG65M (as stated)",
                                       temporal_head="BERT", input="raw frames"),
}


def describe_run(config: dict, *, model_name: str | None = None, arm: str | None = None,
                 enhancer: dict | None = None, pretrained_info: dict | None = None,
                 protocol: dict | str | None = None) -> dict:
    """What produced a measured row: backbone, depth, pre-training, temporal head, input frames
    and protocol (clip; test views), from the run's config (and, for a teacher, its enhancer
    record; for an IG65M baseline, what its checkpoint's classifier says it was trained on)."""
    model_name = model_name or config.get("model", "")
    card = MODEL_CARDS.get(model_name, {})
    if arm == "teacher":
        enhancer = enhancer or {}
        where = ("on native-resolution frames, before resizing (enhanced cache)"
                 if enhancer.get("teacher_input", config.get("teacher_input")) == "enhanced_cache"
                 else f"on the resized {config.get('size', '?')}-px crop (online)")
        source = enhancer.get("source", "")
        fitted = ("fitted zero-reference" if enhancer.get("fitted")
                  else f"weights {Path(source).name}" if source else "")
        frames = f"{config.get('enhancer', '?')} {where}" + (f", {fitted}" if fitted else "")
    else:
        frames = "raw + gamma 1.8" if card.get("views", "1") != "1" else "raw frames"
    if isinstance(protocol, dict):  # evaluate's metrics["protocol"]
        several = protocol.get("clips", 1) * protocol.get("crops", 1) > 1
        views = (f"{protocol.get('clips')} clips x {protocol.get('crops')} crops, "
                 f"{protocol.get('aggregate')}" if several else "1 centre clip x 1 centre crop")
    else:
        views = protocol or "1 centre clip x 1 centre crop"
    size = config.get("size", "?")
    return {"model": model_name, "backbone": card.get("backbone", model_name), "depth": card.get("depth"),
            "pretraining": describe_pretraining(model_name, config.get("pretrained", ""), pretrained_info),
            "temporal_head": card.get("temporal_head"), "input": frames,
            "protocol": f"{config.get('num_frames', '?')}x{size}x{size} {config.get('sampling', '?')} "
                        f"clips; test: {views}"}


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
        first = RunDir(out_dir).stage(arm_name(arm, summary["seeds"][0])) if summary.get("seeds") else None
        stage = read_json(first) if first is not None and first.is_file() else {}
        what = describe_run(summary.get("config") or stage.get("config") or {}, arm=arm,
                            enhancer=stage.get("enhancer"), protocol=stage.get("protocol"))
        measured.append({"source": "measured", "dataset": dataset, "method": summary["label"], **what,
                         "top1": summary["top1"], "top5": summary["top5"],
                         "top1_ci95_low": summary["top1_ci95"][0], "top1_ci95_high": summary["top1_ci95"][1],
                         "top1_seed_std": summary["top1_std"], "seeds": len(summary["seeds"]),
                         "test_videos": summary["num_videos"], "lists": lists,
                         "epochs": (summary.get("config") or {}).get("epochs"),
                         # an enhanced-input arm costs a teacher's (its enhancer included)
                         **cost_columns("teacher" if ARM_SPECS[arm].inputs == "enhanced" else "student")})
    for key, label in BASELINE_LABELS.items():
        path = RunDir(out_dir).predictions(key)
        if not path.is_file():
            continue
        pred = read_json(path)
        _, correct = correct_by_video(pred)
        ci = accuracy_ci(correct, n_boot=n_boot)
        what = describe_run(pred.get("config") or {}, model_name=pred.get("model"),
                            pretrained_info=pred.get("pretrained_info"), protocol=pred.get("protocol"))
        depth = f"-{what['depth']}" if str(what["backbone"]).startswith("R(2+1)D") else ""
        method = f"{label}: {what['backbone']}{depth}, pre-training {what['pretraining']}; {what['input']}"
        measured.append({"source": "measured", "dataset": dataset, "method": method, **what,
                         "top1": pred["top1"], "top5": pred["top5"], "top1_ci95_low": ci["low"],
                         "top1_ci95_high": ci["high"], "seeds": 1, "test_videos": len(correct),
                         "lists": lists, "epochs": pred.get("epochs"), **cost_columns(key)})
    reported = reported_table()
    for column in ("backbone", "depth", "pretraining", "temporal_head", "input"):
        reported[column] = [REPORTED_CARDS.get(m, {}).get(column) for m in reported.method]
    return pd.concat([reported, pd.DataFrame(measured)], ignore_index=True)


def paper_claims(study: dict, costs: list[dict]) -> dict:
    """The paper's two claims, as measured: does the student beat its teacher (the study's
    paired comparison over seeds, Holm-corrected), and is it cheaper (cost ratios)."""
    by = {(r["model"], r["setting"].split(" ")[0]): r for r in costs}

    def ratio(model, setting, field):
        a, b = by.get((model, setting), {}).get(field), by.get(("student", setting), {}).get(field)
        return (a / b) if a and b else None

    versus = next(c for c in study["comparisons"] if (c["a"], c["b"]) == ("student", "teacher"))
    cheaper = all(by[("student", s)]["gflops_per_clip"] < by[(m, s)]["gflops_per_clip"]
                  for s in ("as", "paper") for m in ("teacher", "two_stream", "darklight") if (m, s) in by)
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
            "darklight_over_student_gflops": {"paper_size": ratio("darklight", "paper", "gflops_per_clip")},
            "teacher_over_student_latency": {"as_run": ratio("teacher", "as", "latency_ms_per_clip"),
                                             "paper_size": ratio("teacher", "paper", "latency_ms_per_clip")}},
    }
