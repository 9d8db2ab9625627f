"""Module-level task functions for tests/test_jobs.py (a spawned process must import them)."""

import os
import time

import torch


def record(path: str, key: str, seconds: float = 0.0) -> dict:
    """Append ``key`` to ``path`` when starting and finishing; return who ran it."""
    with open(path, "a") as f:
        f.write(f"start {key}\n")
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"end {key}\n")
    return {"key": key, "pid": os.getpid(), "threads": torch.get_num_threads()}


def fail(message: str) -> None:
    raise ValueError(message)
