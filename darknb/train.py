"""Training and evaluation engine on accelerate: teacher, distilled student, and the no-KD control.

The same code runs on a CPU, one GPU or several (``accelerate launch``), with AMP on GPU. Runs are
deterministic on CPU and resumable: every source of randomness is a pure function of
(seed, epoch[, index]) — dataset clips (``VideoListDataset.set_epoch``), the shuffle (accelerate's
seedable sampler), dropout and BERT masks (re-seeded each epoch) — so an interrupted run resumed from
its last checkpoint gives the same weights as an uninterrupted one. Checkpoints are written
atomically (temp file + rename) at the end of every epoch and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch import nn
from tqdm.auto import tqdm

from darknb.config import PATH_FIELDS, RunConfig, resolve_path
from darknb.data import build_datasets, collate_clips, enhancer_fit_frames
from darknb.distill import TeacherCache, kd_loss
from darknb.enhance import build_enhancer, fit_zero_reference, save_enhancer
from darknb.errors import CheckpointError, ConfigError, TrainingError
from darknb.files import RunDir, read_json, save_torch, write_json
from darknb.models import Teacher, create_model
from darknb.protocol import check_same_dataset, dataset_identity

# Config fields that may differ between a checkpoint and the run resuming it.
_RESUMABLE_CHANGES = {"epochs", "output_dir", "resume", "num_workers", "cache_dir", "on_error",
                      "save_every"}

# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    save_torch(state, path)


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


def build_teacher_enhancer(cfg: RunConfig, train_dataset, out_dir: Path) -> tuple[nn.Module, dict]:
    """The teacher's enhancer: loaded from ``cfg.enhancer_checkpoint``, or (Zero-DCE without a
    checkpoint) fitted zero-reference on the training frames and saved beside the run."""
    info: dict[str, Any] = {"name": cfg.enhancer}
    if cfg.enhancer not in ("zerodce", "zerodce++") or cfg.enhancer_checkpoint:
        enhancer = build_enhancer(cfg.enhancer, checkpoint=cfg.enhancer_checkpoint or None)
        info["source"] = cfg.enhancer_checkpoint or "analytic"
        return enhancer, info
    fitted = RunDir(out_dir).fitted_enhancer(cfg.enhancer)
    # what the fit was made on: reusing a fit of other data or of another length is refused (one
    # fit serves every seed of a run: the enhancer is fixed preprocessing, like Zero-DCE's weights)
    fit_of = {"dataset": dataset_identity(cfg.dataset, [train_dataset]),
              "steps": cfg.enhancer_fit_steps, "seed": cfg.seed}
    record = RunDir(out_dir).fitted_enhancer_record(cfg.enhancer)
    if fitted.exists() and cfg.resume:
        saved = read_json(record) if record.is_file() else None
        if saved is not None:
            check_same_dataset(saved.get("dataset"), fit_of["dataset"], what=f"fitted enhancer {fitted}")
            if saved.get("steps") != cfg.enhancer_fit_steps:
                raise CheckpointError(
                    f"fitted enhancer {fitted} was fitted with enhancer_fit_steps={saved.get('steps')}, "
                    f"this run asks for {cfg.enhancer_fit_steps}; delete it or set resume=False to refit")
        info.update(source=str(fitted), fitted=True, reused=True)
        return build_enhancer(cfg.enhancer, checkpoint=str(fitted)), info
    torch.manual_seed(cfg.seed)  # the fit's starting weights: a function of the seed, not of RNG history
    enhancer = build_enhancer(cfg.enhancer)
    frames = enhancer_fit_frames(train_dataset, seed=cfg.seed)
    start = time.perf_counter()
    history = fit_zero_reference(enhancer, frames, steps=cfg.enhancer_fit_steps, seed=cfg.seed)
    with torch.no_grad():
        after = enhancer(frames[:16]).clamp(0, 1).mean().item()
    save_enhancer(enhancer, fitted)
    write_json(fit_of, record)
    # use the weights as a later process reloads them (the loader flushes subnormals): a run fitted
    # here and one resumed elsewhere then train the same teacher
    enhancer = build_enhancer(cfg.enhancer, checkpoint=str(fitted))
    info.update(source=str(fitted), fitted=True, steps=cfg.enhancer_fit_steps,
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


def make_accelerator(cfg: RunConfig) -> Accelerator:
    precision = cfg.mixed_precision
    if precision == "auto":
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "no"
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum,
                       dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                                 data_seed=cfg.seed))


def _loader(dataset, cfg: RunConfig, *, shuffle: bool, batch_size: int | None = None):
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size or cfg.batch_size, shuffle=shuffle,
        num_workers=cfg.num_workers, collate_fn=collate_clips, pin_memory=torch.cuda.is_available(),
        persistent_workers=False)  # fresh workers each epoch see the dataset's new epoch


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int = 8, num_workers: int = 0,
             accelerator=None, progress: bool = False) -> dict:
    """Top-1/top-5 (%), per-class accuracy, confusion matrix and per-video predictions."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=collate_clips)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
    was_training = model.training
    model.eval()
    logits, labels, indices = [], [], []
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        if batch is None:
            continue
        clips, target, index = batch
        out = model(clips.to(device)).float()
        if accelerator is not None:
            out, target, index = accelerator.gather_for_metrics((out, target.to(device), index.to(device)))
        logits.append(out.cpu())
        labels.append(target.cpu())
        indices.append(index.cpu())
    model.train(was_training)
    if not logits:
        raise TrainingError("evaluate: every test video was skipped; nothing to evaluate")
    return summarize_predictions(torch.cat(logits), torch.cat(labels), torch.cat(indices),
                                 num_classes=len(dataset.classes))


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


def fit(model: nn.Module, train_set, test_set, cfg: RunConfig, *, name: str,
        val_set=None, teacher: nn.Module | None = None, teacher_cache: TeacherCache | None = None,
        progress: bool = True, extra_state: dict | None = None) -> dict:
    """Train ``model`` for ``cfg.epochs`` epochs, select the final weights, evaluate them on
    ``test_set`` once.

    Selection: with ``val_set``, the model is evaluated on it after every epoch and the epoch of
    the best validation top-1 (the earliest on ties) is the final model (its weights are kept in
    ``<name>_best.ckpt``); without, the last epoch. The test set never influences the choice.
    With ``teacher`` and ``cfg.beta > 0`` the loss is :func:`kd_loss` (teacher in eval mode, frozen);
    otherwise plain cross-entropy (``alpha * CE``). The checkpoint ``<output_dir>/<name>.ckpt`` is
    rewritten every ``cfg.save_every`` epochs; an existing one is resumed when ``cfg.resume``.
    Returns ``{"name", "metrics", "history", "checkpoint", "selection", "train_seconds", ...}``.
    """
    run = RunDir(cfg.output_dir)
    ckpt_path, best_path = run.checkpoint(name), run.checkpoint(f"{name}_best")
    accelerator = make_accelerator(cfg)
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

    loader = _loader(train_set, cfg, shuffle=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if use_teacher:
        teacher = teacher.to(accelerator.device).eval()
        teacher.requires_grad_(False)

    started = time.perf_counter()
    teacher_seconds = 0.0  # time spent computing teacher logits (not served by the cache)
    global_step = start_epoch * len(loader)
    for epoch in range(start_epoch, cfg.epochs):
        # Dropout / BERT key masks / sampler: a pure function of (seed, epoch) -> exact resume.
        _set_seed(cfg.seed * 1000 + epoch)
        train_set.set_epoch(epoch)
        loader.set_epoch(epoch)
        model.train()
        sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0}
        seen = correct = 0
        bar = tqdm(loader, desc=f"{name} {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step, batch in enumerate(bar):
            if batch is None:  # every clip of the batch was skipped (on_error="skip")
                continue
            clips, target, index = batch
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    logits = model(clips)
                teacher_logits = None
                if use_teacher:
                    tick = time.perf_counter()
                    teacher_logits, computed = _teacher_logits(teacher, clips, index, cfg, epoch,
                                                               teacher_cache, accelerator)
                    if computed:
                        elapsed = time.perf_counter() - tick
                        teacher_seconds += elapsed
                        if teacher_cache is not None:
                            fill = teacher_cache.fill_seconds
                            fill[cfg.seed] = fill.get(cfg.seed, 0.0) + elapsed
                parts = kd_loss(logits.float(), teacher_logits, target, alpha=cfg.alpha,
                                beta=cfg.beta if use_teacher else 0.0, temperature=cfg.temperature)
                loss = parts["loss"]
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"{name}: non-finite loss {loss.item()} (ce={parts['ce'].item()}, "
                        f"kd={parts['kd'].item()}) at epoch {epoch + 1}, step {step + 1} "
                        f"(global step {global_step + 1}); last good checkpoint: {ckpt_path}")
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.grad_clip > 0:
                    # the trained parameters only: a frozen module's (stale) grads must not scale them
                    accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            global_step += 1
            n = target.numel()
            seen += n
            correct += (logits.argmax(1) == target).sum().item()
            for key in sums:
                sums[key] += parts[key].item() * n
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}")
        if seen == 0:
            raise TrainingError(f"{name}: epoch {epoch + 1} saw no training clip (all skipped?)")
        record = {"epoch": epoch + 1, **{k: v / seen for k, v in sums.items()},
                  "train_top1": 100.0 * correct / seen}
        if val_set is not None:
            record["val_top1"] = evaluate(model, val_set, batch_size=cfg.batch_size,
                                          num_workers=cfg.num_workers, accelerator=accelerator)["top1"]
            if record["val_top1"] > best["val_top1"]:
                best = {"epoch": epoch + 1, "val_top1": record["val_top1"]}
                if accelerator.is_main_process:
                    save_checkpoint(best_path, {"model": accelerator.unwrap_model(model).state_dict(),
                                                **best, "name": name})
        history.append(record)
        accelerator.wait_for_everyone()
        due = (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs
        if due and accelerator.is_main_process:
            save_checkpoint(ckpt_path, {
                "model": accelerator.unwrap_model(model).state_dict(),
                "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "history": history,
                "best": best, "config": cfg.to_dict(), "name": name,
                "classes": list(train_set.classes), "dataset": identity, **(extra_state or {})})
    seconds = time.perf_counter() - started
    selection = _select_final(accelerator.unwrap_model(model), best, best_path, cfg,
                              validated=val_set is not None)
    metrics = evaluate(model, test_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                       accelerator=accelerator, progress=progress)
    skipped = [s for ds in (train_set, val_set, test_set) for s in getattr(ds, "skipped", [])]
    return {"name": name, "metrics": metrics, "history": history, "checkpoint": str(ckpt_path),
            "selection": selection, "train_seconds": seconds, "teacher_seconds": teacher_seconds,
            "skipped": skipped, "dataset": identity}


def _identity(cfg: RunConfig, splits) -> dict | None:
    """The run's dataset identity (stored in checkpoints), None for datasets without list files."""
    if not all(hasattr(ds, "list_file") for ds in splits if ds is not None):
        return None
    return dataset_identity(cfg.dataset, splits)


def _select_final(model: nn.Module, best: dict, best_path: Path, cfg: RunConfig, *,
                  validated: bool) -> dict:
    """Load the weights chosen on validation into ``model`` (the last epoch's when not validated)."""
    if not validated or cfg.epochs == 0:
        return {"selected_on": "last_epoch", "epoch": cfg.epochs}
    if best["epoch"] != cfg.epochs:
        state = load_checkpoint(best_path)
        if state.get("epoch") != best["epoch"]:
            raise CheckpointError(f"{best_path} holds epoch {state.get('epoch')}, but the best "
                                  f"validation epoch is {best['epoch']}; delete it and resume")
        model.load_state_dict(state["model"])
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


def train_teacher(cfg: RunConfig, *, name: str = "teacher", progress: bool = True) -> dict:
    """Fit/load the enhancer, train T = T_c(T_e(x)) with cross-entropy, evaluate it. The enhancer
    is fitted once per run folder and shared by every seed's teacher (it is not what varies)."""
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set, val_set, test_set = build_datasets(cfg)
    enhancer, enhancer_info = build_teacher_enhancer(cfg, train_set, out_dir)
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
    :class:`CheckpointError` names what differs."""
    path = Path(path) if path else RunDir(cfg.output_dir).checkpoint("teacher")
    state = load_final_state(path)
    _check_data(state, cfg, splits, what=f"teacher checkpoint {str(path)!r}")
    saved = RunConfig.from_params(state.get("config", {}))
    teacher = Teacher(build_enhancer(saved.enhancer), build_classifier(saved, num_classes))
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
    filled with."""
    run = RunDir(cfg.output_dir)
    ckpt = run.checkpoint(teacher)
    fields = {k: getattr(cfg, k) for k in ("dataset", "data_root", "split", "num_frames", "size",
                                           "sampling", "cache_dir")}
    fields["teacher"] = (ckpt.stat().st_size, ckpt.stat().st_mtime_ns) if ckpt.exists() else None
    signature = hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()
    return TeacherCache(run.teacher_cache(teacher), signature=signature)


def train_student(cfg: RunConfig, *, kd: bool = True, name: str | None = None,
                  teacher: nn.Module | None = None, teacher_cache: TeacherCache | None = None,
                  progress: bool = True) -> dict:
    """Train the student (raw frames only). ``kd=True``: alpha*CE + beta*T^2*KL against the frozen
    teacher; ``kd=False``: the control the paper lacks, the same student with beta = 0."""
    train_set, val_set, test_set = build_datasets(cfg)
    num_classes = len(train_set.classes)
    if kd and cfg.beta > 0 and teacher is None:
        teacher = load_teacher(cfg, num_classes, splits=(train_set, val_set, test_set))
    student = build_classifier(cfg, num_classes)
    run_cfg = cfg if kd else cfg.replace(beta=0.0)
    name = name or ("student" if kd else "student_no_kd")
    return fit(student, train_set, test_set, run_cfg, name=name, val_set=val_set,
               teacher=teacher if kd else None, teacher_cache=teacher_cache, progress=progress)
