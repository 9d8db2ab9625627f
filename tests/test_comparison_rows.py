"""Comparison rows say which backbone, depth, pre-training, input and protocol produced them, and
the paper-size costs include DarkLight's real network."""

import pytest

from darknb.config import RunConfig
from darknb.files import RunDir, write_json
from darknb.models.classifiers import list_models
from darknb.study.experiments import (
    BASELINES,
    MODEL_CARDS,
    baseline_config,
    comparison_table,
    cost_of_models,
)


def test_every_registered_model_has_a_card():
    assert set(list_models()) <= set(MODEL_CARDS)
    assert MODEL_CARDS["r2plus1d_34_bert"]["depth"] == 34 and MODEL_CARDS["r2plus1d_bert_tiny"]["depth"] == 18
    assert "no key masking" in MODEL_CARDS["two_stream_r2plus1d_34_bert"]["temporal_head"]
    assert "keep 0.8" in MODEL_CARDS["vit_bert"]["temporal_head"]


def test_baselines_get_their_own_pretraining():
    cfg = RunConfig(model="vit_bert", pretrained="/w/vit.pth", baseline_pretrained="/w/ig65m.pth")
    assert BASELINES["vit_bert"]["r2plus1d_bert"] == "r2plus1d_34_bert"  # the paper's row
    assert baseline_config(cfg, "r2plus1d_34_bert").pretrained == "/w/ig65m.pth"
    assert baseline_config(cfg, "two_stream_r2plus1d_34_bert").pretrained == "/w/ig65m.pth"
    assert baseline_config(cfg, "two_stream_bert").pretrained == "/w/vit.pth"
    assert baseline_config(cfg, "r2plus1d_bert").pretrained == ""  # R(2+1)D-18: no weights exist here
    assert baseline_config(cfg, "r2plus1d_34_bert").beta == 0.0


def _predictions(n=6, right=4, **extra):
    return {"top1": 100 * right / n, "top5": 100.0, "indices": list(range(n)), "labels": [0] * n,
            "pred": [0] * right + [1] * (n - right), **extra}


def _arm(label, config):
    return {"label": label, "top1": 60.0, "top5": 100.0, "top1_ci95": [40.0, 80.0], "top1_std": 5.0,
            "seeds": [0, 1], "num_videos": 6, "config": config}


def test_measured_rows_name_what_produced_them(tmp_path):
    run = RunDir(tmp_path)
    teacher_cfg = RunConfig(teacher_input="enhanced_cache", pretrained="").to_dict()
    write_json({"config": teacher_cfg, "enhancer": {"name": "zerodce", "fitted": True,
                                                     "teacher_input": "enhanced_cache"}}, run.stage("teacher_s0"))
    study = {"arms": {"teacher": _arm("Teacher", teacher_cfg),
                      "student": _arm("Student", RunConfig(pretrained="").to_dict())}}
    info = {"file": "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth", "classes": 359,
            "source": "IG65M, 32-frame clips"}
    config = RunConfig(model="r2plus1d_34_bert", num_frames=64, size=112, sampling="consecutive").to_dict()
    write_json(_predictions(model="r2plus1d_34_bert", pretrained_info=info, config={**config, "pretrained": "x.pth"},
                            epochs=30), run.predictions("r2plus1d_bert"))
    write_json(_predictions(model="r2plus1d_bert_tiny",
                            config=RunConfig(model="r2plus1d_bert_tiny", pretrained="").to_dict()),
               run.predictions("two_stream"))
    table = comparison_table(tmp_path, dataset="synthetic", study=study, n_boot=50).set_index("method", drop=False)
    measured = table[table.source == "measured"]
    r2p1d = measured[measured.model == "r2plus1d_34_bert"].iloc[0]
    assert r2p1d.backbone == "R(2+1)D" and r2p1d.depth == 34
    assert "R(2+1)D-34" in r2p1d.method and "IG65M, 32-frame clips" in r2p1d.method
    assert r2p1d.protocol.startswith("64x112x112 consecutive clips; test: 1 centre clip x 1 centre crop")
    teacher = measured.loc["Teacher"]
    assert "before resizing" in teacher.input and "fitted zero-reference" in teacher.input
    assert teacher.pretraining == "none (from scratch)" and teacher.depth == 3
    student = measured.loc["Student"]
    assert student.input == "raw frames" and "BERT5" in student.temporal_head
    scratch = measured[measured.model == "r2plus1d_bert_tiny"].iloc[0]
    assert "R(2+1)D-18" in scratch.method and "from scratch" in scratch.method
    reported = table.loc["R(2+1)D + BERT (DarkLight setting)"]
    assert reported.source == "reported" and reported.depth == 34 and reported.pretraining == "IG65M"


@pytest.mark.filterwarnings("ignore")
def test_paper_size_costs_include_darklight_and_r2plus1d_34(tiny_synthetic, tmp_path):
    cfg = RunConfig(data_root=str(tiny_synthetic), output_dir=str(tmp_path), num_frames=4, pretrained="")
    rows = {(r["model"], r["setting"].split(" ")[0]): r
            for r in cost_of_models(cfg, 11, paper_latency_repeats=0, run_latency_repeats=0)}
    darklight, r34 = rows[("darklight", "paper")], rows[("r2plus1d_34_bert", "paper")]
    r18 = rows[("r2plus1d_bert", "paper")]
    assert 605 < r34["gflops_per_clip"] < 615 and 1210 < darklight["gflops_per_clip"] < 1230
    assert darklight["gflops_per_clip"] == pytest.approx(2 * r34["gflops_per_clip"], rel=1e-3)
    assert darklight["params"] - r34["params"] == 8 * 512  # one backbone, 8 more positions
    assert "R(2+1)D (depth 34) x 2 views" in darklight["architecture"]
    assert "depth 18" in r18["architecture"] and r18["gflops_per_clip"] < 330
    assert "latency_ms_per_clip" not in darklight  # a reference cost: FLOPs only
    two_stream = rows[("two_stream", "paper")]
    assert "ViT-B/16" in two_stream["architecture"] and "no key masking" in two_stream["architecture"]
