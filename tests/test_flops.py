"""Cost counting: hand-computed FLOPs, fused attention counted, meta-device counting, latency."""

import pytest
import torch
from torch import nn

import darknb.study.flops as flops
from darknb.errors import ConfigError
from darknb.study.flops import count_flops, count_parameters, measure_latency


def _tiny_vit(*, fused: bool, depth: int = 2, embed_dim: int = 32, num_heads: int = 4):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                              embed_dim=embed_dim, depth=depth, num_heads=num_heads, num_classes=5)
    for block in model.blocks:
        block.attn.fused_attn = fused
    return model.eval()


def test_linear_and_conv_match_hand_counts():
    # Linear: one (B x in) @ (in x out) product = 2 * B * in * out FLOPs (bias is not counted).
    res = count_flops(nn.Linear(10, 7), torch.rand(4, 10))
    assert res["flops"] == 2 * 4 * 10 * 7
    assert res["unit"] == "FLOPs" and "2 x MACs" in res["convention"]
    # Conv: 2 * B * C_out * H_out * W_out * C_in * k * k.
    res = count_flops(nn.Conv2d(3, 8, 3, padding=1), torch.rand(2, 3, 16, 16))
    assert res["flops"] == 2 * 2 * 8 * 16 * 16 * 3 * 3 * 3
    assert res["by_op"] == {"aten.convolution": res["flops"]}
    assert res["batch_size"] == 2 and res["uncounted_ops"] == []


def test_fused_attention_is_counted_like_explicit_matmuls():
    x = torch.rand(2, 3, 32, 32)
    fused = count_flops(_tiny_vit(fused=True), x)
    explicit = count_flops(_tiny_vit(fused=False), x)
    assert fused["uncounted_ops"] == []
    assert fused["flops"] == pytest.approx(explicit["flops"], rel=1e-9)
    # The attention part itself: per block QK^T and AV, each 2 * B * N^2 * D, N = 16 patches + CLS.
    B, N, D, depth = 2, 17, 32, 2
    attention = sum(v for k, v in fused["by_op"].items() if "attention" in k or "bmm" in k)
    assert attention == depth * 2 * (2 * B * N * N * D)


def test_missing_attention_formula_warns_instead_of_undercounting(monkeypatch):
    monkeypatch.setattr(flops, "extra_flop_formulas", lambda: {})
    with pytest.warns(RuntimeWarning, match="flash_attention_for_cpu"):
        res = count_flops(_tiny_vit(fused=True), torch.rand(1, 3, 32, 32))
    assert any("attention" in op for op in res["uncounted_ops"])


def test_meta_device_counts_the_same_without_touching_the_model():
    model = _tiny_vit(fused=True)
    cpu = count_flops(model, torch.rand(2, 3, 32, 32))
    meta = count_flops(model, input_shape=(2, 3, 32, 32), device="meta")
    assert meta["flops"] == cpu["flops"] and meta["device"] == "meta"
    assert next(model.parameters()).device.type == "cpu"  # counted on a copy
    with pytest.raises(ConfigError, match="either"):
        count_flops(model)
    with torch.device("meta"):
        meta_model = torch.nn.Linear(4, 2)
    with pytest.raises(ConfigError, match="meta"):
        count_flops(meta_model, torch.rand(1, 4))


def test_paper_size_student_matches_analytic_count():
    """ViT-B/16 at 112 px, 64 frames (PAPER.md settings), counted on meta: no compute."""
    from darknb.models.classifiers import create_model

    with torch.device("meta"):
        student = create_model("vit_bert", 11)
    res = count_flops(student, input_shape=(1, 3, 64, 112, 112), device="meta")
    T, N, D, P = 64, 7 * 7 + 1, 768, 16
    patch_embed = 2 * 49 * D * (3 * P * P)
    block = 2 * N * (3 * D * D + D * D + 2 * 4 * D * D) + 2 * (2 * N * N * D)
    assert res["by_module"]["backbone"] == T * (patch_embed + 12 * block)
    assert 5.4e11 < res["flops"] < 5.7e11  # ~554 GFLOPs = ~277 GMACs per clip


def test_count_parameters_trainable_and_shared():
    lin = nn.Linear(4, 3)
    model = nn.Sequential(lin, nn.ReLU(), lin, nn.Linear(3, 2))  # lin shared: counted once
    assert count_parameters(model) == 15 + 8
    model[3].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 15


def test_measure_latency_reports_units_and_restores_mode():
    model = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.5)).train()
    res = measure_latency(model, torch.rand(3, 16), warmup=1, repeats=4)
    assert set(res) >= {"mean_ms", "std_ms", "repeats", "threads", "device"}
    assert res["repeats"] == 4 and res["mean_ms"] > 0 and res["std_ms"] >= 0
    assert res["threads"] == torch.get_num_threads() and res["device"] == "cpu"
    assert model.training
    assert measure_latency(model, torch.rand(3, 16), repeats=1)["std_ms"] == 0.0
    with pytest.raises(ConfigError, match="repeats"):
        measure_latency(model, torch.rand(3, 16), repeats=0)
    with pytest.raises(ConfigError, match="meta"):
        measure_latency(model, torch.rand(3, 16, device="meta"))
