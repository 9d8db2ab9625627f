"""The study: every arm for several seeds, and the comparisons stated before running.

DL-KDD claims that a student seeing raw dark frames, distilled from a teacher that sees enhanced
frames, beats that teacher. A single run per model on a small test set cannot tell that from
noise, and a student/teacher pair alone cannot tell *what* transferred. So every arm is trained
for each seed (same seed = same initial head, same data order, same clips: a paired design):

- ``teacher``: Zero-DCE(raw) -> ViT + BERT, cross-entropy (the paper's teacher);
- ``student_no_kd``: ViT + BERT on raw frames, cross-entropy: the control the paper lacks. It is
  also the *raw-input teacher* of the same architecture and budget;
- ``student``: raw frames, alpha * CE + beta * T^2 * KL from the enhanced teacher of its seed;
- ``student_selfkd``: the same loss, distilled from the raw-input teacher of its seed
  (self-distillation). Only if ``student`` beats it does knowledge from the ENHANCED view
  transfer, rather than the regularisation any soft targets give.

and :data:`COMPARISONS` are tested: paired t-test over seeds (mean difference with its 95 %
interval), McNemar per seed on the shared test clips, Holm's correction over the four, and the
minimum detectable effect of this design at 80 % power. Selection (epoch) is on validation only;
the test split is evaluated once per final model.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from darknb.config import RunConfig
from darknb.data.splits import Splits, build_datasets
from darknb.engine.build import resolve_pretrained
from darknb.engine.jobs import Task, run_tasks
from darknb.engine.records import save_stage
from darknb.engine.stages import load_trained_classifier, train_student, train_teacher
from darknb.engine.teacher import (
    build_teacher_enhancer,
    ensure_enhanced_cache,
    load_teacher,
    teacher_cache_for,
)
from darknb.errors import ConfigError
from darknb.files import RunDir, read_json, write_json
from darknb.provenance import weight_files
from darknb.study.stats import (
    bootstrap_ci,
    correct_by_video,
    holm,
    mcnemar,
    mean_std,
    minimum_detectable_effect,
    paired_seed_test,
)

ARMS = {
    "teacher": "Teacher: Zero-DCE + ViT + BERT (enhanced input)",
    "student_no_kd": "Student without KD (raw input; the raw-input teacher)",
    "student": "Student, KD from the enhanced teacher (raw input)",
    "student_selfkd": "Student, KD from the raw-input teacher (self-distillation control)",
}

# (a, b, question): stated before running; the sign of mean_diff is a - b
COMPARISONS = (
    ("teacher", "student_no_kd", "Does enhancement help the pre-trained model?"),
    ("student", "student_no_kd", "Does distillation carry it over to raw input?"),
    ("student", "teacher", "The paper's claim: does the student beat its teacher?"),
    ("student", "student_selfkd", "Does knowledge from the enhanced view transfer, beyond "
                                  "soft-target regularisation?"),
)


def arm_name(arm: str, seed: int) -> str:
    """The stage name of one arm's run for one seed (its checkpoint and JSON files)."""
    return f"{arm}_s{seed}"


STUDENT_ARMS = ("student_no_kd", "student", "student_selfkd")  # in training order


def train_arm(cfg: RunConfig, arm: str, *, splits: Splits | None = None,
              progress: bool = False, refit_enhancer: bool | None = None) -> dict:
    """Train one arm for ``cfg.seed`` (stage ``arm_name(arm, cfg.seed)``) and save its summary.
    A student needs its seed's teacher (``student``) or no-KD student (``student_selfkd``).
    ``splits``: the run's datasets (built from ``cfg`` when None: a run in a process of its own).
    ``refit_enhancer``: see :func:`darknb.engine.stages.train_teacher`."""
    if arm not in ARMS:
        raise ConfigError(f"unknown arm {arm!r}; arms: {list(ARMS)}")
    splits = splits if splits is not None else build_datasets(cfg)
    run = RunDir(cfg.output_dir)
    name = arm_name(arm, cfg.seed)
    extra = {}
    if arm == "teacher":
        result = train_teacher(cfg, splits, name=name, progress=progress,
                               refit_enhancer=refit_enhancer)
        extra["enhancer"] = result["enhancer"]
    elif arm == "student_no_kd":
        result = train_student(cfg, splits, kd=False, name=name, progress=progress)
    elif arm == "student":
        teacher_name = arm_name("teacher", cfg.seed)
        teacher = load_teacher(cfg, run.checkpoint(teacher_name), splits)
        result = train_student(cfg, splits, kd=True, name=name, teacher=teacher, progress=progress,
                               teacher_cache=teacher_cache_for(cfg, teacher_name))
        extra["teacher"] = teacher_name
    else:  # student_selfkd: the raw-input teacher is this seed's no-KD student
        teacher_name = arm_name("student_no_kd", cfg.seed)
        teacher = load_trained_classifier(cfg, run.checkpoint(teacher_name), splits)
        result = train_student(cfg, splits, kd=True, name=name, teacher=teacher, progress=progress)
        extra["teacher"] = teacher_name
    save_stage(cfg.output_dir, name, result, cfg=cfg.without_kd() if arm == "student_no_kd" else cfg,
               datasets=splits.present(), **extra)
    return result


# What each training notebook reads that another notebook makes, and the command that makes it
MADE_BY = {
    "pretrained": ("01_pretrain", "python -m darknb train pretrain"),
    "teacher": ("02_teacher", "python -m darknb train teacher --set seed=N"),
    "student_no_kd": ("03_student", "python -m darknb train student_no_kd --set seed=N"),
    "student": ("03_student", "python -m darknb train student --set seed=N"),
    "student_selfkd": ("03_student", "python -m darknb train student_selfkd --set seed=N"),
}


def notebook_inputs(notebook: str, cfg: RunConfig, seeds, *, betas=()) -> dict[str, list]:
    """What ``notebook`` reads from the run folder that an earlier notebook makes, as
    ``{maker: [files]}`` (``maker`` a key of :data:`MADE_BY`): the pre-trained backbone
    (``pretrained="pretrain"``), each seed's finished teacher (the KD students, the ablation's
    grid), every arm's stages (05)."""
    run = RunDir(cfg.output_dir)
    needs: dict[str, list] = {}
    if notebook in ("02_teacher", "03_student", "04_ablation", "05_comparison") and \
            cfg.pretrained == "pretrain":
        needs["pretrained"] = [run.pretrained_backbone]
    stages = lambda arm, of: [run.stage(arm_name(arm, int(s))) for s in of]  # noqa: E731
    if notebook == "03_student" and cfg.beta > 0:
        needs["teacher"] = stages("teacher", seeds)
    if notebook == "04_ablation" and any(b > 0 for b in betas or ()):
        needs["teacher"] = stages("teacher", list(seeds)[:1])
    if notebook == "05_comparison":
        needs.update({arm: stages(arm, seeds) for arm in ARMS})
    return needs


def require_inputs(notebook: str, cfg: RunConfig, seeds, *, betas=(), made_before=()) -> None:
    """Refuse, before ``notebook`` trains anything, when what it reads from the run folder is
    missing (:func:`notebook_inputs`), naming the files and the notebook or command that makes
    them. ``made_before``: notebooks that run before it in this run (their outputs will exist)."""
    missing = []
    for maker, files in notebook_inputs(notebook, cfg, seeds, betas=betas).items():
        book, command = MADE_BY[maker]
        if book in made_before:
            continue
        absent = [Path(f).name for f in files if not Path(f).is_file()]
        if absent:
            shown = ", ".join(absent[:4]) + (" ..." if len(absent) > 4 else "")
            missing.append(f"{shown} (made by {book}, or `{command}`)")
    if missing:
        raise ConfigError(f"{notebook} reads what earlier notebooks make, and {cfg.output_dir} lacks "
                          f"{'; '.join(missing)}. Run those first, e.g. `python -m darknb run` (all "
                          "notebooks in order)")


def prepare_teachers(cfg: RunConfig) -> None:
    """What every seed's teacher reads, made once before the seeds' runs start (side by side they
    would race to make it): the fitted enhancer and, with ``teacher_input="enhanced_cache"``, the
    enhanced frame cache. Both are reused while what they were made from is unchanged; with
    ``resume=False`` they are made again."""
    enhancer, _ = build_teacher_enhancer(cfg, build_datasets(cfg).train)
    if cfg.teacher_input == "enhanced_cache":
        ensure_enhanced_cache(cfg, enhancer)


def train_teachers(cfg: RunConfig, seeds, *, jobs: int = 1, progress: bool = False) -> dict[int, dict]:
    """The enhanced-input teacher for every seed; ``jobs`` of them side by side (see
    :mod:`darknb.jobs`; 0: one per core on a CPU). The pre-trained backbone is checked first:
    nothing is fitted or trained without it."""
    resolve_pretrained(cfg)
    prepare_teachers(cfg)
    run = partial(train_arm, progress=progress, refit_enhancer=False)  # prepared just above
    return run_tasks([Task(int(s), run, (cfg.replace(seed=int(s)), "teacher")) for s in seeds],
                     jobs=jobs)


def train_students(cfg: RunConfig, seeds, *, jobs: int = 1,
                   progress: bool = False) -> dict[str, dict[int, dict]]:
    """For every seed: the no-KD student, the student distilled from that seed's enhanced teacher
    and the one distilled from that seed's no-KD student (self-distillation control); ``jobs``
    runs side by side, a self-distilled student after its seed's no-KD one. What they read
    (the backbone, each seed's teacher) is checked before any of them trains."""
    resolve_pretrained(cfg)
    require_inputs("03_student", cfg, seeds)
    run = partial(train_arm, progress=progress)
    tasks = [Task((arm, int(s)), run, (cfg.replace(seed=int(s)), arm),
                  after=(("student_no_kd", int(s)),) if arm == "student_selfkd" else ())
             for arm in STUDENT_ARMS for s in seeds]
    done = run_tasks(tasks, jobs=jobs)
    return {arm: {int(s): done[(arm, int(s))] for s in seeds} for arm in STUDENT_ARMS}


# ----------------------------------------------------------------------------------------------
# Reading the results back: per-seed table, per-arm summary, comparisons
# ----------------------------------------------------------------------------------------------


def seed_table(out_dir, seeds, arms=tuple(ARMS)) -> pd.DataFrame:
    """One row per (arm, seed) that has finished: test top-1/top-5 (%), the epoch chosen on
    validation and its validation top-1."""
    run = RunDir(out_dir)
    rows = []
    for arm in arms:
        for seed in seeds:
            path = run.stage(arm_name(arm, seed))
            if not path.is_file():
                continue
            stage = read_json(path)
            selection = stage.get("selection") or {}
            rows.append({"arm": arm, "seed": int(seed), "top1": stage["top1"], "top5": stage["top5"],
                         "epoch": selection.get("epoch"), "val_top1": selection.get("val_top1"),
                         "test_videos": stage["num_videos"]})
    return pd.DataFrame(rows, columns=["arm", "seed", "top1", "top5", "epoch", "val_top1",
                                       "test_videos"])


def summarize_arm(out_dir, arm: str, seeds, *, n_boot: int = 2000) -> dict:
    """An arm over seeds: ``top1`` (mean over seeds), ``top1_std``, ``per_seed``, and a 95 %
    bootstrap interval over test clips of the seed-averaged accuracy (``top1_ci95``)."""
    run = RunDir(out_dir)
    table = seed_table(out_dir, seeds, arms=(arm,))
    if table.empty:
        raise ConfigError(f"{arm}: no finished seed among {list(seeds)} in {out_dir}")
    first = read_json(run.stage(arm_name(arm, int(table.seed.iloc[0]))))
    correct = np.stack([correct_by_video(read_json(run.predictions(arm_name(arm, s))))[1] for s in table.seed])
    mean, std = mean_std(table.top1.tolist())
    # each clip's accuracy averaged over seeds, resampled over clips (test-set sampling only)
    low, high = (100 * v for v in bootstrap_ci(correct.mean(0), n_boot=n_boot))
    return {"label": ARMS.get(arm, arm), "top1": mean, "top1_std": std,
            "top5": float(table.top5.mean()), "top1_ci95": [float(low), float(high)],
            "per_seed": table.drop(columns="arm").to_dict("records"),
            "num_videos": int(table.test_videos.iloc[0]), "seeds": [int(s) for s in table.seed],
            "selected_on": (first.get("selection") or {}).get("selected_on"),
            "config": first.get("config"), "provenance": first.get("provenance")}


def compare_arms(out_dir, seeds, comparisons=COMPARISONS) -> tuple[list[dict], float]:
    """The stated comparisons over the seeds both arms finished: paired t-test (mean difference,
    95 % interval, p), Holm-adjusted p over all comparisons, McNemar per seed, the minimum
    detectable effect at 80 % power per comparison; and the design's MDE (root-mean-square of
    the comparisons' per-seed spread), all in top-1 points."""
    run = RunDir(out_dir)
    rows = []
    for a, b, question in comparisons:
        ta, tb = (seed_table(out_dir, seeds, arms=(x,)).set_index("seed").top1 for x in (a, b))
        common = sorted(set(ta.index) & set(tb.index))
        if len(common) < 2:
            raise ConfigError(f"comparing {a} with {b} needs >= 2 seeds both finished, got {common}")
        test = paired_seed_test(ta[common].tolist(), tb[common].tolist())
        per_seed = []
        for seed in common:
            ia, ca = correct_by_video(read_json(run.predictions(arm_name(a, seed))))
            ib, cb = correct_by_video(read_json(run.predictions(arm_name(b, seed))))
            if not np.array_equal(ia, ib):
                raise ConfigError(f"{arm_name(a, seed)} and {arm_name(b, seed)} were tested on "
                                  "different clips")
            m = mcnemar(ca, cb)
            per_seed.append({"seed": seed, "b": m["b"], "c": m["c"], "p_value": m["p_value"]})
        # no spread across seeds (e.g. every model at chance): the design's power is not estimable
        mde = minimum_detectable_effect(test["sd_diff"], len(common)) if test["sd_diff"] > 0 else None
        rows.append({"a": a, "b": b, "question": question, **test, "mde_top1": mde,
                     "mcnemar": per_seed})
    for row, adjusted in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = adjusted
    pooled_sd = float(np.sqrt(np.mean(np.square([r["sd_diff"] for r in rows]))))
    n = min(r["n_seeds"] for r in rows)
    design_mde = minimum_detectable_effect(pooled_sd, n) if pooled_sd > 0 else None
    return rows, design_mde


# The settings every arm and seed of a study shares (the arms differ by design in their loss and
# seed, the teacher in its enhanced view)
SHARED_SETTINGS = ("dataset", "split", "num_frames", "size", "sampling", "val_fraction", "model",
                   "pretrained", "input_norm", "epochs", "batch_size", "lr", "lr_schedule",
                   "warmup_epochs", "weight_decay", "grad_accum", "grad_clip", "mixed_precision")
_DISTILLED_FROM = {"student": "teacher", "student_selfkd": "student_no_kd"}


def check_study_stages(out_dir, seeds) -> dict[str, str | None]:
    """The stages a comparison is built from must belong together; returns ``{stage: the run
    that trained it}`` (reports say when there are several). Refused (:class:`ConfigError`,
    naming the stages): a distilled student whose teacher was retrained after it (its recorded
    teacher sha256 is not the file's now), and stages made with different :data:`SHARED_SETTINGS`,
    data lists or pre-trained weights.
    Stages written before fingerprints are not compared."""
    run = RunDir(out_dir)
    stages = {arm_name(a, int(s)): read_json(run.stage(arm_name(a, int(s))))
              for a in ARMS for s in seeds if run.stage(arm_name(a, int(s))).is_file()}
    problems = []
    for arm, teacher_arm in _DISTILLED_FROM.items():
        for s in seeds:
            name, teacher = arm_name(arm, int(s)), arm_name(teacher_arm, int(s))
            recorded = ((stages.get(name) or {}).get("fingerprint") or {}).get("weights", {}).get("teacher")
            if not recorded:
                continue
            ckpt = run.checkpoint(teacher)
            now = weight_files([ckpt, RunDir.best_of(ckpt)])
            if any(now.get(f) != sha for f, sha in recorded.items()):
                problems.append(f"{name} was distilled from another {teacher} than the one in "
                                f"{out_dir} now ({ckpt.name} retrained since): rerun 03_student "
                                "with resume=False so that it learns from this one")
    values: dict[tuple, dict] = {}
    for name, stage in stages.items():
        fingerprint = stage.get("fingerprint") or {}
        data = fingerprint.get("data") or {}
        settings = fingerprint.get("settings") or {}
        shared = {**{("settings", k): settings[k] for k in SHARED_SETTINGS if k in settings},
                  ("data", "lists"): data.get("lists"), ("data", "classes"): data.get("classes"),
                  ("weights", "pretrained"): (fingerprint.get("weights") or {}).get("pretrained")}
        if fingerprint:
            for key, value in shared.items():
                values.setdefault(key, {}).setdefault(repr(value), []).append(name)
    for key, groups in values.items():
        if len(groups) > 1:
            shown = "; ".join(f"{value} ({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})"
                              for value, names in groups.items())
            problems.append(f"{'.'.join(key)} differs: {shown}")
    if problems:
        raise ConfigError(f"05_comparison would compare stages that do not belong together: "
                          f"{'; '.join(problems)}. Retrain the stale ones (`python -m darknb run "
                          "--rerun` retrains every stage with one set of parameters)")
    return {name: stage.get("trained_by_run") or stage.get("run_id") for name, stage in stages.items()}


def write_study(out_dir, seeds, *, zero_shot: dict | None = None, pretrained: str = "",
                splits: dict | None = None, n_boot: int = 2000) -> dict:
    """Everything summary.json needs from the study (see the README's contract): per-arm
    summaries, the comparisons, the design's MDE; written to ``study.json`` and returned. Every
    arm's stage for every seed must exist (:func:`require_inputs`) and they must belong together
    (:func:`check_study_stages`); ``trained_by`` names the run that trained each stage, and
    ``runs`` those runs (several when stages were reused from earlier runs)."""
    run = RunDir(out_dir)
    if len(seeds) < 2:
        raise ConfigError(f"parameter 'seeds': the comparisons are paired over seeds and need at "
                          f"least 2, got {list(seeds)}")
    require_inputs("05_comparison", _config_of(out_dir), seeds)
    trained_by = check_study_stages(out_dir, seeds)
    arms = {arm: summarize_arm(out_dir, arm, seeds, n_boot=n_boot) for arm in ARMS
            if not seed_table(out_dir, seeds, arms=(arm,)).empty}
    rows, mde = compare_arms(out_dir, seeds)
    chosen = sorted({str(a["selected_on"]) for a in arms.values()})
    study = {"arms": arms, "seeds": [int(s) for s in seeds],
             "selected_on": chosen[0] if len(chosen) == 1 else ", ".join(chosen),
             "comparisons": rows, "mde_top1": mde, "zero_shot": zero_shot,
             "pretrained": pretrained, "splits": splits, "trained_by": trained_by,
             "runs": sorted({r for r in trained_by.values() if r})}
    write_json(study, run.stage("study"))
    return study


def _config_of(out_dir) -> RunConfig:
    """A config for checking the study's inputs: only the stages' names and the run folder
    matter (not the pre-trained backbone, which the stages themselves name)."""
    return RunConfig(output_dir=str(out_dir), pretrained="")


__all__ = ["ARMS", "COMPARISONS", "MADE_BY", "STUDENT_ARMS", "arm_name", "check_study_stages",
           "compare_arms", "notebook_inputs", "prepare_teachers", "require_inputs", "seed_table",
           "summarize_arm", "train_arm", "train_students", "train_teachers", "write_study"]
