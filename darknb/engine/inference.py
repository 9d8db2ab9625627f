"""Classify your own videos with a trained model: the point of the method (cheap inference on raw
dark video, PAPER.md "Architecture").

    import darknb
    darknb.predict("clip.mp4", "reports/demo/student.ckpt")            # or a list of videos
    python -m darknb predict clip.mp4 other.avi --checkpoint reports/demo/student.ckpt

The video goes through exactly the test pipeline of training (darknb.data sampling and crop,
darknb.loader's device transform) with the checkpoint's own clip settings; the weights are the
run's FINAL ones (selected on validation, :func:`darknb.engine.checkpoint.load_final_state`).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from darknb.config import RunConfig, parse_views
from darknb.data.loader import ClipTransform, collate_raw
from darknb.data.sampling import (
    crop_box,
    default_resize_short,
    make_raw_clip,
    sample_frame_indices,
    with_light_view,
)
from darknb.data.video import probe, read_frames
from darknb.engine.build import build_classifier
from darknb.engine.checkpoint import load_checkpoint, load_final_state
from darknb.errors import CheckpointError
from darknb.models.classifiers import Teacher
from darknb.models.enhancers import build_enhancer

__all__ = ["Classifier", "format_prediction", "load_classifier", "predict"]


class Classifier:
    """A trained model with what it needs to read a video: its config (clip length, size,
    sampling) and class names. Built by :func:`load_classifier`."""

    def __init__(self, model: nn.Module, cfg: RunConfig, classes: list[str], *, device, path: Path):
        self.model, self.cfg, self.classes = model, cfg, classes
        self.device, self.path = torch.device(device), path
        self.transform = ClipTransform(cfg.size)

    def __repr__(self) -> str:
        return (f"Classifier({self.cfg.model}, {len(self.classes)} classes, T={self.cfg.num_frames}, "
                f"size={self.cfg.size}, device={self.device}, from {str(self.path)!r})")

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
        frames = read_frames(video, wanted)  # each frame decoded once, whatever the views
        where = {f: k for k, f in enumerate(wanted)}
        items = []
        for k, idx in enumerate(per_clip):
            clip, streams = frames[[where[int(i)] for i in idx]], 1
            if cfg.light_gamma is not None:  # DarkLight's gamma view: its table on native frames
                clip, streams = with_light_view(clip, cfg.light_gamma), 2
            for c in range(crops):
                box = crop_box(*clip.shape[1:3], size=cfg.size, resize_short=default_resize_short(cfg.size),
                               train=False, multiscale=False, rng=None, crop=c, crops=crops)
                items.append(make_raw_clip(clip, box, flip=False, label=0, index=0,
                                           view=k * crops + c, streams=streams))
        read_seconds = time.perf_counter() - start
        batch = collate_raw(items).to(self.device)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                    and torch.cuda.is_bf16_supported() else contextlib.nullcontext())
        with autocast:
            logits = self.model(self.transform(batch)).float()
        probs = logits.softmax(dim=1).mean(dim=0).cpu()
        top = probs.topk(min(top_k, len(self.classes)))
        return {
            "video": str(video), "frames": n,
            "top": [{"class": self.classes[i], "index": int(i), "probability": float(p)}
                    for p, i in zip(top.values.tolist(), top.indices.tolist())],
            "protocol": {"views": protocol, "clips": clips, "crops": crops,
                         "aggregate": "mean softmax" if clips * crops > 1 else "single view",
                         "num_frames": cfg.num_frames, "size": cfg.size, "sampling": cfg.sampling},
            "seconds": time.perf_counter() - start, "read_seconds": read_seconds,
            "device": str(self.device), "checkpoint": str(self.path),
        }


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
            " (pass a run's <stage>.ckpt written by training, e.g. reports/<run>/student.ckpt; "
            "<stage>_best.ckpt and fitted enhancers are not classifiers on their own)")
    state = load_final_state(path)
    cfg = RunConfig.from_params(state["config"])
    classes = [str(c) for c in state["classes"]]
    # every weight (and the input statistics) comes from the checkpoint: no backbone download
    model = build_classifier(cfg.replace(pretrained=""), len(classes))
    if any(k.startswith("enhancer.") for k in state["model"]):  # the teacher: T_c(T_e(x))
        model = Teacher(build_enhancer(cfg.enhancer), model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit {cfg.model} with {len(classes)} "
                              f"classes: {err}") from err
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return Classifier(model.to(device).eval(), cfg, classes, device=device, path=path)


def predict(video_path: str | os.PathLike | Sequence[str | os.PathLike],
            checkpoint: str | os.PathLike | Classifier, *, protocol: str = "1x1", top_k: int = 5,
            device: str | torch.device | None = None) -> dict | list[dict]:
    """Classify a video (or a list of videos: a list of results) with a trained checkpoint.

    Returns ``{"video", "top": [{"class", "index", "probability"}, ...] (top_k, best first),
    "protocol": {"views", "clips", "crops", ...}, "seconds" (read + model), "read_seconds",
    "device", "checkpoint", "frames"}``. Any video the readers accept (MP4, AVI ...).
    """
    model = checkpoint if isinstance(checkpoint, Classifier) else load_classifier(checkpoint, device=device)
    if isinstance(video_path, (str, os.PathLike)):
        return model(video_path, protocol=protocol, top_k=top_k)
    return [model(v, protocol=protocol, top_k=top_k) for v in video_path]


def format_prediction(result: dict) -> str:
    """The CLI's text for one :func:`predict` result."""
    p = result["protocol"]
    head = (f"{result['video']}: {p['views']} ({p['clips']} clip(s) x {p['crops']} crop(s), "
            f"{p['aggregate']}), {result['seconds']:.2f} s on {result['device']}")
    rows = [f"  {k}. {r['class']:<16} {100 * r['probability']:6.2f} %"
            for k, r in enumerate(result["top"], start=1)]
    return "\n".join([head, *rows])

