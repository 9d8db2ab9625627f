"""Several processes really share the work: torchrun with 2 CPU processes (gloo) on a tiny set."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    from darknb.data.synthetic import make_synthetic_dark

    tmp = tmp_path_factory.mktemp("ddp")
    # 12 training clips (3 classes x 4 scenes), 6 validation, 6 test; every clip also a video
    data = make_synthetic_dark(tmp / "data" / "synthetic", num_classes=3, train_scenes=4,
                               val_scenes=2, test_scenes=2, pretrain_scenes=1,
                               pretrain_val_scenes=1, num_frames=8, size=36, video_every=1, seed=0)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(HERE / "ddp_worker.py"), str(tmp / "out"), str(data)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return tmp / "out", ranks


def test_two_processes_share_every_epoch_and_keep_identical_weights(ddp_run):
    _, (r0, r1) = ddp_run
    assert r0["processes"] == r1["processes"] == 2
    # 12 training videos, batch 2 per process: 3 steps per epoch each (one process alone takes 6)
    assert r0["train"] == 12 and r0["steps"] == r1["steps"] == 2 * 3
    # different shards, averaged gradients: the weights stay identical on both processes
    assert r0["checksum"] == r1["checksum"]
    assert r0["history"] == r1["history"] and len(r0["history"]) == 2


def test_every_test_and_val_video_is_counted_once(ddp_run):
    _, (r0, r1) = ddp_run
    assert r0["test_indices"] == r1["test_indices"] == list(range(r0["test"]))
    assert r0["top1"] == r1["top1"]
    # validation ran every epoch on the gathered set and chose the same epoch on both
    assert all("val_top1" in h for h in r0["history"])
    assert r0["selection"] == r1["selection"] and r0["selection"]["selected_on"] == "val"


def test_resume_under_two_processes_gives_the_same_run(ddp_run):
    _, (r0, r1) = ddp_run
    assert r0["resumed_steps"] == r1["resumed_steps"] == 3  # only epoch 2 was left
    assert r0["resumed_history"] == r0["history"]
    assert r0["resumed_selection"] == r0["selection"] and r0["resumed_top1"] == r0["top1"]
    assert r0["resumed_weights_equal"] is True


def test_only_the_main_process_writes_and_prints(ddp_run):
    out, (r0, r1) = ddp_run
    assert r1["writes"] == []
    assert any(w.endswith("m.ckpt") for w in r0["writes"])
    assert r0["cli_code"] == r1["cli_code"] == 0
    assert "[darknb] teacher_s0: top-1" in r0["cli_stdout"] and "2 process(es)" in r0["cli_stdout"]
    assert r1["cli_stdout"] == ""
    assert {Path(w).name for w in r0["cli_writes"]} >= {"teacher_s0.ckpt", "teacher_s0.json",
                                                         "teacher_s0_predictions.json"}
    summary = json.loads((out / "cli" / "teacher_s0.json").read_text())
    assert summary["num_videos"] == r0["test"] and summary["protocol"]["views"] == "1x1"
