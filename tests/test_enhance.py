"""Tests of darknb.enhance: shapes, gradients, losses, checkpoints, fitting, and parity with the
original Zero-DCE / Zero-DCE++ code and weights.

The ``Original*`` classes below are transcriptions of the original code, kept as close to verbatim
as possible (tabs -> spaces, ``.cuda()`` removed) and independent of darknb:
- Li-Chongyi/Zero-DCE, Zero-DCE_code/model.py (enhance_net_nopool) and Zero-DCE_code/Myloss.py
- Li-Chongyi/Zero-DCE_extension, Zero-DCE++/model.py (CSDN_Tem, enhance_net_nopool(scale_factor))
"""

import hashlib
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darknb.errors import CheckpointError, ConfigError, TrainingError
from darknb.models.enhancers import (
    GammaCorrection,
    IdentityEnhancer,
    ZeroDCE,
    ZeroDCEPP,
    build_enhancer,
    list_enhancers,
    load_enhancer_weights,
    save_enhancer,
)
from darknb.models.zero_reference import (
    ZeroReferenceLoss,
    color_constancy_loss,
    exposure_loss,
    fit_zero_reference,
    illumination_smoothness_loss,
    spatial_consistency_loss,
)

REFERENCE = Path(os.environ.get("DARKNB_REFERENCE",
                                Path(__file__).resolve().parents[2] / "shared" / "reference"))


def reference_file(name: str) -> Path:
    path = REFERENCE / name / "Epoch99.pth"
    if not path.is_file():
        pytest.skip(f"reference weights not available: {path}")
    return path


def dark_frames(n: int, h: int, w: int, *, seed: int = 0, mean: float = 20 / 255) -> torch.Tensor:
    """Textured frames darkened like a low-light camera: power curve to the target mean, sensor
    noise, 8-bit quantisation. (N, 3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros(n, 3, h, w)
    for s in (4, 8, 16):
        z = torch.rand(n, 3, max(1, h // s), max(1, w // s), generator=g)
        base += F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False) / 3
    base = (0.6 * base + 0.4 * torch.linspace(0, 1, h).view(1, 1, h, 1)).clamp(0, 1)
    dark = base.pow(2.2)
    dark = dark * (mean / dark.mean((1, 2, 3), keepdim=True))
    dark = dark + 0.01 * torch.randn(dark.shape, generator=g)
    return (dark.clamp(0, 1) * 255).round() / 255


def small_enhancers():
    torch.manual_seed(0)
    return {
        "zerodce": ZeroDCE(channels=8),
        "zerodce++": ZeroDCEPP(scale_factor=4, channels=8),
        "gamma": GammaCorrection(gamma=1.8),
        "none": IdentityEnhancer(),
    }


# ------------------------------------------------------------------------------------------------
# Transcription of the original code (see module docstring)
# ------------------------------------------------------------------------------------------------

class OriginalZeroDCE(nn.Module):  # Zero-DCE_code/model.py: enhance_net_nopool

    def __init__(self):
        super(OriginalZeroDCE, self).__init__()

        self.relu = nn.ReLU(inplace=True)

        number_f = 32
        self.e_conv1 = nn.Conv2d(3, number_f, 3, 1, 1, bias=True)
        self.e_conv2 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv3 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv4 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv5 = nn.Conv2d(number_f * 2, number_f, 3, 1, 1, bias=True)
        self.e_conv6 = nn.Conv2d(number_f * 2, number_f, 3, 1, 1, bias=True)
        self.e_conv7 = nn.Conv2d(number_f * 2, 24, 3, 1, 1, bias=True)

        self.maxpool = nn.MaxPool2d(2, stride=2, return_indices=False, ceil_mode=False)
        self.upsample = nn.UpsamplingBilinear2d(scale_factor=2)

    def forward(self, x):

        x1 = self.relu(self.e_conv1(x))
        x2 = self.relu(self.e_conv2(x1))
        x3 = self.relu(self.e_conv3(x2))
        x4 = self.relu(self.e_conv4(x3))

        x5 = self.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = self.relu(self.e_conv6(torch.cat([x2, x5], 1)))

        x_r = F.tanh(self.e_conv7(torch.cat([x1, x6], 1)))
        r1, r2, r3, r4, r5, r6, r7, r8 = torch.split(x_r, 3, dim=1)

        x = x + r1 * (torch.pow(x, 2) - x)
        x = x + r2 * (torch.pow(x, 2) - x)
        x = x + r3 * (torch.pow(x, 2) - x)
        enhance_image_1 = x + r4 * (torch.pow(x, 2) - x)
        x = enhance_image_1 + r5 * (torch.pow(enhance_image_1, 2) - enhance_image_1)
        x = x + r6 * (torch.pow(x, 2) - x)
        x = x + r7 * (torch.pow(x, 2) - x)
        enhance_image = x + r8 * (torch.pow(x, 2) - x)
        r = torch.cat([r1, r2, r3, r4, r5, r6, r7, r8], 1)
        return enhance_image_1, enhance_image, r


class CSDN_Tem(nn.Module):  # Zero-DCE++/model.py
    def __init__(self, in_ch, out_ch):
        super(CSDN_Tem, self).__init__()
        self.depth_conv = nn.Conv2d(
            in_channels=in_ch,
            out_channels=in_ch,
            kernel_size=3,
            stride=1,
            padding=1,
            groups=in_ch
        )
        self.point_conv = nn.Conv2d(
            in_channels=in_ch,
            out_channels=out_ch,
            kernel_size=1,
            stride=1,
            padding=0,
            groups=1
        )

    def forward(self, input):
        out = self.depth_conv(input)
        out = self.point_conv(out)
        return out


class OriginalZeroDCEPP(nn.Module):  # Zero-DCE++/model.py: enhance_net_nopool(scale_factor)

    def __init__(self, scale_factor):
        super(OriginalZeroDCEPP, self).__init__()

        self.relu = nn.ReLU(inplace=True)
        self.scale_factor = scale_factor
        self.upsample = nn.UpsamplingBilinear2d(scale_factor=self.scale_factor)
        number_f = 32

        self.e_conv1 = CSDN_Tem(3, number_f)
        self.e_conv2 = CSDN_Tem(number_f, number_f)
        self.e_conv3 = CSDN_Tem(number_f, number_f)
        self.e_conv4 = CSDN_Tem(number_f, number_f)
        self.e_conv5 = CSDN_Tem(number_f * 2, number_f)
        self.e_conv6 = CSDN_Tem(number_f * 2, number_f)
        self.e_conv7 = CSDN_Tem(number_f * 2, 3)

    def enhance(self, x, x_r):

        x = x + x_r * (torch.pow(x, 2) - x)
        x = x + x_r * (torch.pow(x, 2) - x)
        x = x + x_r * (torch.pow(x, 2) - x)
        enhance_image_1 = x + x_r * (torch.pow(x, 2) - x)
        x = enhance_image_1 + x_r * (torch.pow(enhance_image_1, 2) - enhance_image_1)
        x = x + x_r * (torch.pow(x, 2) - x)
        x = x + x_r * (torch.pow(x, 2) - x)
        enhance_image = x + x_r * (torch.pow(x, 2) - x)

        return enhance_image

    def forward(self, x):
        if self.scale_factor == 1:
            x_down = x
        else:
            x_down = F.interpolate(x, scale_factor=1 / self.scale_factor, mode='bilinear')

        x1 = self.relu(self.e_conv1(x_down))
        x2 = self.relu(self.e_conv2(x1))
        x3 = self.relu(self.e_conv3(x2))
        x4 = self.relu(self.e_conv4(x3))
        x5 = self.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = self.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        x_r = F.tanh(self.e_conv7(torch.cat([x1, x6], 1)))
        if self.scale_factor == 1:
            x_r = x_r
        else:
            x_r = self.upsample(x_r)
        enhance_image = self.enhance(x, x_r)
        return enhance_image, x_r


# Zero-DCE_code/Myloss.py (.cuda() removed)
class L_color(nn.Module):

    def __init__(self):
        super(L_color, self).__init__()

    def forward(self, x):

        b, c, h, w = x.shape

        mean_rgb = torch.mean(x, [2, 3], keepdim=True)
        mr, mg, mb = torch.split(mean_rgb, 1, dim=1)
        Drg = torch.pow(mr - mg, 2)
        Drb = torch.pow(mr - mb, 2)
        Dgb = torch.pow(mb - mg, 2)
        k = torch.pow(torch.pow(Drg, 2) + torch.pow(Drb, 2) + torch.pow(Dgb, 2), 0.5)

        return k


class L_spa(nn.Module):

    def __init__(self):
        super(L_spa, self).__init__()
        kernel_left = torch.FloatTensor([[0, 0, 0], [-1, 1, 0], [0, 0, 0]]).unsqueeze(0).unsqueeze(0)
        kernel_right = torch.FloatTensor([[0, 0, 0], [0, 1, -1], [0, 0, 0]]).unsqueeze(0).unsqueeze(0)
        kernel_up = torch.FloatTensor([[0, -1, 0], [0, 1, 0], [0, 0, 0]]).unsqueeze(0).unsqueeze(0)
        kernel_down = torch.FloatTensor([[0, 0, 0], [0, 1, 0], [0, -1, 0]]).unsqueeze(0).unsqueeze(0)
        self.weight_left = nn.Parameter(data=kernel_left, requires_grad=False)
        self.weight_right = nn.Parameter(data=kernel_right, requires_grad=False)
        self.weight_up = nn.Parameter(data=kernel_up, requires_grad=False)
        self.weight_down = nn.Parameter(data=kernel_down, requires_grad=False)
        self.pool = nn.AvgPool2d(4)

    def forward(self, org, enhance):
        b, c, h, w = org.shape

        org_mean = torch.mean(org, 1, keepdim=True)
        enhance_mean = torch.mean(enhance, 1, keepdim=True)

        org_pool = self.pool(org_mean)
        enhance_pool = self.pool(enhance_mean)

        D_org_letf = F.conv2d(org_pool, self.weight_left, padding=1)
        D_org_right = F.conv2d(org_pool, self.weight_right, padding=1)
        D_org_up = F.conv2d(org_pool, self.weight_up, padding=1)
        D_org_down = F.conv2d(org_pool, self.weight_down, padding=1)

        D_enhance_letf = F.conv2d(enhance_pool, self.weight_left, padding=1)
        D_enhance_right = F.conv2d(enhance_pool, self.weight_right, padding=1)
        D_enhance_up = F.conv2d(enhance_pool, self.weight_up, padding=1)
        D_enhance_down = F.conv2d(enhance_pool, self.weight_down, padding=1)

        D_left = torch.pow(D_org_letf - D_enhance_letf, 2)
        D_right = torch.pow(D_org_right - D_enhance_right, 2)
        D_up = torch.pow(D_org_up - D_enhance_up, 2)
        D_down = torch.pow(D_org_down - D_enhance_down, 2)
        E = (D_left + D_right + D_up + D_down)

        return E


class L_exp(nn.Module):

    def __init__(self, patch_size, mean_val):
        super(L_exp, self).__init__()
        self.pool = nn.AvgPool2d(patch_size)
        self.mean_val = mean_val

    def forward(self, x):

        b, c, h, w = x.shape
        x = torch.mean(x, 1, keepdim=True)
        mean = self.pool(x)

        d = torch.mean(torch.pow(mean - torch.FloatTensor([self.mean_val]), 2))
        return d


class L_TV(nn.Module):
    def __init__(self, TVLoss_weight=1):
        super(L_TV, self).__init__()
        self.TVLoss_weight = TVLoss_weight

    def forward(self, x):
        batch_size = x.size()[0]
        h_x = x.size()[2]
        w_x = x.size()[3]
        count_h = (x.size()[2] - 1) * x.size()[3]
        count_w = x.size()[2] * (x.size()[3] - 1)
        h_tv = torch.pow((x[:, :, 1:, :] - x[:, :, :h_x - 1, :]), 2).sum()
        w_tv = torch.pow((x[:, :, :, 1:] - x[:, :, :, :w_x - 1]), 2).sum()
        return self.TVLoss_weight * 2 * (h_tv / count_h + w_tv / count_w) / batch_size


def original_total_loss(enhanced, img_lowlight, A, *, tv_weight=200):
    """lowlight_train.py of Zero-DCE: loss = 200 L_TV(A) + mean(L_spa) + 5 L_col + 10 L_exp."""
    Loss_TV = tv_weight * L_TV()(A)
    loss_spa = torch.mean(L_spa()(enhanced, img_lowlight))
    loss_col = 5 * torch.mean(L_color()(enhanced))
    loss_exp = 10 * torch.mean(L_exp(16, 0.6)(enhanced))
    return {"smoothness": Loss_TV, "spatial": loss_spa, "color": loss_col, "exposure": loss_exp,
            "loss": Loss_TV + loss_spa + loss_col + loss_exp}


# ------------------------------------------------------------------------------------------------
# Shapes, gradients, NaN
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_enhancers())
def test_images_and_clips_keep_their_shape(name):
    enhancer = small_enhancers()[name]
    images = dark_frames(2, 24, 28)
    clip = dark_frames(6, 24, 28, seed=1).view(2, 3, 3, 24, 28).transpose(1, 2)  # (B, 3, T, H, W)
    with torch.no_grad():
        out_images, out_clip = enhancer(images), enhancer(clip)
    assert out_images.shape == images.shape and out_clip.shape == clip.shape
    assert torch.isfinite(out_images).all() and torch.isfinite(out_clip).all()


@pytest.mark.parametrize("name", list_enhancers())
def test_clip_is_enhanced_frame_by_frame_in_any_chunking(name):
    enhancer = small_enhancers()[name]
    clip = dark_frames(10, 24, 28, seed=2).view(2, 5, 3, 24, 28).transpose(1, 2)  # (2, 3, 5, H, W)
    with torch.no_grad():
        enhancer.chunk_frames = 3  # 10 frames -> chunks of 3, 3, 3, 1
        out = enhancer(clip)
        for b in range(2):
            for t in range(5):
                frame = enhancer(clip[b:b + 1, :, t])
                torch.testing.assert_close(out[b:b + 1, :, t], frame, atol=1e-6, rtol=1e-5)


def test_learned_enhancers_brighten_and_gamma_brightens():
    x = dark_frames(2, 24, 28)
    with torch.no_grad():
        assert GammaCorrection(gamma=1.8)(x).mean() > 1.5 * x.mean()
        torch.testing.assert_close(IdentityEnhancer()(x), x)


@pytest.mark.parametrize("name", ["zerodce", "zerodce++"])
def test_gradients_reach_every_parameter(name):
    enhancer = small_enhancers()[name]
    x = dark_frames(2, 32, 32)
    enhanced, curves = enhancer.forward_with_curves(x)
    ZeroReferenceLoss()(enhanced, x, curves)["loss"].backward()
    for pname, p in enhancer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} gets a zero gradient"


@pytest.mark.parametrize("name", list_enhancers())
def test_no_nan_on_black_white_and_tiny_negative_input(name):
    enhancer = small_enhancers()[name]
    x = torch.stack([torch.zeros(3, 24, 28), torch.ones(3, 24, 28),
                     torch.full((3, 24, 28), -1e-7)])
    with torch.no_grad():
        assert torch.isfinite(enhancer(x)).all()


def test_curve_shapes():
    x = dark_frames(2, 24, 36)
    _, r = ZeroDCE(channels=8).forward_with_curves(x)
    assert r.shape == (2, 24, 24, 36) and r.abs().max() <= 1
    _, r = ZeroDCEPP(scale_factor=12, channels=8).forward_with_curves(x)
    assert r.shape == (2, 3, 24, 36)


def test_zerodcepp_keeps_sizes_not_divisible_by_scale_factor():
    x = dark_frames(1, 30, 50)  # 30/12 and 50/12 are not integers
    with torch.no_grad():
        assert ZeroDCEPP(scale_factor=12, channels=8)(x).shape == x.shape
        assert ZeroDCEPP(scale_factor=12, channels=8)(dark_frames(1, 7, 9)).shape == (1, 3, 7, 9)


def test_wrong_input_is_refused():
    enhancer = ZeroDCE(channels=8)
    with pytest.raises(ConfigError, match="expected a tensor"):
        enhancer(torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="dtype"):
        enhancer(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="forward_with_curves"):
        enhancer.forward_with_curves(torch.rand(1, 3, 2, 8, 8))


# ------------------------------------------------------------------------------------------------
# Gamma and the registry
# ------------------------------------------------------------------------------------------------

def test_gamma_matches_the_uint8_formula():
    gamma = 1.8
    i = torch.arange(256, dtype=torch.float64)
    uint8_formula = (i / 255) ** (1 / gamma) * 255  # DarkLight: (i/255)^(1/gamma) * 255
    clip = (i / 255).float().view(1, 1, 1, 1, 256).expand(1, 3, 1, 1, 256)  # (B, 3, T, H, W)
    ours = GammaCorrection(gamma=gamma)(clip)
    torch.testing.assert_close(ours[0, 1, 0, 0].double() * 255, uint8_formula, atol=1e-4, rtol=0)
    assert ours[0, 0, 0, 0, 20] * 255 == pytest.approx(255 * (20 / 255) ** (1 / 1.8), rel=1e-6)


@pytest.mark.parametrize("gamma", [0, -1.0, float("nan"), float("inf"), "1.8"])
def test_gamma_must_be_positive(gamma):
    with pytest.raises(ConfigError, match="gamma"):
        GammaCorrection(gamma=gamma)


def test_build_enhancer():
    assert isinstance(build_enhancer("zerodce", channels=8), ZeroDCE)
    assert build_enhancer("zerodce++", scale_factor=4).scale_factor == 4
    assert build_enhancer("gamma", gamma=2.2).gamma == 2.2
    assert isinstance(build_enhancer("none"), IdentityEnhancer)
    with pytest.raises(ConfigError, match=r"zerodce\+\+"):  # the message lists the valid names
        build_enhancer("retinex")
    with pytest.raises(ConfigError, match="no weights"):
        build_enhancer("gamma", checkpoint="x.pth")
    with pytest.raises(ConfigError, match="scale_factor"):
        build_enhancer("gamma", scale_factor=4)


def test_build_enhancer_loads_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    saved = save_enhancer(ZeroDCEPP(scale_factor=4), tmp_path / "pp.pth")
    loaded = build_enhancer("zerodce++", checkpoint=saved, scale_factor=4)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded.state_dict(), ZeroDCEPP(scale_factor=4).state_dict())


# ------------------------------------------------------------------------------------------------
# Zero-reference losses
# ------------------------------------------------------------------------------------------------

def test_exposure_loss_by_hand():
    assert exposure_loss(torch.full((2, 3, 32, 32), 0.6)).item() == pytest.approx(0, abs=1e-12)
    assert exposure_loss(torch.full((2, 3, 32, 32), 0.5)).item() == pytest.approx(0.01, rel=1e-5)
    # Half of the 16x16 patches at 0.2, half at 0.6: mean of (0.4^2, 0) = 0.08.
    x = torch.full((1, 3, 16, 32), 0.6)
    x[..., :16] = 0.2
    assert exposure_loss(x).item() == pytest.approx(0.08, rel=1e-5)


def test_color_loss_by_hand():
    grey = torch.rand(2, 1, 16, 16).expand(2, 3, 16, 16)
    assert color_constancy_loss(grey).item() == 0
    x = torch.ones(1, 3, 4, 4) * torch.tensor([0.3, 0.2, 0.1]).view(1, 3, 1, 1)
    # Myloss.L_color: sqrt((0.1^2)^2 + (0.2^2)^2 + (0.1^2)^2) = sqrt(1.8e-3)
    assert color_constancy_loss(x).item() == pytest.approx(1.8e-3 ** 0.5, rel=1e-5)


def test_color_loss_gradient_is_finite_on_grey_images():
    grey = torch.full((1, 3, 16, 16), 0.4, requires_grad=True)
    color_constancy_loss(grey).backward()
    assert torch.isfinite(grey.grad).all()


def test_spatial_loss_by_hand():
    x = torch.rand(2, 3, 16, 16)
    assert spatial_consistency_loss(x, x).item() == 0
    # Original black, enhanced a constant 0.5 on 8x8: the 2x2 pooled difference map is constant,
    # inner neighbour differences vanish and each cell has 2 zero-padded neighbours: 2 * 0.5^2.
    loss = spatial_consistency_loss(torch.full((1, 3, 8, 8), 0.5), torch.zeros(1, 3, 8, 8))
    assert loss.item() == pytest.approx(0.5, rel=1e-6)
    # A uniform brightening keeps inner contrast: only the zero-padded border contributes.
    assert spatial_consistency_loss(x + 0.1, x).item() == pytest.approx(
        spatial_consistency_loss(torch.full_like(x, 0.1), torch.zeros_like(x)).item(), rel=1e-4)


def test_smoothness_loss_by_hand():
    assert illumination_smoothness_loss(torch.full((2, 24, 8, 8), 0.3)).item() == 0
    # curves = a * column index: only horizontal differences, each a^2; sum over N*K*H*(W-1)
    # terms, divided by H*(W-1) and by N, times 2 -> 2 * K * a^2.
    a, K = 0.1, 3
    ramp = (a * torch.arange(8.0)).view(1, 1, 1, 8).expand(2, K, 8, 8)
    assert illumination_smoothness_loss(ramp).item() == pytest.approx(2 * K * a * a, rel=1e-5)


def test_losses_match_the_original_myloss():
    g = torch.Generator().manual_seed(3)
    original = torch.rand(3, 3, 48, 64, generator=g) * 0.2
    enhanced = torch.rand(3, 3, 48, 64, generator=g)
    curves = torch.rand(3, 24, 48, 64, generator=g) * 2 - 1
    ours = ZeroReferenceLoss()(enhanced, original, curves)
    theirs = original_total_loss(enhanced, original, curves)
    assert set(ours) == {"loss", "spatial", "exposure", "color", "smoothness"}
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-7)
    # Zero-DCE++ trains with a TV weight of 1600.
    pp = ZeroReferenceLoss(smoothness=1600.0)(enhanced, original, curves[:, :3])
    torch.testing.assert_close(pp["smoothness"],
                               original_total_loss(enhanced, original, curves[:, :3],
                                                   tv_weight=1600)["smoothness"])


def test_loss_weights_are_applied_and_summed():
    x, y, r = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    unit = ZeroReferenceLoss(spatial=1, exposure=1, color=1, smoothness=1)(y, x, r)
    weighted = ZeroReferenceLoss(spatial=2, exposure=3, color=4, smoothness=5)(y, x, r)
    for key, w in dict(spatial=2, exposure=3, color=4, smoothness=5).items():
        torch.testing.assert_close(weighted[key], w * unit[key])
    parts = ("spatial", "exposure", "color", "smoothness")
    torch.testing.assert_close(weighted["loss"], sum(weighted[k] for k in parts))


def test_loss_refuses_bad_input():
    with pytest.raises(ConfigError, match="patch"):
        ZeroReferenceLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="same shape"):
        ZeroReferenceLoss()(torch.rand(1, 3, 16, 16), torch.rand(2, 3, 16, 16),
                            torch.rand(1, 3, 16, 16))
    with pytest.raises(ConfigError, match="exposure_level"):
        ZeroReferenceLoss(exposure_level=1.5)


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ZeroDCE, ZeroDCEPP])
def test_save_and_from_checkpoint_round_trip(cls, tmp_path):
    torch.manual_seed(4)
    model = cls()
    path = save_enhancer(model, tmp_path / "sub" / "enhancer.pth")
    assert sorted(p.name for p in path.parent.iterdir()) == ["enhancer.pth"]  # no temp file left
    loaded = cls.from_checkpoint(path)
    x = dark_frames(1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    keys = list(torch.load(path, weights_only=True))
    assert keys[0] == ("e_conv1.weight" if cls is ZeroDCE else "e_conv1.depth_conv.weight")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ZeroDCE.from_checkpoint(tmp_path / "absent.pth")


def test_truncated_and_corrupt_checkpoints(tmp_path):
    good = save_enhancer(ZeroDCE(channels=8), tmp_path / "good.pth").read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth.*cannot be read"):
        load_enhancer_weights(ZeroDCE(channels=8), truncated)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        ZeroDCE.from_checkpoint(corrupt)
    not_tensors = tmp_path / "dict.pth"
    torch.save({"epoch": 3}, not_tensors)
    with pytest.raises(CheckpointError, match="state dict of tensors"):
        ZeroDCE.from_checkpoint(not_tensors)


def test_wrong_keys_and_shapes_are_refused(tmp_path):
    pp = save_enhancer(ZeroDCEPP(), tmp_path / "pp.pth")
    with pytest.raises(CheckpointError, match=r"pp.pth: expected 14 tensors e_conv1\.weight"
                                              r"\.\.e_conv7\.bias .* found 28"):
        ZeroDCE.from_checkpoint(pp)
    narrow = save_enhancer(ZeroDCE(channels=16), tmp_path / "narrow.pth")
    with pytest.raises(CheckpointError, match=r"wrong tensor shapes .*e_conv1\.weight"):
        ZeroDCE.from_checkpoint(narrow)
    state = ZeroDCE(channels=8).state_dict()
    state["e_conv3.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_enhancer_weights(ZeroDCE(channels=8), tmp_path / "nan.pth")


def test_data_parallel_prefix_is_accepted(tmp_path):
    model = ZeroDCE(channels=8)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    loaded = load_enhancer_weights(ZeroDCE(channels=8), tmp_path / "dp.pth")
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


# ------------------------------------------------------------------------------------------------
# Parity with the original weights and code
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["zerodce", "zerodce_pp"])
def test_reference_sha256_matches_readme(name):
    path = reference_file(name)
    readme = (path.parent / "README.md").read_text()
    expected = re.search(r"sha256:\s*([0-9a-f]{64})", readme).group(1)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def test_zerodce_parity_with_original_code():
    path = reference_file("zerodce")
    original = OriginalZeroDCE()
    original.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ours = ZeroDCE.from_checkpoint(path)
    x = torch.cat([dark_frames(1, 40, 56, seed=5), torch.rand(1, 3, 40, 56)])
    with torch.no_grad():
        _, expected, expected_r = original(x)
        enhanced, r = ours.forward_with_curves(x)
        torch.testing.assert_close(enhanced, expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(r, expected_r, atol=1e-6, rtol=1e-5)
        # Clip path: the same numbers frame by frame.
        clip = x.unsqueeze(2)  # (2, 3, 1, H, W)
        torch.testing.assert_close(ours(clip)[:, :, 0], expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("scale_factor", [12, 1])
def test_zerodcepp_parity_with_original_code(scale_factor):
    path = reference_file("zerodce_pp")
    original = OriginalZeroDCEPP(scale_factor)
    original.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ours = ZeroDCEPP.from_checkpoint(path, scale_factor=scale_factor)
    x = torch.cat([dark_frames(1, 72, 96, seed=6), torch.rand(1, 3, 72, 96)])  # divisible by 12
    with torch.no_grad():
        expected, expected_r = original(x)
        enhanced, r = ours.forward_with_curves(x)
    torch.testing.assert_close(enhanced, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(r, expected_r, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls,name", [(ZeroDCE, "zerodce"), (ZeroDCEPP, "zerodce_pp")])
def test_pretrained_weights_brighten_a_dark_image(cls, name):
    model = cls.from_checkpoint(reference_file(name))
    x = dark_frames(2, 72, 96, mean=20 / 255)  # mean ~0.08
    with torch.no_grad():
        y = model(x)
    assert y.mean() > 0.25 and y.mean() > 3 * x.mean()
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6


# ------------------------------------------------------------------------------------------------
# Zero-reference fitting
# ------------------------------------------------------------------------------------------------

def _fit(seed: int, steps: int = 4):
    torch.manual_seed(0)
    model = ZeroDCE(channels=8)
    history = fit_zero_reference(model, dark_frames(6, 32, 40), steps=steps, batch_size=2,
                                 crop=24, seed=seed)
    return model, history


def test_fit_is_deterministic():
    model_a, hist_a = _fit(seed=0)
    model_b, hist_b = _fit(seed=0)
    _, hist_c = _fit(seed=1)
    assert hist_a["loss"] == hist_b["loss"] and len(hist_a["loss"]) == 4
    torch.testing.assert_close(model_a.state_dict(), model_b.state_dict(), atol=0, rtol=0)
    assert hist_a["loss"] != hist_c["loss"]  # the seed picks the batches and crops
    assert set(hist_a) >= {"loss", "spatial", "exposure", "color", "smoothness", "brightness"}


def test_fit_brightens_dark_frames():
    train, test = dark_frames(16, 48, 64, seed=7), dark_frames(4, 48, 64, seed=8)
    torch.manual_seed(0)
    model = ZeroDCE(channels=16).eval().requires_grad_(False)  # frozen, as inside a teacher
    with torch.no_grad():
        before = model(test).mean().item()
    history = fit_zero_reference(model, train, steps=40, batch_size=4, seed=0)  # ~0.5 s
    assert not model.training  # fitting restores the caller's mode and flags
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        after = model(test).mean().item()
    assert test.mean().item() < 0.1 and before < 0.15
    assert after > 0.3, f"fitted Zero-DCE leaves dark frames at mean {after:.3f}"
    assert history["loss"][-1] < 0.5 * history["loss"][0]


def test_fit_refuses_bad_input():
    with pytest.raises(ConfigError, match="no curves"):
        fit_zero_reference(GammaCorrection(), dark_frames(2, 32, 32))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        fit_zero_reference(ZeroDCE(channels=8), dark_frames(2, 32, 32) * 300)
    with pytest.raises(ConfigError, match="crop"):
        fit_zero_reference(ZeroDCE(channels=8), dark_frames(2, 32, 32), crop=0)


def test_fit_stops_on_a_non_finite_loss():
    def nan_loss(enhanced, original, curves):
        return {"loss": enhanced.mean() * float("nan")}
    with pytest.raises(TrainingError, match="step 0"):
        fit_zero_reference(ZeroDCE(channels=8), dark_frames(2, 32, 32), steps=2, loss=nan_loss)


def _input_sizes(module):
    """The (H, W) every call of ``module`` sees, recorded by a forward hook."""
    sizes = []
    module.register_forward_hook(lambda m, args, out: sizes.append(tuple(args[0].shape[-2:])))
    return sizes


def test_zerodcepp_is_fitted_at_scale_1_on_128_px_crops_and_runs_at_its_own_scale():
    from darknb.models.zero_reference import fit_settings

    settings = fit_settings("zerodce++", "short")
    assert settings["crop"] == 128
    model = ZeroDCEPP(scale_factor=12, channels=8)
    sizes = _input_sizes(model.e_conv1)
    fit_zero_reference(model, dark_frames(3, 136, 144), steps=2, seed=0, **{**settings, "batch_size": 2})
    assert sizes == [(128, 128), (128, 128)]  # the curve net saw the full-resolution crop
    assert model.scale_factor == 12  # ... and runs at 12 again
    model(dark_frames(1, 120, 144))
    assert sizes[-1] == (10, 12)


def test_the_original_fit_settings_resize_whole_frames():
    from darknb.models.zero_reference import FIT_PROTOCOLS, fit_settings

    common = dict(lr=1e-4, weight_decay=1e-4, grad_clip=0.1, batch_size=8, crop=None)
    assert fit_settings("zerodce", "original") == {**common, "resize": 256}  # lowlight_train.py
    assert fit_settings("zerodce++", "original") == {**common, "resize": 512}
    assert set(FIT_PROTOCOLS) == {"short", "original"}
    with pytest.raises(ConfigError, match="protocol"):
        fit_settings("zerodce", "long")
    model = ZeroDCE(channels=8)
    sizes = _input_sizes(model.e_conv1)
    fit_zero_reference(model, dark_frames(2, 36, 48), steps=1, batch_size=1, crop=None, resize=40)
    assert sizes == [(40, 40)]
    with pytest.raises(ConfigError, match="resize"):
        fit_zero_reference(model, dark_frames(2, 36, 48), steps=1, crop=24, resize=40)


# ----------------------------------------------------------------------------------------------
# bf16 / channels-last Zero-DCE (how the teacher runs on a GPU): parity with float32, on CPU
# ----------------------------------------------------------------------------------------------

def _bf16_parity(model: ZeroDCE, x: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        exact = model(x)
        model.set_precision(torch.bfloat16, channels_last=True)
        fast = model(x)
        model.set_precision(None)
        again = model(x)
    assert fast.dtype == x.dtype and fast.shape == x.shape
    assert torch.equal(again, exact)  # switching back restores the exact path
    diff = (fast - exact).abs()
    return diff.max().item(), diff.mean().item()


# Tolerance on [0, 1] outputs. Measured: original weights 1.5e-3 max / 2.4e-4 mean on dark frames.
BF16_MAX, BF16_MEAN = 1e-2, 1e-3


def test_zerodce_bf16_channels_last_matches_float32_within_tolerance():
    torch.manual_seed(0)
    model = ZeroDCE().eval()
    for conv in model._convs():  # curves well away from identity (the init is near r = 0)
        nn.init.normal_(conv.weight, 0.0, 0.1)
    x = dark_frames(4, 48, 64).unsqueeze(0).transpose(1, 2)  # a clip (1, 3, T, H, W)
    big, mean = _bf16_parity(model, x)
    assert 0 < big < BF16_MAX and mean < BF16_MEAN  # > 0: bf16 really ran


def test_zerodce_bf16_parity_with_the_original_weights():
    model = ZeroDCE.from_checkpoint(reference_file("zerodce")).eval()
    big, mean = _bf16_parity(model, dark_frames(4, 64, 80))
    assert 0 < big < BF16_MAX and mean < BF16_MEAN
