"""The study's design: LP-FT, the normalisation control, the arms and the ablation grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from darknb.config import RunConfig
from darknb.data.splits import build_datasets
from darknb.engine.build import build_classifier, channel_statistics
from darknb.engine.probe import PROBE_C, linear_probe, probe_features
from darknb.engine.stages import initialise, train_student
from darknb.errors import ConfigError
from darknb.study.arms import ARM_SPECS, COMPARISONS, DESIGNS, arm_config, arms_of
from darknb.study.experiments import ablation_comparisons, ablation_points, study_arm_of


@pytest.fixture
def cfg(tiny_synthetic, tmp_path):
    return RunConfig(data_root=str(tiny_synthetic), output_dir=str(tmp_path / "run"), epochs=1,
                     batch_size=4, num_frames=4, size=32, pretrained="", seed=0)


def test_linear_probe_writes_the_logistic_regression_into_the_classifier(cfg):
    """The classifier after LP equals scikit-learn's fit on the frozen features: its logits on
    the training features are the probe's decision function, and the rest of the model is
    untouched."""
    from sklearn.linear_model import LogisticRegression

    splits = build_datasets(cfg)
    model = build_classifier(cfg, 3)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.fc.")}
    info = linear_probe(model, splits.train, num_classes=3, batch_size=4)
    X, y = probe_features(model, splits.train, batch_size=4)
    expected = LogisticRegression(C=PROBE_C, max_iter=5000).fit(X, y).decision_function(X)
    fc = model.get_classifier()
    got = X @ fc.weight.detach().double().numpy().T + fc.bias.detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert info["recipe"] == "lp-ft" and info["clips"] == len(splits.train) and info["C"] == PROBE_C
    # deterministic: the same clips, the same probe
    again = build_classifier(cfg, 3)
    linear_probe(again, splits.train, num_classes=3, batch_size=4)
    assert torch.equal(again.get_classifier().weight, fc.weight)


def test_lp_ft_starts_from_the_probe_and_is_skipped_on_resume(cfg):
    splits = build_datasets(cfg)
    model = build_classifier(cfg, 3)
    random_fc = model.get_classifier().weight.clone()
    info = initialise(model, cfg, splits, name="s")
    assert info["recipe"] == "lp-ft" and "probe_train_top1" in info
    assert not torch.equal(model.get_classifier().weight, random_fc)
    plain = build_classifier(cfg.replace(recipe="ft"), 3)
    assert "probe_train_top1" not in initialise(plain, cfg.replace(recipe="ft"), splits, name="s")
    assert torch.equal(plain.get_classifier().weight, random_fc)  # the seed's random classifier
    result = train_student(cfg, splits, kd=False, name="s", progress=False)
    assert result["init"]["recipe"] == "lp-ft"
    resumed = build_classifier(cfg, 3)  # a finished checkpoint exists: no probe (its weights win)
    assert "probe_train_top1" not in initialise(resumed, cfg, splits, name="s")
    with pytest.raises(ConfigError, match="recipe"):
        RunConfig(recipe="linear")


def test_dataset_normalisation_uses_the_arms_own_training_inputs(cfg):
    splits = build_datasets(cfg)
    model = build_classifier(cfg.replace(input_norm="dataset"), 3)
    info = initialise(model, cfg.replace(input_norm="dataset", recipe="ft"), splits, name="d")
    mean, std = channel_statistics(splits.train)
    assert info["input_statistics"] == {"input": "raw", "mean": mean, "std": std}
    assert model.mean.flatten().tolist() == pytest.approx(mean) and model.std.flatten().tolist() == pytest.approx(std)
    # raw dark frames: far darker than the well-lit statistics a pre-trained backbone expects
    assert max(mean) < 0.25
    cached = json.loads((Path(cfg.output_dir) / "input_stats.json").read_text())
    assert [v["input"] for v in cached.values()] == ["raw"]  # computed once, reused by every seed
    # saved with the weights: a reloaded model normalises as the trained one did
    state = model.state_dict()
    fresh = build_classifier(cfg.replace(input_norm="dataset"), 3)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.mean, model.mean)


def test_the_arms_and_the_stated_comparisons():
    assert arms_of(["backbone"]) == DESIGNS["backbone"]
    assert set(arms_of(["backbone", "dataset"])) == set(ARM_SPECS)
    with pytest.raises(ConfigError, match="input_norms"):
        arms_of(["imagenet"])
    assert arm_config(RunConfig(), "teacher_datanorm").input_norm == "dataset"
    assert arm_config(RunConfig(input_norm="clip"), "teacher").input_norm == "clip"  # the clip control
    for a, b, _ in COMPARISONS:
        assert a in ARM_SPECS and b in ARM_SPECS
    # every KD arm distils from an arm of its own design
    for name, spec in ARM_SPECS.items():
        if spec.teacher:
            assert ARM_SPECS[spec.teacher].input_norm == spec.input_norm, name


def test_the_ablation_grid_reuses_the_study_arms():
    cfg = RunConfig(alpha=1.0, beta=1.0, temperature=4.0)
    points = ablation_points(cfg, betas=[0.0, 0.5, 1.0, 2.0], temperatures=[1.0, 4.0])
    assert [(p["beta"], p["temperature"]) for p in points] == [(0.0, 4.0), (0.5, 4.0), (1.0, 4.0),
                                                                (2.0, 4.0), (1.0, 1.0)]
    assert [study_arm_of(p, cfg) for p in points] == ["student_no_kd", None, "student", None, None]
    questions = [(a["beta"], a["temperature"], b["beta"], b["temperature"]) for a, b, _ in
                 ablation_comparisons(points, cfg)]
    assert questions == [(0.5, 4.0, 0.0, 4.0), (1.0, 4.0, 0.5, 4.0), (2.0, 4.0, 1.0, 4.0),
                         (1.0, 4.0, 1.0, 1.0)]
    with pytest.raises(ConfigError, match="no loss"):
        ablation_points(cfg.replace(alpha=0.0), betas=[0.0], temperatures=[])
