"""The paper's baselines: R(2+1)D-34 (ig65m-pytorch's layout, IG65M checkpoints) + BERT5, and
DarkLight's two-stream."""

import pytest
import torch
from torch import nn
from torchvision.models.video.resnet import (
    BasicBlock,
    Conv2Plus1D,
    R2Plus1dStem,
    VideoResNet,
)

from darknb.errors import CheckpointError, ConfigError
from darknb.models.classifiers import create_model, load_ig65m_backbone

# loading into a model built on the meta device (to check keys without 250 MB of weights) is a no-op
pytestmark = pytest.mark.filterwarnings("ignore:.*meta parameter")


def ig65m_r2plus1d_34(num_classes: int) -> VideoResNet:
    """moabitcoin/ig65m-pytorch ``ig65m/models.py::r2plus1d_34``, transcribed (no download): the
    network its converted checkpoints are the state dict of."""
    model = VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[3, 4, 6, 3],
                        stem=R2Plus1dStem)
    model.fc = nn.Linear(model.fc.in_features, out_features=num_classes)
    model.layer2[0].conv2[0] = Conv2Plus1D(128, 128, 288)
    model.layer3[0].conv2[0] = Conv2Plus1D(256, 256, 576)
    model.layer4[0].conv2[0] = Conv2Plus1D(512, 512, 1152)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.eps = 1e-3
            m.momentum = 0.9
    return model


def write_ig65m_checkpoint(path, num_classes: int = 359, *, drop=(), add=None, reshape=None):
    """A state dict in the exact layout of ig65m-pytorch's .pth files (``model.state_dict()`` of
    :func:`ig65m_r2plus1d_34`). Tensor k is filled with the constant k / 1000, stored as an expanded
    one-element tensor so the file is a few kB instead of 250 MB."""
    with torch.device("meta"):
        layout = ig65m_r2plus1d_34(num_classes).state_dict()
    state, values = {}, {}
    for k, (key, t) in enumerate(layout.items()):
        if key in drop:
            continue
        shape = (reshape or {}).get(key, t.shape)
        if t.dtype == torch.long:  # num_batches_tracked
            state[key] = torch.tensor(1000)
        else:
            values[key] = k / 1000
            state[key] = torch.full((1,), k / 1000).expand(shape)
    state.update(add or {})
    torch.save(state, path)
    return values


def test_r2plus1d_34_is_ig65m_pytorchs_network_and_bert_uses_its_temporal_tokens():
    with torch.device("meta"):
        model = create_model("r2plus1d_34_bert", 11)
        out = model(torch.empty(2, 3, 64, 112, 112))
        reference = ig65m_r2plus1d_34(359)
    assert out.shape == (2, 11)
    ours = {f"{name}.{k}": tuple(v.shape) for name, part in zip(
        ("stem", "layer1", "layer2", "layer3", "layer4"), model.backbone) for k, v in part.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert ours == theirs  # same keys, same shapes (Caffe2 mid-planes 288 / 576 / 1152 included)
    assert model.backbone[2][0].conv2[0][0].out_channels == 288
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm3d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.9 for m in bns)
    # 64 frames -> 8 temporal tokens; BERT5 with its key mask (LateTemporalModeling's setting)
    assert model.head.num_frames == 8 and model.head.mask_keep_prob == 0.8
    assert model.head.pos_embed.shape[1] == 9


def test_ig65m_checkpoint_loads_and_its_classifier_is_dropped(tmp_path):
    path = tmp_path / "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth"
    values = write_ig65m_checkpoint(path, 359)
    assert path.stat().st_size < 500_000
    with torch.device("meta"):
        model = create_model("r2plus1d_34_bert", 11, pretrained=str(path))
    assert model.pretrained_info == {"file": path.name, "classes": 359, "source": "IG65M, 32-frame clips"}
    model.to_empty(device="cpu")  # real storage (uninitialised) to load the values into
    load_ig65m_backbone(model.backbone, path)
    names = ("stem", "layer1", "layer2", "layer3", "layer4")
    loaded = 0
    for name, part in zip(names, model.backbone):
        for k, v in part.state_dict().items():
            key = f"{name}.{k}"
            if key in values:
                assert torch.all(v == values[key]), key
                loaded += 1
    assert loaded == len(values) - 2  # every tensor but the classifier's weight and bias
    assert torch.all(model.backbone[0][0].weight == values["stem.0.weight"])
    assert model.head.fc.out_features == 11  # the 359-class head is not used
    # the 8-frame model's file (487 classes) loads the same way
    clip8 = tmp_path / "r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth"
    write_ig65m_checkpoint(clip8, 487)
    with torch.device("meta"):
        info = create_model("r2plus1d_34_bert", 11, pretrained=str(clip8)).pretrained_info
    assert info["classes"] == 487 and info["source"] == "IG65M, 8-frame clips"


def test_a_checkpoint_that_does_not_fit_is_refused_naming_keys(tmp_path):
    bad = tmp_path / "bad.pth"
    write_ig65m_checkpoint(bad, drop={"layer3.1.conv1.0.0.weight"}, add={"layer5.0.weight": torch.zeros(1)})
    with torch.device("meta"), pytest.raises(CheckpointError) as err:
        create_model("r2plus1d_34_bert", 11, pretrained=str(bad))
    assert "bad.pth" in str(err.value) and "layer3.1.conv1.0.0.weight" in str(err.value)
    assert "layer5.0.weight" in str(err.value)
    # torchvision's own mid-planes (230) instead of the Caffe2 ones (288): a shape error
    shapes = tmp_path / "torchvision_layout.pth"
    write_ig65m_checkpoint(shapes, reshape={"layer2.0.conv2.0.0.weight": (230, 128, 1, 3, 3)})
    with torch.device("meta"), pytest.raises(CheckpointError, match="layer2.0.conv2.0.0.weight"):
        create_model("r2plus1d_34_bert", 11, pretrained=str(shapes))
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("r2plus1d_34_bert", 11, pretrained=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with torch.device("meta"), pytest.raises(CheckpointError, match="junk.pth"):
        create_model("r2plus1d_34_bert", 11, pretrained=str(tmp_path / "junk.pth"))
    with pytest.raises(ConfigError, match="local path"):
        create_model("r2plus1d_34_bert", 11, pretrained="hub")
    with pytest.raises(ConfigError, match="r2plus1d_34_bert"):
        create_model("r2plus1d_bert", 11, pretrained=str(bad))


def test_data_parallel_prefix_and_missing_step_counters_are_accepted(tmp_path):
    path = tmp_path / "dp.pth"
    write_ig65m_checkpoint(path)
    state = torch.load(path, weights_only=True)
    torch.save({f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    with torch.device("meta"):
        backbone = create_model("r2plus1d_34_bert", 3).backbone
    assert load_ig65m_backbone(backbone, path)["classes"] == 359


def small_darklight() -> nn.Module:
    """DarkLight's model class with a stand-in backbone of the same output layout (512 channels,
    time / 8, space / 16): R(2+1)D-34 itself runs at ~0.3 GFLOP/s on the shared CPU, and its
    layout is checked on the meta device above."""
    torch.manual_seed(0)
    with torch.device("meta"):
        model = create_model("two_stream_r2plus1d_34_bert", 3, num_frames=8, input_norm="clip")
    model.to_empty(device="cpu")
    model.backbone = nn.Sequential(nn.Conv3d(3, 512, kernel_size=(8, 16, 16), stride=(8, 16, 16)))
    model.head = type(model.head)(512, 3, num_frames=2, mask_keep_prob=1.0)
    return model


def test_darklight_two_stream_is_one_r2plus1d_34_over_raw_and_gamma_without_key_masking():
    from darknb.models.classifiers import R2Plus1DBERT

    with torch.device("meta"):
        model = create_model("two_stream_r2plus1d_34_bert", 11)
        single = create_model("r2plus1d_34_bert", 11)
        assert model(torch.empty(1, 3, 64, 112, 112)).shape == (1, 11)
    assert model.head.num_frames == 16 and model.head.mask_keep_prob == 1.0  # 2 x 8 tokens, no mask
    # one shared backbone: the same parameter count as the single stream (+ 8 more positions)
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in single.parameters())
    assert extra == 8 * 512
    # the tokens are the raw view's then the gamma view's, from the same backbone
    small = small_darklight()
    x = torch.rand(2, 3, 8, 16, 16) * 0.2
    tokens = small.forward_features(x)
    raw = R2Plus1DBERT.forward_features(small, x)
    light = R2Plus1DBERT.forward_features(small, x ** (1 / 1.8))
    assert tokens.shape == (2, 2, 512)
    torch.testing.assert_close(tokens, torch.cat([raw, light], 1))
    out = small.train()(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in small.parameters())
