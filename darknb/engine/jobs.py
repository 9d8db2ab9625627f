"""Independent training runs side by side, in processes of their own, on a CPU.

The study trains every arm for several seeds: small models whose operations are too small to
keep two cores busy in one process. Measured on the demo (2 cores, one no-KD student, 10
epochs): 28.3 s alone with 2 threads; 35.6 s alone with 1 thread; two at once with 1 thread each
finish in 37-39 s, i.e. 1.45x the work per second. So :func:`run_tasks` runs ``jobs`` runs at once,
each in a spawned process with ``cores // jobs`` threads, in an order that respects what each run
needs (a self-distilled student needs its seed's no-KD student).

Every run writes its own files (checkpoint, ``<stage>.json``) atomically, as it does in-process;
nothing is shared but read-only inputs, which the caller prepares first (the frame caches, the
fitted enhancer, the pre-trained backbone). A run's result depends on its thread count only in the
last bits of floating-point sums; ``provenance.torch_threads`` records it. On a GPU, and with
``jobs=1``, runs go one after the other in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import torch

from darknb.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """One run: ``fn(*args)`` (a module-level function, so a spawned process can import it),
    started once every task named in ``after`` has finished."""

    key: Hashable
    fn: Callable[..., Any]
    args: tuple = ()
    after: tuple = field(default_factory=tuple)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_jobs(jobs: int, n_tasks: int) -> int:
    """How many runs go side by side: ``jobs`` (at most ``n_tasks``); 0 means one per core on a
    CPU and 1 with a GPU (one device, one run at a time)."""
    if int(jobs) < 0:
        raise ConfigError(f"parameter 'jobs' must be >= 0 (0: automatic), got {jobs}")
    if int(jobs) == 0:
        jobs = 1 if torch.cuda.is_available() else available_cores()
    return max(1, min(int(jobs), int(n_tasks)))


def _run_with_threads(threads: int, fn: Callable[..., Any], *args) -> Any:
    torch.set_num_threads(threads)
    return fn(*args)


def _ready(task: Task, done: set) -> bool:
    return all(dep in done for dep in task.after)


def run_tasks(tasks: Sequence[Task], *, jobs: int = 0) -> dict:
    """Run ``tasks`` (``jobs`` at a time, see :func:`resolve_jobs`) and return ``{key: result}``.

    Tasks start in the given order as soon as what they need has finished. A failing task stops
    the rest (those running are ended) and raises naming its key; finished runs keep their files,
    so running again resumes."""
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"run_tasks: duplicate task keys in {keys}")
    unknown = sorted({str(d) for t in tasks for d in t.after if d not in set(keys)})
    if unknown:
        raise ConfigError(f"run_tasks: tasks depend on unknown keys {unknown}")
    ordered = _in_dependency_order(tasks)  # refuses a cycle before anything starts
    jobs = resolve_jobs(jobs, len(tasks))
    results: dict = {}
    if jobs == 1:
        for task in ordered:
            results[task.key] = task.fn(*task.args)
        return results

    # a fixed share of the cores per run, whatever the timing: a run's result does not depend on
    # which runs happened to finish first
    threads = max(1, available_cores() // jobs)
    pending = list(tasks)
    running: dict = {}
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        while pending or running:
            starting = [t for t in pending if _ready(t, results)][:jobs - len(running)]
            for task in starting:
                pending.remove(task)
                running[executor.submit(_run_with_threads, threads, task.fn, *task.args)] = task
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    results[task.key] = future.result()
                except Exception as exc:
                    raise RuntimeError(f"run {task.key!r} failed in its process: {exc}") from exc
    except BaseException:
        # stop what runs (an error, or the user interrupting the notebook): no orphan trainers
        processes = list((getattr(executor, "_processes", None) or {}).values())  # no public API
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    executor.shutdown(wait=True)
    return results


def _in_dependency_order(tasks: Sequence[Task]) -> list[Task]:
    ordered, done, pending = [], set(), list(tasks)
    while pending:
        task = next((t for t in pending if _ready(t, done)), None)
        if task is None:
            raise ConfigError(f"run_tasks: tasks {[t.key for t in pending]} wait on each other")
        pending.remove(task)
        ordered.append(task)
        done.add(task.key)
    return ordered


__all__ = ["Task", "available_cores", "resolve_jobs", "run_tasks"]
