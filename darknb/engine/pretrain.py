"""Pre-training the backbone on well-lit video: the miniature's IG65M / ImageNet.

DL-KDD's backbone is "pre-trained on IG65M" (PAPER.md): it has learnt from well-lit video before
it ever sees a dark clip, and that is why Zero-DCE can help it, by moving dark input back toward
what it knows. :func:`pretrain_backbone` gives the synthetic miniature the same structure: the
run's classifier is trained on the well-lit pre-training set (its own classes, scenes of its own;
:mod:`darknb.synthetic`), selected on that set's validation split, and saved without its last
layer (per-frame ViT, temporal BERT blocks, input statistics) with a provenance sidecar
(:func:`darknb.models.classifiers.pretrained_stats_file`). Teacher, student and controls then fine-tune from it through the same
``pretrained=<path>`` loading a user gives for timm or other weights (``pretrained="pretrain"`` is
this file). :func:`zero_shot` asks whether a domain gap exists for enhancement to close.
"""

from __future__ import annotations

import torch

from darknb.config import RunConfig
from darknb.data.datasets import build_dataset
from darknb.data.splits import Splits
from darknb.engine.build import (
    build_classifier,
    channel_statistics,
    process_state,
    set_input_statistics,
)
from darknb.engine.checkpoint import load_final_state
from darknb.engine.evaluate import evaluate
from darknb.engine.loop import fit
from darknb.files import RunDir, save_torch, write_json
from darknb.models.classifiers import Teacher, pretrained_stats_file
from darknb.provenance import file_sha256, run_id

__all__ = ["PRETRAIN_DATASET", "pretrain_backbone", "pretrain_config", "zero_shot"]

PRETRAIN_DATASET = "synthetic_lit"


def pretrain_config(cfg: RunConfig, *, epochs: int, lr: float) -> RunConfig:
    """The run's config for pre-training: same model, clips and optimiser, the well-lit set, from
    scratch, with the pre-training set's own statistics."""
    return cfg.replace(dataset=PRETRAIN_DATASET, pretrained="", input_norm="backbone", recipe="ft",
                       epochs=epochs, lr=lr, val_fraction=0.0, alpha=1.0, beta=0.0)


def _datasets(cfg: RunConfig, *subsets: str):
    common = dict(num_frames=cfg.num_frames, size=cfg.size, sampling=cfg.sampling, seed=cfg.seed,
                  on_error=cfg.on_error, return_index=True, cache_dir=cfg.frame_cache)
    return [build_dataset(PRETRAIN_DATASET, cfg.data_root, s, train=s == "train", **common)
            for s in subsets]


def pretrain_backbone(cfg: RunConfig, *, epochs: int, lr: float, progress: bool = True) -> dict:
    """Pre-train ``cfg.model`` on the well-lit set and save its backbone for fine-tuning.

    The classifier normalises with the well-lit training frames' statistics; the epoch is chosen
    on the well-lit validation split (which is also where its accuracy is reported). Writes
    ``RunDir(cfg.output_dir).pretrained_backbone`` (the classifier without its last layer:
    ``pretrained=<that path>`` loads the ViT through timm's filter, which resamples position
    embeddings, and the temporal blocks) and its ``.json`` sidecar (statistics, classes,
    provenance, fingerprint, sha256). Resumes like every stage (a finished pre-training is not
    redone while its fingerprint matches); the same weights give the file byte for byte, so the
    stages fine-tuned from it (which record its sha256) stay valid.
    Returns the :func:`darknb.engine.loop.fit` result plus ``"backbone"``, ``"stats"``, ``"classes"``.
    """
    pre_cfg = pretrain_config(cfg, epochs=epochs, lr=lr)
    train_set, val_set = _datasets(pre_cfg, "train", "val")
    mean, std = channel_statistics(train_set)
    model = build_classifier(pre_cfg, len(train_set.classes))
    set_input_statistics(model, mean, std)
    # validated (and reported) on the well-lit validation split: there is no test split here
    result = fit(model, Splits(train_set, val_set, val_set), pre_cfg, name="pretrain",
                 progress=progress)
    # the selected weights, all but the classifier (it is for the pre-training classes): the
    # per-frame ViT, the temporal BERT blocks and the input statistics. Measured: transferring the
    # ViT alone left every dark arm at chance; the motion reasoning sits in the BERT blocks, as
    # IG65M's R(2+1)D carries its temporal layers into DarkLight.
    run = RunDir(cfg.output_dir)
    final = load_final_state(run.checkpoint("pretrain"))["model"]
    main = process_state().is_main_process  # several processes (torchrun): one writes
    if main:
        save_torch({k: v for k, v in final.items() if not k.startswith("head.fc.")},
                   run.pretrained_backbone)
    info = dict(mean=mean, std=std, classes=list(train_set.classes), dataset=PRETRAIN_DATASET,
                trained_on=f"darknb synthetic well-lit set: {len(train_set)} clips of "
                           f"{len(train_set.classes)} classes (not the target classes)",
                model=cfg.model, epochs=epochs, lr=lr, selection=result["selection"],
                val_top1=result["metrics"]["top1"], checkpoint=str(run.checkpoint("pretrain")),
                # what it was made from, and what it is: the stages that load it record its sha256
                fingerprint=result["fingerprint"], trained_by_run=result["trained_by_run"],
                run_id=run_id())
    if main:
        info["sha256"] = file_sha256(run.pretrained_backbone)
        write_json(info, pretrained_stats_file(run.pretrained_backbone))
    return {**result, "backbone": str(run.pretrained_backbone), "stats": {"mean": mean, "std": std},
            "classes": list(train_set.classes), "info": info}


def zero_shot(cfg: RunConfig, enhancer: torch.nn.Module, *, epochs: int, lr: float,
              batch_size: int = 32) -> dict:
    """The pre-trained model (backbone + its pre-training head), before any dark fine-tuning, on
    the pre-training classes' validation clips: well-lit, dark (the same clips through the dark
    camera), and dark enhanced by ``enhancer`` (the teacher's). Top-1 %.

    If enhancement moves dark input back toward what the backbone knows, ``enhanced`` beats
    ``raw``; if ``raw`` is already near ``lit`` there is no gap for it to close.
    """
    pre_cfg = pretrain_config(cfg, epochs=epochs, lr=lr)
    lit_val, dark_val = _datasets(pre_cfg, "val", "val_dark")
    state = load_final_state(RunDir(cfg.output_dir).checkpoint("pretrain"))
    model = build_classifier(pre_cfg, len(lit_val.classes))
    model.load_state_dict(state["model"])
    top1 = {name: evaluate(m, ds, batch_size=batch_size)["top1"]
            for name, m, ds in (("lit", model, lit_val), ("raw", model, dark_val),
                                ("enhanced", Teacher(enhancer, model), dark_val))}
    return {**top1, "chance": 100.0 / len(lit_val.classes), "clips": len(dark_val),
            "classes": list(lit_val.classes)}
