"""Checkpoints: written atomically in a background thread, loaded with ``weights_only=True``, and
the final weights of a finished run (the epoch chosen on validation).

A run's checkpoint ``<name>.ckpt`` holds the model, optimiser, epoch, history, the best validation
epoch, the config, class names and the data's identity; ``<name>_best.ckpt`` holds the weights of
the best validation epoch (:meth:`darknb.files.RunDir.best_checkpoint`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from darknb.errors import CheckpointError
from darknb.files import RunDir, load_torch, save_torch

__all__ = ["CheckpointWriter", "load_checkpoint", "load_final_state", "save_checkpoint", "snapshot"]


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    save_torch(state, path)


def snapshot(obj):
    """A CPU copy of a (nested) state, so that training can go on changing the original."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints in a background thread, out of the training loop's way (a paper-size
    checkpoint is 1.1 GB). ``save`` takes a finished CPU snapshot (:func:`snapshot`), waits for
    the previous write, and returns; ``wait`` joins the write in flight and re-raises its error.
    Every write is atomic (:func:`save_checkpoint`)."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: str | Path, state: dict) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(path, state),
                                        name=f"darknb-save-{Path(path).name}")
        self._thread.start()

    def _write(self, path, state) -> None:
        try:
            save_checkpoint(path, state)
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
    state = load_torch(path, what="checkpoint")
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} holds no 'model' state dict")
    return state


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
        best_path = RunDir.best_of(path)
        chosen = load_checkpoint(best_path)
        if chosen.get("epoch") != best["epoch"]:
            raise CheckpointError(f"{best_path} holds epoch {chosen.get('epoch')}, but {path} "
                                  f"selected epoch {best['epoch']}")
        state = {**state, "model": chosen["model"]}
    return state
