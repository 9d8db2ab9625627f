"""The training engine: determinism, exact resume, checkpoint safety, NaN stop, teacher -> student."""

from pathlib import Path

import pytest
import torch

from darknb.config import RunConfig
from darknb.data import build_datasets
from darknb.errors import CheckpointError, ConfigError, TrainingError
from darknb.train import (
    build_classifier,
    evaluate,
    fit,
    load_checkpoint,
    load_teacher,
    save_checkpoint,
    summarize_predictions,
    train_student,
    train_teacher,
)


@pytest.fixture
def cfg(tiny_synthetic, tmp_path):
    return RunConfig(data_root=str(tiny_synthetic), output_dir=str(tmp_path / "run"), epochs=2,
                     batch_size=4, lr=3e-4, num_frames=4, size=32, sampling="uniform",
                     enhancer="gamma", seed=0, save_every=1, pretrained="",
                     val_fraction=0.0)  # 2 scenes: too few to hold one out (see test_validation_*)


def _weights(path):
    return load_checkpoint(path)["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic(cfg, tmp_path):
    train, _, test = build_datasets(cfg)
    r1 = fit(build_classifier(cfg, 3), train, test, cfg.replace(output_dir=str(tmp_path / "a")),
             name="m", progress=False)
    torch.manual_seed(123)  # global state must not matter
    r2 = fit(build_classifier(cfg, 3), train, test, cfg.replace(output_dir=str(tmp_path / "b")),
             name="m", progress=False)
    assert r1["history"] == r2["history"]
    assert _same(_weights(r1["checkpoint"]), _weights(r2["checkpoint"]))
    assert 0 <= r1["metrics"]["top1"] <= 100 and r1["metrics"]["num_videos"] == len(test)


def test_interrupted_run_resumes_to_the_same_weights(cfg, tmp_path):
    train, _, test = build_datasets(cfg)
    full = fit(build_classifier(cfg, 3), train, test, cfg.replace(output_dir=str(tmp_path / "full")),
               name="m", progress=False)

    class Crash(torch.nn.Module):
        """Wraps the model and dies in the middle of the second epoch."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 4:  # 2 batches per epoch (6 videos / batch 4): 2nd batch of epoch 2
                raise KeyboardInterrupt("simulated crash")
            return self.inner(x)

    part_cfg = cfg.replace(output_dir=str(tmp_path / "part"))
    model = build_classifier(cfg, 3)
    with pytest.raises(KeyboardInterrupt):
        fit(Crash(model), train, test, part_cfg, name="m", progress=False)
    ckpt = Path(part_cfg.output_dir) / "m.ckpt"
    assert load_checkpoint(ckpt)["epoch"] == 1  # epoch 1 is safe on disk, no temp files left
    assert not list(Path(part_cfg.output_dir).glob("*.tmp"))
    # the checkpoint stores the wrapped model's keys: resume with the same wrapper, no crash now
    wrapper = Crash(build_classifier(cfg, 3))
    wrapper.calls = -10**6
    resumed = fit(wrapper, train, test, part_cfg, name="m", progress=False)
    assert len(resumed["history"]) == 2
    assert resumed["history"] == full["history"]
    full_w = _weights(full["checkpoint"])
    res_w = {k.removeprefix("inner."): v for k, v in _weights(resumed["checkpoint"]).items()}
    assert _same(full_w, res_w)


def test_resume_refuses_a_checkpoint_from_another_config(cfg, tmp_path):
    train, _, test = build_datasets(cfg)
    fit(build_classifier(cfg, 3), train, test, cfg.replace(epochs=1), name="m", progress=False)
    with pytest.raises(CheckpointError, match="lr"):
        fit(build_classifier(cfg, 3), train, test, cfg.replace(lr=1e-2), name="m", progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint_is_refused_with_a_clear_error(cfg, tmp_path, damage):
    path = tmp_path / "x.ckpt"
    save_checkpoint(path, {"model": build_classifier(cfg, 3).state_dict(), "epoch": 1})
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00junk" * 100, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="x.ckpt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_non_finite_loss_stops_the_run_naming_the_step(cfg):
    train, _, test = build_datasets(cfg)

    class NaNModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.w.expand(x.shape[0], 3) * float("nan")

    with pytest.raises(TrainingError, match=r"non-finite loss .* epoch 1, step 1"):
        fit(NaNModel(), train, test, cfg, name="nan", progress=False)


def test_summarize_predictions_top5_and_confusion():
    logits = torch.tensor([[3.0, 2, 1, 0, -1, -2], [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    labels = torch.tensor([0, 0, 5])
    out = summarize_predictions(logits, labels, torch.arange(3), num_classes=6)
    assert out["top1"] == pytest.approx(100 / 3)
    assert out["top5"] == pytest.approx(100 / 3)  # label 0 is 6th of row 2; 5 is 6th of row 3
    assert out["confusion"][0][0] == 1 and out["confusion"][0][5] == 1 and out["confusion"][5][0] == 1
    assert out["per_class"][0] == 50.0 and out["per_class"][1] is None


def test_teacher_then_student_with_and_without_kd(cfg):
    teacher = train_teacher(cfg, progress=False)
    assert teacher["history"][-1]["kd"] == 0.0
    loaded = load_teacher(cfg, 3)
    assert not any(p.requires_grad for p in loaded.enhancer.parameters())
    student = train_student(cfg, kd=True, progress=False)
    control = train_student(cfg, kd=False, progress=False)
    assert student["history"][0]["kd"] > 0 and control["history"][0]["kd"] == 0
    assert student["history"] != control["history"]
    # the student sees raw frames only: evaluating it needs no enhancer
    _, _, test = build_datasets(cfg)
    model = build_classifier(cfg, 3)
    model.load_state_dict(_weights(student["checkpoint"]))
    assert evaluate(model, test)["top1"] == pytest.approx(student["metrics"]["top1"])
    with pytest.raises(ConfigError, match="num_frames"):
        load_teacher(cfg.replace(num_frames=8), 3)


def test_skipped_videos_are_counted_and_reported(cfg, tiny_synthetic, tmp_path):
    import shutil

    from darknb.errors import VideoReadError

    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic, root)
    train = build_datasets(cfg.replace(data_root=str(root))).train
    victim = root / train.samples[0][0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated: undecodable
    with pytest.raises(VideoReadError, match=victim.name):
        train, _, test = build_datasets(cfg.replace(data_root=str(root)))
        fit(build_classifier(cfg, 3), train, test, cfg.replace(data_root=str(root)), name="m",
            progress=False)
    skip_cfg = cfg.replace(data_root=str(root), on_error="skip", epochs=1)
    skip_train, _, skip_test = build_datasets(skip_cfg)
    result = fit(build_classifier(cfg, 3), skip_train, skip_test, skip_cfg, name="s", progress=False)
    assert [path for path, _ in result["skipped"]] == [train.samples[0][0]]


def test_cached_teacher_targets_equal_online_distillation(cfg, tmp_path):
    from darknb.distill import TeacherCache
    from darknb.experiments import ablation_grid

    train_teacher(cfg, progress=False)
    teacher = load_teacher(cfg, 3)
    online = train_student(cfg.replace(output_dir=str(tmp_path / "online")), teacher=teacher, progress=False)
    cache = TeacherCache()
    fill = train_student(cfg.replace(output_dir=str(tmp_path / "fill")), teacher=teacher,
                         teacher_cache=cache, progress=False)
    assert cache.misses > 0 and fill["teacher_seconds"] > 0
    served = train_student(cfg.replace(output_dir=str(tmp_path / "served")), teacher=teacher,
                           teacher_cache=cache, progress=False)
    assert served["teacher_seconds"] == 0 and cache.hits > 0
    assert online["history"] == served["history"]
    assert _same(_weights(online["checkpoint"]), _weights(served["checkpoint"]))
    grid = ablation_grid([0.0, 1.0], [0.0, 1.0], [1.0, 4.0], [0])
    assert {(p["alpha"], p["beta"], p["temperature"]) for p in grid} == {
        (0.0, 1.0, 1.0), (0.0, 1.0, 4.0), (1.0, 0.0, 1.0), (1.0, 1.0, 1.0), (1.0, 1.0, 4.0)}


def test_fitted_enhancer_does_not_depend_on_global_rng_history(cfg, tmp_path):
    from darknb.train import build_teacher_enhancer

    fit_cfg = cfg.replace(enhancer="zerodce", enhancer_fit_steps=3, resume=False)
    train = build_datasets(fit_cfg).train
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)
        torch.rand(state * 7)  # consume a different amount of the global stream
        enhancer, info = build_teacher_enhancer(fit_cfg, train, tmp_path / str(state))
        assert info["fitted"] and info["steps"] == 3
        weights.append([p.detach().clone() for p in enhancer.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_validation_selects_the_final_epoch_and_never_sees_test(tiny_synthetic, tmp_path):
    """Selection happens on the scene-disjoint validation list; the final model is the best
    validation epoch's, and load_final_state returns exactly those weights."""
    from darknb.train import load_final_state

    cfg = RunConfig(data_root=str(tiny_synthetic), output_dir=str(tmp_path / "run"), epochs=3,
                    batch_size=4, num_frames=4, size=32, save_every=1, lr=3e-3, pretrained="")
    train, val, test = build_datasets(cfg)
    groups = lambda ds: {ds.group_of(rel) for rel, _ in ds.samples}  # noqa: E731
    assert val is not None and len(val) and not val.train
    assert groups(train).isdisjoint(groups(val)) and groups(val).isdisjoint(groups(test))
    result = fit(build_classifier(cfg, 3), train, test, cfg, name="m", val_set=val, progress=False)
    vals = [h["val_top1"] for h in result["history"]]
    chosen = result["selection"]
    assert chosen["selected_on"] == "val" and chosen["epoch"] == 1 + vals.index(max(vals))
    final = load_final_state(Path(cfg.output_dir) / "m.ckpt")["model"]
    model = build_classifier(cfg, 3)
    model.load_state_dict(final)
    again = evaluate(model, test, batch_size=4)
    assert again["pred"] == result["metrics"]["pred"]
