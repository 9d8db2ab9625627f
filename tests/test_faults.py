"""Issue 11's broken promises, one test each: bad videos and lists, the frame cache's on_error,
checkpoints of another dataset, exact teacher resume across processes, full disks, CLI errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from darknb.cli import main as cli_main
from darknb.config import RunConfig
from darknb.data.splits import build_datasets, prepare_cache, prepare_dataset
from darknb.data.video import probe
from darknb.errors import DatasetError, VideoReadError
from darknb.files import RunDir

try:
    from conftest import TINY_SPEC
    from videohelpers import make_level_video
except ImportError:  # tests/ imported as a package
    from tests.conftest import TINY_SPEC
    from tests.videohelpers import make_level_video


@pytest.fixture(scope="module")
def avi_set(tmp_path_factory) -> Path:
    """A small real dataset in the generic (Dark-48) layout: 2 classes x 3 MPEG-4 AVIs with
    B-frames (ARID's codec family), 20 frames each; ``train.txt`` / ``test.txt`` lists."""
    root = tmp_path_factory.mktemp("avi") / "videos"
    lists = {"train": [], "test": []}
    for c, name in enumerate(("Jump", "Run")):
        for k in range(3):
            rel = f"{name}/{name}_{k}_1.avi"
            make_level_video(root / rel, 20, height=72, width=96, bframes=2, gop=6)
            lists["test" if k == 2 else "train"].append(f"{len(lists['train'])}\t{c}\t{rel}\n")
    for subset, lines in lists.items():
        (root / f"{subset}.txt").write_text("".join(lines))
    (root / "mapping_table.txt").write_text("0\tJump\n1\tRun\n")
    return root


@pytest.fixture
def damaged(avi_set, tmp_path):
    """A copy of the set with one training video cut short (its container still claims 20 frames)
    and one emptied (zero bytes)."""
    root = tmp_path / "videos"
    shutil.copytree(avi_set, root)
    rels = [line.split("\t")[2].strip() for line in (root / "train.txt").read_text().splitlines()]
    cut, empty = root / rels[0], root / rels[2]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 6 // 10])
    empty.write_bytes(b"")
    info = probe(cut, allow_truncated=True)
    assert info.truncated and 0 < info.num_frames < info.container_frames == 20
    return root, rels[0], rels[2]


def _cfg(root, tmp_path, **kw):
    kw = {"cache_dir": "", **kw}
    return RunConfig(dataset="dark48", data_root=str(root), output_dir=str(tmp_path / "run"),
                     num_frames=4, size=32, val_fraction=0.0, **kw)


def test_a_truncated_video_is_an_error_or_a_counted_skip(damaged, tmp_path):
    """Bug 2: an AVI cut in half was read silently (looping its first frames)."""
    root, cut, empty = damaged
    with pytest.raises(VideoReadError, match=rf"{Path(cut).name} is truncated"):
        build_datasets(_cfg(root, tmp_path, on_error="raise"))[0].check()
    train = build_datasets(_cfg(root, tmp_path, on_error="skip")).train
    assert {rel for rel, _ in train.skipped} == {cut, empty}
    assert "truncated" in dict(train.skipped)[cut]
    # prepare too: the truncated video is not cached, and is listed with its reason
    report = prepare_dataset(root, ["train.txt"], tmp_path / "cache", short_side=72,
                             on_error="skip")
    assert set(report["failed"]) == {cut, empty} and "truncated" in report["failed"][cut]
    assert not (tmp_path / "cache" / f"{cut}.npy").exists()


def test_skip_reaches_the_frame_cache_and_the_cli(damaged, tmp_path, capsys):
    """Bug 1: prepare_cache ignored on_error, and `prepare` had no --on-error."""
    root, cut, empty = damaged
    cache = tmp_path / "cache"
    with pytest.raises(VideoReadError, match="truncated|empty"):
        prepare_cache(_cfg(root, tmp_path, on_error="raise", cache_dir=str(cache)))
    cfg = _cfg(root, tmp_path, on_error="skip", cache_dir=str(cache))
    report = prepare_cache(cfg)
    assert set(report["failed"]) == {cut, empty}
    train = build_datasets(cfg).train  # the training path with the cache: counted skips
    assert {rel for rel, _ in train.skipped} == {cut, empty}
    assert cut not in {rel for rel, _ in train.samples}

    other = tmp_path / "cache2"
    assert cli_main(["prepare", "--dataset", "dark48", "--root", str(root), "--cache-dir",
                     str(other), "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "2 failed" in out and Path(cut).name in out and "written" in out and "reused" in out
    assert cli_main(["prepare", "--dataset", "dark48", "--root", str(root), "--cache-dir",
                     str(other)]) == 2  # on_error=raise
    assert "truncated" in capsys.readouterr().err


def test_a_frame_cache_refuses_the_videos_of_another_dataset_root(avi_set, tmp_path):
    """One cache, one dataset root (the structure refactor's fix, tested here): a second root's
    videos of the same relative names would otherwise be served from the first one's frames."""
    from darknb.data.splits import ensure_dataset
    from darknb.errors import ConfigError

    cache = tmp_path / "cache"
    prepare_dataset(avi_set, ["train.txt"], cache, short_side=72)
    other = tmp_path / "other"
    shutil.copytree(avi_set, other)
    with pytest.raises(ConfigError, match=r"frame cache .*cache holds videos of .* not of .*other"):
        prepare_dataset(other, ["train.txt"], cache, short_side=72)
    with pytest.raises(ConfigError, match=r"holds videos of"):
        ensure_dataset(_cfg(other, tmp_path, cache_dir=str(cache)))


@pytest.mark.parametrize("subset", ["train", "test"])
def test_an_empty_list_is_refused_up_front_naming_it(avi_set, tmp_path, subset):
    """Bug 5: an empty list passed prepare and crashed training in np.concatenate."""
    root = tmp_path / "videos"
    shutil.copytree(avi_set, root)
    lst = root / f"{subset}.txt"
    lst.write_text("\n")
    with pytest.raises(DatasetError, match=rf"{lst.name} names no video"):
        build_datasets(_cfg(root, tmp_path))
    with pytest.raises(DatasetError, match=rf"{lst.name} names no video"):
        prepare_cache(_cfg(root, tmp_path, cache_dir=str(tmp_path / "cache")))


# ---------------------------------------------------------------------------- checkpoints

_TEACHER_RUN = """
import json, os, signal, sys
from pathlib import Path

import torch

import darknb.engine.checkpoint as checkpoint
from darknb.config import RunConfig
from darknb.data.splits import build_datasets
from darknb.engine.stages import train_teacher

torch.set_num_threads(2)
cfg, kill_after = RunConfig(**json.loads(sys.argv[1])), int(sys.argv[2])
save = checkpoint.save_checkpoint


def save_then_die(path, state):  # SIGKILL right after the epoch's checkpoint is on disk
    save(path, state)
    if Path(path).name == "teacher.ckpt" and state["epoch"] == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)


checkpoint.save_checkpoint = save_then_die
train_teacher(cfg, build_datasets(cfg), progress=False)
"""


def _teacher_process(cfg, kill_after=0):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-c", _TEACHER_RUN, json.dumps(cfg.to_dict()),
                           str(kill_after)], env=env, capture_output=True, text=True, timeout=600)


def test_a_killed_teacher_resumes_in_a_new_process_to_identical_weights(tiny_synthetic, tmp_path):
    """Bug 4: with the zero-reference-fitted Zero-DCE, a teacher killed (SIGKILL, in a subprocess)
    after epoch 1 of 3 and resumed in another process differed from an uninterrupted run: the fit
    left stale gradients on the enhancer, which entered the engine's gradient clipping only in
    the process that had fitted it."""
    import torch

    from darknb.engine.checkpoint import load_checkpoint
    from darknb.engine.stages import train_teacher

    cfg = RunConfig(data_root=str(tiny_synthetic), pretrained="", val_fraction=0.0, epochs=3,
                    batch_size=4, num_frames=4, size=32, enhancer="zerodce", enhancer_fit_steps=2,
                    save_every=1)
    part = cfg.replace(output_dir=str(tmp_path / "part"))
    killed = _teacher_process(part, kill_after=1)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert load_checkpoint(Path(part.output_dir) / "teacher.ckpt")["epoch"] == 1
    resumed = train_teacher(part, build_datasets(part), progress=False)  # this process: reloads zerodce_fitted.pth
    assert resumed["enhancer"].get("reused") and len(resumed["history"]) == 3
    full = train_teacher(cfg.replace(output_dir=str(tmp_path / "full")), build_datasets(cfg.replace(output_dir=str(tmp_path / "full"))), progress=False)
    a, b = (load_checkpoint(r["checkpoint"]) for r in (full, resumed))
    assert a["history"] == b["history"]
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, f"{len(differ)} of {len(a['model'])} tensors differ: {differ[:3]}"


def test_the_zero_reference_fit_leaves_no_gradient_behind():
    """The cause of bug 4, at its depth: a fit must leave the enhancer as it found it."""
    import torch

    from darknb.models.enhancers import build_enhancer
    from darknb.models.zero_reference import fit_zero_reference

    enhancer = build_enhancer("zerodce").requires_grad_(False)
    fit_zero_reference(enhancer, torch.rand(4, 3, 16, 16) * 0.2, steps=1, batch_size=2, crop=None)
    assert all(p.grad is None and not p.requires_grad for p in enhancer.parameters())


def test_a_teacher_of_other_data_is_refused_by_name(tmp_path):
    """Bug 3: load_teacher checked frame count, size and class count only; a teacher of other
    classes or lists distilled silently. Checkpoints now store the dataset identity."""
    from darknb.data.synthetic import make_synthetic_dark
    from darknb.engine.checkpoint import load_checkpoint
    from darknb.engine.stages import train_teacher
    from darknb.engine.teacher import load_teacher
    from darknb.errors import CheckpointError

    root = make_synthetic_dark(tmp_path / "data" / "synthetic", **TINY_SPEC)  # its own: edited below
    cfg = RunConfig(data_root=str(root), output_dir=str(tmp_path / "run"), pretrained="",
                    epochs=1, batch_size=4, num_frames=4, size=32, enhancer="gamma")
    train_teacher(cfg, build_datasets(cfg), progress=False)
    load_teacher(cfg, RunDir(cfg.output_dir).checkpoint("teacher"), build_datasets(cfg))  # the same data: fine

    # other class names (the same number of classes)
    renamed = tmp_path / "renamed"
    shutil.copytree(root, renamed)
    mapping = renamed / "list_cvt" / "mapping_table.txt"
    mapping.write_text("".join(f"{i}\tAction{i}\n" for i in range(3)))
    with pytest.raises(CheckpointError, match=r"teacher checkpoint .*classes .*Action0"):
        load_teacher(cfg.replace(data_root=str(renamed)), RunDir(cfg.replace(data_root=str(renamed)).output_dir).checkpoint("teacher"), build_datasets(cfg.replace(data_root=str(renamed))))
    # another training list (a subset): refused by load_teacher, and by a resume
    train_list = root / "list_cvt" / "synthetic_split1_train.txt"
    train_list.write_text("".join(train_list.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(CheckpointError, match=r"train list synthetic_split1_train.txt"):
        load_teacher(cfg, RunDir(cfg.output_dir).checkpoint("teacher"), build_datasets(cfg))
    with pytest.raises(CheckpointError, match=r"teacher.ckpt was made with other data: train list"):
        train_teacher(cfg.replace(epochs=2), build_datasets(cfg.replace(epochs=2)), progress=False)
    # what the checkpoint stores, and another dataset of the same classes and lists
    from darknb.data.protocol import check_same_dataset

    identity = load_checkpoint(tmp_path / "run" / "teacher.ckpt")["dataset"]
    assert identity["name"] == "synthetic" and len(identity["classes"]) == 3
    assert set(identity["lists"]) == {"train", "val", "test"}
    with pytest.raises(CheckpointError, match=r"dataset 'synthetic' vs 'dark48' now"):
        check_same_dataset(identity, {**identity, "name": "dark48"}, what="teacher")


def test_a_fitted_enhancer_is_reused_only_for_the_same_fit(tiny_synthetic, tmp_path):
    from darknb.engine.teacher import build_teacher_enhancer
    from darknb.errors import CheckpointError

    cfg = RunConfig(data_root=str(tiny_synthetic), pretrained="", val_fraction=0.0,
                    enhancer_fit_steps=1, num_frames=4, size=32, output_dir=str(tmp_path))
    train = build_datasets(cfg).train
    build_teacher_enhancer(cfg, train)
    assert build_teacher_enhancer(cfg, train)[1]["reused"]
    assert build_teacher_enhancer(cfg.replace(seed=1), train)[1]["reused"]  # every seed's
    with pytest.raises(CheckpointError, match="enhancer_fit_steps=1, this run asks for 2"):
        build_teacher_enhancer(cfg.replace(enhancer_fit_steps=2), train)
    assert "reused" not in build_teacher_enhancer(cfg.replace(enhancer_fit_steps=2, resume=False),
                                                  train)[1]


# ---------------------------------------------------------------------------- bug 6

def test_an_unknown_preset_is_named_not_a_key_error(capsys):
    assert cli_main(["train", "teacher", "--preset", "demoo"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'demoo'" in err and "paper" in err


def test_a_full_disk_names_the_checkpoint_and_keeps_the_old_one(tmp_path):
    """torch.save on a full disk raised "unexpected pos ..." naming neither file nor cause. The
    kernel refuses the write here as on a full disk (RLIMIT_FSIZE: EFBIG), so torch.save fails in
    its own C++ writer, as it did."""
    import resource
    import signal

    import torch

    from darknb.engine.checkpoint import load_checkpoint, save_checkpoint
    from darknb.errors import OutputError

    path = tmp_path / "teacher.ckpt"
    save_checkpoint(path, {"model": {"w": torch.zeros(4)}, "epoch": 1})
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limit[1]))
    try:
        with pytest.raises(OutputError, match=r"could not write .*teacher.ckpt \(\d+ MiB free"):
            save_checkpoint(path, {"model": {"w": torch.zeros(100_000)}, "epoch": 2})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["teacher.ckpt"]  # no temp file left


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoints_honour_the_umask(tmp_path, umask, mode):
    import os

    import torch

    from darknb.engine.checkpoint import save_checkpoint

    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "m.ckpt", {"model": {"w": torch.zeros(2)}})
    finally:
        os.umask(old)
    assert (tmp_path / "m.ckpt").stat().st_mode & 0o777 == mode


def test_costs_label_each_model_with_its_own_architecture(monkeypatch):
    """costs.csv labelled the baselines' "as run" rows with the student's model name."""
    import darknb.study.experiments as experiments

    # the labels only: skip measuring and the paper-size models
    monkeypatch.setattr(experiments, "_cost", lambda model, shape, **kw: {})
    monkeypatch.setattr(experiments, "create_model", lambda name, num_classes, **kw: None)
    rows = experiments.cost_of_models(RunConfig(num_frames=4, size=32, pretrained=""), 3, paper_latency_repeats=0,
                          run_latency_repeats=0)
    as_run = {r["model"]: r["setting"] for r in rows if r["setting"].startswith("as run")}
    assert as_run["student"].startswith("as run (vit_bert_tiny,")
    assert as_run["teacher"].startswith("as run (zerodce + vit_bert_tiny,")
    assert as_run["r2plus1d_bert"].startswith("as run (r2plus1d_bert_tiny,")
    assert as_run["two_stream"].startswith("as run (two_stream_bert_tiny,")
