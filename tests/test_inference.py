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


def _student_ckpt(path, model, cfg, *, classes=CLASSES, name="student_s0", **extra):
    save_checkpoint(path, {"model": model.state_dict(), "epoch": cfg.epochs, "config": cfg.to_dict(),
                           "classes": classes, "best": {"epoch": 0}, "name": name, **extra})
    return path


def test_predict_resizes_frames_as_they_arrive_like_the_frame_cache(run, tmp_path):
    """A video larger than the training frames: predict decodes only the views' frames, resizes
    each to the run's cache short side as it arrives, and gives the probabilities of the
    evaluation pipeline reading that cache."""
    from darknb.data.framecache import prepare_dataset

    root = tmp_path / "hd"
    rng = np.random.default_rng(1)
    frames = Darkening()(render_lit(_scene(1, 1, 144, 192), "MoveLeft", rng, 12, 144, 192), rng)
    write_video(root / "MoveLeft" / "MoveLeft_1_1.mp4", frames)
    (root / "list.txt").write_text("0\t0\tMoveLeft/MoveLeft_1_1.mp4\n")
    cache = tmp_path / "cache"
    prepare_dataset(root, [root / "list.txt"], cache, short_side=40)
    cfg = run["cfg"].replace(dataset="folder", data_root=str(root), cache_dir=str(cache))
    ckpt = _student_ckpt(tmp_path / "student_s0.ckpt", run["model"], cfg)
    result = darknb.predict(root / "MoveLeft" / "MoveLeft_1_1.mp4", ckpt, protocol="2x3")
    ds = VideoListDataset(root, "list.txt", num_frames=4, size=32, sampling="consecutive",
                          classes=CLASSES, cache_dir=cache)
    from darknb.data.loader import ClipKey, collate_raw

    with torch.no_grad():
        views = [ds.raw(ClipKey(0, 0, clip, 2, crop, 3)) for clip in range(2) for crop in range(3)]
        expect = run["model"](ds.clip_transform(collate_raw(views))).softmax(1).mean(0)
    for r in result["top"]:
        assert r["probability"] == pytest.approx(expect[r["index"]].item(), abs=1e-5)


def test_read_frames_transform_is_applied_as_frames_arrive(run):
    from darknb.data.video import read_frames

    for video in run["videos"].values():
        whole = read_frames(video, [1, 5, 3])
        halved = read_frames(video, [1, 5, 3], transform=lambda f: f[::2, ::2].copy())
        assert np.array_equal(halved, whole[:, ::2, ::2])


def test_predict_notes_an_unsure_model_and_a_short_video(run, tmp_path, capsys):
    from darknb.cli import main
    from darknb.engine.inference import prediction_notes

    base = {"num_classes": 9, "frames": 40, "protocol": {"num_frames": 8},
            "top": [{"probability": 0.15}]}
    assert prediction_notes(base) == ["the model is unsure: its top probability (15.0 %) is below "
                                      "twice chance (2 x 11.1 % over 9 classes)"]
    assert prediction_notes({**base, "top": [{"probability": 0.25}]}) == []
    short = prediction_notes({**base, "frames": 5, "top": [{"probability": 0.9}]})
    assert short == ["the video has 5 frames, fewer than the model's 8-frame clip: frames were "
                     "repeated (looped) to fill it"]
    rng = np.random.default_rng(2)
    frames = Darkening()(render_lit(_scene(0, 2, 36, 48), "MoveLeft", rng, 3, 36, 48), rng)
    video = write_video(tmp_path / "three_frames.mp4", frames)
    result = darknb.predict(video, run["ckpt"])
    assert result["frames"] == 3 and any("fewer than the model's 4-frame clip" in n for n in result["notes"])
    assert main(["predict", str(video), "--checkpoint", str(run["ckpt"])]) == 0
    assert "note: the video has 3 frames" in capsys.readouterr().out


def _teacher_ckpt(tmp_path, run, *, teacher_input, enhancer, source=None):
    from darknb.models.classifiers import Teacher
    from darknb.models.enhancers import IdentityEnhancer, build_enhancer

    cfg = run["cfg"].replace(teacher_input=teacher_input, enhancer=enhancer, cache_dir="",
                             beta=0.0)
    inner = IdentityEnhancer() if teacher_input == "enhanced_cache" else build_enhancer(enhancer)
    teacher = Teacher(inner, run["model"])
    path = tmp_path / "teacher_s0.ckpt"
    info = {"name": enhancer, "teacher_input": teacher_input, "source": source or "analytic"}
    save_checkpoint(path, {"model": teacher.state_dict(), "epoch": 1, "config": cfg.to_dict(),
                           "classes": CLASSES, "best": {"epoch": 0}, "name": "teacher_s0",
                           "enhancer": info})
    return path, cfg


def test_predict_accepts_an_enhanced_cache_teacher(run, tmp_path):
    """teacher_s<N>.ckpt of an enhanced-cache teacher: the run's fitted Zero-DCE enhances every
    native frame before the resize, then the classifier: the same probabilities as the classifier
    on a video of those enhanced frames."""
    from darknb.data.video import read_frames
    from darknb.models.enhancers import ZeroDCE, enhance_uint8, save_enhancer

    torch.manual_seed(3)
    zerodce = ZeroDCE().eval()
    fitted = save_enhancer(zerodce, tmp_path / "zerodce_fitted.pth")
    moved = tmp_path / "elsewhere" / "zerodce_fitted.pth"  # the run folder has moved since
    ckpt, cfg = _teacher_ckpt(tmp_path, run, teacher_input="enhanced_cache", enhancer="zerodce",
                              source=str(moved))
    video = run["videos"][".mp4"]
    result = darknb.predict(video, ckpt)
    assert result["model"].startswith("teacher (zerodce on native frames")
    decoded = read_frames(video, range(10))
    enhanced = write_video(tmp_path / "enhanced.mp4", enhance_uint8(zerodce, decoded), lossless=True)
    student = _student_ckpt(tmp_path / "plain.ckpt", run["model"], cfg)
    expect = darknb.predict(enhanced, student)
    assert [r["index"] for r in result["top"]] == [r["index"] for r in expect["top"]]
    for got, want in zip(result["top"], expect["top"]):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-6)
    fitted.unlink()
    with pytest.raises(CheckpointError, match="teacher whose frames were enhanced by zerodce.*"
                                              "zerodce_fitted.pth beside the checkpoint"):
        darknb.predict(video, ckpt)


def test_predict_accepts_an_online_teacher(run, tmp_path):
    from darknb.models.classifiers import Teacher
    from darknb.models.enhancers import build_enhancer

    ckpt, _ = _teacher_ckpt(tmp_path, run, teacher_input="online", enhancer="gamma")
    result = darknb.predict(run["videos"][".mp4"], ckpt)
    ds = VideoListDataset(run["videos"][".mp4"].parent, "list.txt", num_frames=4, size=32,
                          sampling="consecutive", classes=CLASSES)
    with torch.no_grad():
        expect = Teacher(build_enhancer("gamma"), run["model"]).eval()(ds[0][0][None]).softmax(1)[0]
    for r in result["top"]:
        assert r["probability"] == pytest.approx(expect[r["index"]].item(), abs=1e-6)
