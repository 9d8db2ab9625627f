"""What a training run is built from: the classifier (and its pre-trained weights), the optimiser,
the learning-rate schedule, the accelerator and the seeds.

Every random initial state is a function of the config's seed (and, per epoch, of the epoch and
the process), never of the RNG's history, so that runs side by side, resumed runs and runs in
another order give the same weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, set_seed
from timm.optim import param_groups_weight_decay
from torch import nn

from darknb.config import RunConfig
from darknb.errors import CheckpointError, ConfigError
from darknb.files import RunDir
from darknb.models.classifiers import create_model
from darknb.models.enhancers import ZeroDCE

__all__ = ["build_classifier", "channel_statistics", "check_patch_size", "enhancer_kwargs",
           "epoch_seed", "fast_enhancers", "input_statistics", "lr_at", "make_accelerator",
           "make_optimizer", "patch_size", "process_state", "resolve_pretrained",
           "set_input_statistics", "set_seed"]


def resolve_pretrained(cfg: RunConfig) -> str:
    """``cfg.pretrained`` with "pretrain" replaced by the path of the run's pre-trained backbone."""
    if cfg.pretrained != "pretrain":
        return cfg.pretrained
    path = RunDir(cfg.output_dir).pretrained_backbone
    if not path.is_file():
        raise CheckpointError(
            f"pretrained='pretrain' is this run's backbone pre-trained on the well-lit set, {path}, "
            "which does not exist yet: run notebook 01_pretrain (`python -m darknb run --notebooks "
            "01_pretrain`) or `python -m darknb train pretrain`; or set pretrained to '' (scratch), "
            "'hub' or the path of a backbone file")
    return str(path)


def _patch_of(model: nn.Module) -> int:
    """The pixel size of a model's patches (its ViT's patch embedding), 1 without one."""
    sizes = [getattr(m, "patch_size") for m in model.modules() if type(m).__name__ == "PatchEmbed"]
    sizes = [max(s) if isinstance(s, (tuple, list)) else int(s) for s in sizes]
    return max(sizes, default=1)


def patch_size(model_name: str) -> int:
    """The patch size in pixels of a registered model (8 for ``vit_bert_tiny``, 16 for
    ``vit_bert``; 1 for the convolutional ones), read from the model built on the meta device:
    no weights, no memory, nothing downloaded."""
    with torch.device("meta"):
        model = create_model(model_name, 2)
    return _patch_of(model)


def check_patch_size(model_name: str, size: int, patch: int | None = None) -> None:
    """Refuse an input ``size`` that is not a multiple of the model's patch size: the rows and
    columns past the last whole patch would never be seen."""
    patch = patch_size(model_name) if patch is None else patch
    if size % patch:
        low = size - size % patch
        raise ConfigError(f"parameter 'size': {size} px is not a multiple of {model_name}'s "
                          f"{patch}-px patches, so the last {size % patch} rows and columns of "
                          f"every frame would be ignored; use {low} or {low + patch}")


def build_classifier(cfg: RunConfig, num_classes: int) -> nn.Module:
    """``cfg.model`` for ``num_classes``; its initial weights are a function of ``cfg.seed``
    (and of the pre-trained backbone, :func:`resolve_pretrained`). An input size that is not a
    multiple of its patch size is refused (:func:`check_patch_size`)."""
    pretrained = resolve_pretrained(cfg)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes, img_size=cfg.size, num_frames=cfg.num_frames,
                         pretrained=pretrained, input_norm=cfg.input_norm)
    check_patch_size(cfg.model, cfg.size, _patch_of(model))
    return model


def channel_statistics(dataset, *, max_videos: int = 400, transform=None
                       ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a dataset's frames in [0, 1] (the first ``max_videos`` in a
    fixed order, every frame), as ImageNet's statistics are of ImageNet's images. ``transform``
    (uint8 frames ``(N, H, W, 3)`` -> uint8 or float in [0, 1]) is applied first: an online
    teacher's enhancer."""
    total = np.zeros(3)
    squares = np.zeros(3)
    count = 0
    for rel, _ in dataset.samples[:max_videos]:
        frames = dataset.frames(rel, np.arange(dataset.frame_count(rel)))
        if transform is not None:
            frames = transform(frames)
        frames = frames.reshape(-1, 3) / (255.0 if frames.dtype == np.uint8 else 1.0)
        total += frames.sum(0)
        squares += (frames ** 2).sum(0)
        count += len(frames)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]


def set_input_statistics(model: nn.Module, mean, std) -> None:
    """Write the per-channel input statistics ``model`` normalises with (its ``mean`` / ``std``
    buffers, saved with its weights; a Teacher's are its classifier's)."""
    target = getattr(model, "classifier", model)
    with torch.no_grad():
        target.mean.copy_(torch.tensor(mean, dtype=target.mean.dtype).view_as(target.mean))
        target.std.copy_(torch.tensor(std, dtype=target.std.dtype).view_as(target.std))


def input_statistics(cfg: RunConfig, dataset, *, transform=None, what: str = "raw") -> dict:
    """``input_norm="dataset"``: the per-channel statistics of an arm's own training inputs
    (``dataset``'s frames, through ``transform`` for an online teacher). Computed once per run and
    input (``what``: "raw" or "enhanced") and kept in ``<output_dir>/input_stats.json``, keyed by
    the frames' cache and its manifest, so every seed's arm of the same input shares them."""
    import hashlib
    import json

    from darknb.files import read_json, write_json

    cache = getattr(dataset, "cache_dir", None)
    manifest = Path(cache) / "cache.json" if cache else None
    key = hashlib.sha256(json.dumps({
        "what": what, "cache": str(cache), "list": str(getattr(dataset, "list_file", "")),
        "manifest": manifest.read_text() if manifest is not None and manifest.is_file() else None,
    }, sort_keys=True).encode()).hexdigest()[:16]
    path = RunDir(cfg.output_dir).root / "input_stats.json"
    known = read_json(path) if path.is_file() else {}
    if key not in known:
        mean, std = channel_statistics(dataset, transform=transform)
        known[key] = {"input": what, "mean": mean, "std": std, "cache": str(cache),
                      "videos": min(len(dataset.samples), 400)}
        if process_state().is_main_process:
            write_json(known, path)
    return known[key]


def enhancer_kwargs(cfg: RunConfig) -> dict:
    """Constructor arguments of ``cfg.enhancer`` that the config sets (Zero-DCE++'s run-time
    ``scale_factor``)."""
    return {"scale_factor": cfg.enhancer_scale_factor} if cfg.enhancer == "zerodce++" else {}


# ViT position embeddings and CLS tokens (the backbone's and the BERT head's) are not decayed
NO_WEIGHT_DECAY = ("*pos_embed", "*cls_token")


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, CLS tokens and positional embeddings
    (``timm.optim.param_groups_weight_decay``, timm's rule). The fused implementation (one kernel
    for every parameter, on the CPU as on a GPU): measured on the demo's tiny ViT at 1 thread,
    0.47 ms per step instead of 2.0 ms for PyTorch's per-parameter loop on a CPU."""
    groups = param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=NO_WEIGHT_DECAY)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)


def lr_at(step: int, *, steps_per_epoch: int, cfg: RunConfig) -> float:
    """The learning rate at optimiser step ``step`` (0-based): linear warm-up over
    ``cfg.warmup_epochs`` epochs, then ``cfg.lr`` (``lr_schedule="constant"``) or a cosine from
    ``cfg.lr`` to 0 at the last step (``"cosine"``)."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.lr_schedule == "constant":
        return cfg.lr
    total = max(1, cfg.epochs * steps_per_epoch - warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / total)))


def process_state() -> PartialState:
    """This process's place among the processes of a run (``torchrun`` / ``accelerate launch``):
    ``.is_main_process``, ``.process_index``, ``.num_processes``, ``main_process_first()``. The
    same settings as :func:`make_accelerator`'s (accelerate keeps one such state per process)."""
    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(cfg: RunConfig) -> Accelerator:
    precision = cfg.mixed_precision
    if precision == "auto":
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "no"
    kwargs: dict[str, Any] = {}
    if cfg.tracker:
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            raise ConfigError(f"tracker={cfg.tracker!r} needs the tensorboard package "
                              "(pip install tensorboard), or set tracker=''")
        run = RunDir(cfg.output_dir)
        kwargs.update(log_with=cfg.tracker, project_config=ProjectConfiguration(
            project_dir=str(run.root), logging_dir=str(run.tensorboard)))
    # cpu=True without a GPU: under torchrun that is what makes accelerate join the processes over
    # gloo (without it every process trains alone on all the data)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision, **kwargs)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of dropout / BERT masks in one epoch of one process: a function of all three."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def fast_enhancers(accelerator: Accelerator, *models: nn.Module | None) -> None:
    """Zero-DCE in bf16 and channels-last where the run is bf16 on a GPU (see ZeroDCE.set_precision)."""
    if accelerator.device.type != "cuda" or accelerator.mixed_precision != "bf16":
        return
    for model in models:
        for module in (model.modules() if model is not None else ()):
            if isinstance(module, ZeroDCE):
                module.set_precision(torch.bfloat16, channels_last=True)
