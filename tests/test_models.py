import pytest
import torch

from darknb.errors import CheckpointError, ConfigError
from darknb.models.classifiers import (
    BERTTemporalHead,
    Teacher,
    ViTBERT,
    create_model,
    list_models,
)

CPU_SIZED = [m for m in list_models() if m.endswith("_tiny")]


def test_registry_lists_the_paper_and_tiny_presets():
    assert {"vit_bert", "vit_bert_tiny"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("nope", 5)
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("vit_bert_tiny", 1)


@pytest.mark.parametrize("name", CPU_SIZED)
def test_every_model_outputs_logits_without_nan_and_every_parameter_gets_a_grad(name):
    model = create_model(name, 5)
    model.train()
    x = torch.rand(2, 3, 8, 32, 32)
    out = model(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_paper_preset_shapes_on_meta_device():
    with torch.device("meta"):
        model = create_model("vit_bert", 11)
        out = model(torch.empty(2, 3, 64, 112, 112))
    assert out.shape == (2, 11)
    assert model.backbone.patch_embed.num_patches == 49  # 112 / 16 = 7 x 7 patches
    # ViT-B/16 without its head (85.8 M) + one BERT layer of width 768 (~7.1 M)
    assert 92e6 < sum(p.numel() for p in model.parameters()) < 94e6


def test_eval_is_deterministic_and_train_masks_keys():
    head = BERTTemporalHead(16, 3, num_frames=6, num_heads=8)
    x = torch.randn(4, 6, 16)
    head.eval()
    assert torch.equal(head(x), head(x))
    head.train()
    torch.manual_seed(1)
    a = head.forward_features(x)
    torch.manual_seed(2)
    b = head.forward_features(x)
    assert not torch.allclose(a, b)  # dropout + random key masks differ with the seed


def test_key_mask_never_hides_cls_and_respects_keep_probability():
    head = BERTTemporalHead(16, 3, num_frames=6, num_heads=8, mask_keep_prob=1e-6, dropout=0.0)
    head.train()
    # with (almost) every frame key masked, attention can only read the CLS token: the output
    # must not depend on the frame features
    x1, x2 = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    torch.manual_seed(0)
    a = head.forward_features(x1)
    torch.manual_seed(0)
    b = head.forward_features(x2)
    assert torch.isfinite(a).all()
    # queries of frame tokens differ but CLS attends to CLS only -> same CLS output
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="mask_keep_prob"):
        BERTTemporalHead(16, 3, num_frames=6, mask_keep_prob=0.0)


def test_clip_longer_than_positional_table_is_rejected():
    model = create_model("vit_bert_tiny", 3, num_frames=4)
    with pytest.raises(ConfigError, match="num_frames=4"):
        model(torch.rand(1, 3, 8, 32, 32))
    with pytest.raises(ConfigError, match="32x32"):
        model(torch.rand(1, 3, 4, 48, 48))


def test_teacher_freezes_enhancer_and_stays_in_eval_mode():
    enhancer = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.Dropout(0.5))

    class Frames(torch.nn.Module):  # apply a 2-D module frame by frame
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            B, C, T, H, W = x.shape
            y = self.m(x.transpose(1, 2).reshape(B * T, C, H, W))
            return y.reshape(B, T, C, H, W).transpose(1, 2)

    teacher = Teacher(Frames(enhancer), create_model("vit_bert_tiny", 3))
    teacher.train()
    assert not teacher.enhancer.training and teacher.classifier.training
    out = teacher(torch.rand(2, 3, 8, 32, 32))
    out.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in enhancer.parameters())
    assert all(p.grad is not None for p in teacher.classifier.parameters())


def test_pretrained_backbone_from_a_local_file(tmp_path):
    import timm

    kwargs = dict(patch_size=8, embed_dim=64, depth=3, num_heads=4, global_pool="avg")
    source = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=10, **kwargs)
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)
    model = create_model("vit_bert_tiny", 3, pretrained=str(path))  # 32 px: pos-embed resampled
    assert torch.equal(model.backbone.patch_embed.proj.weight, source.patch_embed.proj.weight)
    assert torch.equal(model.backbone.blocks[2].mlp.fc2.weight, source.blocks[2].mlp.fc2.weight)
    assert model.backbone.pos_embed.shape[1] == 1 + 16
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("vit_bert_tiny", 3, pretrained=str(tmp_path / "missing.pth"))
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pth"):
        create_model("vit_bert_tiny", 3, pretrained=str(tmp_path / "bad.pth"))


def test_vitbert_normalises_inside():
    model = ViTBERT(3, backbone="vit_tiny_patch16_224", img_size=32, num_frames=2,
                    backbone_kwargs=dict(patch_size=16, embed_dim=32, depth=1, num_heads=2), bert_heads=4)
    assert model.mean.shape == (1, 3, 1, 1, 1)
    feats = model.eval().forward_features(torch.rand(2, 3, 2, 32, 32))
    assert feats.shape == (2, 2, 32)


def test_normalisation_statistics_travel_with_the_weights(tmp_path):
    """A backbone file's sidecar statistics reach the model, and a saved model reloads them."""
    import json

    import timm

    kwargs = dict(patch_size=8, embed_dim=64, depth=3, num_heads=4, global_pool="avg")
    source = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0, **kwargs)
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    stats = {"mean": [0.41, 0.38, 0.33], "std": [0.2, 0.21, 0.22]}
    (tmp_path / "backbone.json").write_text(json.dumps(stats))
    model = create_model("vit_bert_tiny", 3, pretrained=str(path), input_norm="backbone")
    assert torch.allclose(model.mean.flatten(), torch.tensor(stats["mean"]))
    assert torch.allclose(model.std.flatten(), torch.tensor(stats["std"]))
    fresh = create_model("vit_bert_tiny", 3, input_norm="backbone")  # timm's default statistics
    assert not torch.allclose(fresh.mean, model.mean)
    fresh.load_state_dict(model.state_dict())  # the statistics are part of the weights
    assert torch.equal(fresh.mean, model.mean) and torch.equal(fresh.std, model.std)


def test_a_pretrained_video_classifier_transfers_all_but_its_classifier(tmp_path):
    """darknb's pre-training file (a whole classifier for OTHER classes, without head.fc) loads
    through pretrained=<path>: ViT, temporal blocks and statistics; the classifier is new."""
    torch.manual_seed(1)
    source = create_model("vit_bert_tiny", 10)
    with torch.no_grad():
        source.mean.fill_(0.3)
    path = tmp_path / "pretrained.pth"
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith("head.fc.")}, path)
    model = create_model("vit_bert_tiny", 4, pretrained=str(path))
    target = model.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith("head.fc."):
            assert target[key].shape != value.shape  # 4 classes, not 10: a fresh classifier
        else:
            assert torch.equal(target[key], value), key
    two = create_model("two_stream_bert_tiny", 4, pretrained=str(path))  # raw + gamma streams
    pos = source.state_dict()["head.pos_embed"]
    assert torch.equal(two.head.pos_embed, torch.cat([pos[:, :1], pos[:, 1:], pos[:, 1:]], dim=1))
    torch.save({"backbone.nonsense": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="wrong.pth"):
        create_model("vit_bert_tiny", 4, pretrained=str(tmp_path / "wrong.pth"))
