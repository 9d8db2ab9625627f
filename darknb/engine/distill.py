"""Knowledge-distillation loss and a cache of teacher soft targets.

L_student = alpha * CE(y, s) + beta * T^2 * KL(softmax(t / T) || softmax(s / T))  (DL-KDD, PAPER.md
"Losses"; the T^2 factor is Hinton et al. 2015's, keeping gradient scale independent of T).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from darknb.errors import CheckpointError, ConfigError
from darknb.files import load_torch, save_torch

__all__ = ["SoftTargets", "TeacherCache", "kd_loss"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, target: torch.Tensor,
            alpha: float = 1.0, beta: float = 1.0, temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """Return ``{"loss", "ce", "kd"}``; ``kd`` is the T^2-scaled KL term, each a batch mean.

    ``teacher_logits`` is detached (never back-propagated through); it may be None when ``beta == 0``
    (the no-KD control), in which case ``kd`` is zero.
    """
    if alpha < 0 or beta < 0:
        raise ConfigError(f"kd_loss: alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
    if temperature <= 0:
        raise ConfigError(f"kd_loss: temperature must be > 0, got {temperature}")
    ce = F.cross_entropy(student_logits, target)
    if teacher_logits is None:
        if beta != 0:
            raise ConfigError("kd_loss: teacher_logits is None but beta != 0")
        kd = torch.zeros((), device=student_logits.device, dtype=ce.dtype)
    else:
        if teacher_logits.shape != student_logits.shape:
            raise ConfigError(f"kd_loss: teacher logits {tuple(teacher_logits.shape)} and student "
                              f"logits {tuple(student_logits.shape)} differ in shape")
        T = temperature
        log_p_student = F.log_softmax(student_logits.float() / T, dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits.detach().float() / T, dim=-1)
        # KL(p_t || p_s) summed over classes, averaged over the batch
        kd = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * T * T
    return {"loss": alpha * ce + beta * kd, "ce": ce, "kd": kd}


class TeacherCache:
    """Teacher logits keyed by (seed, epoch, dataset index).

    Training clips are a pure function of (seed, epoch, index) (see ``VideoListDataset``), so the
    teacher's output for a clip can be computed once and reused by every student of an alpha/beta/T
    sweep that shares the seed: the cached targets are *identical* to recomputing them online. The
    cache is a plain dict in memory, optionally persisted to one file (atomic write).
    """

    def __init__(self, path: str | Path | None = None, *, signature: str = ""):
        self.path = Path(path) if path else None
        self.signature = signature  # what the clips and the teacher were; a mismatch empties it
        self.store: dict[tuple[int, int, int], torch.Tensor] = {}
        self.fill_seconds: dict[int, float] = {}  # per seed: teacher time spent filling the cache
        self.hits = 0
        self.misses = 0
        if self.path and self.path.exists():
            self.load()

    def __len__(self):
        return len(self.store)

    def lookup(self, seed: int, epoch: int, indices: list[int]) -> torch.Tensor | None:
        """Stacked logits if every index is cached, else None."""
        keys = [(seed, epoch, int(i)) for i in indices]
        if all(k in self.store for k in keys):
            self.hits += len(keys)
            return torch.stack([self.store[k] for k in keys])
        self.misses += len(keys)
        return None

    def add(self, seed: int, epoch: int, indices: list[int], logits: torch.Tensor) -> None:
        for i, row in zip(indices, logits.detach().float().cpu()):
            self.store[(seed, epoch, int(i))] = row.clone()

    def save(self) -> None:
        if self.path is None:
            return
        keys = torch.tensor(list(self.store.keys()), dtype=torch.long).view(-1, 3)
        values = torch.stack(list(self.store.values())) if self.store else torch.empty(0)
        save_torch({"keys": keys, "logits": values, "signature": self.signature,
                    "fill_seconds": {int(k): float(v) for k, v in self.fill_seconds.items()}},
                   self.path)

    def load(self) -> None:
        blob = load_torch(self.path, what="teacher cache")
        try:
            keys, values = blob["keys"], blob["logits"]
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"teacher cache {str(self.path)!r} is unreadable: no {err}") from err
        if blob.get("signature", "") != self.signature:
            return  # written for other clips or another teacher: start empty, overwrite on save
        self.store = {tuple(int(v) for v in k): row for k, row in zip(keys.tolist(), values)}
        self.fill_seconds = {int(k): float(v) for k, v in blob.get("fill_seconds", {}).items()}


class SoftTargets:
    """The frozen teacher's logits for the training batches of one run: served from ``cache``
    (a :class:`TeacherCache`, keyed by (seed, epoch, index)) when it holds the whole batch, else
    computed on the batch's clips and added to it. ``seconds`` is the teacher time this run spent
    computing (cache misses); it is also added to ``cache.fill_seconds[seed]``."""

    def __init__(self, teacher: torch.nn.Module, cache: TeacherCache | None, *, seed: int,
                 accelerator):
        self.teacher = teacher.to(accelerator.device).eval()
        self.teacher.requires_grad_(False)
        self.cache, self.seed, self.accelerator = cache, int(seed), accelerator
        self.seconds = 0.0

    def __call__(self, clips: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        keys = index.tolist()
        if self.cache is not None:
            hit = self.cache.lookup(self.seed, epoch, keys)
            if hit is not None:
                return hit.to(clips.device)
        tick = time.perf_counter()
        with torch.no_grad(), self.accelerator.autocast():
            logits = self.teacher(clips).float()
        if self.cache is not None:
            self.cache.add(self.seed, epoch, keys, logits)
        elapsed = time.perf_counter() - tick
        self.seconds += elapsed
        if self.cache is not None:
            self.cache.fill_seconds[self.seed] = self.cache.fill_seconds.get(self.seed, 0.0) + elapsed
        return logits
