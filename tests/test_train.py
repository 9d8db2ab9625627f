"""The training engine: determinism, exact resume, checkpoint safety, NaN stop, teacher -> student."""

from pathlib import Path

import pytest
import torch

from darknb.config import RunConfig
from darknb.data.splits import Splits, build_datasets
from darknb.engine.build import build_classifier
from darknb.engine.checkpoint import load_checkpoint, save_checkpoint
from darknb.engine.evaluate import evaluate, summarize_predictions
from darknb.engine.loop import fit
from darknb.engine.stages import train_student, train_teacher
from darknb.engine.teacher import load_teacher
from darknb.errors import CheckpointError, ConfigError, TrainingError
from darknb.files import RunDir


@pytest.fixture
def cfg(tiny_synthetic, tmp_path):
    return RunConfig(data_root=str(tiny_synthetic), output_dir=str(tmp_path / "run"), epochs=2,
                     batch_size=4, lr=3e-4, num_frames=4, size=32, sampling="uniform",
                     enhancer="gamma", seed=0, save_every=1, pretrained="", teacher_input="online",
                     val_fraction=0.0)  # 2 scenes: too few to hold one out (see test_validation_*)


def _weights(path):
    return load_checkpoint(path)["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic(cfg, tmp_path):
    train, _, test = build_datasets(cfg)
    r1 = fit(build_classifier(cfg, 3), Splits(train, None, test), cfg.replace(output_dir=str(tmp_path / "a")), name="m", progress=False)
    torch.manual_seed(123)  # global state must not matter
    r2 = fit(build_classifier(cfg, 3), Splits(train, None, test), cfg.replace(output_dir=str(tmp_path / "b")), name="m", progress=False)
    assert r1["history"] == r2["history"]
    assert _same(_weights(r1["checkpoint"]), _weights(r2["checkpoint"]))
    assert 0 <= r1["metrics"]["top1"] <= 100 and r1["metrics"]["num_videos"] == len(test)


def test_interrupted_run_resumes_to_the_same_weights(cfg, tmp_path):
    train, _, test = build_datasets(cfg)
    full = fit(build_classifier(cfg, 3), Splits(train, None, test), cfg.replace(output_dir=str(tmp_path / "full")), name="m", progress=False)

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
        fit(Crash(model), Splits(train, None, test), part_cfg, name="m", progress=False)
    ckpt = Path(part_cfg.output_dir) / "m.ckpt"
    assert load_checkpoint(ckpt)["epoch"] == 1  # epoch 1 is safe on disk, no temp files left
    assert not list(Path(part_cfg.output_dir).glob("*.tmp"))
    # the checkpoint stores the wrapped model's keys: resume with the same wrapper, no crash now
    wrapper = Crash(build_classifier(cfg, 3))
    wrapper.calls = -10**6
    resumed = fit(wrapper, Splits(train, None, test), part_cfg, name="m", progress=False)
    assert len(resumed["history"]) == 2
    assert resumed["history"] == full["history"]
    full_w = _weights(full["checkpoint"])
    res_w = {k.removeprefix("inner."): v for k, v in _weights(resumed["checkpoint"]).items()}
    assert _same(full_w, res_w)


def test_resume_refuses_a_checkpoint_from_another_config(cfg, tmp_path):
    train, _, test = build_datasets(cfg)
    fit(build_classifier(cfg, 3), Splits(train, None, test), cfg.replace(epochs=1), name="m", progress=False)
    with pytest.raises(CheckpointError, match="lr"):
        fit(build_classifier(cfg, 3), Splits(train, None, test), cfg.replace(lr=1e-2), name="m", progress=False)


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
        fit(NaNModel(), Splits(train, None, test), cfg, name="nan", progress=False)


def test_summarize_predictions_top5_and_confusion():
    logits = torch.tensor([[3.0, 2, 1, 0, -1, -2], [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    labels = torch.tensor([0, 0, 5])
    out = summarize_predictions(logits, labels, torch.arange(3), num_classes=6)
    assert out["top1"] == pytest.approx(100 / 3)
    assert out["top5"] == pytest.approx(100 / 3)  # label 0 is 6th of row 2; 5 is 6th of row 3
    assert out["confusion"][0][0] == 1 and out["confusion"][0][5] == 1 and out["confusion"][5][0] == 1
    assert out["per_class"][0] == 50.0 and out["per_class"][1] is None


def test_teacher_then_student_with_and_without_kd(cfg):
    teacher = train_teacher(cfg, build_datasets(cfg), progress=False)
    assert teacher["history"][-1]["kd"] == 0.0
    loaded = load_teacher(cfg, RunDir(cfg.output_dir).checkpoint("teacher"), build_datasets(cfg))
    assert not any(p.requires_grad for p in loaded.enhancer.parameters())
    student = train_student(cfg, build_datasets(cfg), kd=True, progress=False)
    control = train_student(cfg, build_datasets(cfg), kd=False, progress=False)
    assert student["history"][0]["kd"] > 0 and control["history"][0]["kd"] == 0
    assert student["history"] != control["history"]
    # the student sees raw frames only: evaluating it needs no enhancer
    _, _, test = build_datasets(cfg)
    model = build_classifier(cfg, 3)
    model.load_state_dict(_weights(student["checkpoint"]))
    assert evaluate(model, test)["top1"] == pytest.approx(student["metrics"]["top1"])
    with pytest.raises(ConfigError, match="num_frames"):
        load_teacher(cfg.replace(num_frames=8), RunDir(cfg.replace(num_frames=8).output_dir).checkpoint("teacher"), build_datasets(cfg.replace(num_frames=8)))


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
        fit(build_classifier(cfg, 3), Splits(train, None, test), cfg.replace(data_root=str(root)), name="m", progress=False)
    skip_cfg = cfg.replace(data_root=str(root), on_error="skip", epochs=1)
    skip_train, _, skip_test = build_datasets(skip_cfg)
    result = fit(build_classifier(cfg, 3), Splits(skip_train, None, skip_test), skip_cfg, name="s", progress=False)
    assert [path for path, _ in result["skipped"]] == [train.samples[0][0]]


def test_cached_teacher_targets_equal_online_distillation(cfg, tmp_path):
    from darknb.engine.distill import TeacherCache

    train_teacher(cfg, build_datasets(cfg), progress=False)
    teacher = load_teacher(cfg, RunDir(cfg.output_dir).checkpoint("teacher"), build_datasets(cfg))
    online = train_student(cfg.replace(output_dir=str(tmp_path / "online")), build_datasets(cfg.replace(output_dir=str(tmp_path / "online"))), teacher=teacher, progress=False)
    cache = TeacherCache()
    fill = train_student(cfg.replace(output_dir=str(tmp_path / "fill")), build_datasets(cfg.replace(output_dir=str(tmp_path / "fill"))), teacher=teacher, teacher_cache=cache, progress=False)
    assert cache.misses > 0 and fill["teacher_seconds"] > 0
    served = train_student(cfg.replace(output_dir=str(tmp_path / "served")), build_datasets(cfg.replace(output_dir=str(tmp_path / "served"))), teacher=teacher, teacher_cache=cache, progress=False)
    assert served["teacher_seconds"] == 0 and cache.hits > 0
    assert online["history"] == served["history"]
    assert _same(_weights(online["checkpoint"]), _weights(served["checkpoint"]))


def test_fitted_enhancer_does_not_depend_on_global_rng_history(cfg, tmp_path):
    from darknb.engine.teacher import build_teacher_enhancer

    fit_cfg = cfg.replace(enhancer="zerodce", enhancer_fit_steps=3, resume=False)
    train = build_datasets(fit_cfg).train
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)
        torch.rand(state * 7)  # consume a different amount of the global stream
        enhancer, info = build_teacher_enhancer(fit_cfg.replace(output_dir=str(tmp_path / str(state))),
                                                train)
        assert info["fitted"] and info["steps"] == 3
        weights.append([p.detach().clone() for p in enhancer.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_validation_selects_the_final_epoch_and_never_sees_test(tiny_synthetic, tmp_path):
    """Selection happens on the scene-disjoint validation list; the final model is the best
    validation epoch's, and load_final_state returns exactly those weights."""
    from darknb.engine.checkpoint import load_final_state

    cfg = RunConfig(data_root=str(tiny_synthetic), output_dir=str(tmp_path / "run"), epochs=3,
                    batch_size=4, num_frames=4, size=32, save_every=1, lr=3e-3, pretrained="")
    train, val, test = build_datasets(cfg)
    groups = lambda ds: {ds.group_of(rel) for rel, _ in ds.samples}  # noqa: E731
    assert val is not None and len(val) and not val.train
    assert groups(train).isdisjoint(groups(val)) and groups(val).isdisjoint(groups(test))
    result = fit(build_classifier(cfg, 3), Splits(train, val, test), cfg, name="m", progress=False)
    vals = [h["val_top1"] for h in result["history"]]
    chosen = result["selection"]
    assert chosen["selected_on"] == "val" and chosen["epoch"] == 1 + vals.index(max(vals))
    final = load_final_state(Path(cfg.output_dir) / "m.ckpt")["model"]
    model = build_classifier(cfg, 3)
    model.load_state_dict(final)
    again = evaluate(model, test, batch_size=4)
    assert again["pred"] == result["metrics"]["pred"]


def test_learning_rate_schedule_warmup_then_cosine(cfg, tmp_path):
    from darknb.engine.build import lr_at

    cos = cfg.replace(epochs=4, lr=1e-3, lr_schedule="cosine", warmup_epochs=1)
    lrs = [lr_at(s, steps_per_epoch=5, cfg=cos) for s in range(20)]
    assert lrs[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])  # linear warm-up
    assert all(a > b for a, b in zip(lrs[5:], lrs[6:])) and lrs[-1] < 0.02 * 1e-3  # cosine to ~0
    flat = cfg.replace(lr_schedule="constant", warmup_epochs=0)
    assert {lr_at(s, steps_per_epoch=5, cfg=flat) for s in range(20)} == {cfg.lr}  # constant
    with pytest.raises(ConfigError, match="lr_schedule"):
        cfg.replace(lr_schedule="step")
    train, _, test = build_datasets(cfg)
    run = cfg.replace(lr_schedule="cosine", epochs=3, output_dir=str(tmp_path / "c"))
    result = fit(build_classifier(cfg, 3), Splits(train, None, test), run, name="m", progress=False)
    epoch_lrs = [h["lr"] for h in result["history"]]
    assert epoch_lrs[0] > epoch_lrs[1] > epoch_lrs[2] >= 0
    assert load_checkpoint(result["checkpoint"])["config"]["lr_schedule"] == "cosine"


def test_multi_view_evaluation_averages_softmax_and_is_recorded(cfg):
    import math

    from darknb.engine.records import stage_summary

    _, _, test = build_datasets(cfg)
    model = build_classifier(cfg, 3)
    single = evaluate(model, test)
    multi = evaluate(model, test, views="3x3")
    assert single["protocol"] == {"views": "1x1", "clips": 1, "crops": 1, "aggregate": "single view"}
    assert multi["protocol"]["aggregate"] == "mean softmax" and multi["protocol"]["clips"] == 3
    assert multi["num_videos"] == single["num_videos"] == len(test)
    assert multi["indices"] == list(range(len(test)))
    for row in multi["logits"]:  # log of a probability vector
        assert sum(math.exp(v) for v in row) == pytest.approx(1.0, abs=1e-5)
    assert multi["logits"] != single["logits"]
    with pytest.raises(ConfigError, match="eval_views"):
        cfg.replace(eval_views="10x2")
    summary = stage_summary({"metrics": multi}, cfg=cfg.replace(eval_views="3x3"))
    assert summary["protocol"]["views"] == "3x3" and summary["config"]["eval_views"] == "3x3"


def test_tensorboard_tracker_logs_losses_lr_speed_and_validation(cfg):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, _, test = build_datasets(cfg)
    run = cfg.replace(tracker="tensorboard", epochs=1)
    fit(build_classifier(cfg, 3), Splits(train, test, test), run, name="m", progress=False)
    logs = Path(run.output_dir) / "tensorboard" / "m"
    events = EventAccumulator(str(logs)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/ce", "train/kd", "train/lr", "train/clips_per_s",
            "epoch/val_top1"} <= tags


def test_checkpoint_writer_writes_in_the_background_atomically(tmp_path):
    from darknb.engine.checkpoint import CheckpointWriter
    from darknb.engine.checkpoint import snapshot as _snapshot
    from darknb.errors import OutputError

    weights = {"w": torch.ones(3)}
    writer = CheckpointWriter()
    writer.save(tmp_path / "a.ckpt", _snapshot({"model": weights, "epoch": 1}))
    weights["w"].add_(1)  # training goes on: the snapshot is unaffected
    writer.wait()
    assert torch.equal(load_checkpoint(tmp_path / "a.ckpt")["model"]["w"], torch.ones(3))
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "b.ckpt").mkdir()  # a folder where the checkpoint should go: the write fails
    writer.save(tmp_path / "b.ckpt", {"model": {}})
    with pytest.raises(OutputError, match="b.ckpt"):
        writer.wait()


@pytest.mark.slow  # ~20 s of dynamo tracing on 2 loaded cores
def test_compile_option_trains_through_torch_compile(cfg, monkeypatch):
    """compile=True steps a torch.compile'd model (dynamo's eager backend here: the real
    inductor build takes minutes on 2 cores); checkpoints hold the plain module's keys."""
    calls = []
    real = torch.compile

    def compile_eager(model, **kw):
        calls.append(type(model).__name__)
        return real(model, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", compile_eager)
    train, _, test = build_datasets(cfg)
    run = cfg.replace(compile=True, epochs=1)
    model = build_classifier(cfg, 3)
    result = fit(model, Splits(train, None, test), run, name="m", progress=False)
    assert calls == ["ViTBERT"]
    assert set(load_checkpoint(result["checkpoint"])["model"]) == set(model.state_dict())


def test_any_dataset_of_float_clips_still_trains_and_evaluates(cfg):
    """A dataset without the uint8 half (no ``raw``): its own (clip, label, index) items are used."""

    class Plain(torch.utils.data.Dataset):
        classes = ["a", "b", "c"]

        def __len__(self):
            return 6

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return torch.rand(3, 4, 32, 32, generator=g), i % 3, i

    result = fit(build_classifier(cfg, 3), Splits(Plain(), None, Plain()), cfg.replace(epochs=1), name="p", progress=False)
    assert result["metrics"]["num_videos"] == 6 and result["steps"] == 2
    with pytest.raises(ConfigError, match="views"):
        evaluate(build_classifier(cfg, 3), Plain(), views="2x1")
