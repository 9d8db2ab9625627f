"""Evaluation: top-1 / top-5, per-class accuracy, confusion and per-video predictions, over one or
several views per video, counting every video exactly once across processes.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from darknb.config import parse_views
from darknb.data.loader import batch_clips, make_loader
from darknb.errors import TrainingError

__all__ = ["evaluate", "summarize_predictions"]


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int = 8, num_workers: int = 0,
             accelerator=None, progress: bool = False, views: str = "1x1", loader=None) -> dict:
    """Top-1/top-5 (%), per-class accuracy, confusion matrix and per-video predictions.

    ``views`` ``"CxK"``: every video is seen as C temporal clips x K crops and the softmax is
    averaged (``"1x1"``: the centre clip and crop, DarkLight's test protocol); ``logits`` is then
    the log of the mean softmax. Recorded as ``metrics["protocol"]``. With an ``accelerator`` of
    several processes each evaluates its share of the videos and the results are gathered: every
    video is counted exactly once, and every process returns the same metrics.
    """
    clips_per_video, crops = parse_views(views)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    if loader is None:
        loader = make_loader(dataset, batch_size=batch_size, train=False, num_workers=num_workers,
                             rank=rank, world=world, views=views,
                             transform_in_workers=num_workers > 0 and not torch.cuda.is_available())
    # the bare module: no DDP collectives, processes may run different numbers of batches
    net = accelerator.unwrap_model(model) if accelerator is not None else model
    device = accelerator.device if accelerator is not None else next(net.parameters()).device
    several = clips_per_video * crops > 1
    was_training = net.training
    net.eval()
    scores: dict[int, torch.Tensor] = {}
    labels: dict[int, int] = {}
    for batch in tqdm(loader, desc="eval", disable=not progress or rank != 0, leave=False):
        if batch is None:
            continue
        with accelerator.autocast() if accelerator is not None else contextlib.nullcontext():
            out = net(batch_clips(dataset, batch.to(device))).float().cpu()
        if several:
            out = out.softmax(dim=1)
        for i, y, row in zip(batch.indices.tolist(), batch.labels.tolist(), out):  # CPU copies
            scores[i] = scores[i] + row if i in scores else row
            labels[i] = y
    net.train(was_training)
    rows = [(i, labels[i], scores[i]) for i in scores]
    if world > 1:
        rows = gather_object(rows)
    if not rows:
        raise TrainingError("evaluate: every test video was skipped; nothing to evaluate")
    rows.sort(key=lambda r: r[0])
    logits = torch.stack([r[2] for r in rows])
    if several:
        logits = (logits / (clips_per_video * crops)).clamp_min(1e-12).log()
    metrics = summarize_predictions(logits, torch.tensor([r[1] for r in rows]),
                                    torch.tensor([r[0] for r in rows]),
                                    num_classes=len(dataset.classes))
    metrics["protocol"] = {"views": views, "clips": clips_per_video, "crops": crops,
                           "aggregate": "mean softmax" if several else "single view"}
    return metrics


def summarize_predictions(logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, *,
                          num_classes: int) -> dict:
    k = min(5, num_classes)
    topk = logits.topk(k, dim=1).indices
    pred = topk[:, 0]
    correct1 = (pred == labels)
    correct5 = (topk == labels[:, None]).any(dim=1)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per_class = [(confusion[c, c] / confusion[c].sum()).item() * 100 if confusion[c].sum() else None
                 for c in range(num_classes)]
    return {
        "top1": correct1.float().mean().item() * 100,
        "top5": correct5.float().mean().item() * 100,
        "num_videos": int(labels.numel()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "indices": indices.tolist(),
        "labels": labels.tolist(),
        "pred": pred.tolist(),
        "logits": logits.tolist(),
    }

