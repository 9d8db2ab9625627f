"""Files: atomic writes, JSON, sha256, the run folder's lock. Every file darknb writes goes through
:func:`atomic_path`.

A crash (or a full disk) in the middle of a write never leaves a truncated file where a reader
would find it: the bytes go to a temporary file in the same folder, which is flushed to disk and
then renamed over the target (``os.replace`` is atomic on POSIX and Windows). New files get the
usual permissions (0666 minus the umask), as ``open`` gives them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from darknb.errors import CheckpointError, OutputError, RunLockedError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None,
                durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is synced and renamed to ``path``.

    ``suffix`` ends the temporary name (default: ``path``'s own), for writers that pick a format
    by extension (``np.save`` adds ``.npy``, PyAV picks the container). ``durable=False`` skips the
    fsync (still atomic against a crashed process, not against a power cut): for re-creatable
    files written by the thousand, such as frame-cache entries, whose readers check them and
    whose completeness marker is written durably last. On failure the temporary
    file is removed and the previous ``path`` (if any) is untouched; an ``OSError`` or a
    serialisation ``RuntimeError`` (torch's "unexpected pos" on a full disk) becomes an
    :class:`OutputError` naming the file, the cause and the free space left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
                         f"{path.suffix if suffix is None else suffix}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as fh:  # the data must be on disk before the rename makes it visible
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        free = shutil.disk_usage(path.parent).free / 2**20
        raise OutputError(f"could not write {path} ({free:.0f} MiB free on its disk): "
                          f"{type(err).__name__}: {err}; a previous {path.name}, if any, is "
                          "untouched") from err
    finally:
        tmp.unlink(missing_ok=True)


def require_writable(folder: str | os.PathLike, parameter: str, remedy: str) -> None:
    """Refuse a folder darknb must write in but cannot (a read-only file system, permissions),
    before anything is written: :class:`OutputError` naming the folder, the cause, the parameter
    that chooses it and ``remedy``. A folder that does not exist yet is tested where it would be
    created. The test writes a file: permission bits alone do not stop root, a read-only mount does."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        fd, name = tempfile.mkstemp(dir=existing, prefix=".darknb-write-test-")
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise OutputError(f"cannot write in {folder} ({err.strerror or err}); it is set by "
                          f"{parameter}: {remedy}") from err


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """``obj`` as indented JSON (non-JSON values through ``str``), written atomically."""
    return write_text(json.dumps(obj, indent=1, default=str), path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` written atomically. Through a file object, so the archive's inner name is
    torch's fixed "archive" rather than the temporary file's random name: the same content gives
    the same bytes, and so the same sha256 (stage fingerprints identify weight files by it)."""
    import torch  # lazy: config and the CLI import this module without torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def load_torch(path: str | os.PathLike, *, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: no pickled code ever runs. A
    missing, empty, truncated or corrupt file is a :class:`CheckpointError` naming ``what`` and
    the file (every torch file darknb reads goes through here)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {str(path)!r} is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every unpickling failure means a bad file
        raise CheckpointError(f"{what} {str(path)!r} cannot be read (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from err


def save_npy(array, path: str | os.PathLike, *, verify: bool = True,
             durable: bool = True) -> Path:
    """``np.save`` written atomically; ``verify`` reads the file back before it becomes visible."""
    import numpy as np
    with atomic_path(path, suffix=".npy", durable=durable) as tmp:
        np.save(tmp, array)
        if verify and not np.array_equal(np.load(tmp, mmap_mode="r"), array):
            raise OSError(f"verification of {tmp} failed: it does not read back as written")
    return Path(path)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunLock:
    """One writer per run folder. ``python -m darknb run`` and ``train`` hold it while they write:
    an OS lock on ``<folder>/.darknb.lock`` (the ``filelock`` package; the OS releases it when its
    process dies, however it dies) and ``.darknb.lock.json`` naming the holder (pid, command,
    host, start). A second writer is refused at once, naming the holder. A lock left by a dead
    process is taken over, and said. Processes the holder starts (notebook kernels, their training
    processes, a ``train`` run inside a notebook) inherit ``$DARKNB_RUN_LOCK`` and write under it."""

    ENV = "DARKNB_RUN_LOCK"

    def __init__(self, folder: str | os.PathLike, command: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / ".darknb.lock"
        self.info = self.folder / ".darknb.lock.json"
        self.command = command or " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
        self.note = ""  # what taking the lock found (a stale lock taken over)
        self._lock = None
        self._saved_env: str | None = None

    def _holder(self) -> dict:
        try:
            return json.loads(self.info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        from filelock import FileLock, Timeout  # lazy: the CLI's --help stays light

        key = str(self.path.resolve())
        if os.environ.get(self.ENV) == key:  # started by the holder: write under its lock
            self.note = "under the lock of the process that started this one"
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = self._holder()
            who = (f"pid {holder.get('pid')} on {holder.get('host')} (`{holder.get('command')}`, "
                   f"since {holder.get('started')})" if holder else "another process")
            raise RunLockedError(f"run folder {self.folder} is being written by {who}; two runs into "
                                 "one folder would overwrite each other's files. Wait for it to "
                                 "finish, or choose another run folder (`--run NAME`)") from None
        old = self._holder()
        if old and old.get("host") == socket.gethostname() and not _alive(int(old.get("pid", 0))):
            self.note = (f"took over the lock of pid {old.get('pid')} (`{old.get('command')}`), "
                         "which is no longer running")
        self._lock = lock
        write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "command": self.command,
                               "started": time.strftime("%Y-%m-%d %H:%M:%S")}), self.info)
        self._saved_env = os.environ.get(self.ENV)
        os.environ[self.ENV] = key
        return self

    def release(self) -> None:
        if self._lock is None:
            return
        self.info.unlink(missing_ok=True)
        self._lock.release()
        self._lock = None
        if self._saved_env is None:
            os.environ.pop(self.ENV, None)
        else:
            os.environ[self.ENV] = self._saved_env

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class RunDir:
    """The files of one run folder (``reports/<run>/``). Every output name is spelled here only;
    the engine, the experiments, the notebooks and the CLI ask this class for paths."""

    SUMMARY = "summary.json"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def checkpoint(self, name: str) -> Path:
        """Training checkpoint of a stage or baseline (``teacher.ckpt``, ``student.ckpt`` ...)."""
        return self.root / f"{name}.ckpt"

    def best_checkpoint(self, name: str) -> Path:
        """The weights of a stage's best validation epoch (``teacher_s0_best.ckpt`` ...)."""
        return self.best_of(self.checkpoint(name))

    @staticmethod
    def best_of(checkpoint: str | os.PathLike) -> Path:
        """``<name>_best.ckpt`` beside a stage's checkpoint ``<name>.ckpt``."""
        path = Path(checkpoint)
        return path.with_name(f"{path.stem}_best{path.suffix}")

    def stage(self, name: str) -> Path:
        """A stage's summary: top-1/top-5, config, provenance (``teacher.json`` ...)."""
        return self.root / f"{name}.json"

    def predictions(self, name: str) -> Path:
        """Per-video predictions and metrics of a stage (``teacher_predictions.json`` ...)."""
        return self.root / f"{name}_predictions.json"

    def table(self, name: str) -> Path:
        """A CSV table (``ablation.csv``, ``comparison.csv``, ``costs.csv``)."""
        return self.root / f"{name}.csv"

    def figure(self, name: str) -> Path:
        return self.root / f"{name}.png"

    def fitted_enhancer(self, enhancer: str) -> Path:
        """A zero-reference-fitted enhancer (``zerodce_fitted.pth``, ``zerodcepp_fitted.pth``)."""
        return self.root / f"{enhancer.replace('+', 'p')}_fitted.pth"

    def fitted_enhancer_record(self, enhancer: str) -> Path:
        """What a fitted enhancer was fitted on (dataset identity, steps, seed): ``zerodce_fitted.json``."""
        return self.fitted_enhancer(enhancer).with_suffix(".json")

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files, one folder per stage (``tracker="tensorboard"``)."""
        return self.root / "tensorboard"

    @property
    def pretrained_backbone(self) -> Path:
        """The backbone pre-trained on the well-lit set (timm format; ``.json`` sidecar beside)."""
        return self.root / "pretrained_backbone.pth"

    def teacher_cache(self, teacher: str = "teacher") -> Path:
        """Cached logits of one trained teacher (``teacher_cache.pt``, ``teacher_s1_cache.pt``)."""
        return self.root / f"{teacher}_cache.pt"

    @property
    def enhanced_cache(self) -> Path:
        """Frames enhanced at native resolution by this run's enhancer (``teacher_input="enhanced_cache"``)."""
        return self.root / "enhanced_cache"

    @property
    def lists(self) -> Path:
        """The split a run made of a folder of videos (``dataset="folder"`` without lists):
        ``folder_train.txt``, ``folder_test.txt``, ``classes.txt``."""
        return self.root / "lists"

    @property
    def summary(self) -> Path:
        return self.root / self.SUMMARY

    def notebook(self, name: str) -> Path:
        """An executed notebook (``03_student.ipynb``); its report is ``.html`` beside it."""
        return self.root / f"{name}.ipynb"

    def failed_notebook(self, name: str) -> Path:
        """The executed notebook of a run where it failed (``03_student.failed.ipynb``); the last
        good ``03_student.ipynb`` stays beside it."""
        return self.root / f"{name}.failed.ipynb"

    def log(self, name: str) -> Path:
        """The full traceback of a failed notebook (``03_student.log``)."""
        return self.root / f"{name}.log"

    def lock(self, command: str | None = None) -> RunLock:
        """This folder's one-writer lock (:class:`RunLock`)."""
        return RunLock(self.root, command)

    def subdir(self, name: str) -> "RunDir":
        """A nested run folder (the ablation's students live in ``ablation/``)."""
        return RunDir(self.root / name)
