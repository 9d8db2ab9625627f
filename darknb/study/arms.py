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

The normalisation control (``input_norm="dataset"``, the ``*_datanorm`` arms): the arms above
normalise every input with the statistics of the well-lit pre-training set, which leaves raw dark
clips far off-centre while enhanced ones sit closer; a teacher advantage may then be
*normalisation*, not enhancement. The ``_datanorm`` arms normalise each arm with the statistics
of its own training inputs (enhanced for the teacher, raw for the students), so the comparisons
between them separate enhancement from normalisation.

:data:`COMPARISONS` are tested: paired t-test over seeds (mean difference with its 95 %
interval), McNemar per seed on the shared test clips, Holm's correction over every stated
comparison that ran, and the minimum detectable effect of this design at 80 % power (exact
noncentral t). Selection (epoch) is on validation only; the test split is evaluated once per
final model.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    seed_interval,
)

@dataclass(frozen=True)
class Arm:
    """One arm of the study: what it is called in reports, what it sees, what it distils from
    (the arm of the same seed, or None: cross-entropy only), how it normalises its input
    ("dataset": its own training inputs' statistics; None: the run's ``input_norm``)."""

    label: str
    inputs: str                      # "enhanced" (the teacher) or "raw"
    teacher: str | None = None
    input_norm: str | None = None


ARM_SPECS = {
    "teacher": Arm("Teacher: Zero-DCE + ViT + BERT (enhanced input)", "enhanced"),
    "student_no_kd": Arm("Student without KD (raw input; the raw-input teacher)", "raw"),
    "student": Arm("Student, KD from the enhanced teacher (raw input)", "raw", "teacher"),
    "student_selfkd": Arm("Student, KD from the raw-input teacher (self-distillation control)",
                          "raw", "student_no_kd"),
    "teacher_datanorm": Arm("Teacher, own-input statistics (normalisation control)", "enhanced",
                            None, "dataset"),
    "student_no_kd_datanorm": Arm("Student without KD, own-input statistics (normalisation control)",
                                  "raw", None, "dataset"),
    "student_datanorm": Arm("Student, KD from the own-statistics teacher (normalisation control)",
                            "raw", "teacher_datanorm", "dataset"),
}
ARMS = {name: spec.label for name, spec in ARM_SPECS.items()}  # name -> label, in report order

# The designs: which arms each input normalisation runs (notebook parameter ``input_norms``)
DESIGNS = {
    "backbone": ("teacher", "student_no_kd", "student", "student_selfkd"),
    "dataset": ("teacher_datanorm", "student_no_kd_datanorm", "student_datanorm"),
}
TEACHER_ARMS = ("teacher", "teacher_datanorm")
STUDENT_ARMS = ("student_no_kd", "student", "student_selfkd", "student_no_kd_datanorm",
                "student_datanorm")  # in training order: a teacher arm before its students

# (a, b, question): stated before running; the sign of mean_diff is a - b
COMPARISONS = (
    ("teacher", "student_no_kd", "Does enhancement help the pre-trained model?"),
    ("student", "student_no_kd", "Does distillation carry it over to raw input?"),
    ("student", "teacher", "The paper's claim: does the student beat its teacher?"),
    ("student", "student_selfkd", "Does knowledge from the enhanced view transfer, beyond "
                                  "soft-target regularisation?"),
    ("teacher_datanorm", "student_no_kd_datanorm", "Normalisation control: does enhancement "
     "still help when every arm is normalised with its own training inputs' statistics?"),
    ("student_datanorm", "student_no_kd_datanorm", "Normalisation control: does distillation "
     "still help the raw student under its own statistics?"),
    ("student_no_kd_datanorm", "student_no_kd", "Normalisation control: how much of the raw "
     "student's deficit is normalisation (its own statistics vs the well-lit ones)?"),
)


def arms_of(input_norms) -> tuple[str, ...]:
    """The arms the designs ``input_norms`` run, in report order."""
    unknown = sorted(set(input_norms) - set(DESIGNS))
    if unknown or not input_norms:
        raise ConfigError(f"parameter 'input_norms': {list(input_norms)!r}; choose one or more of "
                          f"{sorted(DESIGNS)}")
    return tuple(a for a in ARMS if any(a in DESIGNS[n] for n in input_norms))


def arm_config(cfg: RunConfig, arm: str) -> RunConfig:
    """``cfg`` for ``arm``: its input normalisation where the arm fixes one."""
    spec = ARM_SPECS[arm]
    return cfg.replace(input_norm=spec.input_norm) if spec.input_norm else cfg


def arm_name(arm: str, seed: int) -> str:
    """The stage name of one arm's run for one seed (its checkpoint and JSON files)."""
    return f"{arm}_s{seed}"


def train_arm(cfg: RunConfig, arm: str, *, splits: Splits | None = None,
              progress: bool = False, refit_enhancer: bool | None = None) -> dict:
    """Train one arm for ``cfg.seed`` (stage ``arm_name(arm, cfg.seed)``) and save its summary.
    A student needs its seed's teacher (``student``) or no-KD student (``student_selfkd``).
    ``splits``: the run's datasets (built from ``cfg`` when None: a run in a process of its own).
    ``refit_enhancer``: see :func:`darknb.engine.stages.train_teacher`."""
    if arm not in ARM_SPECS:
        raise ConfigError(f"unknown arm {arm!r}; arms: {list(ARM_SPECS)}")
    spec, cfg = ARM_SPECS[arm], arm_config(cfg, arm)
    splits = splits if splits is not None else build_datasets(cfg)
    run = RunDir(cfg.output_dir)
    name = arm_name(arm, cfg.seed)
    extra = {"arm": arm}
    if spec.inputs == "enhanced":
        result = train_teacher(cfg, splits, name=name, progress=progress,
                               refit_enhancer=refit_enhancer)
        extra["enhancer"] = result["enhancer"]
    elif spec.teacher is None:
        result = train_student(cfg, splits, kd=False, name=name, progress=progress)
    else:
        teacher_name = arm_name(spec.teacher, cfg.seed)
        if ARM_SPECS[spec.teacher].inputs == "enhanced":
            teacher = load_teacher(cfg, run.checkpoint(teacher_name), splits)
            cache = teacher_cache_for(cfg, teacher_name)
        else:  # self-distillation: the raw-input teacher is this seed's no-KD student
            teacher, cache = load_trained_classifier(cfg, run.checkpoint(teacher_name), splits), None
        result = train_student(cfg, splits, kd=True, name=name, teacher=teacher,
                               teacher_cache=cache, progress=progress)
        extra["teacher"] = teacher_name
    save_stage(cfg.output_dir, name, result, cfg=cfg.without_kd() if spec.teacher is None else cfg,
               datasets=splits.present(), **extra)
    return result


# What each training notebook reads that another notebook makes, and the command that makes it
MADE_BY = {
    "pretrained": ("01_pretrain", "python -m darknb train pretrain"),
    **{arm: ("02_teacher" if spec.inputs == "enhanced" else "03_student",
             f"python -m darknb train {arm} --set seed=N") for arm, spec in ARM_SPECS.items()},
}


def notebook_inputs(notebook: str, cfg: RunConfig, seeds, *, betas=(),
                    input_norms=("backbone",)) -> dict[str, list]:
    """What ``notebook`` reads from the run folder that an earlier notebook makes, as
    ``{maker: [files]}`` (``maker`` a key of :data:`MADE_BY`): the pre-trained backbone
    (``pretrained="pretrain"``), each seed's finished teachers of the designs ``input_norms``
    (the KD students; the ablation's grid: ``seeds`` are its seeds), every arm's stages (05)."""
    run = RunDir(cfg.output_dir)
    needs: dict[str, list] = {}
    if notebook in ("02_teacher", "03_student", "04_ablation", "05_comparison") and \
            cfg.pretrained == "pretrain":
        needs["pretrained"] = [run.pretrained_backbone]
    stages = lambda arm, of: [run.stage(arm_name(arm, int(s))) for s in of]  # noqa: E731
    arms = arms_of(input_norms)
    if notebook == "03_student" and cfg.beta > 0:
        needs.update({arm: stages(arm, seeds) for arm in arms if arm in TEACHER_ARMS})
    if notebook == "04_ablation":
        needs["student_no_kd"] = stages("student_no_kd", seeds)  # beta = 0 and the reference lines
        if any(b > 0 for b in betas or ()):
            needs["teacher"] = stages("teacher", seeds)
    if notebook == "05_comparison":
        needs.update({arm: stages(arm, seeds) for arm in arms})
    return needs


def require_inputs(notebook: str, cfg: RunConfig, seeds, *, betas=(), made_before=(),
                   input_norms=("backbone",)) -> None:
    """Refuse, before ``notebook`` trains anything, when what it reads from the run folder is
    missing (:func:`notebook_inputs`), naming the files and the notebook or command that makes
    them. ``made_before``: notebooks that run before it in this run (their outputs will exist)."""
    missing = []
    for maker, files in notebook_inputs(notebook, cfg, seeds, betas=betas,
                                        input_norms=input_norms).items():
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


def train_teachers(cfg: RunConfig, seeds, *, input_norms=("backbone",), jobs: int = 1,
                   progress: bool = False) -> dict[str, dict[int, dict]]:
    """Every teacher arm of the designs ``input_norms`` for every seed; ``jobs`` of them side by
    side (see :mod:`darknb.engine.jobs`; 0: one per core on a CPU). The pre-trained backbone is
    checked first: nothing is fitted or trained without it."""
    resolve_pretrained(cfg)
    arms = [a for a in arms_of(input_norms) if a in TEACHER_ARMS]
    prepare_teachers(cfg)
    run = partial(train_arm, progress=progress, refit_enhancer=False)  # prepared just above
    done = run_tasks([Task((arm, int(s)), run, (cfg.replace(seed=int(s)), arm))
                      for arm in arms for s in seeds], jobs=jobs)
    return {arm: {int(s): done[(arm, int(s))] for s in seeds} for arm in arms}


def train_students(cfg: RunConfig, seeds, *, input_norms=("backbone",), jobs: int = 1,
                   progress: bool = False) -> dict[str, dict[int, dict]]:
    """For every seed, every student arm of the designs ``input_norms``: the no-KD student, the
    student distilled from that seed's enhanced teacher, the one distilled from that seed's no-KD
    student (self-distillation control) and their ``_datanorm`` twins; ``jobs`` runs side by side,
    a self-distilled student after its seed's no-KD one. What they read (the backbone, each seed's
    teacher) is checked before any of them trains."""
    resolve_pretrained(cfg)
    require_inputs("03_student", cfg, seeds, input_norms=input_norms)
    arms = [a for a in arms_of(input_norms) if a in STUDENT_ARMS]
    run = partial(train_arm, progress=progress)
    tasks = []
    for arm in arms:
        teacher = ARM_SPECS[arm].teacher
        for s in seeds:
            after = ((teacher, int(s)),) if teacher in arms else ()
            tasks.append(Task((arm, int(s)), run, (cfg.replace(seed=int(s)), arm), after=after))
    done = run_tasks(tasks, jobs=jobs)
    return {arm: {int(s): done[(arm, int(s))] for s in seeds} for arm in arms}


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


def _finite(value):
    return None if value is None or not np.isfinite(value) else float(value)


def summarize_arm(out_dir, arm: str, seeds, *, n_boot: int = 2000) -> dict:
    """An arm over seeds: ``top1`` (mean over seeds), ``top1_std``, ``per_seed``, ``top1_ci95``
    (the Student-t interval of the mean over seeds: how far this design's mean moves with the
    training runs) and ``top1_ci95_test_sampling`` (a bootstrap over test clips of the
    seed-averaged accuracy: test-set sampling only). Validation top-1 of the selected epochs too."""
    run = RunDir(out_dir)
    table = seed_table(out_dir, seeds, arms=(arm,))
    if table.empty:
        raise ConfigError(f"{arm}: no finished seed among {list(seeds)} in {out_dir}")
    first = read_json(run.stage(arm_name(arm, int(table.seed.iloc[0]))))
    correct = np.stack([correct_by_video(read_json(run.predictions(arm_name(arm, s))))[1] for s in table.seed])
    top1 = table.top1.tolist()
    mean, std = mean_std(top1)
    low, high = seed_interval(top1)
    # each clip's accuracy averaged over seeds, resampled over clips (test-set sampling only)
    boot_low, boot_high = (100 * v for v in bootstrap_ci(correct.mean(0), n_boot=n_boot))
    val = [v for v in table.val_top1 if v is not None and np.isfinite(v)]
    return {"label": ARMS.get(arm, arm), "top1": mean, "top1_std": _finite(std),
            "top5": float(table.top5.mean()),
            "top1_ci95": [_finite(low), _finite(high)],
            "top1_ci95_method": f"Student-t interval of the mean over {len(top1)} seeds",
            "top1_ci95_test_sampling": [float(boot_low), float(boot_high)],
            "top1_ci95_test_sampling_method": "bootstrap over test clips of the seed-averaged "
                                              "accuracy (test-set sampling only)",
            "val_top1": float(np.mean(val)) if val else None,
            "val_top1_std": _finite(np.std(val, ddof=1)) if len(val) > 1 else None,
            "per_seed": table.drop(columns="arm").to_dict("records"),
            "num_videos": int(table.test_videos.iloc[0]), "seeds": [int(s) for s in table.seed],
            "selected_on": (first.get("selection") or {}).get("selected_on"),
            "config": first.get("config"), "init": first.get("init"),
            "provenance": first.get("provenance")}


def paired_comparison(a: dict[int, Path], b: dict[int, Path], *, a_name: str, b_name: str,
                      question: str) -> dict:
    """``a - b`` over the seeds both finished (``{seed: stage JSON}``): the paired t-test over
    seeds (mean difference, its 95 % interval, p), McNemar per seed on the shared test clips, and
    the minimum detectable effect of this design (exact noncentral t, 80 % power, alpha 0.05)."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise ConfigError(f"comparing {a_name} with {b_name} needs >= 2 seeds both finished, got "
                          f"{common}: set 'seeds' to two or more")
    top1 = {k: [read_json(side[s])["top1"] for s in common] for k, side in (("a", a), ("b", b))}
    test = paired_seed_test(top1["a"], top1["b"])
    per_seed = []
    for seed in common:
        ia, ca = correct_by_video(read_json(_predictions_of(a[seed])))
        ib, cb = correct_by_video(read_json(_predictions_of(b[seed])))
        if not np.array_equal(ia, ib):
            raise ConfigError(f"{a[seed].stem} and {b[seed].stem} were tested on different clips")
        m = mcnemar(ca, cb)
        per_seed.append({"seed": seed, "b": m["b"], "c": m["c"], "p_value": m["p_value"]})
    # no spread across seeds (e.g. every model at chance): the design's power is not estimable
    mde = minimum_detectable_effect(test["sd_diff"], len(common)) if test["sd_diff"] > 0 else None
    return {"a": a_name, "b": b_name, "question": question, **test, "mde": mde, "mde_top1": mde,
            "mde_method": "exact noncentral t (statsmodels TTestPower), 80 % power, alpha 0.05",
            "mcnemar": per_seed}


def _predictions_of(stage: Path) -> Path:
    return RunDir(stage.parent).predictions(stage.stem)


def stage_files(out_dir, arm: str, seeds) -> dict[int, Path]:
    """``{seed: <arm>_s<seed>.json}`` for the seeds ``arm`` finished in ``out_dir``."""
    run = RunDir(out_dir)
    return {int(s): run.stage(arm_name(arm, s)) for s in seeds if run.stage(arm_name(arm, s)).is_file()}


def with_holm(rows: list[dict]) -> list[dict]:
    """Holm-adjusted p (``p_holm``) over ``rows``, a family of stated comparisons."""
    for row, adjusted in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = adjusted
    return rows


def compare_arms(out_dir, seeds, comparisons=COMPARISONS) -> tuple[list[dict], float | None]:
    """The stated comparisons whose arms both ran (:func:`paired_comparison` each), Holm-adjusted
    over all of them; and the design's MDE (root-mean-square of the comparisons' per-seed
    spread), all in top-1 points."""
    rows = []
    for a, b, question in comparisons:
        fa, fb = stage_files(out_dir, a, seeds), stage_files(out_dir, b, seeds)
        if not fa or not fb:
            continue  # a design that did not run (e.g. input_norms without "dataset")
        rows.append(paired_comparison(fa, fb, a_name=a, b_name=b, question=question))
    if not rows:
        raise ConfigError(f"no stated comparison has both arms finished in {out_dir}")
    with_holm(rows)
    pooled_sd = float(np.sqrt(np.mean(np.square([r["sd_diff"] for r in rows]))))
    n = min(r["n_seeds"] for r in rows)
    design_mde = minimum_detectable_effect(pooled_sd, n) if pooled_sd > 0 else None
    return rows, design_mde


# The settings every arm and seed of a study shares (the arms differ by design in their loss and
# seed, the teacher in its enhanced view, the designs in their input normalisation)
SHARED_SETTINGS = ("dataset", "split", "num_frames", "size", "sampling", "val_fraction", "model",
                   "pretrained", "recipe", "epochs", "batch_size", "lr", "lr_schedule",
                   "warmup_epochs", "weight_decay", "grad_accum", "grad_clip", "mixed_precision")
_DISTILLED_FROM = {arm: spec.teacher for arm, spec in ARM_SPECS.items() if spec.teacher}


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


BACKBONE_VARIATION = Path(__file__).with_name("backbone_variation.json")


def backbone_variation(config: dict | None = None) -> dict | None:
    """What moved when only the pre-trained backbone changed (pre-training seeds 0 and 1 of the
    demo), measured once by ``benchmarks/backbone_variation.py``; None until measured, and None
    for a run with other settings than those it was measured with (``config``: an arm's)."""
    if not BACKBONE_VARIATION.is_file():
        return None
    variation = read_json(BACKBONE_VARIATION)
    settings = variation.get("settings") or {}
    if config is not None and any(config.get(k) != v for k, v in settings.items()):
        return None  # measured for the demo's settings, not this run's
    return variation


def write_study(out_dir, seeds, *, zero_shot: dict | None = None, pretrained: str = "",
                splits: dict | None = None, n_boot: int = 2000, recipe: str | None = None,
                input_norms=None) -> dict:
    """Everything summary.json needs from the study (see the README's contract): per-arm
    summaries, the comparisons, the design's MDE; written to ``study.json`` and returned. Every
    arm's stage for every seed must exist (:func:`require_inputs`) and they must belong together
    (:func:`check_study_stages`); ``trained_by`` names the run that trained each stage, and
    ``runs`` those runs (several when stages were reused from earlier runs)."""
    run = RunDir(out_dir)
    if len(seeds) < 2:
        raise ConfigError(f"parameter 'seeds': the comparisons are paired over seeds and need at "
                          f"least 2, got {list(seeds)}")
    require_inputs("05_comparison", _config_of(out_dir), seeds,
                   input_norms=input_norms if input_norms is not None else ("backbone",))
    trained_by = check_study_stages(out_dir, seeds)
    arms = {arm: summarize_arm(out_dir, arm, seeds, n_boot=n_boot) for arm in ARMS
            if not seed_table(out_dir, seeds, arms=(arm,)).empty}
    rows, mde = compare_arms(out_dir, seeds)
    chosen = sorted({str(a["selected_on"]) for a in arms.values()})
    study = {"arms": arms, "seeds": [int(s) for s in seeds],
             "selected_on": chosen[0] if len(chosen) == 1 else ", ".join(chosen),
             "comparisons": rows, "mde_top1": mde, "zero_shot": zero_shot,
             "pretrained": pretrained, "splits": splits, "recipe": recipe,
             "input_norms": list(input_norms) if input_norms is not None else None,
             "backbone_variation": backbone_variation(
                 (arms.get("teacher") or next(iter(arms.values()), {})).get("config")),
             "trained_by": trained_by,
             "runs": sorted({r for r in trained_by.values() if r})}
    write_json(study, run.stage("study"))
    return study


def _config_of(out_dir) -> RunConfig:
    """A config for checking the study's inputs: only the stages' names and the run folder
    matter (not the pre-trained backbone, which the stages themselves name)."""
    return RunConfig(output_dir=str(out_dir), pretrained="")


__all__ = ["ARMS", "ARM_SPECS", "COMPARISONS", "DESIGNS", "MADE_BY", "STUDENT_ARMS", "TEACHER_ARMS",
           "Arm", "arm_config", "arm_name", "arms_of", "backbone_variation", "check_study_stages",
           "compare_arms", "notebook_inputs", "paired_comparison", "prepare_teachers",
           "require_inputs", "seed_table", "stage_files", "summarize_arm", "train_arm",
           "train_students", "train_teachers", "with_holm", "write_study"]
