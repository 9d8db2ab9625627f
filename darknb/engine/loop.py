"""The training loop on accelerate: :func:`fit` trains a model for ``cfg.epochs`` epochs, keeps the
epoch chosen on validation and evaluates it on the test split once.

The same code runs on a CPU, one GPU or several processes (``torchrun`` / ``accelerate launch``;
gloo on CPUs, NCCL on GPUs), with AMP on GPU. How the model is fed (:mod:`darknb.data.loader`):
workers return uint8 clips, which are moved with pinned memory and non-blocking copies and resized
/ cropped / flipped / scaled as a batch on the device. With several processes each one trains on
its shard of every epoch (the same number of steps each), DDP averages the gradients, evaluation
counts every video exactly once, and only the main process writes checkpoints.

Runs are deterministic on CPU and resumable: every source of randomness is a pure function of
(seed, epoch[, index, process]) — dataset clips (the sampler's keys carry the epoch, so persistent
workers honour it), the shuffle, dropout and BERT masks (re-seeded each epoch) — so an interrupted
run resumed from its last checkpoint gives the same weights as an uninterrupted one. Checkpoints
are written atomically (temp file + rename) in a background thread every ``save_every`` epochs.

What fit does not do itself: the learning-rate schedule and the optimiser are built in
:mod:`darknb.engine.build`, teacher soft targets come from :class:`darknb.engine.distill.SoftTargets`
(the teacher and its cache), checkpoints from :mod:`darknb.engine.checkpoint`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from darknb.config import PATH_FIELDS, RunConfig, resolve_path
from darknb.data.loader import batch_clips, make_loader
from darknb.data.protocol import check_same_dataset, identity_of
from darknb.data.splits import Splits
from darknb.engine.build import (
    epoch_seed,
    fast_enhancers,
    lr_at,
    make_accelerator,
    make_optimizer,
    set_seed,
)
from darknb.engine.checkpoint import CheckpointWriter, load_checkpoint, snapshot
from darknb.engine.distill import SoftTargets, TeacherCache, kd_loss
from darknb.engine.evaluate import evaluate
from darknb.engine.records import stage_fingerprint
from darknb.errors import CheckpointError, TrainingError
from darknb.files import RunDir
from darknb.models.classifiers import Teacher
from darknb.provenance import check_fingerprint, run_id

__all__ = ["TrainState", "fit", "resume", "train_one_epoch", "validate"]


# Config fields that may differ between a checkpoint written before fingerprints (darknb 0.1 before
# issue 15) and the run resuming it; newer checkpoints compare fingerprints (:func:`resume`).
_RESUMABLE_CHANGES = {"epochs", "output_dir", "resume", "num_workers", "cache_dir", "on_error",
                      "save_every", "eval_views", "tracker", "compile"}


# Loss values are read back from the device every this many steps (and at the end of an epoch):
# a read waits for the device, and waiting every step would starve it.
_READ_EVERY = 16


def _check_resumable(state: dict, cfg: RunConfig, path: Path) -> None:
    # paths saved relative (before RunConfig resolved them) compare by the same rule
    saved = {k: resolve_path(v, PATH_FIELDS[k]) if k in PATH_FIELDS and isinstance(v, str) else v
             for k, v in state.get("config", {}).items()}
    diffs = {k: (saved.get(k), v) for k, v in cfg.to_dict().items()
             if k not in _RESUMABLE_CHANGES and k in saved and saved.get(k) != v}
    if diffs:
        pretty = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diffs.items())
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written with a different configuration ({pretty}); "
            "use another output_dir, delete the checkpoint, or set resume=False")


class _LossReader:
    """Collects each step's loss parts on the device and reads them back in one transfer every
    :data:`_READ_EVERY` steps: sums for the epoch's record, a clear stop on a non-finite loss."""

    def __init__(self):
        self.pending: list[tuple[int, int, torch.Tensor]] = []
        self.sums = torch.zeros(5, dtype=torch.float64)  # loss*n, ce*n, kd*n, correct, n

    def add(self, step: int, global_step: int, parts: dict, logits, target) -> None:
        n = target.numel()
        row = torch.stack([parts["loss"].detach().float(), parts["ce"].detach().float(),
                           parts["kd"].detach().float(),
                           (logits.detach().argmax(1) == target).sum().float(),
                           torch.full((), float(n), device=target.device)])
        self.pending.append((step, global_step, row))

    def read(self, *, name: str, epoch: int, ckpt_path: Path, accelerator) -> dict:
        """Move the pending values to the CPU; raise on a non-finite loss (on every process at
        once). Returns the means of what was read (for the tracker)."""
        values = (torch.stack([row for _, _, row in self.pending]).double().cpu() if self.pending
                  else torch.zeros(0, 5, dtype=torch.float64))
        bad = next((k for k, v in enumerate(values) if not torch.isfinite(v[:3]).all()), None)
        if accelerator.num_processes > 1:  # every process reads at the same steps: no deadlock
            flag = torch.tensor([0.0 if bad is None else 1.0], device=accelerator.device)
            if accelerator.reduce(flag, reduction="sum").item() > 0 and bad is None:
                raise TrainingError(f"{name}: another process met a non-finite loss in epoch "
                                    f"{epoch + 1}; last good checkpoint: {ckpt_path}")
        if bad is not None:
            step, global_step, _ = self.pending[bad]
            loss, ce, kd = values[bad, :3].tolist()
            raise TrainingError(
                f"{name}: non-finite loss {loss} (ce={ce}, kd={kd}) at epoch {epoch + 1}, step "
                f"{step + 1} (global step {global_step + 1}); last good checkpoint: {ckpt_path}")
        n = values[:, 4:5]
        self.sums += torch.cat([values[:, :3] * n, values[:, 3:]], dim=1).sum(0)
        self.pending = []
        if not len(values):
            return {}
        return {key: float(v) for key, v in zip(("loss", "ce", "kd"), values[:, :3].mean(0))}


def select_final(model: nn.Module, best: dict, best_path: Path, cfg: RunConfig, *,
                  validated: bool, weights: dict | None = None) -> dict:
    """Load the weights chosen on validation into ``model`` (the last epoch's when not validated):
    ``weights`` when this run kept them in memory, else ``best_path`` (a resumed run)."""
    if not validated or cfg.epochs == 0:
        return {"selected_on": "last_epoch", "epoch": cfg.epochs}
    if best["epoch"] != cfg.epochs:
        if weights is None:
            state = load_checkpoint(best_path)
            if state.get("epoch") != best["epoch"]:
                raise CheckpointError(f"{best_path} holds epoch {state.get('epoch')}, but the best "
                                      f"validation epoch is {best['epoch']}; delete it and resume")
            weights = state["model"]
        model.load_state_dict(weights)
    return {"selected_on": "val", "epoch": best["epoch"], "val_top1": best["val_top1"]}



@dataclass
class TrainState:
    """Where a run stands: epochs done, their records, the best validation epoch (and its weights
    when this process kept them), steps taken by this process, and per-epoch speed."""

    epoch: int = 0
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": 0, "val_top1": -1.0})
    best_weights: dict | None = None
    steps: int = 0
    speed: list = field(default_factory=list)
    run_id: str | None = None  # the run that trained (or is training) the weights
    code_changed: list = field(default_factory=list)  # COMPUTE_CODE files changed since the checkpoint


def _check_schedule(saved_epochs: int, done: int, cfg: RunConfig, path: Path,
                    steps_per_epoch: int) -> None:
    """A resume may change ``epochs`` only where the learning rate of the epochs already trained
    stays what it was (a constant schedule past its warm-up): a cosine over 2 epochs continued as
    one over 4 would jump (lr 1.5e-4 at the end of epoch 2, then 3.1e-4), a schedule no
    uninterrupted run has. Raises :class:`CheckpointError` naming both values."""
    if saved_epochs == cfg.epochs or done == 0:
        return
    old = cfg.replace(epochs=saved_epochs)
    steps = done * steps_per_epoch
    same = all(math.isclose(lr_at(k, steps_per_epoch=steps_per_epoch, cfg=old),
                            lr_at(k, steps_per_epoch=steps_per_epoch, cfg=cfg), rel_tol=1e-9)
               for k in range(steps))
    if same:
        return
    last = lr_at(steps - 1, steps_per_epoch=steps_per_epoch, cfg=old)
    following = lr_at(steps, steps_per_epoch=steps_per_epoch, cfg=cfg)
    raise CheckpointError(
        f"checkpoint {str(path)!r} trained {done} epoch(s) of a {cfg.lr_schedule} schedule over "
        f"epochs={saved_epochs} (warmup_epochs={cfg.warmup_epochs}); this run asks for "
        f"epochs={cfg.epochs}, whose schedule gives those epochs other learning rates: continuing "
        f"would jump from lr {last:.2g} (end of epoch {done}) to {following:.2g}. Set resume=False "
        f"(or `python -m darknb run --rerun`) to train {cfg.epochs} epochs from the start, or keep "
        f"epochs={saved_epochs}")


def resume(model: nn.Module, optimizer, cfg: RunConfig, path: Path, identity: dict | None,
           fingerprint: dict | None = None, *, steps_per_epoch: int = 1) -> TrainState:
    """The state to start from: the checkpoint at ``path`` when ``cfg.resume`` and it exists, else
    a fresh one. The checkpoint must have been made from what this run reads: its data
    (:func:`check_same_dataset`) and its fingerprint (settings, data content, weight files;
    :func:`darknb.provenance.check_fingerprint`); ``epochs`` may change only where the learning
    rates of the epochs done stay the same (:func:`_check_schedule`)."""
    if not (path.exists() and cfg.resume):
        return TrainState(run_id=run_id())
    state = load_checkpoint(path)
    if identity is not None:
        check_same_dataset(state.get("dataset"), identity, what=f"checkpoint {path}")
    saved = state.get("fingerprint")
    code_changed = []
    if saved is None or fingerprint is None:
        _check_resumable(state, cfg, path)  # a checkpoint from before fingerprints
    else:
        code_changed = check_fingerprint(saved, fingerprint, what=f"checkpoint {str(path)!r}",
                                         ignore=("code", "settings.epochs"))
    start = int(state["epoch"])
    if start > cfg.epochs:
        raise CheckpointError(f"checkpoint {str(path)!r} is at epoch {start}, past epochs={cfg.epochs}")
    saved_epochs = (saved or {}).get("settings", {}).get("epochs", state.get("config", {}).get("epochs"))
    if saved_epochs is not None:
        _check_schedule(int(saved_epochs), start, cfg, path, steps_per_epoch)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return TrainState(epoch=start, history=list(state.get("history", [])),
                      best=dict(state.get("best", TrainState().best)),
                      run_id=state.get("run_id") if start == cfg.epochs else run_id(),
                      code_changed=code_changed)


def train_one_epoch(model: nn.Module, forward, loader, optimizer, train_set, cfg: RunConfig, *,
                    epoch: int, accelerator, targets: SoftTargets | None, name: str,
                    ckpt_path: Path, progress: bool = True) -> tuple[dict, int]:
    """One epoch of ``cfg``'s loss (``alpha * CE + beta * T^2 * KL`` against ``targets``, or CE
    alone) over ``loader``. Returns the epoch's record (mean loss parts, train top-1, last lr,
    speed) and the number of steps this process took."""
    rank, world = accelerator.process_index, accelerator.num_processes
    # Dropout / BERT key masks: a pure function of (seed, epoch, process) -> exact resume;
    # clips and the shuffle: of (seed, epoch, index) through the sampler's keys.
    set_seed(epoch_seed(cfg.seed, epoch, rank))
    if hasattr(train_set, "set_epoch"):  # for dataset[i] in this process; workers read the epoch
        train_set.set_epoch(epoch)       # from the sampler's keys
    loader.sampler.set_epoch(epoch)
    model.train()
    steps_per_epoch = len(loader)
    opt_steps_per_epoch = math.ceil(steps_per_epoch / cfg.grad_accum)
    trainable = [p for p in model.parameters() if p.requires_grad]
    reader, tick, lr, steps = _LossReader(), time.perf_counter(), cfg.lr, 0
    bar = tqdm(loader, desc=f"{name} {epoch + 1}/{cfg.epochs}",
               disable=not progress or not accelerator.is_main_process, leave=False)
    for step, batch in enumerate(bar):
        if batch is None:  # every clip of the batch was skipped (on_error="skip")
            if world > 1:
                raise TrainingError(
                    f"{name}: process {rank} got a batch whose every video failed to decode; with "
                    "several processes such videos must be dropped before training "
                    "(build_datasets does it with on_error='skip')")
            continue
        sync = (step + 1) % cfg.grad_accum == 0 or step + 1 == steps_per_epoch
        lr = lr_at(epoch * opt_steps_per_epoch + step // cfg.grad_accum,
                   steps_per_epoch=opt_steps_per_epoch, cfg=cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = batch.indices  # stays on the CPU: the teacher cache's keys
        batch = batch.to(accelerator.device, non_blocking=True)
        clips, target = batch_clips(train_set, batch), batch.labels
        with contextlib.nullcontext() if sync else accelerator.no_sync(model):
            with accelerator.autocast():
                logits = forward(clips)
            teacher_logits = targets(clips, index, epoch) if targets is not None else None
            parts = kd_loss(logits.float(), teacher_logits, target, alpha=cfg.alpha,
                            beta=cfg.beta if targets is not None else 0.0, temperature=cfg.temperature)
            accelerator.backward(parts["loss"] / cfg.grad_accum)
        if sync:
            if cfg.grad_clip > 0:
                # the trained parameters only: a frozen module's (stale) grads must not scale them
                accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        reader.add(step, epoch * steps_per_epoch + step, parts, logits, target)
        steps += 1
        if (step + 1) % _READ_EVERY == 0 or step + 1 == steps_per_epoch:
            means = reader.read(name=name, epoch=epoch, ckpt_path=ckpt_path, accelerator=accelerator)
            bar.set_postfix(loss=f"{reader.sums[0].item() / max(1.0, reader.sums[4].item()):.3f}")
            if cfg.tracker:
                seen = reader.sums[4].item() * world
                accelerator.log({**{f"train/{k}": v for k, v in means.items()}, "train/lr": lr,
                                 "train/clips_per_s": seen / (time.perf_counter() - tick)},
                                step=epoch * steps_per_epoch + step + 1)
    # what a skipped last batch left unread (a no-op otherwise; a collective, as on every process)
    reader.read(name=name, epoch=epoch, ckpt_path=ckpt_path, accelerator=accelerator)
    sums = reader.sums.to(accelerator.device)
    if world > 1:
        sums = accelerator.reduce(sums, reduction="sum")
    loss_sum, ce_sum, kd_sum, correct, seen = sums.cpu().tolist()
    if seen == 0:
        raise TrainingError(f"{name}: epoch {epoch + 1} saw no training clip (all skipped?)")
    seconds = time.perf_counter() - tick
    return ({"epoch": epoch + 1, "loss": loss_sum / seen, "ce": ce_sum / seen, "kd": kd_sum / seen,
             "train_top1": 100.0 * correct / seen, "lr": lr,
             "speed": {"seconds": seconds, "clips": int(seen), "clips_per_s": seen / seconds}}, steps)


def validate(model: nn.Module, val_set, loader, state: TrainState, *, epoch: int, accelerator,
             writer: CheckpointWriter, best_path: Path, name: str) -> float:
    """Validation top-1 after ``epoch``; a new best (the earliest on ties) is kept in memory and
    written to ``<name>_best.ckpt`` by the main process. The test split is never looked at here."""
    top1 = evaluate(model, val_set, accelerator=accelerator, loader=loader)["top1"]
    if top1 > state.best["val_top1"]:
        state.best = {"epoch": epoch + 1, "val_top1": top1}
        state.best_weights = snapshot(accelerator.unwrap_model(model).state_dict())
        if accelerator.is_main_process:
            writer.save(best_path, {"model": state.best_weights, **state.best, "name": name})
    return top1


def fit(model: nn.Module, splits: Splits, cfg: RunConfig, *, name: str,
        teacher: nn.Module | None = None, teacher_cache: TeacherCache | None = None,
        progress: bool = True, extra_state: dict | None = None, reads: dict | None = None) -> dict:
    """Train ``model`` on ``splits.train`` for ``cfg.epochs`` epochs, select the final weights,
    evaluate them on ``splits.test`` once.

    Selection: with ``splits.val``, the model is evaluated on it after every epoch and the epoch of
    the best validation top-1 (the earliest on ties) is the final model (its weights are kept in
    ``<name>_best.ckpt``); without, the last epoch. The test set never influences the choice; it is
    evaluated with ``cfg.eval_views`` (validation always with the single centre view).
    With ``teacher`` and ``cfg.beta > 0`` the loss is :func:`kd_loss` against the frozen teacher's
    logits (:class:`SoftTargets`, through ``teacher_cache``); otherwise plain cross-entropy
    (``alpha * CE``). The checkpoint ``<output_dir>/<name>.ckpt`` is rewritten every
    ``cfg.save_every`` epochs (and after the last), in the background; an existing one is resumed
    when ``cfg.resume`` and it was made from what this run reads: the stage's fingerprint
    (:func:`darknb.engine.records.stage_fingerprint`: settings, data content, the pre-trained
    weights of ``cfg.pretrained`` and the weight files in ``reads``, role -> path(s), e.g. the
    teacher's checkpoint) is stored in every checkpoint and compared on resume.

    Several processes (``torchrun``/``accelerate launch``): ``cfg.batch_size`` is per process, each
    trains on its shard of every epoch, gradients are averaged; only the main process writes.
    Returns ``{"name", "metrics", "history", "checkpoint", "selection", "train_seconds", "speed",
    "steps", "processes", ...}`` (the same on every process but ``steps``, this process's count).
    """
    run = RunDir(cfg.output_dir)
    ckpt_path, best_path = run.checkpoint(name), run.best_checkpoint(name)
    accelerator = make_accelerator(cfg)
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    set_seed(cfg.seed)
    optimizer = make_optimizer(model, cfg)
    identity = identity_of(cfg.dataset, splits)
    fingerprint = (stage_fingerprint(cfg, splits, reads=reads, enhancer=isinstance(model, Teacher))
                   if identity is not None else None)
    # on a CPU "the device" is the CPU: workers then transform too, instead of the main process
    in_workers = accelerator.device.type == "cpu" and cfg.num_workers > 0
    loader = make_loader(splits.train, batch_size=cfg.batch_size, train=True,
                         num_workers=cfg.num_workers, seed=cfg.seed, rank=rank, world=world,
                         transform_in_workers=in_workers)
    if len(loader) == 0:
        raise TrainingError(f"{name}: the training set is empty")
    state = resume(model, optimizer, cfg, ckpt_path, identity, fingerprint,
                   steps_per_epoch=math.ceil(len(loader) / cfg.grad_accum))
    val_loader = None if splits.val is None else make_loader(
        splits.val, batch_size=cfg.batch_size, train=False, num_workers=cfg.num_workers, rank=rank,
        world=world, transform_in_workers=in_workers)
    model, optimizer = accelerator.prepare(model, optimizer)
    targets = (SoftTargets(teacher, teacher_cache, seed=cfg.seed, accelerator=accelerator)
               if teacher is not None and cfg.beta > 0 else None)
    fast_enhancers(accelerator, model, targets.teacher if targets is not None else None)
    forward = torch.compile(model) if cfg.compile else model
    if cfg.tracker:
        accelerator.init_trackers(name, config=cfg.to_dict())

    writer, started = CheckpointWriter(), time.perf_counter()
    try:
        for epoch in range(state.epoch, cfg.epochs):
            record, steps = train_one_epoch(model, forward, loader, optimizer, splits.train, cfg,
                                            epoch=epoch, accelerator=accelerator, targets=targets,
                                            name=name, ckpt_path=ckpt_path, progress=progress)
            state.steps += steps
            state.speed.append({"epoch": epoch + 1, **record.pop("speed")})
            if splits.val is not None:
                record["val_top1"] = validate(model, splits.val, val_loader, state, epoch=epoch,
                                              accelerator=accelerator, writer=writer,
                                              best_path=best_path, name=name)
            state.history.append(record)
            if cfg.tracker:
                accelerator.log({f"epoch/{k}": v for k, v in record.items() if k != "epoch"},
                                step=(epoch + 1) * len(loader))
            if main and ((epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs):
                writer.save(ckpt_path, snapshot({
                    "model": accelerator.unwrap_model(model).state_dict(),
                    "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                    "history": state.history, "best": state.best, "config": cfg.to_dict(),
                    "name": name, "classes": list(splits.train.classes), "dataset": identity,
                    "fingerprint": fingerprint, "run_id": state.run_id, **(extra_state or {})}))
    finally:
        writer.wait()  # an interrupted run still leaves its last checkpoint complete on disk
        if cfg.tracker:
            for tracker in accelerator.trackers:
                tracker.finish()
    seconds = time.perf_counter() - started
    accelerator.wait_for_everyone()  # the main process's checkpoints are on disk for everyone
    selection = select_final(accelerator.unwrap_model(model), state.best, best_path, cfg,
                             validated=splits.val is not None, weights=state.best_weights)
    metrics = evaluate(model, splits.test, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                       accelerator=accelerator, progress=progress, views=cfg.eval_views)
    skipped = [s for ds in splits.present() for s in getattr(ds, "skipped", [])]
    return {"name": name, "metrics": metrics, "history": state.history, "checkpoint": str(ckpt_path),
            "selection": selection, "train_seconds": seconds,
            "teacher_seconds": targets.seconds if targets is not None else 0.0,
            "skipped": skipped, "speed": state.speed, "steps": state.steps, "processes": world,
            "dataset": identity, "fingerprint": fingerprint, "trained_by_run": state.run_id,
            "code_changed": state.code_changed}
