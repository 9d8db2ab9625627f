"""Issue 15: nothing stale, leaked, damaged or half-written is used or reported without a word.

One test per item (the frame cache's own proof of content, item 2, is tested with the cache):
1. every stage is reused only while its fingerprint (settings, data content, weight files) matches,
   and a resume never jumps its learning-rate schedule;
3. lists: a duplicated entry, and a video in two splits, are refused naming entries and lines;
4. a run folder has one writer (a lock naming its holder; a dead holder's lock is taken over);
5. reports are atomic (a failed notebook kept aside, the last good one stays), runs have ids and
   05 refuses stages that do not belong together;
6. parameters that would mean nothing are refused before any notebook runs, naming them;
7. errors a person can act on: one line and two paths for a failed notebook, read-only folders
   named with the parameter that moves them, a moved project that works, missing inputs named
   with the notebook that makes them, a quiet terminal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darknb.config import RunConfig
from darknb.errors import CheckpointError, ConfigError, DatasetError

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _copy_set(tiny_synthetic: Path, where: Path) -> Path:
    """A private copy of the tiny synthetic set and its frame cache (same layout: the cache at
    ``<parent>/cache/synthetic``, where cache_dir="auto" finds it), for tests that edit it."""
    root = where / "data" / "synthetic"
    shutil.copytree(tiny_synthetic, root)
    shutil.copytree(tiny_synthetic.parent / "cache" / "synthetic", where / "data" / "cache" / "synthetic")
    return root


def _cfg(root, out, **kw) -> RunConfig:
    base = dict(data_root=str(root), output_dir=str(out), epochs=2, batch_size=4, lr=3e-4,
                num_frames=4, size=32, enhancer="gamma", pretrained="", teacher_input="online",
                val_fraction=0.0, save_every=1, seed=0)
    return RunConfig(**{**base, **kw})


def _fit(cfg, name="m"):
    from darknb.data.splits import build_datasets
    from darknb.engine.build import build_classifier
    from darknb.engine.loop import fit

    splits = build_datasets(cfg)
    return fit(build_classifier(cfg, len(splits.train.classes)), splits, cfg, name=name, progress=False)


# ---------------------------------------------------------------------------- 1. fingerprints

def test_1_a_stage_is_reused_only_while_what_it_read_is_unchanged(tiny_synthetic, tmp_path):
    """Today: a pre-trained backbone replaced at the same path left the finished stage reused
    (its JSON stored only the path); `epochs` 2 -> 4 continued a finished cosine schedule (lr per
    epoch 8.5e-4, 1.5e-4, 3.1e-4, 3.8e-5) without a note."""
    import torch

    from darknb.data.splits import build_datasets
    from darknb.engine.build import build_classifier
    from darknb.engine.checkpoint import load_checkpoint

    root = _copy_set(tiny_synthetic, tmp_path)
    backbone = tmp_path / "backbone.pth"

    def write_backbone(seed):  # a darknb video classifier's weights: every later model loads them
        state = build_classifier(_cfg(root, tmp_path, seed=seed), 3).state_dict()
        torch.save({k: v for k, v in state.items() if not k.startswith("head.fc.")}, backbone)

    write_backbone(0)
    cfg = _cfg(root, tmp_path / "run", pretrained=str(backbone), lr_schedule="cosine", warmup_epochs=1)
    first = _fit(cfg)
    assert first["fingerprint"]["weights"]["pretrained"]["backbone.pth"]
    assert _fit(cfg)["history"] == first["history"]  # the same inputs: reused, not retrained

    # the backbone replaced at the same path
    write_backbone(1)
    with pytest.raises(CheckpointError, match=r"m\.ckpt' was made from other inputs: pretrained "
                       r"weights backbone\.pth: sha256 [0-9a-f]{12}, now sha256 [0-9a-f]{12}.*resume=False"):
        _fit(cfg)
    write_backbone(0)

    # a changed setting is named with both values
    with pytest.raises(CheckpointError, match=r"weight_decay=0\.05, this run asks for 0\.1"):
        _fit(cfg.replace(weight_decay=0.1))

    # the content of the cached clips (cache.json's entries, hashed whole: a checksum field the
    # cache adds is part of it) changed under the same list
    manifest = tmp_path / "data" / "cache" / "synthetic" / "cache.json"
    saved = manifest.read_text()
    data = json.loads(saved)
    rel = build_datasets(cfg).train.samples[0][0]
    data["videos"][rel] = {**data["videos"][rel], "sha256": "0" * 64}
    manifest.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"the content of the train clips changed"):
        _fit(cfg)
    manifest.write_text(saved)

    # epochs 2 -> 4 on a finished cosine schedule: refused, naming the jump
    with pytest.raises(CheckpointError, match=r"cosine schedule over epochs=2.*epochs=4.*would jump "
                       r"from lr .* \(end of epoch 2\) to .*Set resume=False"):
        _fit(cfg.replace(epochs=4))
    # ... redone when asked: 4 epochs of one schedule from the start
    redone = _fit(cfg.replace(epochs=4, resume=False))
    lrs = [h["lr"] for h in redone["history"]]
    assert len(lrs) == 4 and lrs == sorted(lrs, reverse=True)  # warm-up ends in epoch 1, then decays
    assert load_checkpoint(redone["checkpoint"])["fingerprint"]["settings"]["epochs"] == 4

    # a constant schedule past its warm-up may be extended: the epochs done keep their lr
    flat = _cfg(root, tmp_path / "flat", lr_schedule="constant", warmup_epochs=0)
    _fit(flat)
    assert len(_fit(flat.replace(epochs=3))["history"]) == 3


# ---------------------------------------------------------------------------- 3. lists

def test_3_lists_with_a_repeated_or_shared_video_are_refused_naming_lines(tiny_synthetic, tmp_path):
    """Today: a duplicated train line trained on that video twice; a test video also in the train
    list was trained and tested on (only 00_explore's `scene_disjoint: False` hinted at it)."""
    from darknb.data.splits import build_datasets

    root = _copy_set(tiny_synthetic, tmp_path)
    cfg = _cfg(root, tmp_path / "run")
    lists = root / "list_cvt"
    train, test = lists / "synthetic_split1_train.txt", lists / "synthetic_split1_test.txt"
    train_text, test_lines = train.read_text(), test.read_text().splitlines(keepends=True)
    first = train_text.splitlines()[0].split("\t")[2]

    train.write_text(train_text + train_text.splitlines(keepends=True)[0])
    n = len(train_text.splitlines()) + 1
    with pytest.raises(DatasetError, match=rf"synthetic_split1_train\.txt: 1 entry is listed more "
                       rf"than once .*'{first}' on lines 1, {n}"):
        build_datasets(cfg)

    leaked = test_lines[2].split("\t")[2].strip()
    train.write_text(train_text + f"99\t{test_lines[2].split(chr(9))[1]}\t{leaked}\n")
    with pytest.raises(DatasetError, match=rf"1 video\(s\) are listed in two splits.*'{leaked}' in "
                       rf"train \(synthetic_split1_train\.txt:{n}\) and test "
                       r"\(synthetic_split1_test\.txt:3\)"):
        build_datasets(cfg)
    train.write_text(train_text)
    build_datasets(cfg)  # the lists as generated: fine


def test_3_arid_official_lists_pass(reference_dir):
    from darknb.data.lists import read_list, shared_entries

    arid = reference_dir / "arid"
    if not arid.is_dir():
        pytest.skip(f"{arid} is absent")
    for split in (1, 2, 3):
        named = {}
        for subset in ("train", "test", "other"):
            path = arid / f"ARID_split{split}_{subset}.txt"
            named[subset] = (path, [rel for rel, _ in read_list(path)])  # no repeated entry
        assert not shared_entries({k: named[k] for k in ("train", "test")}), split
    darklight = arid / "darklight_arid1.1"
    if darklight.is_dir():
        tr, te = (darklight / f"ARID1.1_t1_{s}_pub.csv" for s in ("train", "test"))
        assert not shared_entries({"train": (tr, [r for r, _ in read_list(tr)]),
                                   "test": (te, [r for r, _ in read_list(te)])})


# ---------------------------------------------------------------------------- 4. one writer

_HOLDER = """
import sys, time
from darknb.files import RunLock
lock = RunLock(sys.argv[1], command="python -m darknb run --run same").acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_4_a_run_folder_has_one_writer_and_a_dead_holders_lock_is_taken_over(tiny_synthetic, tmp_path,
                                                                             capsys, monkeypatch):
    """Today: two `run --run same` at once left 02_teacher.ipynb as invalid JSON while the first
    run printed `reports written`, rc 0."""
    from darknb.cli import main as cli_main
    from darknb.errors import RunLockedError
    from darknb.files import RunLock

    folder = tmp_path / "reports" / "same"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        message = rf"run folder {folder} is being written by pid {holder.pid} on .*`python -m darknb run --run same`"
        with pytest.raises(RunLockedError, match=message):
            RunLock(folder).acquire()
        # `run` and `train` refuse at once, before any notebook or training starts
        started = time.perf_counter()
        assert cli_main(["run", "--run", "same", "--reports-dir", str(tmp_path / "reports"),
                         "--preset", "none", "--notebooks", "00_explore",
                         "--set", f"data_root={tiny_synthetic}"]) == 2
        assert cli_main(["train", "student_no_kd", "--set", f"output_dir={folder}",
                         "--set", f"data_root={tiny_synthetic}", "--set", "pretrained=''"]) == 2
        err = capsys.readouterr().err
        assert err.count(f"is being written by pid {holder.pid}") == 2, err
        assert time.perf_counter() - started < 60 and not list(folder.glob("*.ipynb"))
        # a process the holder started (a notebook's kernel, its training processes) writes under it
        monkeypatch.setenv(RunLock.ENV, str((folder / ".darknb.lock").resolve()))
        with RunLock(folder) as inherited:
            assert "under the lock" in inherited.note
        monkeypatch.delenv(RunLock.ENV)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing anything: its lock is taken over, and that is said
    with RunLock(folder) as lock:
        assert lock.note == (f"took over the lock of pid {holder.pid} (`python -m darknb run --run "
                             "same`), which is no longer running")
    assert not (folder / ".darknb.lock.json").exists()


# ---------------------------------------------------------------------------- 5. atomic reports

def _notebook(path: Path, body: str) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell('x: int = 1\noutput_dir: str = ""',
                                           metadata={"tags": ["parameters"]}),
                             new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)


@pytest.fixture
def fake_notebooks(tmp_path, monkeypatch):
    """A notebooks folder of one's own (an 00_explore that only prints), for the runner's tests."""
    import darknb.config
    import darknb.pipeline

    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(darknb.config, "NOTEBOOK_DIR", folder)
    monkeypatch.setattr(darknb.pipeline, "NOTEBOOK_DIR", folder)
    _notebook(folder / "00_explore.ipynb", "print('explored', x)")
    return folder


def test_5_reports_are_atomic_and_name_their_runs(fake_notebooks, tmp_path):
    """Today: a failed re-run overwrote the last good executed notebook with an error notebook;
    an interrupted one left a partial notebook whose cells were all marked completed beside the
    HTML and summary.json of another run."""
    from darknb.errors import NotebookError
    from darknb.pipeline import run_notebook, run_pipeline

    out = run_pipeline("r", preset=None, params={"x": 2}, reports_dir=tmp_path / "reports",
                       notebooks=["00_explore"])
    good, html = (out / "00_explore.ipynb").read_bytes(), (out / "00_explore.html").read_bytes()
    assert b"explored 2" in good and b"explored 2" in html
    summary = json.loads((out / "summary.json").read_text())
    run_id = summary["run"]["id"]
    assert run_id and summary["run"]["notebooks"] == ["00_explore"]

    _notebook(fake_notebooks / "00_explore.ipynb",
              "from darknb.errors import ConfigError\nraise ConfigError(\"parameter 'x' is wrong\")")
    with pytest.raises(NotebookError) as failure:
        run_notebook("00_explore", out, {"x": 3})
    assert str(failure.value) == (f"00_explore failed: parameter 'x' is wrong\n  notebook: "
                                  f"{out / '00_explore.failed.ipynb'}\n  log: {out / '00_explore.log'}")
    assert (out / "00_explore.ipynb").read_bytes() == good  # the last good report stays
    assert (out / "00_explore.html").read_bytes() == html
    failed = json.loads((out / "00_explore.failed.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in failed["cells"] for o in c.get("outputs", []))
    assert "ConfigError" in (out / "00_explore.log").read_text()
    assert not [p.name for p in out.iterdir() if ".running" in p.name]  # no half-written file

    _notebook(fake_notebooks / "00_explore.ipynb", "print('explored', x)")
    run_notebook("00_explore", out, {"x": 4})
    assert not (out / "00_explore.failed.ipynb").exists() and not (out / "00_explore.log").exists()


def test_5_the_comparison_refuses_stages_that_do_not_belong_together(tmp_path):
    """A student distilled from a teacher that was retrained since, or arms trained with other
    settings, are refused by name; stages reused from earlier runs are named with their runs."""
    from darknb.files import RunDir, write_json
    from darknb.provenance import weight_files
    from darknb.study.arms import ARMS, arm_name, check_study_stages

    run = RunDir(tmp_path)
    settings = {"epochs": 6, "lr": 0.001, "seed": 0}
    for arm in ARMS:
        for seed in (0, 1):
            name = arm_name(arm, seed)
            run.checkpoint(name).write_bytes(f"weights of {name}".encode())
            teacher = {"student": "teacher", "student_selfkd": "student_no_kd"}.get(arm)
            weights = {"teacher": weight_files(run.checkpoint(arm_name(teacher, seed)))} if teacher else {}
            write_json({"fingerprint": {"settings": {**settings, "seed": seed}, "weights": weights},
                        "run_id": "run-b", "trained_by_run": "run-a" if arm == "teacher" else "run-b"},
                       run.stage(name))
    trained_by = check_study_stages(tmp_path, [0, 1])
    assert trained_by["teacher_s0"] == "run-a" and trained_by["student_s1"] == "run-b"

    run.checkpoint("teacher_s1").write_bytes(b"retrained")
    with pytest.raises(ConfigError, match=r"student_s1 was distilled from another teacher_s1 than "
                       r"the one in .* now \(teacher_s1\.ckpt retrained since\)"):
        check_study_stages(tmp_path, [0, 1])
    run.checkpoint("teacher_s1").write_bytes(b"weights of teacher_s1")

    stage = json.loads(run.stage("student_no_kd_s0").read_text())
    stage["fingerprint"]["settings"]["epochs"] = 4
    write_json(stage, run.stage("student_no_kd_s0"))
    with pytest.raises(ConfigError, match=r"settings\.epochs differs: 6 \(teacher_s0, .*; 4 \(student_no_kd_s0\)"):
        check_study_stages(tmp_path, [0, 1])


# ---------------------------------------------------------------------------- 6. parameters

@pytest.mark.parametrize("params, message", [
    ({"epochs": 0}, r"invalid value 0 for parameter 'epochs': at least 1"),
    ({"alpha": 0.0, "beta": 0.0}, r"parameters 'alpha' and 'beta' are both 0"),
    ({"temperature": 1e-9}, r"invalid value 1e-09 for parameter 'temperature': .* >= 0\.5"),
    ({"size": 36}, r"parameter 'size': 36 px is not a multiple of vit_bert_tiny's 8-px patches.*use 32 or 40"),
    ({"seeds": []}, r"parameter 'seeds' is empty"),
    ({"seeds": [0, 0]}, r"parameter 'seeds' repeats \[0\]"),
    ({"seeds": [0]}, r"parameter 'seeds' is \[0\]: 05_comparison's comparisons are paired over seeds "
                     r"and need at least 2"),
    ({"temperatures": [0.1]}, r"parameter 'temperatures' holds \[0\.1\]: each must be >= 0\.5"),
])
def test_6_parameters_that_mean_nothing_are_refused_before_any_notebook(tiny_synthetic, tmp_path,
                                                                        params, message):
    """Today all of these passed validation: epochs=0 reported an untrained model, alpha = beta = 0
    "trained" on a loss of 0, T = 1e-9 made the KD term vanish, size 36 dropped 4 rows and columns
    of 8-px patches, and seeds=[] / [0, 0] failed only inside a notebook."""
    from darknb.pipeline import NOTEBOOKS, check_parameters

    base = {"data_root": str(tiny_synthetic), "output_dir": str(tmp_path / "run"), "pretrained": ""}
    with pytest.raises(ConfigError, match=message):
        check_parameters(NOTEBOOKS, {**base, **params})
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- 7. errors

def test_7_a_failed_notebook_is_one_line_and_two_paths_and_the_terminal_is_quiet(fake_notebooks,
                                                                                  tmp_path, capfd):
    """Today: a 40-80 line papermill traceback with darknb's message at its end; and a
    "Kernel is running over TCP without encryption" warning for every notebook."""
    from darknb.cli import main as cli_main

    reports = tmp_path / "reports"
    assert cli_main(["run", "--run", "q", "--reports-dir", str(reports), "--preset", "none",
                     "--notebooks", "00_explore"]) == 0
    out, err = capfd.readouterr()
    assert "without encryption" not in out + err and "Passed unknown parameter" not in out + err
    assert [line.split(" ...")[0] for line in out.splitlines()] == [
        "[darknb] 00_explore", f"[darknb] reports written to {reports / 'q'}"]
    assert out.splitlines()[0].endswith(" s") and not err.strip()

    _notebook(fake_notebooks / "00_explore.ipynb",
              "from darknb.errors import CheckpointError\n"
              "raise CheckpointError(\"checkpoint 'x.ckpt' was made from other inputs\")")
    assert cli_main(["run", "--run", "q", "--reports-dir", str(reports), "--preset", "none",
                     "--notebooks", "00_explore"]) == 2
    out, err = capfd.readouterr()
    folder = reports / "q"
    assert err.splitlines() == [
        "darknb: error: 00_explore failed: checkpoint 'x.ckpt' was made from other inputs",
        f"  notebook: {folder / '00_explore.failed.ipynb'}", f"  log: {folder / '00_explore.log'}"]
    assert "Traceback" not in out + err and "CheckpointError" in (folder / "00_explore.log").read_text()


def test_7_read_only_folders_are_named_with_the_parameter_that_moves_them(tiny_synthetic, tmp_path):
    """Today: a raw OSError. A read-only bind mount (root ignores permission bits, not a
    read-only mount)."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespace here (unshare -m) for a read-only bind mount")
    ro = tmp_path / "ro"
    (ro / "reports").mkdir(parents=True)
    (ro / "cache").mkdir()
    run = (f"{sys.executable} -m darknb run --preset none --notebooks 00_explore "
           f"--set data_root={tiny_synthetic}")
    script = (f"mount --bind -o ro {ro} {ro} && "
              f"{run} --reports-dir {ro / 'reports'}; "
              f"{run} --reports-dir {tmp_path / 'rw'} --set cache_dir={ro / 'cache'}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=ENV, capture_output=True,
                          text=True, timeout=300)
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("darknb: error:")]
    assert len(lines) == 2, done.stderr[-2000:]
    assert lines[0] == (f"darknb: error: cannot write in {ro / 'reports' / 'demo'} (Read-only file "
                        "system); it is set by --reports-dir and --run (the run folder): choose a "
                        "writable folder with `--reports-dir DIR`")
    assert lines[1] == (f"darknb: error: cannot write in {ro / 'cache'} (Read-only file system); it "
                        "is set by cache_dir: the frame cache is written there ('auto': beside "
                        "data_root); set cache_dir to a writable folder (`--set cache_dir=DIR`)")
    assert not (tmp_path / "rw").exists()


def test_7_a_moved_project_resumes_and_distils(tiny_synthetic, tmp_path):
    """Today: a moved project was told to use cache_dir='', which the synthetic set refuses; its
    checkpoints named the old paths (data_root, the enhanced cache) and were refused."""
    from darknb.data.splits import build_datasets, ensure_dataset
    from darknb.engine.stages import train_student, train_teacher
    from darknb.engine.teacher import load_teacher
    from darknb.files import RunDir

    old = tmp_path / "old"
    root = _copy_set(tiny_synthetic, old)
    cfg = _cfg(root, old / "reports" / "x", epochs=1, teacher_input="enhanced_cache")
    ensure_dataset(cfg)
    teacher = train_teacher(cfg, build_datasets(cfg), progress=False)

    new = tmp_path / "new"
    shutil.move(old, new)  # the whole project: data, caches, reports
    moved = _cfg(new / "data" / "synthetic", new / "reports" / "x", epochs=1,
                 teacher_input="enhanced_cache")
    ensure_dataset(moved)  # adopts the moved frame cache
    splits = build_datasets(moved)
    again = train_teacher(moved, splits, progress=False)  # finished: reused, not refused
    assert again["history"] == teacher["history"] and again["trained_by_run"] == teacher["trained_by_run"]
    model = load_teacher(moved, RunDir(moved.output_dir).checkpoint("teacher"), splits)
    assert model.enhanced_cache == str(new / "reports" / "x" / "enhanced_cache")
    student = train_student(moved, splits, kd=True, teacher=model, progress=False)
    assert student["fingerprint"]["weights"]["teacher"]["teacher.ckpt"]


def test_7_missing_inputs_name_the_notebook_that_makes_them_before_training(tiny_synthetic, tmp_path):
    """Today: notebook 03 run before 02 learnt it only after training a student."""
    from darknb.pipeline import check_parameters

    params = {"data_root": str(tiny_synthetic), "output_dir": str(tmp_path / "run"), "seeds": [0, 1]}
    with pytest.raises(ConfigError, match=r"03_student reads what earlier notebooks make, and .* lacks "
                       r"pretrained_backbone\.pth \(made by 01_pretrain, or `python -m darknb train "
                       r"pretrain`\); teacher_s0\.json, teacher_s1\.json \(made by 02_teacher"):
        check_parameters(["03_student"], params)
    check_parameters(["01_pretrain", "02_teacher", "03_student"], params)  # made in this run: fine
    with pytest.raises(ConfigError, match=r"04_ablation .* lacks .*teacher_s0\.json, teacher_s1\.json \(made by 02_teacher"):
        check_parameters(["04_ablation"], {**params, "pretrained": "", "betas": [1.0]})
