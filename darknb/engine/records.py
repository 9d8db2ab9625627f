"""What a finished stage leaves behind: ``<name>.json`` (top-1/top-5, selection, history, config,
the data's identity, provenance, fingerprint, run id) and ``<name>_predictions.json`` (per-video
metrics), written by the main process only; and a stage's fingerprint (:func:`stage_fingerprint`):
what it read, so that it is reused only while that is unchanged (:mod:`darknb.provenance`).
"""

from __future__ import annotations

from pathlib import Path

from darknb.config import PATH_FIELDS
from darknb.data.protocol import data_fingerprint, data_provenance, identity_of, protocol_label
from darknb.data.video import read_stats
from darknb.engine.build import process_state
from darknb.files import RunDir, read_json, write_json
from darknb.provenance import code_version, digest, provenance, run_id, weight_files

__all__ = ["NOT_RESULT", "result_settings", "save_stage", "stage_fingerprint", "stage_summary"]

# Config fields that do not change what a stage computes: where its files are (the data's identity
# and the weights' sha256 stand for them), how it is run, how often it saves, and the test views
# (a finished stage is evaluated again on every run, so they are honoured without retraining).
NOT_RESULT = frozenset({"data_root", "cache_dir", "enhanced_cache_dir", "output_dir", "resume",
                        "num_workers", "on_error", "save_every", "tracker", "compile", "eval_views"})
# Config fields naming weight files: the fingerprint keeps the keyword ("", "hub", "pretrain") or
# "file", and the file's sha256 under "weights"
WEIGHT_FIELDS = ("pretrained", "enhancer_checkpoint", "baseline_pretrained")
# The teacher's enhanced view: they change a teacher's result, no other stage's (a student depends
# on them through its teacher's weights, whose sha256 its fingerprint holds)
ENHANCER_FIELDS = frozenset({"enhancer", "enhancer_checkpoint", "enhancer_fit_steps", "enhancer_fit",
                             "enhancer_scale_factor", "teacher_input"})


def result_settings(cfg, *, enhancer: bool = True) -> dict:
    """The settings part of a stage's fingerprint: every config field but :data:`NOT_RESULT`
    (and, for a model without the enhancer, :data:`ENHANCER_FIELDS`), weight paths reduced to
    their kind (their content is in the weights part)."""
    values = cfg.to_dict()
    skip = NOT_RESULT if enhancer else NOT_RESULT | ENHANCER_FIELDS
    settings = {k: v for k, v in values.items() if k not in skip}
    for key in WEIGHT_FIELDS:
        if key in settings:
            settings[key] = values[key] if values[key] in PATH_FIELDS[key] else "file"
    return settings


def stage_fingerprint(cfg, splits, *, reads: dict | None = None, enhancer: bool = True) -> dict:
    """What a training stage read (:mod:`darknb.provenance`): its settings (``enhancer``: the
    model includes the teacher's enhanced view, so its settings count), its data (list checksums
    and the content of its clips), the sha256 of every weight file it loaded (the pre-trained
    backbone from ``cfg.pretrained``; ``reads``: role -> path(s), e.g. the enhancer, the teacher
    checkpoint) and the code version."""
    weights = {}
    pretrained = cfg.pretrained
    if pretrained == "pretrain":  # the run's backbone (a model built otherwise read nothing)
        backbone = RunDir(cfg.output_dir).pretrained_backbone
        pretrained = str(backbone) if backbone.is_file() else ""
    if pretrained == "hub":
        weights["pretrained"] = {"hub": cfg.model}
    elif pretrained:
        weights["pretrained"] = weight_files(pretrained)
        sidecar = Path(pretrained).with_suffix(".json")  # the input statistics a backbone file's
        if sidecar.is_file():                              # weights were trained with
            info = read_json(sidecar)
            weights["pretrained"][f"{sidecar.name} mean/std"] = digest(
                {k: info.get(k) for k in ("mean", "std")})
    for role, paths in (reads or {}).items():
        if paths:
            weights[role] = weight_files(paths)
    datasets = splits.present() if hasattr(splits, "present") else [d for d in splits if d is not None]
    return {"settings": result_settings(cfg, enhancer=enhancer), "data": data_fingerprint(cfg.dataset, datasets),
            "weights": weights, "code": code_version()}


def stage_summary(result: dict, *, cfg, datasets=()) -> dict:
    """What summary.json keeps of one stage: top-1/top-5, config, provenance (no per-video arrays)."""
    metrics = result["metrics"]
    identity = result.get("dataset") or identity_of(cfg.dataset, [d for d in datasets if d is not None])
    return {
        # which decoding path served this process's reads ("cache" reads never decode); DataLoader
        # workers keep their own counters, so with num_workers > 0 this undercounts
        "video_reads": dict(read_stats), "cache_dir": getattr(cfg, "cache_dir", "") or None,
        "top1": metrics["top1"], "top5": metrics["top5"], "num_videos": metrics["num_videos"],
        "protocol": metrics.get("protocol"),  # test views: clips x crops, how they were averaged
        "selection": result.get("selection"),
        "init": result.get("init"),  # LP-FT's probe, the input statistics: what the run started from
        "per_class": metrics["per_class"], "train_seconds": result.get("train_seconds"),
        "history": result.get("history"), "checkpoint": result.get("checkpoint"),
        "skipped": result.get("skipped", []), "config": cfg.to_dict(),
        # official lists or a "custom list": said in every report and table row
        "data_protocol": protocol_label(identity) if identity else None, "dataset_identity": identity,
        # what it read (reused only while unchanged), the run that wrote this file and the one that
        # trained the weights (a finished stage is evaluated again, not retrained, by later runs)
        "fingerprint": result.get("fingerprint"), "run_id": run_id(),
        "trained_by_run": result.get("trained_by_run"), "code_changed": result.get("code_changed", []),
        "provenance": provenance(seed=cfg.seed, params=cfg.to_dict(),
                                 data=data_provenance(cfg.dataset, datasets)),
    }


def save_stage(out_dir, name: str, result: dict, *, cfg, datasets=(), **extra) -> dict:
    """Write a trained stage's two files: ``<name>.json`` (:func:`stage_summary` + ``extra``) and
    ``<name>_predictions.json`` (per-video metrics). Returns the summary. With several training
    processes (torchrun) only the main one writes."""
    run = RunDir(out_dir)
    summary = {**stage_summary(result, cfg=cfg, datasets=datasets), **extra}
    if process_state().is_main_process:
        write_json(summary, run.stage(name))
        write_json(result["metrics"], run.predictions(name))
    return summary
