"""Provenance: where an artifact came from. Parameters, seed, git SHA (and whether the tree was
dirty), package versions, device, thread count, the run id, and what identifies its data; and the
fingerprints that decide whether a finished stage may be reused (hashing and diffing live here).

Every stage summary, report JSON and ``summary.json`` carries one :func:`provenance` record. The data
part (list checksums, official or custom lists) is computed by
:func:`darknb.data.protocol.data_provenance` and passed in as ``data``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import subprocess
import time
import warnings
from importlib import metadata
from pathlib import Path

from darknb.config import REPO_ROOT
from darknb.errors import CheckpointError

__all__ = ["COMPUTE_CODE", "PACKAGES", "RERUN", "RUN_ID_ENV", "check_fingerprint", "code_changes",
           "code_version", "data_checksum", "digest", "file_sha256", "fingerprint_changes",
           "git_state", "new_run_id", "package_versions", "provenance", "run_id", "weight_files"]

PACKAGES = ("darknb", "torch", "torchvision", "timm", "accelerate", "decord", "av", "numpy",
            "papermill", "einops")


def git_state(repo: Path = REPO_ROOT) -> dict:
    """Commit SHA and whether the work tree had uncommitted changes (None outside a git checkout)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def package_versions(names=PACKAGES) -> dict:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def data_checksum(paths) -> str:
    """sha256 over the given files (list files, manifests): identifies the exact protocol used."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()



NO_DATA = {"data_checksum": None, "data_files": [], "data_protocol": None, "data_lists": None}


def provenance(*, seed: int | None = None, params: dict | None = None, data: dict | None = None) -> dict:
    """Where an artifact came from. ``data``: what identifies its data
    (:func:`darknb.data.protocol.data_provenance`: list checksums, official or custom lists)."""
    import torch  # lazy: the device and thread count; config-only callers never get here

    return {
        "git": git_state(),
        "packages": package_versions(),
        "seed": seed,
        "params": params,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "run_id": run_id(),
        **(data or NO_DATA),
    }


# ----------------------------------------------------------------------------------------------
# Run ids: every `python -m darknb run` (and every other process that writes without one) gets one
# ----------------------------------------------------------------------------------------------

RUN_ID_ENV = "DARKNB_RUN_ID"


def new_run_id() -> str:
    """A fresh run id: the start time and 6 random hex digits (``20250101-120000-a1b2c3``)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_id() -> str:
    """This run's id: ``$DARKNB_RUN_ID`` (the runner sets it for its notebooks' kernels, whose
    training processes inherit it), else a new one for this process, exported so that the
    processes it starts share it. Every stage and report records it."""
    value = os.environ.get(RUN_ID_ENV)
    if not value:
        value = os.environ[RUN_ID_ENV] = new_run_id()
    return value


# ----------------------------------------------------------------------------------------------
# Fingerprints: what a stage read, so that it is reused only while that is unchanged
# ----------------------------------------------------------------------------------------------
#
# A fingerprint is a dict of four parts (make / Snakemake / DVC: a step is redone exactly when what
# it reads has changed):
#   settings  the parameters that change the stage's result (paths excluded: they say where, not what)
#   data      the dataset's identity: name, classes, list sha256s and the content of its clips
#             (:func:`darknb.data.protocol.data_fingerprint`)
#   weights   role -> {file name: sha256} of every weight file the stage loaded (pre-trained backbone,
#             enhancer, teacher checkpoint)
#   code      the git commit, and a sha256 per source file that computes a stage's numbers
#             (:data:`COMPUTE_CODE`)
# :func:`fingerprint_changes` compares two of them in words. A changed setting, data or weight file
# makes a finished stage stale and it is refused (or redone when asked); a change of code is only
# reported (:func:`code_changes`): darknb's own commits would otherwise discard every finished stage,
# hours of GPU time, on any refactor. The stage's JSON keeps the commit and the files that changed.

# The source files whose code computes a stage's numbers (the models, the training loop and its
# schedule, the loss, evaluation, the enhanced view, and how clips are cut from the frames).
COMPUTE_CODE = ("darknb/models/classifiers.py", "darknb/models/enhancers.py",
                "darknb/models/zero_reference.py", "darknb/engine/build.py", "darknb/engine/loop.py",
                "darknb/engine/distill.py", "darknb/engine/evaluate.py", "darknb/engine/teacher.py",
                "darknb/engine/stages.py", "darknb/engine/pretrain.py", "darknb/data/sampling.py",
                "darknb/data/loader.py", "darknb/data/dataset.py")

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) for this process: a stage reads
    the same weight files several times."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _SHA_MEMO[key] = digest.hexdigest()
    return _SHA_MEMO[key]


def digest(obj) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys): the identity of a dict of settings or of
    a cache's entries."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def weight_files(paths) -> dict:
    """``{file name: sha256}`` of weight files (a path, or several: a checkpoint and its
    ``_best`` file). Missing files are left out (nothing was read from them)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or [])
    return {Path(p).name: file_sha256(p) for p in paths if p and Path(p).is_file()}


def code_version() -> dict:
    """The code part of a fingerprint: git commit and dirty flag, and the sha256 (16 hex digits)
    of every :data:`COMPUTE_CODE` file."""
    compute = {}
    for rel in COMPUTE_CODE:
        path = REPO_ROOT / rel
        if path.is_file():
            compute[rel] = file_sha256(path)[:16]
    return {**git_state(), "compute": compute}


def _short(value) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"sha256 {value[:12]}"
    return repr(value) if isinstance(value, str) else str(value)


def _leaves(tree, prefix=()) -> dict:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_leaves(value, (*prefix, str(key))))
        return out
    return {prefix: tree}


def fingerprint_changes(saved: dict, now: dict, *, ignore=("code",)) -> list[str]:
    """What differs between a stage's saved fingerprint and this run's, in words, one item per
    difference (``"lr=0.0003, this run asks for 0.01"``, ``"pretrained weights
    pretrained_backbone.pth: sha256 1a2b3c4d5e6f, now 9f8e7d6c5b4a"``). Top-level parts or dotted
    leaves in ``ignore`` are not compared (the code is, by :func:`code_changes`)."""
    old, new = _leaves({k: v for k, v in saved.items()}), _leaves({k: v for k, v in now.items()})
    skip = {tuple(i.split(".")) for i in ignore}
    changes = []
    for key in sorted(set(old) | set(new)):
        if any(key[:len(s)] == s for s in skip) or old.get(key) == new.get(key):
            continue
        a, b = old.get(key), new.get(key)
        part, rest = key[0], key[1:]
        if part == "settings":
            changes.append(f"{'.'.join(rest)}={_short(a)}, this run asks for {_short(b)}")
        elif part == "weights":
            role, name = rest[0], ".".join(rest[1:])
            if a is None:
                changes.append(f"{role} weights {name} ({_short(b)}) were not read then")
            elif b is None:
                changes.append(f"{role} weights {name} ({_short(a)}) are not read now")
            else:
                changes.append(f"{role} weights {name}: {_short(a)}, now {_short(b)}")
        elif part == "data" and rest[:1] == ("content",):
            changes.append(f"the content of the {'.'.join(rest[1:])} clips changed (frame cache "
                           f"entries {_short(a)}, now {_short(b)})")
        elif part == "data" and rest[:1] == ("lists",):
            changes.append(f"the {'.'.join(rest[1:])} list changed ({_short(a)}, now {_short(b)})")
        else:
            changes.append(f"{'.'.join(key)}: {_short(a)}, now {_short(b)}")
    return changes


def code_changes(saved: dict, now: dict) -> list[str]:
    """The :data:`COMPUTE_CODE` files whose content differs between two fingerprints (a file
    present in only one counts as changed)."""
    old = (saved.get("code") or {}).get("compute") or {}
    new = (now.get("code") or {}).get("compute") or {}
    if not old:  # a fingerprint without code hashes: nothing to compare
        return []
    return sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))


RERUN = "set resume=False (or `python -m darknb run --rerun`) to redo it"


def check_fingerprint(saved: dict | None, now: dict, *, what: str, ignore=("code",),
                      remedy: str = RERUN) -> list[str]:
    """Refuse to reuse ``what`` (a finished or resumable stage) made from other inputs: raises
    :class:`CheckpointError` naming every difference and ``remedy``. Returns the changed code
    files (reported, not refused: see the section comment above), after a warning naming them.
    ``saved`` None (written before fingerprints existed): nothing to compare."""
    if not saved:
        return []
    changes = fingerprint_changes(saved, now, ignore=ignore)
    if changes:
        raise CheckpointError(f"{what} was made from other inputs: {'; '.join(changes)}. Its "
                              f"result would be stale: {remedy}, or restore what changed")
    code = code_changes(saved, now)
    if code:
        commit = ((saved.get("code") or {}).get("sha") or "?")[:10]
        warnings.warn(f"{what} was made by commit {commit}; the code that computes it has changed "
                      f"since ({', '.join(code)}). It is reused (code changes are reported, not "
                      f"refused); {remedy} with this code", stacklevel=2)
    return code
