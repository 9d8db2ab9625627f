"""What a finished stage leaves behind: ``<name>.json`` (top-1/top-5, selection, history, config,
the data's identity, provenance) and ``<name>_predictions.json`` (per-video metrics), written by
the main process only.
"""

from __future__ import annotations

from darknb.data.protocol import data_provenance, identity_of, protocol_label
from darknb.data.video import read_stats
from darknb.engine.build import process_state
from darknb.files import RunDir, write_json
from darknb.provenance import provenance

__all__ = ["save_stage", "stage_summary"]


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
