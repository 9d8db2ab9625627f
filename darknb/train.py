"""Training and evaluation engine on accelerate: teacher, distilled student, and the no-KD control.

The same code runs on a CPU, one GPU or several processes (``torchrun`` / ``accelerate launch``;
gloo on CPUs, NCCL on GPUs), with AMP on GPU. How the model is fed (:mod:`darknb.loader`): workers
return uint8 clips, which are moved with pinned memory and non-blocking copies and resized /
cropped / flipped / scaled as a batch on the device. With several processes each one trains on its
shard of every epoch (the same number of steps each), DDP averages the gradients, evaluation counts
every video exactly once, and only the main process writes checkpoints.

Runs are deterministic on CPU and resumable: every source of randomness is a pure function of
(seed, epoch[, index, process]) — dataset clips (the sampler's keys carry the epoch, so persistent
workers honour it), the shuffle, dropout and BERT masks (re-seeded each epoch) — so an interrupted
run resumed from its last checkpoint gives the same weights as an uninterrupted one. Checkpoints
are written atomically (temp file + rename) in a background thread every ``save_every`` epochs and
loaded with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, gather_object
from torch import nn
from tqdm.auto import tqdm

from darknb.config import PATH_FIELDS, RunConfig, parse_views, resolve_path
from darknb.data import (
    CACHE_MANIFEST,
    build_datasets,
    enhanced_cache_dir,
    enhancer_fit_frames,
    prepare_cache,
)
from darknb.distill import TeacherCache, kd_loss
from darknb.enhance import (
    IdentityEnhancer,
    ZeroDCE,
    build_enhancer,
    fit_settings,
    fit_zero_reference,
    save_enhancer,
)
from darknb.errors import CheckpointError, ConfigError, TrainingError
from darknb.files import RunDir, read_json, save_torch, write_json
from darknb.loader import PIPELINE as CLIP_PIPELINE
from darknb.loader import ClipKey, batch_clips, collate_raw, make_loader
from darknb.models import Teacher, create_model
from darknb.protocol import check_same_dataset, dataset_identity

# Config fields that may differ between a checkpoint and the run resuming it.
_RESUMABLE_CHANGES = {"epochs", "output_dir", "resume", "num_workers", "cache_dir", "on_error",
                      "save_every", "eval_views", "tracker", "compile"}
# Loss values are read back from the device every this many steps (and at the end of an epoch):
# a read waits for the device, and waiting every step would starve it.
_READ_EVERY = 16

# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    save_torch(state, path)


def _snapshot(obj):
    """A CPU copy of a (nested) state, so that training can go on changing the original."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints in a background thread, out of the training loop's way (a paper-size
    checkpoint is 1.1 GB). ``save`` takes a finished CPU snapshot (:func:`_snapshot`), waits for
    the previous write, and returns; ``wait`` joins the write in flight and re-raises its error.
    Every write is atomic (:func:`save_checkpoint`)."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: str | Path, snapshot: dict) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(path, snapshot),
                                        name=f"darknb-save-{Path(path).name}")
        self._thread.start()

    def _write(self, path, snapshot) -> None:
        try:
            save_checkpoint(path, snapshot)
        except BaseException as err:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = err

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with ``weights_only=True``; a bad file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every unpickling failure means a bad file
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated: {err}") from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} holds no 'model' state dict")
    return state


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


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


def build_classifier(cfg: RunConfig, num_classes: int) -> nn.Module:
    """``cfg.model`` for ``num_classes``; its initial weights are a function of ``cfg.seed``
    (and of the pre-trained backbone, :func:`resolve_pretrained`)."""
    pretrained = resolve_pretrained(cfg)
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, num_classes, img_size=cfg.size, num_frames=cfg.num_frames,
                        pretrained=pretrained, input_norm=cfg.input_norm)


def enhancer_kwargs(cfg: RunConfig) -> dict:
    """Constructor arguments of ``cfg.enhancer`` that the config sets (Zero-DCE++'s run-time
    ``scale_factor``)."""
    return {"scale_factor": cfg.enhancer_scale_factor} if cfg.enhancer == "zerodce++" else {}


def build_teacher_enhancer(cfg: RunConfig, train_dataset, out_dir: Path) -> tuple[nn.Module, dict]:
    """The teacher's enhancer: loaded from ``cfg.enhancer_checkpoint``, or (Zero-DCE without a
    checkpoint) fitted zero-reference on the training frames (``cfg.enhancer_fit`` protocol, see
    :func:`darknb.enhance.fit_settings`; Zero-DCE++ fitted at scale factor 1, run at
    ``cfg.enhancer_scale_factor``) and saved beside the run."""
    info: dict[str, Any] = {"name": cfg.enhancer, **enhancer_kwargs(cfg)}
    if cfg.enhancer not in ("zerodce", "zerodce++") or cfg.enhancer_checkpoint:
        enhancer = build_enhancer(cfg.enhancer, checkpoint=cfg.enhancer_checkpoint or None,
                                  **enhancer_kwargs(cfg))
        info["source"] = cfg.enhancer_checkpoint or "analytic"
        return enhancer, info
    fitted = RunDir(out_dir).fitted_enhancer(cfg.enhancer)
    # what the fit was made on: reusing a fit of other data or of another length is refused (one
    # fit serves every seed of a run: the enhancer is fixed preprocessing, like Zero-DCE's weights)
    fit_of = {"dataset": dataset_identity(cfg.dataset, [train_dataset]),
              "steps": cfg.enhancer_fit_steps, "seed": cfg.seed, "protocol": cfg.enhancer_fit}
    record = RunDir(out_dir).fitted_enhancer_record(cfg.enhancer)
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
    frames = enhancer_fit_frames(train_dataset, seed=cfg.seed)
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


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, CLS tokens and positional embeddings (timm's rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


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


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of dropout / BERT masks in one epoch of one process: a function of all three."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _fast_enhancers(accelerator: Accelerator, *models: nn.Module | None) -> None:
    """Zero-DCE in bf16 and channels-last where the run is bf16 on a GPU (see ZeroDCE.set_precision)."""
    if accelerator.device.type != "cuda" or accelerator.mixed_precision != "bf16":
        return
    for model in models:
        for module in (model.modules() if model is not None else ()):
            if isinstance(module, ZeroDCE):
                module.set_precision(torch.bfloat16, channels_last=True)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


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


def fit(model: nn.Module, train_set, test_set, cfg: RunConfig, *, name: str,
        val_set=None, teacher: nn.Module | None = None, teacher_cache: TeacherCache | None = None,
        progress: bool = True, extra_state: dict | None = None) -> dict:
    """Train ``model`` for ``cfg.epochs`` epochs, select the final weights, evaluate them on
    ``test_set`` once.

    Selection: with ``val_set``, the model is evaluated on it after every epoch and the epoch of
    the best validation top-1 (the earliest on ties) is the final model (its weights are kept in
    ``<name>_best.ckpt``); without, the last epoch. The test set never influences the choice; it is
    evaluated with ``cfg.eval_views`` (validation always with the single centre view).
    With ``teacher`` and ``cfg.beta > 0`` the loss is :func:`kd_loss` (teacher in eval mode, frozen);
    otherwise plain cross-entropy (``alpha * CE``). The checkpoint ``<output_dir>/<name>.ckpt`` is
    rewritten every ``cfg.save_every`` epochs (and after the last), in the background; an existing
    one is resumed when ``cfg.resume``.

    Several processes (``torchrun``/``accelerate launch``): ``cfg.batch_size`` is per process, each
    trains on its shard of every epoch, gradients are averaged; only the main process writes.
    Returns ``{"name", "metrics", "history", "checkpoint", "selection", "train_seconds", "speed",
    "steps", "processes", ...}`` (the same on every process but ``steps``, this process's count).
    """
    run = RunDir(cfg.output_dir)
    ckpt_path, best_path = run.checkpoint(name), run.checkpoint(f"{name}_best")
    accelerator = make_accelerator(cfg)
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    _set_seed(cfg.seed)
    use_teacher = teacher is not None and cfg.beta > 0

    optimizer = make_optimizer(model, cfg)
    identity = _identity(cfg, (train_set, val_set, test_set))
    start_epoch, history, best = 0, [], {"epoch": 0, "val_top1": -1.0}
    if ckpt_path.exists() and cfg.resume:
        state = load_checkpoint(ckpt_path)
        _check_resumable(state, cfg, ckpt_path)
        if identity is not None:
            check_same_dataset(state.get("dataset"), identity, what=f"checkpoint {ckpt_path}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
        best = dict(state.get("best", best))
        if start_epoch > cfg.epochs:
            raise CheckpointError(f"checkpoint {str(ckpt_path)!r} is at epoch {start_epoch}, past "
                                  f"epochs={cfg.epochs}")

    # on a CPU "the device" is the CPU: workers then transform too, instead of the main process
    in_workers = device.type == "cpu" and cfg.num_workers > 0
    loader = make_loader(train_set, batch_size=cfg.batch_size, train=True,
                         num_workers=cfg.num_workers, seed=cfg.seed, rank=rank, world=world,
                         transform_in_workers=in_workers)
    if len(loader) == 0:
        raise TrainingError(f"{name}: the training set is empty")
    val_loader = None if val_set is None else make_loader(
        val_set, batch_size=cfg.batch_size, train=False, num_workers=cfg.num_workers, rank=rank,
        world=world, transform_in_workers=in_workers)
    model, optimizer = accelerator.prepare(model, optimizer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if use_teacher:
        teacher = teacher.to(device).eval()
        teacher.requires_grad_(False)
    _fast_enhancers(accelerator, model, teacher if use_teacher else None)
    forward = torch.compile(model) if cfg.compile else model
    if cfg.tracker:
        accelerator.init_trackers(name, config=cfg.to_dict())

    writer = CheckpointWriter()
    steps_per_epoch = len(loader)
    opt_steps_per_epoch = math.ceil(steps_per_epoch / cfg.grad_accum)
    started = time.perf_counter()
    teacher_seconds = 0.0  # time spent computing teacher logits (not served by the cache)
    global_step = start_epoch * steps_per_epoch
    steps, speed, best_weights = 0, [], None
    try:
        for epoch in range(start_epoch, cfg.epochs):
            # Dropout / BERT key masks: a pure function of (seed, epoch, process) -> exact resume;
            # clips and the shuffle: of (seed, epoch, index) through the sampler's keys.
            _set_seed(_epoch_seed(cfg.seed, epoch, rank))
            if hasattr(train_set, "set_epoch"):  # for dataset[i] in this process; workers read
                train_set.set_epoch(epoch)       # the epoch from the sampler's keys
            loader.sampler.set_epoch(epoch)
            model.train()
            reader = _LossReader()
            tick = time.perf_counter()
            bar = tqdm(loader, desc=f"{name} {epoch + 1}/{cfg.epochs}", disable=not progress or not main,
                       leave=False)
            lr = cfg.lr
            for step, batch in enumerate(bar):
                if batch is None:  # every clip of the batch was skipped (on_error="skip")
                    if world > 1:
                        raise TrainingError(
                            f"{name}: process {rank} got a batch whose every video failed to "
                            "decode; with several processes such videos must be dropped before "
                            "training (build_datasets does it with on_error='skip')")
                    continue
                sync = (step + 1) % cfg.grad_accum == 0 or step + 1 == steps_per_epoch
                lr = lr_at(epoch * opt_steps_per_epoch + step // cfg.grad_accum,
                           steps_per_epoch=opt_steps_per_epoch, cfg=cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                index = batch.indices  # stays on the CPU: the teacher cache's keys
                batch = batch.to(device, non_blocking=True)
                clips, target = batch_clips(train_set, batch), batch.labels
                with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                    with accelerator.autocast():
                        logits = forward(clips)
                    teacher_logits = None
                    if use_teacher:
                        tick_teacher = time.perf_counter()
                        teacher_logits, computed = _teacher_logits(teacher, clips, index, cfg, epoch,
                                                                   teacher_cache, accelerator)
                        if computed:
                            elapsed = time.perf_counter() - tick_teacher
                            teacher_seconds += elapsed
                            if teacher_cache is not None:
                                fill = teacher_cache.fill_seconds
                                fill[cfg.seed] = fill.get(cfg.seed, 0.0) + elapsed
                    parts = kd_loss(logits.float(), teacher_logits, target, alpha=cfg.alpha,
                                    beta=cfg.beta if use_teacher else 0.0, temperature=cfg.temperature)
                    accelerator.backward(parts["loss"] / cfg.grad_accum)
                if sync:
                    if cfg.grad_clip > 0:
                        # the trained parameters only: a frozen module's (stale) grads must not scale them
                        accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                reader.add(step, global_step, parts, logits, target)
                global_step += 1
                steps += 1
                if (step + 1) % _READ_EVERY == 0 or step + 1 == steps_per_epoch:
                    means = reader.read(name=name, epoch=epoch, ckpt_path=ckpt_path,
                                        accelerator=accelerator)
                    seen = reader.sums[4].item() * world
                    bar.set_postfix(loss=f"{reader.sums[0].item() / max(1.0, reader.sums[4].item()):.3f}")
                    if cfg.tracker:
                        accelerator.log({**{f"train/{k}": v for k, v in means.items()}, "train/lr": lr,
                                         "train/clips_per_s": seen / (time.perf_counter() - tick)},
                                        step=global_step)
            # what a skipped last batch left unread (a no-op otherwise; a collective, as on every process)
            reader.read(name=name, epoch=epoch, ckpt_path=ckpt_path, accelerator=accelerator)
            sums = reader.sums.to(device)
            if world > 1:
                sums = accelerator.reduce(sums, reduction="sum")
            loss_sum, ce_sum, kd_sum, correct, seen = sums.cpu().tolist()
            if seen == 0:
                raise TrainingError(f"{name}: epoch {epoch + 1} saw no training clip (all skipped?)")
            seconds = time.perf_counter() - tick
            speed.append({"epoch": epoch + 1, "seconds": seconds, "clips": int(seen),
                          "clips_per_s": seen / seconds})
            record = {"epoch": epoch + 1, "loss": loss_sum / seen, "ce": ce_sum / seen,
                      "kd": kd_sum / seen, "train_top1": 100.0 * correct / seen, "lr": lr}
            if val_set is not None:
                record["val_top1"] = evaluate(model, val_set, accelerator=accelerator,
                                              loader=val_loader)["top1"]
                if record["val_top1"] > best["val_top1"]:
                    best = {"epoch": epoch + 1, "val_top1": record["val_top1"]}
                    best_weights = _snapshot(accelerator.unwrap_model(model).state_dict())
                    if main:
                        writer.save(best_path, {"model": best_weights, **best, "name": name})
            history.append(record)
            if cfg.tracker:
                accelerator.log({f"epoch/{k}": v for k, v in record.items() if k != "epoch"},
                                step=global_step)
            due = (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs
            if due and main:
                writer.save(ckpt_path, _snapshot({
                    "model": accelerator.unwrap_model(model).state_dict(),
                    "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "history": history,
                    "best": best, "config": cfg.to_dict(), "name": name,
                    "classes": list(train_set.classes), "dataset": identity, **(extra_state or {})}))
    finally:
        writer.wait()  # an interrupted run still leaves its last checkpoint complete on disk
        if cfg.tracker:
            for tracker in accelerator.trackers:
                tracker.finish()
    seconds = time.perf_counter() - started
    accelerator.wait_for_everyone()  # the main process's checkpoints are on disk for everyone
    selection = _select_final(accelerator.unwrap_model(model), best, best_path, cfg,
                              validated=val_set is not None, weights=best_weights)
    metrics = evaluate(model, test_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                       accelerator=accelerator, progress=progress, views=cfg.eval_views)
    skipped = [s for ds in (train_set, val_set, test_set) for s in getattr(ds, "skipped", [])]
    return {"name": name, "metrics": metrics, "history": history, "checkpoint": str(ckpt_path),
            "selection": selection, "train_seconds": seconds, "teacher_seconds": teacher_seconds,
            "skipped": skipped, "speed": speed, "steps": steps, "processes": world,
            "dataset": identity}


def _identity(cfg: RunConfig, splits) -> dict | None:
    """The run's dataset identity (stored in checkpoints), None for datasets without list files."""
    if not all(hasattr(ds, "list_file") for ds in splits if ds is not None):
        return None
    return dataset_identity(cfg.dataset, splits)


def _select_final(model: nn.Module, best: dict, best_path: Path, cfg: RunConfig, *,
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


def _teacher_logits(teacher, clips, index, cfg, epoch, cache, accelerator):
    if cache is not None:
        hit = cache.lookup(cfg.seed, epoch, index.tolist())
        if hit is not None:
            return hit.to(clips.device), False
    with torch.no_grad(), accelerator.autocast():
        logits = teacher(clips).float()
    if cache is not None:
        cache.add(cfg.seed, epoch, index.tolist(), logits)
    return logits, True


# ----------------------------------------------------------------------------------------------
# Stages: teacher, then student (with KD and the no-KD control)
# ----------------------------------------------------------------------------------------------


def ensure_enhanced_cache(cfg: RunConfig, enhancer: nn.Module) -> dict:
    """Write (or reuse) ``cfg``'s enhanced frame cache: ``enhancer`` on native-resolution frames,
    then the raw cache's resize (:func:`darknb.data.prepare_cache`). Returns where and what.
    Under several processes the main one writes it; the others then find it complete."""
    state = process_state()
    with state.main_process_first():
        if state.is_main_process:
            report = prepare_cache(cfg, enhancer=enhancer)  # short side: the raw cache's
        else:  # the main process wrote it: read, write nothing
            report = read_json(enhanced_cache_dir(cfg) / CACHE_MANIFEST)
            report = {**report, "written": 0, "reused": len(report["videos"])}
    return {"dir": str(enhanced_cache_dir(cfg)), "short_side": report["short_side"],
            "written": report["written"], "reused": report["reused"], "seconds": report["seconds"],
            "enhancer": report["enhancer"]}


def train_teacher(cfg: RunConfig, *, name: str = "teacher", progress: bool = True) -> dict:
    """Fit/load the enhancer, train T = T_c(T_e(x)) with cross-entropy, evaluate it. The enhancer
    is fitted once per run folder and shared by every seed's teacher (it is not what varies).

    ``cfg.teacher_input="online"``: T_e enhances every resized training / test crop. With
    ``"enhanced_cache"`` the frozen T_e enhances every native-resolution frame ONCE, before the
    resize (the paper's order; :func:`ensure_enhanced_cache`, shared by the seeds as the enhancer
    is), and T_c trains and is evaluated on clips of that cache: the same crops of the same
    frames the student sees raw."""
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set, val_set, test_set = build_datasets(cfg)
    enhancer, enhancer_info = build_teacher_enhancer(cfg, train_set, out_dir)
    enhancer_info["teacher_input"] = cfg.teacher_input
    if cfg.teacher_input == "enhanced_cache":
        enhancer_info["enhanced_cache"] = ensure_enhanced_cache(cfg, enhancer)
        train_set, val_set, test_set = build_datasets(cfg.replace(cache_dir=str(enhanced_cache_dir(cfg))))
        enhancer = IdentityEnhancer()  # the frames are enhanced already
    teacher = Teacher(enhancer, build_classifier(cfg, len(train_set.classes)))
    result = fit(teacher, train_set, test_set, cfg.replace(beta=0.0), name=name, val_set=val_set,
                 progress=progress, extra_state={"enhancer": enhancer_info})
    result["enhancer"] = enhancer_info
    return result


def load_final_state(path: str | Path) -> dict:
    """A finished run's checkpoint with ``"model"`` replaced by the FINAL weights: those selected
    on validation (``<name>_best.ckpt`` beside it) when the run was validated, else the last
    epoch's. Refuses an unfinished run."""
    path = Path(path)
    state = load_checkpoint(path)
    epochs = state.get("config", {}).get("epochs")
    if state.get("epoch") != epochs:
        raise CheckpointError(f"checkpoint {str(path)!r} is unfinished (epoch {state.get('epoch')} "
                              f"of {epochs}); finish training first")
    best = state.get("best", {})
    if best.get("epoch") and best["epoch"] != state["epoch"]:
        best_path = path.with_name(f"{path.stem}_best{path.suffix}")
        chosen = load_checkpoint(best_path)
        if chosen.get("epoch") != best["epoch"]:
            raise CheckpointError(f"{best_path} holds epoch {chosen.get('epoch')}, but {path} "
                                  f"selected epoch {best['epoch']}")
        state = {**state, "model": chosen["model"]}
    return state


def load_teacher(cfg: RunConfig, num_classes: int, path: str | Path | None = None, *,
                 splits=None) -> nn.Module:
    """Rebuild the trained teacher (its selected weights, enhancer included) from its checkpoint.

    The teacher must have been trained on the student's data: the same dataset name, class names
    and list files (``splits``, the student's datasets; built from ``cfg`` when None), else
    :class:`CheckpointError` names what differs.

    A teacher trained with ``teacher_input="enhanced_cache"`` is its classifier behind an identity
    enhancer, with ``.enhanced_cache`` naming the frames it reads: :func:`train_student` then
    computes its soft targets on the enhanced clips (:func:`fill_teacher_cache`), never on raw
    ones. An online teacher has ``.enhanced_cache = None``."""
    path = Path(path) if path else RunDir(cfg.output_dir).checkpoint("teacher")
    state = load_final_state(path)
    _check_data(state, cfg, splits, what=f"teacher checkpoint {str(path)!r}")
    saved = RunConfig.from_params(state.get("config", {}))
    cached = saved.teacher_input == "enhanced_cache"
    enhancer = IdentityEnhancer() if cached else build_enhancer(saved.enhancer, **enhancer_kwargs(saved))
    teacher = Teacher(enhancer, build_classifier(saved, num_classes))
    teacher.enhanced_cache = str(enhanced_cache_dir(saved)) if cached else None
    try:
        teacher.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"teacher checkpoint {str(path)!r} does not fit the model: {err}") from err
    for key in ("num_frames", "size"):
        if getattr(saved, key) != getattr(cfg, key):
            raise ConfigError(f"teacher was trained with {key}={getattr(saved, key)}, the student "
                              f"asks for {key}={getattr(cfg, key)}")
    return teacher.eval()


def _check_data(state: dict, cfg: RunConfig, splits, *, what: str) -> None:
    """Refuse a checkpoint made on other data than ``cfg``'s (``splits``: its datasets, built
    from ``cfg`` when None): dataset name, class names, list files."""
    if splits is None:
        splits = build_datasets(cfg, check_videos=False)
    check_same_dataset(state.get("dataset"), dataset_identity(cfg.dataset, splits), what=what)


def load_classifier(cfg: RunConfig, num_classes: int, path: str | Path, *, splits=None) -> nn.Module:
    """A trained classifier (e.g. a no-KD student, the raw-input teacher of the self-distillation
    control) with its selected weights, rebuilt from its checkpoint's config; eval mode. Like
    :func:`load_teacher`, it refuses a checkpoint made on other data."""
    state = load_final_state(path)
    _check_data(state, cfg, splits, what=f"checkpoint {str(path)!r}")
    saved = RunConfig.from_params(state.get("config", {}))
    model = build_classifier(saved, num_classes)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit {saved.model}: {err}") from err
    return model.eval()


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
    """Stands in for an enhanced-cache teacher inside :func:`fit`: its targets are all in the
    cache, and computing them on the raw clips fit holds would be wrong, so a miss is an error."""

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
    if not marker.is_file() or not read_json(marker).get("enhancer"):
        # without it the dataset would quietly decode the raw videos for the teacher
        raise ConfigError(f"the teacher was trained on the enhanced cache {teacher.enhanced_cache}, "
                          "which is missing or incomplete (moved run folder? pass it again as "
                          "enhanced_cache_dir and retrain, or re-create it with prepare)")
    enhanced = build_datasets(cfg.replace(cache_dir=teacher.enhanced_cache)).train
    if enhanced.samples != train_set.samples:
        raise ConfigError(f"enhanced cache {teacher.enhanced_cache} does not hold the student's "
                          f"training videos ({len(enhanced.samples)} vs {len(train_set.samples)})")
    raw_manifest = (cfg.frame_cache or Path("")) / CACHE_MANIFEST
    if cfg.frame_cache is not None and raw_manifest.is_file():  # same frame counts and sizes -> same clips
        raw = read_json(raw_manifest)["videos"]
        enh = read_json(Path(teacher.enhanced_cache) / CACHE_MANIFEST)["videos"]
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


def train_student(cfg: RunConfig, *, kd: bool = True, name: str | None = None,
                  teacher: nn.Module | None = None, teacher_cache: TeacherCache | None = None,
                  progress: bool = True) -> dict:
    """Train the student (raw frames only). ``kd=True``: alpha*CE + beta*T^2*KL against the frozen
    teacher; ``kd=False``: the control the paper lacks, the same student with beta = 0.

    An enhanced-cache teacher (``teacher.enhanced_cache``, see :func:`load_teacher`) gets its soft
    targets computed up front on the enhanced clips (:func:`fill_teacher_cache`, into
    ``teacher_cache``, or an in-memory one); the run's ``teacher_seconds``
    includes that time."""
    train_set, val_set, test_set = build_datasets(cfg)
    num_classes = len(train_set.classes)
    if kd and cfg.beta > 0 and teacher is None:
        teacher = load_teacher(cfg, num_classes, splits=(train_set, val_set, test_set))
    prefill_seconds = 0.0
    if kd and cfg.beta > 0 and getattr(teacher, "enhanced_cache", None):
        teacher_cache = teacher_cache if teacher_cache is not None else TeacherCache()
        prefill_seconds = fill_teacher_cache(cfg, teacher, teacher_cache, train_set, progress=progress)
        teacher_cache.save()
        teacher = _PrefilledTargetsOnly()
    student = build_classifier(cfg, num_classes)
    run_cfg = cfg if kd else cfg.replace(beta=0.0)
    name = name or ("student" if kd else "student_no_kd")
    result = fit(student, train_set, test_set, run_cfg, name=name, val_set=val_set,
                 teacher=teacher if kd else None, teacher_cache=teacher_cache, progress=progress)
    result["teacher_seconds"] = result.get("teacher_seconds", 0.0) + prefill_seconds
    return result
