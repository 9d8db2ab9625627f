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
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from darknb.config import RunConfig
from darknb.data.framecache import CACHE_MANIFEST, TRANSFORM_MANIFEST, cache_file
from darknb.data.loader import PIPELINE as CLIP_PIPELINE
from darknb.data.loader import ClipKey, batch_clips, collate_raw
from darknb.data.protocol import (
    SOURCE_RECORD,
    cache_entries,
    check_same_dataset,
    data_fingerprint,
    dataset_identity,
)
from darknb.data.splits import Splits, adopt_moved_cache, build_datasets, prepare_cache
from darknb.engine.build import build_classifier, enhancer_kwargs, make_accelerator, process_state
from darknb.engine.checkpoint import load_final_state
from darknb.engine.distill import TeacherCache
from darknb.errors import CheckpointError, ConfigError, TrainingError
from darknb.files import RunDir, read_json, write_json
from darknb.provenance import check_fingerprint, code_version, digest, file_sha256
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


def enhancer_fit_fingerprint(cfg: RunConfig, train_set) -> dict:
    """What a zero-reference fit reads (:mod:`darknb.provenance`): its settings and the training
    frames (list and content). Not the seed: one fit serves every seed of a run."""
    return {"settings": {"enhancer": cfg.enhancer, "enhancer_fit_steps": cfg.enhancer_fit_steps,
                         "enhancer_fit": cfg.enhancer_fit},
            "data": data_fingerprint(cfg.dataset, [train_set]), "code": code_version()}


def build_teacher_enhancer(cfg: RunConfig, train_set, *,
                           refit: bool | None = None) -> tuple[nn.Module, dict]:
    """The teacher's enhancer: loaded from ``cfg.enhancer_checkpoint``, or (Zero-DCE without a
    checkpoint) fitted zero-reference on the training frames (``cfg.enhancer_fit`` protocol, see
    :func:`darknb.models.zero_reference.fit_settings`; Zero-DCE++ fitted at scale factor 1, run at
    ``cfg.enhancer_scale_factor``) and saved beside the run. One fit serves every seed of a run:
    the enhancer is fixed preprocessing, like Zero-DCE's weights.

    A saved fit is reused while its fingerprint (:func:`enhancer_fit_fingerprint`) matches and its
    file is the one fitted (sha256), else refused naming what changed; ``refit`` (default
    ``not cfg.resume``) fits again. The seeds of a multi-seed run pass ``refit=False``: the run
    fitted it once before them (:func:`darknb.study.arms.prepare_teachers`)."""
    info: dict[str, Any] = {"name": cfg.enhancer, **enhancer_kwargs(cfg)}
    if cfg.enhancer not in ("zerodce", "zerodce++") or cfg.enhancer_checkpoint:
        enhancer = build_enhancer(cfg.enhancer, checkpoint=cfg.enhancer_checkpoint or None,
                                  **enhancer_kwargs(cfg))
        info["source"] = cfg.enhancer_checkpoint or "analytic"
        return enhancer, info
    refit = (not cfg.resume) if refit is None else refit
    run = RunDir(cfg.output_dir)
    fitted, record = run.fitted_enhancer(cfg.enhancer), run.fitted_enhancer_record(cfg.enhancer)
    # what the fit was made on: reusing a fit of other data or of another length is refused
    fit_of = {"dataset": dataset_identity(cfg.dataset, [train_set]),
              "steps": cfg.enhancer_fit_steps, "seed": cfg.seed, "protocol": cfg.enhancer_fit,
              "fingerprint": enhancer_fit_fingerprint(cfg, train_set)}
    if fitted.exists() and not refit:
        saved = read_json(record) if record.is_file() else None
        what = f"fitted enhancer {fitted}"
        if saved is not None and saved.get("fingerprint"):
            check_same_dataset(saved.get("dataset"), fit_of["dataset"], what=what)
            check_fingerprint(saved["fingerprint"], fit_of["fingerprint"], what=what,
                              remedy="set resume=False (or `python -m darknb run --rerun`) to refit it")
            if saved.get("sha256") and file_sha256(fitted) != saved["sha256"]:
                raise CheckpointError(
                    f"{what} is not the file that was fitted (sha256 {saved['sha256'][:12]} when "
                    f"fitted, {file_sha256(fitted)[:12]} now): it was replaced. Delete it, or set "
                    f"resume=False (or `python -m darknb run --rerun`) to refit it")
        elif saved is not None:  # a record from before fingerprints
            check_same_dataset(saved.get("dataset"), fit_of["dataset"], what=what)
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
        write_json({**fit_of, "sha256": file_sha256(fitted)}, record)
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


def _raw_frames(cfg: RunConfig) -> dict[str, str]:
    """rel -> sha256 of the raw frame cache's entry of every video the enhanced cache serves (the
    run's train, validation and test lists): an enhanced frame is a function of its raw frame."""
    lists = build_datasets(cfg.replace(val_fraction=0.0), check_videos=False).present()
    entries = cache_entries(cfg.frame_cache)
    return {rel: digest(entries.get(rel)) for ds in lists for rel, _ in ds.samples}


def ensure_enhanced_cache(cfg: RunConfig, enhancer: nn.Module, *, device: str | None = None,
                          rebuild: bool | None = None) -> dict:
    """Write (or reuse) ``cfg``'s enhanced frame cache: ``enhancer`` on native-resolution frames
    (on ``device``, default CUDA when present), then the raw cache's resize
    (:func:`darknb.data.splits.prepare_cache`). Returns where and what. Under several processes
    the main one writes it; the others then find it complete.

    The cache records what made it: the enhancer (``transform.json``: class, settings, weights'
    sha256) and, per video, the identity of the raw frames it enhanced (``raw_frames.json``). A
    video whose raw frames changed since (re-decoded by ``prepare``) is enhanced again, and said.
    A cache made by another enhancer is refused naming it, or, with ``rebuild`` (default
    ``not cfg.resume``), deleted and written again."""
    state = process_state()
    rebuild = (not cfg.resume) if rebuild is None else rebuild
    with state.main_process_first():
        if state.is_main_process:
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            module = enhancer.eval().to(device)
            signature = enhancer_signature(module)
            directory = cfg.enhanced_frame_cache
            held_path, record_path = directory / TRANSFORM_MANIFEST, directory / SOURCE_RECORD
            raw = _raw_frames(cfg)
            if held_path.is_file():
                adopt_moved_cache(directory, cfg.data_root)  # a moved project: recorded root
                held = read_json(held_path)
                if held != signature:
                    change = "; ".join(f"{k}={held.get(k)!r}, this run asks for {signature.get(k)!r}"
                                       for k in sorted(set(held) | set(signature))
                                       if held.get(k) != signature.get(k))
                    if not rebuild:
                        raise CheckpointError(
                            f"enhanced cache {directory} was made by another enhancer: {change}. "
                            "Its frames would be stale: set resume=False (or `python -m darknb run "
                            "--rerun`) to rebuild it, or delete the folder")
                    print(f"[darknb] rebuilding the enhanced cache {directory}: {change}")
                    shutil.rmtree(directory)
            made_from = read_json(record_path) if record_path.is_file() else {}
            stale = [rel for rel, now in raw.items() if rel in made_from and made_from[rel] != now]
            if held_path.is_file() and not made_from:  # made before the record: its sources unknown
                stale = [rel for rel in raw if cache_file(directory, rel, cfg.cache_format).is_file()]
            for rel in stale:
                cache_file(directory, rel, cfg.cache_format).unlink(missing_ok=True)
            if stale:
                print(f"[darknb] enhanced cache {directory}: {len(stale)} video(s) enhanced again, "
                      f"their raw frames changed or are unrecorded ({', '.join(stale[:3])}"
                      f"{' ...' if len(stale) > 3 else ''})")
            report = prepare_cache(cfg, transform=partial(enhance_uint8, module, device=device),
                                   signature=signature)  # short side: the raw cache's
            write_json({**made_from, **{rel: raw[rel] for rel in report["videos"] if rel in raw}},
                       record_path)
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
    # every weight comes from the checkpoint: no pre-trained file is read (it may have moved)
    teacher = Teacher(enhancer, build_classifier(saved.replace(pretrained=""), len(splits.train.classes)))
    teacher.enhanced_cache = str(_teacher_enhanced_cache(state, saved, cfg, path)) if cached else None
    # the files its weights came from: a student's fingerprint names them (sha256)
    teacher.checkpoint_files = [str(p) for p in (path, RunDir.best_of(path)) if p.is_file()]
    try:
        teacher.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"teacher checkpoint {str(path)!r} does not fit the model: {err}") from err
    for key in ("num_frames", "size"):
        if getattr(saved, key) != getattr(cfg, key):
            raise ConfigError(f"teacher was trained with {key}={getattr(saved, key)}, the student "
                              f"asks for {key}={getattr(cfg, key)}")
    return teacher.eval()


def _teacher_enhanced_cache(state: dict, saved: RunConfig, cfg: RunConfig, path: Path) -> Path:
    """Where an enhanced-cache teacher's frames are: the folder it was trained on; when that is
    gone (a moved project), this run's enhanced cache or the one beside the checkpoint, provided
    it was made by the same enhancer from the same frames (its ``transform.json`` is the one the
    teacher recorded)."""
    recorded = ((state.get("enhancer") or {}).get("enhanced_cache") or {}).get("enhancer")
    candidates = [saved.enhanced_frame_cache, cfg.enhanced_frame_cache, RunDir(path.parent).enhanced_cache]
    for folder in candidates:
        held = Path(folder) / TRANSFORM_MANIFEST
        if (Path(folder) / CACHE_MANIFEST).is_file() and held.is_file() and (
                recorded is None or read_json(held) == recorded):
            return Path(folder)
    return saved.enhanced_frame_cache  # missing: fill_teacher_cache names it


def teacher_cache_for(cfg: RunConfig, teacher: str = "teacher") -> TeacherCache:
    """The run's cache of teacher ``teacher``'s logits (``<output_dir>/<teacher>_cache.pt``),
    valid for the clips (data, T, size, sampling, epochs' seeds) and the teacher checkpoint it was
    filled with (which fixes the teacher's input: online, or its enhanced cache)."""
    run = RunDir(cfg.output_dir)
    ckpt = run.checkpoint(teacher)
    fields = {k: getattr(cfg, k) for k in ("dataset", "data_root", "split", "num_frames", "size",
                                           "sampling", "cache_dir", "cache_format")}
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
