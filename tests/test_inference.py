"""darknb.predict and `python -m darknb predict`: a user's own dark video, a trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import darknb
from darknb.config import RunConfig
from darknb.data.dataset import VideoListDataset
from darknb.data.synthetic import Darkening, _scene, render_lit
from darknb.data.video import write_video
from darknb.engine.build import build_classifier
from darknb.engine.checkpoint import save_checkpoint
from darknb.errors import CheckpointError

CLASSES = ["MoveLeft", "MoveRight", "RotateCW"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished (1-epoch) student checkpoint and two dark videos, MP4 and AVI."""
    root = tmp_path_factory.mktemp("predict")
    cfg = RunConfig(num_frames=4, size=32, sampling="consecutive", epochs=1, output_dir=str(root),
                    pretrained="")
    torch.manual_seed(0)
    model = build_classifier(cfg, len(CLASSES))
    with torch.no_grad():  # a head that is not uniform, so probabilities differ between videos
        model.head.fc.weight.normal_(0, 1.0)
    ckpt = root / "student.ckpt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "epoch": 1, "config": cfg.to_dict(),
                           "classes": CLASSES, "best": {"epoch": 0}, "name": "student"})
    rng = np.random.default_rng(0)
    frames = Darkening()(render_lit(_scene(0, 1, 36, 48), "RotateCW", rng, 10, 36, 48), rng)  # dark
    videos = {ext: write_video(root / "videos" / f"RotateCW_1_1{ext}", frames)
              for ext in (".mp4", ".avi")}
    (root / "videos" / "list.txt").write_text("0\t2\tRotateCW_1_1.mp4\n")
    return dict(root=root, cfg=cfg, ckpt=ckpt, model=model.eval(), videos=videos)


def test_predict_gives_the_test_pipelines_probabilities(run):
    result = darknb.predict(run["videos"][".mp4"], run["ckpt"])
    assert [r["class"] for r in result["top"]] and len(result["top"]) == 3  # top-5 of 3 classes
    probs = [r["probability"] for r in result["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert {r["class"] for r in result["top"]} == set(CLASSES)
    assert result["protocol"]["views"] == "1x1" and result["seconds"] > 0
    assert result["device"] == "cpu" and result["frames"] == 10
    # the same numbers as the evaluation pipeline on that video
    ds = VideoListDataset(run["videos"][".mp4"].parent, "list.txt", num_frames=4, size=32,
                          sampling="consecutive", classes=CLASSES)
    with torch.no_grad():
        expect = run["model"](ds[0][0][None]).softmax(1)[0]
    for r in result["top"]:
        assert r["probability"] == pytest.approx(expect[r["index"]].item(), abs=1e-6)
        assert r["class"] == CLASSES[r["index"]]


def test_predict_multi_view_avi_and_a_list(run):
    videos = [run["videos"][".avi"], run["videos"][".mp4"]]
    results = darknb.predict(videos, run["ckpt"], protocol="4x3", top_k=2)
    assert len(results) == 2 and all(len(r["top"]) == 2 for r in results)
    assert results[0]["protocol"] == {"views": "4x3", "clips": 4, "crops": 3,
                                      "aggregate": "mean softmax", "num_frames": 4, "size": 32,
                                      "sampling": "consecutive"}
    single = darknb.predict(videos[1], run["ckpt"])
    assert results[1]["top"][0]["probability"] != single["top"][0]["probability"]


def test_predict_refuses_what_is_not_a_classifier(run, tmp_path):
    from darknb.models.enhancers import ZeroDCE, save_enhancer

    enhancer = save_enhancer(ZeroDCE(), tmp_path / "zerodce_fitted.pth")
    with pytest.raises(CheckpointError, match="zerodce_fitted.pth is not a darknb classifier"):
        darknb.predict(run["videos"][".mp4"], enhancer)
    best = tmp_path / "student_best.ckpt"
    save_checkpoint(best, {"model": run["model"].state_dict(), "epoch": 1})
    with pytest.raises(CheckpointError, match="student_best.ckpt is not .* no 'config' or 'classes'"):
        darknb.predict(run["videos"][".mp4"], best)
    wrong = tmp_path / "wrong.ckpt"
    save_checkpoint(wrong, {"model": run["model"].state_dict(), "epoch": 1, "classes": ["a", "b"],
                            "config": run["cfg"].to_dict()})
    with pytest.raises(CheckpointError, match="wrong.ckpt: weights do not fit vit_bert_tiny with 2"):
        darknb.predict(run["videos"][".mp4"], wrong)


def test_predict_command_prints_top_classes(run, capsys):
    from darknb.cli import main

    video = str(run["videos"][".avi"])
    assert main(["predict", video, "--checkpoint", str(run["ckpt"])]) == 0
    out = capsys.readouterr().out
    assert video in out and "1x1" in out and "RotateCW" in out and " %" in out
    assert main(["predict", video, "--checkpoint", str(run["ckpt"]), "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed[0]["video"] == video and len(parsed[0]["top"]) == 3
    assert main(["predict", video, "--checkpoint", str(Path(video))]) == 2  # a video, not a checkpoint
    assert "not a darknb classifier" in capsys.readouterr().err
