"""Provenance: where an artifact came from. Parameters, seed, git SHA (and whether the tree was
dirty), package versions, device, thread count, and what identifies its data.

Every stage summary, report JSON and ``summary.json`` carries one :func:`provenance` record. The data
part (list checksums, official or custom lists) is computed by
:func:`darknb.data.protocol.data_provenance` and passed in as ``data``.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from darknb.config import REPO_ROOT

__all__ = ["PACKAGES", "data_checksum", "git_state", "package_versions", "provenance"]

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
        **(data or NO_DATA),
    }
