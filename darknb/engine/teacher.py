"""The teacher's enhanced view, in one place: fit (or load) Zero-DCE, write the enhanced frame
cache, rebuild a trained teacher, and compute its soft targets for the student.

The paper's teacher is T = T_c(T_e(x)). With ``teacher_input="enhanced_cache"`` (the default) the
frozen T_e enhances every native-resolution frame ONCE, before the resize (the paper's order), into
a frame cache of its own; T_c then trains on clips of that cache: the same crops of the same frames
the student sees raw. A student's soft targets are computed up front on those enhanced clips
(:func:`fill_teacher_cache`), never on raw ones. With ``"online"`` T_e enhances every resized crop.
"""

from __future__ import annotations

import hashlib
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from darknb.config import RunConfig
from darknb.data.framecache import CACHE_MANIFEST
from darknb.data.loader import PIPELINE as CLIP_PIPELINE
from darknb.data.loader import ClipKey, batch_clips, collate_raw
from darknb.data.protocol import check_same_dataset, dataset_identity
from darknb.data.splits import Splits, prepare_cache
from darknb.engine.build import build_classifier, enhancer_kwargs, make_accelerator, process_state
from darknb.engine.checkpoint import load_final_state
from darknb.engine.distill import TeacherCache
from darknb.errors import CheckpointError, ConfigError, TrainingError
from darknb.files import RunDir, read_json, write_json
from darknb.models.classifiers import Teacher
from darknb.models.enhancers import (
    IdentityEnhancer,
    build_enhancer,
    enhance_uint8,
    enhancer_signature,
    save_enhancer,
)
from darknb.models.zero_reference import fit_settings, fit_zero_reference

__all__ = ["build_teacher_enhancer", "enhancer_fit_frames", "ensure_enhanced_cache",
           "fill_teacher_cache", "load_teacher", "teacher_cache_for", "teacher_targets"]


def enhancer_fit_frames(dataset, *, num_videos: int = 48, per_video: int = 2, seed: int = 0) -> torch.Tensor:
    """Unlabelled native-resolution frames ``(N, 3, H, W)`` in [0, 1] from a training set, for
    fitting Zero-DCE zero-reference."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset.samples))[:num_videos]
    frames = []
    for i in order:
        rel = dataset.samples[i][0]
        n = dataset.frame_count(rel)
        idx = sorted(rng.choice(n, size=min(per_video, n), replace=False).tolist())
        frames.append(dataset.frames(rel, idx))
    shapes = {f.shape[1:] for f in frames}
    if len(shapes) > 1:  # mixed resolutions: crop all to the smallest common size
        h = min(s[0] for s in shapes)
        w = min(s[1] for s in shapes)
        frames = [f[:, :h, :w] for f in frames]
    array = np.concatenate(frames)  # (N, H, W, 3) uint8
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255.0


def build_teacher_enhancer(cfg: RunConfig, train_set) -> tuple[nn.Module, dict]:
    """The teacher's enhancer: loaded from ``cfg.enhancer_checkpoint``, or (Zero-DCE without a
    checkpoint) fitted zero-reference on the training frames (``cfg.enhancer_fit`` protocol, see
    :func:`darknb.models.zero_reference.fit_settings`; Zero-DCE++ fitted at scale factor 1, run at
    ``cfg.enhancer_scale_factor``) and saved beside the run. One fit serves every seed of a run:
    the enhancer is fixed preprocessing, like Zero-DCE's weights."""
    info: dict[str, Any] = {"name": cfg.enhancer, **enhancer_kwargs(cfg)}
    if cfg.enhancer not in ("zerodce", "zerodce++") or cfg.enhancer_checkpoint:
        enhancer = build_enhancer(cfg.enhancer, checkpoint=cfg.enhancer_checkpoint or None,
                                  **enhancer_kwargs(cfg))
        info["source"] = cfg.enhancer_checkpoint or "analytic"
        return enhancer, info
    run = RunDir(cfg.output_dir)
    fitted, record = run.fitted_enhancer(cfg.enhancer), run.fitted_enhancer_record(cfg.enhancer)
    # what the fit was made on: reusing a fit of other data or of another length is refused
    fit_of = {"dataset": dataset_identity(cfg.dataset, [train_set]),
              "steps": cfg.enhancer_fit_steps, "seed": cfg.seed, "protocol": cfg.enhancer_fit}
    if fitted.exists() and cfg.resume:
        saved = read_json(record) if record.is_file() else None
        if saved is not None:
            check_same_dataset(saved.get("dataset"), fit_of["dataset"], what=f"fitted enhancer {fitted}")
            if saved.get("steps") != cfg.enhancer_fit_steps:
                raise CheckpointError(
                    f"fitted enhancer {fitted} was fitted with enhancer_fit_steps={saved.get('steps')}, "
                    f"this run asks for {cfg.enhancer_fit_steps}; delete it or set resume=False to refit")
            if saved.get("protocol", "short") != cfg.enhancer_fit:
                raise CheckpointError(
                    f"fitted enhancer {fitted} was fitted with enhancer_fit={saved.get('protocol', 'short')!r}, "
                    f"this run asks for {cfg.enhancer_fit!r}; delete it or set resume=False to refit")
        info.update(source=str(fitted), fitted=True, reused=True)
        return build_enhancer(cfg.enhancer, checkpoint=str(fitted), **enhancer_kwargs(cfg)), info
    torch.manual_seed(cfg.seed)  # the fit's starting weights: a function of the seed, not of RNG history
    enhancer = build_enhancer(cfg.enhancer, **enhancer_kwargs(cfg))
    frames = enhancer_fit_frames(train_set, seed=cfg.seed)
    settings = fit_settings(cfg.enhancer, cfg.enhancer_fit)
    start = time.perf_counter()
    history = fit_zero_reference(enhancer, frames, steps=cfg.enhancer_fit_steps, seed=cfg.seed,
                                 **settings)
    with torch.no_grad():
        after = enhancer(frames[:16]).clamp(0, 1).mean().item()
    if process_state().is_main_process:  # every process fits the same weights; one writes them
        save_enhancer(enhancer, fitted)
        write_json(fit_of, record)
    process_state().wait_for_everyone()
    # use the weights as a later process reloads them (the loader flushes subnormals): a run fitted
    # here and one resumed elsewhere then train the same teacher
    enhancer = build_enhancer(cfg.enhancer, checkpoint=str(fitted), **enhancer_kwargs(cfg))
    info.update(source=str(fitted), fitted=True, steps=cfg.enhancer_fit_steps,
                fit_protocol=cfg.enhancer_fit, fit_settings=settings,
                seconds=round(time.perf_counter() - start, 2), frames=int(frames.shape[0]),
                mean_before=round(frames.mean().item(), 4), mean_after=round(after, 4),
                final_loss=float(history["loss"][-1]) if history.get("loss") else None)
    return enhancer, info


def ensure_enhanced_cache(cfg: RunConfig, enhancer: nn.Module, *, device: str | None = None) -> dict:
    """Write (or reuse) ``cfg``'s enhanced frame cache: ``enhancer`` on native-resolution frames
    (on ``device``, default CUDA when present), then the raw cache's resize
    (:func:`darknb.data.splits.prepare_cache`). Returns where and what. Under several processes
    the main one writes it; the others then find it complete."""
    state = process_state()
    with state.main_process_first():
        if state.is_main_process:
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            module = enhancer.eval().to(device)
            report = prepare_cache(cfg, transform=partial(enhance_uint8, module, device=device),
                                   signature=enhancer_signature(module))  # short side: the raw cache's
        else:  # the main process wrote it: read, write nothing
            report = read_json(cfg.enhanced_frame_cache / CACHE_MANIFEST)
            report = {**report, "written": 0, "reused": len(report["videos"])}
    return {"dir": str(cfg.enhanced_frame_cache), "short_side": report["short_side"],
            "written": report["written"], "reused": report["reused"], "seconds": report["seconds"],
            "enhancer": report["transform"]}


def load_teacher(cfg: RunConfig, path: str | Path, splits: Splits) -> nn.Module:
    """Rebuild the trained teacher (its selected weights, enhancer included) from its checkpoint.

    The teacher must have been trained on the student's data (``splits``): the same dataset name,
    class names and list files, else :class:`CheckpointError` names what differs.

    A teacher trained with ``teacher_input="enhanced_cache"`` is its classifier behind an identity
    enhancer, with ``.enhanced_cache`` naming the frames it reads: the student's soft targets are
    then computed on the enhanced clips (:func:`fill_teacher_cache`), never on raw ones. An online
    teacher has ``.enhanced_cache = None``."""
    path = Path(path)
    state = load_final_state(path)
    check_same_dataset(state.get("dataset"), dataset_identity(cfg.dataset, splits.present()),
                       what=f"teacher checkpoint {str(path)!r}")
    saved = RunConfig.from_params(state.get("config", {}))
    cached = saved.teacher_input == "enhanced_cache"
    enhancer = IdentityEnhancer() if cached else build_enhancer(saved.enhancer, **enhancer_kwargs(saved))
    teacher = Teacher(enhancer, build_classifier(saved, len(splits.train.classes)))
    teacher.enhanced_cache = str(saved.enhanced_frame_cache) if cached else None
    try:
        teacher.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"teacher checkpoint {str(path)!r} does not fit the model: {err}") from err
    for key in ("num_frames", "size"):
        if getattr(saved, key) != getattr(cfg, key):
            raise ConfigError(f"teacher was trained with {key}={getattr(saved, key)}, the student "
                              f"asks for {key}={getattr(cfg, key)}")
    return teacher.eval()


def teacher_cache_for(cfg: RunConfig, teacher: str = "teacher") -> TeacherCache:
    """The run's cache of teacher ``teacher``'s logits (``<output_dir>/<teacher>_cache.pt``),
    valid for the clips (data, T, size, sampling, epochs' seeds) and the teacher checkpoint it was
    filled with (which fixes the teacher's input: online, or its enhanced cache)."""
    run = RunDir(cfg.output_dir)
    ckpt = run.checkpoint(teacher)
    fields = {k: getattr(cfg, k) for k in ("dataset", "data_root", "split", "num_frames", "size",
                                           "sampling", "cache_dir")}
    fields["teacher"] = (ckpt.stat().st_size, ckpt.stat().st_mtime_ns) if ckpt.exists() else None
    fields["clips"] = CLIP_PIPELINE  # a cache filled by another clip pipeline is not reused
    signature = hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()
    return TeacherCache(run.teacher_cache(teacher), signature=signature)


class _PrefilledTargetsOnly(nn.Module):
    """Stands in for an enhanced-cache teacher inside :func:`darknb.engine.loop.fit`: its targets
    are all in the cache, and computing them on the raw clips fit holds would be wrong, so a miss
    is an error."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        raise TrainingError("teacher soft targets for the enhanced-cache teacher are missing from "
                            "the teacher cache (fill_teacher_cache covers epochs 0..epochs-1); "
                            "they cannot be computed from raw clips")


def fill_teacher_cache(cfg: RunConfig, teacher: nn.Module, cache: TeacherCache, train_set, *,
                       progress: bool = False) -> float:
    """The enhanced-cache teacher's soft targets for every training clip the student will see:
    item i of epoch e is built from (seed, e, i) alone, so the same item of the same epoch read
    from ``teacher.enhanced_cache`` is the student's clip (frames and crop) enhanced before
    resizing. Fills ``cache`` for (cfg.seed, e, i), e < cfg.epochs, where missing; returns the
    teacher seconds spent (also added to ``cache.fill_seconds``)."""
    marker = Path(teacher.enhanced_cache) / CACHE_MANIFEST
    if not marker.is_file() or not read_json(marker).get("transform"):
        # without it the dataset would quietly decode the raw videos for the teacher
        raise ConfigError(f"the teacher was trained on the enhanced cache {teacher.enhanced_cache}, "
                          "which is missing or incomplete (moved run folder? pass it again as "
                          "enhanced_cache_dir and retrain, or re-create it with prepare)")
    enhanced = train_set.with_cache(teacher.enhanced_cache)
    raw_manifest = (cfg.frame_cache or Path("")) / CACHE_MANIFEST
    if cfg.frame_cache is not None and raw_manifest.is_file():  # same frame counts and sizes -> same clips
        raw = read_json(raw_manifest)["videos"]
        enh = read_json(marker)["videos"]
        differ = [rel for rel, _ in train_set.samples if raw.get(rel, {}).get("shape") != enh.get(rel, {}).get("shape")]
        if differ:
            raise ConfigError(f"enhanced cache {teacher.enhanced_cache} and raw cache {cfg.frame_cache} "
                              f"differ in frame count or size for {differ[:3]}: the crops would not match")
    accelerator = make_accelerator(cfg)
    teacher = teacher.to(accelerator.device).eval()
    seconds = 0.0
    for epoch in range(cfg.epochs):
        todo = [i for i in range(len(enhanced)) if (cfg.seed, epoch, i) not in cache.store]
        chunks = [todo[k:k + cfg.batch_size] for k in range(0, len(todo), cfg.batch_size)]
        for chunk in tqdm(chunks, desc=f"teacher targets {epoch + 1}/{cfg.epochs}", disable=not progress,
                          leave=False):
            # the clip of (seed, epoch, index): the key fit's sampler hands out for it
            batch = collate_raw([enhanced.raw(ClipKey(i, epoch)) for i in chunk])
            if batch is None:
                continue
            tick = time.perf_counter()
            with torch.no_grad(), accelerator.autocast():
                logits = teacher(batch_clips(enhanced, batch.to(accelerator.device))).float()
            seconds += time.perf_counter() - tick
            cache.add(cfg.seed, epoch, batch.indices.tolist(), logits)
    cache.fill_seconds[cfg.seed] = cache.fill_seconds.get(cfg.seed, 0.0) + seconds
    return seconds


def teacher_targets(cfg: RunConfig, teacher: nn.Module, train_set, cache: TeacherCache | None, *,
                    progress: bool = False) -> tuple[nn.Module, TeacherCache | None, float]:
    """What :func:`darknb.engine.loop.fit` needs to distil from ``teacher``: the module it may call
    and the cache of its logits, plus the teacher seconds spent up front. An enhanced-cache
    teacher gets every soft target computed here, on the enhanced clips, into ``cache`` (an
    in-memory one when None); fit then only reads them."""
    if not getattr(teacher, "enhanced_cache", None):
        return teacher, cache, 0.0
    cache = cache if cache is not None else TeacherCache()
    seconds = fill_teacher_cache(cfg, teacher, cache, train_set, progress=progress)
    cache.save()
    return _PrefilledTargetsOnly(), cache, seconds
