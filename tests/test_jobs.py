"""darknb.jobs: independent runs side by side in spawned processes, in dependency order."""

import os

import pytest
from jobs_helpers import fail, record  # tests/ is on sys.path (as for videohelpers)

from darknb.engine.jobs import Task, available_cores, resolve_jobs, run_tasks
from darknb.errors import ConfigError


def test_resolve_jobs_caps_and_validates():
    assert resolve_jobs(3, 2) == 2 and resolve_jobs(1, 5) == 1
    assert 1 <= resolve_jobs(0, 4) <= min(4, available_cores())
    with pytest.raises(ConfigError, match="'jobs' must be >= 0"):
        resolve_jobs(-1, 3)


def test_two_processes_share_the_runs_and_respect_dependencies(tmp_path):
    log = tmp_path / "log.txt"
    tasks = [Task("a", record, (str(log), "a", 0.5)), Task("b", record, (str(log), "b", 0.5)),
             Task("c", record, (str(log), "c"), after=("a",))]
    out = run_tasks(tasks, jobs=2)
    assert set(out) == {"a", "b", "c"}
    pids = {out[k]["pid"] for k in out}
    assert os.getpid() not in pids and len(pids) == 2  # spawned workers, both used
    assert {out[k]["threads"] for k in out} == {max(1, available_cores() // 2)}
    lines = log.read_text().split()
    events = [" ".join(lines[i:i + 2]) for i in range(0, len(lines), 2)]
    assert events.index("end a") < events.index("start c")  # c waited for a
    assert events.index("start b") < events.index("end a")  # a and b overlapped


def test_one_job_runs_in_this_process_in_dependency_order(tmp_path):
    log = tmp_path / "log.txt"
    out = run_tasks([Task("late", record, (str(log), "late"), after=("early",)),
                     Task("early", record, (str(log), "early"))], jobs=1)
    assert {r["pid"] for r in out.values()} == {os.getpid()}
    assert log.read_text().split()[1] == "early"


def test_a_failing_run_is_named_and_bad_graphs_are_refused(tmp_path):
    with pytest.raises(RuntimeError, match="run 'boom' failed in its process: broken on purpose"):
        run_tasks([Task("boom", fail, ("broken on purpose",)),
                   Task("ok", record, (str(tmp_path / "l"), "ok"))], jobs=2)
    with pytest.raises(ConfigError, match="unknown keys"):
        run_tasks([Task("x", record, ("l", "x"), after=("y",))], jobs=1)
    with pytest.raises(ConfigError, match="wait on each other"):
        run_tasks([Task("x", record, ("l", "x"), after=("z",)),
                   Task("z", record, ("l", "z"), after=("x",))], jobs=1)
    with pytest.raises(ConfigError, match="duplicate"):
        run_tasks([Task("x", fail, ("",)), Task("x", fail, ("",))], jobs=1)
