"""The stages of DL-KDD: the teacher T = T_c(T_e(x)) on enhanced frames, then the student on raw
frames, distilled from it (or the no-KD control, beta = 0). Each takes the run's :class:`Splits`
(built once by the caller) and returns :func:`darknb.engine.loop.fit`'s result.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from torch import nn

from darknb.config import RunConfig
from darknb.data.protocol import check_same_dataset, dataset_identity
from darknb.data.splits import Splits
from darknb.engine.build import build_classifier, input_statistics, set_input_statistics
from darknb.engine.checkpoint import load_final_state
from darknb.engine.distill import TeacherCache
from darknb.engine.loop import fit
from darknb.engine.probe import linear_probe
from darknb.engine.teacher import (
    build_teacher_enhancer,
    ensure_enhanced_cache,
    load_teacher,
    teacher_targets,
)
from darknb.errors import CheckpointError
from darknb.files import RunDir
from darknb.models.classifiers import Teacher
from darknb.models.enhancers import IdentityEnhancer, enhance_uint8

__all__ = ["initialise", "load_trained_classifier", "train_student", "train_teacher"]


def initialise(model: nn.Module, cfg: RunConfig, splits: Splits, *, name: str, transform=None,
               inputs: str = "raw") -> dict:
    """What a run starts from beyond the pre-trained weights, the same for every arm:
    ``input_norm="dataset"``: the per-channel statistics of the arm's own training inputs
    (``inputs``: "raw" or "enhanced"; ``transform``: an online teacher's enhancer on uint8 frames);
    ``recipe="lp-ft"``: the linear probe on the frozen features of its own training clips
    (:func:`darknb.engine.probe.linear_probe`), skipped when the run resumes from a checkpoint
    (those weights replace it). Returns what was done, for the stage's record."""
    info: dict = {"recipe": cfg.recipe, "input_norm": cfg.input_norm}
    if cfg.input_norm == "dataset":
        stats = input_statistics(cfg, splits.train, transform=transform, what=inputs)
        set_input_statistics(model, stats["mean"], stats["std"])
        info["input_statistics"] = {k: stats[k] for k in ("input", "mean", "std")}
    resuming = cfg.resume and RunDir(cfg.output_dir).checkpoint(name).exists()
    if cfg.recipe == "lp-ft" and not resuming:
        info.update(linear_probe(model, splits.train, num_classes=len(splits.train.classes),
                                 batch_size=max(cfg.batch_size, 32)))
    return info


def train_teacher(cfg: RunConfig, splits: Splits, *, name: str = "teacher",
                  progress: bool = True, refit_enhancer: bool | None = None) -> dict:
    """Fit/load the enhancer, train T = T_c(T_e(x)) with cross-entropy, evaluate it. The enhancer
    is fitted once per run folder and shared by every seed's teacher (it is not what varies).

    ``cfg.teacher_input="online"``: T_e enhances every resized training / test crop. With
    ``"enhanced_cache"`` the frozen T_e enhances every native-resolution frame ONCE, before the
    resize (the paper's order; :func:`darknb.engine.teacher.ensure_enhanced_cache`, shared by the
    seeds as the enhancer is), and T_c trains and is evaluated on clips of that cache: the same
    crops of the same frames the student sees raw.

    ``refit_enhancer`` (default ``not cfg.resume``): fit the enhancer again even when the run has
    one (:func:`darknb.engine.teacher.build_teacher_enhancer`); the seeds of a multi-seed run pass
    False, the run fitted it once before them. The teacher's fingerprint names the enhancer's
    weight file (sha256) and, with the enhanced cache, the content of its frames."""
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    enhancer, enhancer_info = build_teacher_enhancer(cfg, splits.train, refit=refit_enhancer)
    enhancer_info["teacher_input"] = cfg.teacher_input
    source = enhancer_info.get("source")
    reads = {"enhancer": source if source and Path(source).is_file() else None}
    transform = None
    if cfg.teacher_input == "enhanced_cache":
        enhancer_info["enhanced_cache"] = ensure_enhanced_cache(
            cfg, enhancer, rebuild=None if refit_enhancer is None else refit_enhancer)
        splits = splits.with_cache(cfg.enhanced_frame_cache)
        enhancer = IdentityEnhancer()  # the frames are enhanced already
    else:
        transform = partial(enhance_uint8, enhancer.eval(), device="cpu", as_uint8=False)
    teacher = Teacher(enhancer, build_classifier(cfg, len(splits.train.classes)))
    init = initialise(teacher, cfg, splits, name=name, transform=transform, inputs="enhanced")
    result = fit(teacher, splits, cfg.without_kd(), name=name, progress=progress,
                 extra_state={"enhancer": enhancer_info, "init": init}, reads=reads)
    result.update(enhancer=enhancer_info, init=init)
    return result


def train_student(cfg: RunConfig, splits: Splits, *, kd: bool = True, name: str | None = None,
                  teacher: nn.Module | None = None, teacher_cache: TeacherCache | None = None,
                  progress: bool = True) -> dict:
    """Train the student (raw frames only). ``kd=True``: alpha*CE + beta*T^2*KL against the frozen
    teacher (this run's ``teacher.ckpt`` when none is given); ``kd=False``: the control the paper
    lacks, the same student with beta = 0.

    An enhanced-cache teacher (``teacher.enhanced_cache``, see
    :func:`darknb.engine.teacher.load_teacher`) gets its soft targets computed up front on the
    enhanced clips (into ``teacher_cache``, or an in-memory one); the run's ``teacher_seconds``
    includes that time."""
    distil = kd and cfg.beta > 0
    prefill_seconds = 0.0
    reads = {}
    if distil:
        if teacher is None:
            teacher = load_teacher(cfg, RunDir(cfg.output_dir).checkpoint("teacher"), splits)
        # the teacher's weight files (load_teacher / load_trained_classifier name them): its
        # sha256 is part of the student's fingerprint, so a retrained teacher makes it stale
        reads["teacher"] = getattr(teacher, "checkpoint_files", None)
        teacher, teacher_cache, prefill_seconds = teacher_targets(cfg, teacher, splits.train,
                                                                  teacher_cache, progress=progress)
    student = build_classifier(cfg, len(splits.train.classes))
    name = name or ("student" if kd else "student_no_kd")
    init = initialise(student, cfg, splits, name=name)
    result = fit(student, splits, cfg if kd else cfg.without_kd(), name=name,
                 teacher=teacher if kd else None, teacher_cache=teacher_cache, progress=progress,
                 extra_state={"init": init}, reads=reads)
    result["teacher_seconds"] = result.get("teacher_seconds", 0.0) + prefill_seconds
    result["init"] = init
    return result


def load_trained_classifier(cfg: RunConfig, path: str | Path, splits: Splits) -> nn.Module:
    """A trained classifier (e.g. a no-KD student, the raw-input teacher of the self-distillation
    control) with its selected weights, rebuilt from its checkpoint's config; eval mode. Like
    :func:`darknb.engine.teacher.load_teacher`, it refuses a checkpoint made on other data."""
    state = load_final_state(path)
    check_same_dataset(state.get("dataset"), dataset_identity(cfg.dataset, splits.present()),
                       what=f"checkpoint {str(path)!r}")
    saved = RunConfig.from_params(state.get("config", {}))
    # every weight comes from the checkpoint: no pre-trained file is read (it may have moved)
    model = build_classifier(saved.replace(pretrained=""), len(splits.train.classes))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit {saved.model}: {err}") from err
    path = Path(path)
    model.checkpoint_files = [str(p) for p in (path, RunDir.best_of(path)) if p.is_file()]
    return model.eval()
