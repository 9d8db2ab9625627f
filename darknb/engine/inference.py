"""Classify your own videos with a trained model: the point of the method (cheap inference on raw
dark video, PAPER.md "Architecture").

    import darknb
    darknb.predict("clip.mp4", "reports/demo/student_s0.ckpt")          # or a list of videos
    python -m darknb predict clip.mp4 other.avi --checkpoint reports/demo/student_s0.ckpt

The video goes through the test pipeline of training (darknb.data sampling and crop,
darknb.loader's device transform) with the checkpoint's own clip settings; the weights are the
run's FINAL ones (selected on validation, :func:`darknb.engine.checkpoint.load_final_state`).

Memory: only the frames the views need are decoded, and each is resized as it arrives to the short
side the model's training frames had (its run's frame cache: 128 px unless the cache says
otherwise; a run that decoded videos directly, ``cache_dir=""``, keeps native frames), so a long
HD video costs what its few clips cost; views are classified one temporal clip at a time.

A teacher checkpoint (``teacher_s<N>.ckpt``) is the enhancer and the classifier together: an
``online`` teacher enhances the resized clip; an ``enhanced_cache`` teacher (the default) enhances
every native-resolution frame before the resize, as its training frames were, with the run's
enhancer (the fitted ``zerodce_fitted.pth`` beside the checkpoint, or the file it was given).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from darknb.config import RunConfig, parse_views
from darknb.data.framecache import CACHE_MANIFEST, resize_short_uint8
from darknb.data.loader import ClipTransform, collate_raw
from darknb.data.sampling import (
    crop_box,
    default_resize_short,
    gamma_lut,
    make_raw_clip,
    sample_frame_indices,
    with_light_view,
)
from darknb.data.video import probe, read_frames
from darknb.engine.build import build_classifier, enhancer_kwargs
from darknb.engine.checkpoint import load_checkpoint, load_final_state
from darknb.errors import CheckpointError
from darknb.files import RunDir, read_json
from darknb.models.classifiers import Teacher
from darknb.models.enhancers import build_enhancer, enhance_uint8

__all__ = ["Classifier", "format_prediction", "load_classifier", "predict", "prediction_notes"]

# The frame cache's short side when a run's cache.json cannot be read (framecache's default)
DEFAULT_SHORT_SIDE = 128


class Classifier:
    """A trained model with what it needs to read a video: its config (clip length, size,
    sampling), class names, the short side its training frames had (None: native) and, for an
    enhanced-cache teacher, the enhancer applied to native frames before the resize. Built by
    :func:`load_classifier`."""

    def __init__(self, model: nn.Module, cfg: RunConfig, classes: list[str], *, device, path: Path,
                 short_side: int | None = DEFAULT_SHORT_SIDE, frame_enhancer: nn.Module | None = None,
                 kind: str = "classifier"):
        self.model, self.cfg, self.classes = model, cfg, classes
        self.device, self.path, self.kind = torch.device(device), path, kind
        self.short_side, self.frame_enhancer = short_side, frame_enhancer
        self.transform = ClipTransform(cfg.size)

    def __repr__(self) -> str:
        return (f"Classifier({self.cfg.model}, {self.kind}, {len(self.classes)} classes, "
                f"T={self.cfg.num_frames}, size={self.cfg.size}, device={self.device}, from "
                f"{str(self.path)!r})")

    def frame_transform(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """What happens to each decoded frame as it arrives: the enhanced-cache teacher's enhancer
        (native resolution, rounded to uint8 as its cache was), then the resize to the training
        frames' short side (never an enlargement). None: frames are kept as decoded."""
        enhancer, short, gamma = self.frame_enhancer, self.short_side, self.cfg.light_gamma
        if enhancer is None and short is None and gamma is None:
            return None

        def transform(frame: np.ndarray) -> np.ndarray:  # (H, W, 3) uint8
            frames = frame[None]
            if enhancer is not None:
                frames = enhance_uint8(enhancer, frames, device=self.device)
            if gamma is not None:  # DarkLight's gamma view: its table on the NATIVE frame, as
                frames = np.concatenate([frames, gamma_lut(gamma)[frames]], axis=-1)  # channels 3-5
            if short is not None and min(frames.shape[1:3]) > short:
                frames = np.concatenate([resize_short_uint8(frames[..., c:c + 3], short)
                                         for c in range(0, frames.shape[-1], 3)], axis=-1)
            return frames[0]

        return transform

    @torch.no_grad()
    def __call__(self, video: str | os.PathLike, *, protocol: str = "1x1", top_k: int = 5) -> dict:
        """Top-``top_k`` classes of one video: softmax averaged over the ``protocol``'s views
        (``"1x1"`` centre clip + centre crop, ``"10x3"`` ...)."""
        clips, crops = parse_views(protocol)
        cfg, start = self.cfg, time.perf_counter()
        n = probe(video).num_frames
        per_clip = [sample_frame_indices(n, cfg.num_frames, cfg.sampling, False, None,
                                         clip=k, clips=clips) for k in range(clips)]
        wanted = sorted({int(i) for idx in per_clip for i in idx})
        # each frame decoded once, whatever the views, and resized as it arrives
        frames = read_frames(video, wanted, transform=self.frame_transform())  # (F, h, w, 3)
        where = {f: k for k, f in enumerate(wanted)}
        read_seconds = time.perf_counter() - start
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                    and torch.cuda.is_bf16_supported() else contextlib.nullcontext())
        probs = torch.zeros(len(self.classes))
        for k, idx in enumerate(per_clip):  # one temporal clip (and its crops) at a time
            clip, streams = frames[[where[int(i)] for i in idx]], 1  # (T, h, w, 3 or 6)
            if self.cfg.light_gamma is not None:  # the two streams along time (make_raw_clip)
                clip, streams = with_light_view(clip[..., :3], self.cfg.light_gamma, clip[..., 3:]), 2
            items = []
            for c in range(crops):
                box = crop_box(*clip.shape[1:3], size=cfg.size,
                               resize_short=default_resize_short(cfg.size), train=False,
                               multiscale=False, rng=None, crop=c, crops=crops)
                items.append(make_raw_clip(clip, box, flip=False, label=0, index=0,
                                           view=k * crops + c, streams=streams))
            batch = collate_raw(items).to(self.device)
            with autocast:
                logits = self.model(self.transform(batch)).float()
            probs += logits.softmax(dim=1).sum(dim=0).cpu()
        probs /= clips * crops
        top = probs.topk(min(top_k, len(self.classes)))
        result = {
            "video": str(video), "frames": n,
            "top": [{"class": self.classes[i], "index": int(i), "probability": float(p)}
                    for p, i in zip(top.values.tolist(), top.indices.tolist())],
            "protocol": {"views": protocol, "clips": clips, "crops": crops,
                         "aggregate": "mean softmax" if clips * crops > 1 else "single view",
                         "num_frames": cfg.num_frames, "size": cfg.size, "sampling": cfg.sampling},
            "num_classes": len(self.classes), "model": self.kind,
            "seconds": time.perf_counter() - start, "read_seconds": read_seconds,
            "device": str(self.device), "checkpoint": str(self.path),
        }
        result["notes"] = prediction_notes(result)
        return result


def prediction_notes(result: dict) -> list[str]:
    """What a reader should know about one prediction: a top probability below twice chance (the
    model is unsure: its ranking says little), a video shorter than the model's clip (frames were
    repeated to fill it)."""
    notes = []
    k, top = result["num_classes"], result["top"][0]["probability"] if result["top"] else 0.0
    if k > 1 and top < 2.0 / k:
        notes.append(f"the model is unsure: its top probability ({100 * top:.1f} %) is below twice "
                     f"chance (2 x {100 / k:.1f} % over {k} classes)")
    T, n = result["protocol"]["num_frames"], result["frames"]
    if n < T:
        notes.append(f"the video has {n} frame{'s' if n != 1 else ''}, fewer than the model's "
                     f"{T}-frame clip: frames were repeated (looped) to fill it")
    return notes


def _training_short_side(cfg: RunConfig) -> int | None:
    """The short side of the frames ``cfg``'s run trained on: its frame cache's (``cache.json``;
    :data:`DEFAULT_SHORT_SIDE` when that file is not here), None for a run that decoded videos."""
    if cfg.frame_cache is None:
        return None
    manifest = cfg.frame_cache / CACHE_MANIFEST
    if manifest.is_file():
        with contextlib.suppress(Exception):
            return int(read_json(manifest)["short_side"])
    return DEFAULT_SHORT_SIDE


def _teacher_enhancer(path: Path, cfg: RunConfig, info: dict) -> nn.Module:
    """The enhancer an ``enhanced_cache`` teacher's frames went through: weightless ones (gamma,
    none) by name; Zero-DCE(++) from the file its training used (``info["source"]``), or the run's
    fitted enhancer beside the checkpoint when the run folder has moved."""
    kwargs = enhancer_kwargs(cfg)
    if cfg.enhancer not in ("zerodce", "zerodce++"):
        return build_enhancer(cfg.enhancer, **kwargs)
    candidates = [Path(s) for s in (info.get("source"), cfg.enhancer_checkpoint) if s and s != "analytic"]
    candidates.append(RunDir(path.parent).fitted_enhancer(cfg.enhancer))
    for weights in candidates:
        if weights.is_file():
            return build_enhancer(cfg.enhancer, checkpoint=str(weights), **kwargs)
    raise CheckpointError(
        f"{path} is a teacher whose frames were enhanced by {cfg.enhancer}, but its weights are in "
        f"none of {[str(c) for c in candidates]}: keep the run's "
        f"{RunDir(path.parent).fitted_enhancer(cfg.enhancer).name} beside the checkpoint")


def load_classifier(checkpoint: str | os.PathLike, *, device: str | torch.device | None = None
                    ) -> Classifier:
    """The FINAL weights of a finished training run's ``<stage>.ckpt`` (a student, a teacher with
    its enhancer, a baseline) on ``device`` (default: the GPU when there is one). Refuses, naming
    the file, anything that is not a darknb classifier checkpoint."""
    path = Path(checkpoint)
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"{path} is not a darknb classifier checkpoint: {err}") from err
    missing = [k for k in ("config", "classes") if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} is not a darknb classifier checkpoint: it has no {' or '.join(map(repr, missing))}"
            " (pass a run's <stage>.ckpt written by training, e.g. reports/<run>/student_s0.ckpt; "
            "<stage>_best.ckpt and fitted enhancers are not classifiers on their own)")
    state = load_final_state(path)
    cfg = RunConfig.from_params(state["config"])
    classes = [str(c) for c in state["classes"]]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # every weight (and the input statistics) comes from the checkpoint: no backbone download
    model = build_classifier(cfg.replace(pretrained=""), len(classes))
    weights, kind, frame_enhancer = state["model"], "classifier", None
    if any(k.startswith("classifier.") for k in weights):  # a teacher: T_c(T_e(x))
        info = state.get("enhancer") or {}
        if (info.get("teacher_input") or cfg.teacher_input) == "enhanced_cache":
            # T_e ran on native frames before the resize: here, on each frame as it is decoded
            frame_enhancer = _teacher_enhancer(path, cfg, info).eval().to(device)
            weights = {k.removeprefix("classifier."): v for k, v in weights.items()
                       if k.startswith("classifier.")}
            kind = f"teacher ({cfg.enhancer} on native frames, then the classifier)"
        else:
            model = Teacher(build_enhancer(cfg.enhancer, **enhancer_kwargs(cfg)), model)
            kind = f"teacher ({cfg.enhancer} on the resized clip, then the classifier)"
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit {cfg.model} with {len(classes)} "
                              f"classes: {err}") from err
    return Classifier(model.to(device).eval(), cfg, classes, device=device, path=path,
                      short_side=_training_short_side(cfg), frame_enhancer=frame_enhancer, kind=kind)


def predict(video_path: str | os.PathLike | Sequence[str | os.PathLike],
            checkpoint: str | os.PathLike | Classifier, *, protocol: str = "1x1", top_k: int = 5,
            device: str | torch.device | None = None) -> dict | list[dict]:
    """Classify a video (or a list of videos: a list of results) with a trained checkpoint: a
    student (``reports/<run>/student_s<N>.ckpt``), a teacher (``teacher_s<N>.ckpt``: its enhancer
    and classifier) or a baseline.

    Returns ``{"video", "top": [{"class", "index", "probability"}, ...] (top_k, best first),
    "notes" (what the reader should know: an unsure model, a video shorter than the clip),
    "protocol": {"views", "clips", "crops", ...}, "seconds" (read + model), "read_seconds",
    "device", "checkpoint", "frames", "num_classes", "model"}``. Any video the readers accept
    (MP4, AVI ...).
    """
    model = checkpoint if isinstance(checkpoint, Classifier) else load_classifier(checkpoint, device=device)
    if isinstance(video_path, (str, os.PathLike)):
        return model(video_path, protocol=protocol, top_k=top_k)
    return [model(v, protocol=protocol, top_k=top_k) for v in video_path]


def format_prediction(result: dict) -> str:
    """The CLI's text for one :func:`predict` result: the views, the top classes, then notes."""
    p = result["protocol"]
    head = (f"{result['video']}: {p['views']} ({p['clips']} clip(s) x {p['crops']} crop(s), "
            f"{p['aggregate']}), {result['seconds']:.2f} s on {result['device']}")
    rows = [f"  {k}. {r['class']:<16} {100 * r['probability']:6.2f} %"
            for k, r in enumerate(result["top"], start=1)]
    notes = [f"  note: {note}" for note in result.get("notes", [])]
    return "\n".join([head, *rows, *notes])
