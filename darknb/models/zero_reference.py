"""Zero-reference fitting of Zero-DCE / Zero-DCE++ (Guo et al. 2020, Sec. 3.3): the four
non-reference losses of the original ``Myloss.py`` and a small deterministic training loop, so
Zero-DCE can be fitted on unlabelled dark frames when no pretrained weights may be downloaded.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from darknb.errors import ConfigError, TrainingError
from darknb.models.enhancers import Enhancer, check_input, check_positive_int

__all__ = ["FIT_PROTOCOLS", "ZeroReferenceLoss", "color_constancy_loss", "exposure_loss",
           "fit_settings", "fit_zero_reference", "illumination_smoothness_loss",
           "spatial_consistency_loss"]


# ----------------------------------------------------------------------------------------------
# Zero-reference losses (Zero-DCE Sec. 3.3, Myloss.py)
# ----------------------------------------------------------------------------------------------

class ZeroReferenceLoss(nn.Module):
    """L_total = W_spa L_spa + W_exp L_exp + W_col L_col + W_tv L_tv  (Zero-DCE Eq. 8), with the
    weights of the original lowlight_train.py (1, 10, 5, 200; Zero-DCE++ uses W_tv = 1600).

    Each term follows the original Myloss.py, where it differs from the paper's equations:
    - L_spa: 4x4 average-pooled channel means; for each of the 4 neighbours (left, right, up,
      down, zero padding at the border as the original conv2d(padding=1)) the squared difference
      of (original - enhanced) gradients, summed over directions, mean over regions (Eq. 3).
    - L_exp: mean over non-overlapping ``patch`` x ``patch`` regions of the channel-mean minus E,
      squared (Eq. 4, E = 0.6).
    - L_col: per image sqrt(sum over channel pairs of ((J^p - J^q)^2)^2), mean over the batch;
      the paper's Eq. 5 writes sum (J^p - J^q)^2, the code squares twice and takes the root.
      The root is taken with a zero gradient at 0 (the original gives NaN on exactly grey images).
    - L_tv: 2 * (sum of squared vertical diffs / ((H-1) W) + horizontal / (H (W-1))) / batch over
      the curve maps (Eq. 6 as TVLoss; summed over channels, divided by the batch only).

    ``forward(enhanced, original, curves)`` returns {"loss", "spatial", "exposure", "color",
    "smoothness"}: the weighted parts and their sum."""

    def __init__(self, *, spatial: float = 1.0, exposure: float = 10.0, color: float = 5.0,
                 smoothness: float = 200.0, exposure_level: float = 0.6, patch: int = 16):
        super().__init__()
        for key, value in dict(spatial=spatial, exposure=exposure, color=color,
                               smoothness=smoothness).items():
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"ZeroReferenceLoss: weight {key} must be finite and >= 0, "
                                  f"got {value!r}")
        if not 0.0 < exposure_level < 1.0:
            raise ConfigError(f"ZeroReferenceLoss: exposure_level must be in (0, 1), "
                              f"got {exposure_level!r}")
        check_positive_int(patch=patch)
        self.weights = {"spatial": spatial, "exposure": exposure, "color": color,
                        "smoothness": smoothness}
        self.exposure_level, self.patch = float(exposure_level), patch

    def forward(self, enhanced: torch.Tensor, original: torch.Tensor,
                curves: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(enhanced, name="ZeroReferenceLoss(enhanced)", allow_clip=False)
        if original.shape != enhanced.shape:
            raise ConfigError(f"ZeroReferenceLoss: original {tuple(original.shape)} and enhanced "
                              f"{tuple(enhanced.shape)} must have the same shape")
        N, C, H, W = enhanced.shape
        if curves.dim() != 4 or curves.shape[0] != N or curves.shape[2:] != (H, W):
            raise ConfigError(f"ZeroReferenceLoss: curves must be (N, K, {H}, {W}) with N={N}, "
                              f"got {tuple(curves.shape)}")
        if H < self.patch or W < self.patch:
            raise ConfigError(f"ZeroReferenceLoss: frames {H}x{W} are smaller than the exposure "
                              f"patch={self.patch} (the original would give an empty mean, NaN)")
        parts = {
            "spatial": spatial_consistency_loss(enhanced, original),
            "exposure": exposure_loss(enhanced, level=self.exposure_level, patch=self.patch),
            "color": color_constancy_loss(enhanced),
            "smoothness": illumination_smoothness_loss(curves),
        }
        parts = {k: self.weights[k] * v for k, v in parts.items()}
        parts["loss"] = sum(parts.values())
        return parts


def spatial_consistency_loss(enhanced: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """L_spa (Eq. 3): keep the neighbour differences of 4x4 regions of the original."""
    # The original convolves both images with the 4 difference kernels and subtracts; the kernels
    # are linear, so applying them once to d = original - enhanced gives the same numbers.
    d = F.avg_pool2d(original.mean(1, keepdim=True) - enhanced.mean(1, keepdim=True), 4)
    p = F.pad(d, (1, 1, 1, 1))  # zero border, as conv2d(padding=1)
    left, right = d - p[..., 1:-1, :-2], d - p[..., 1:-1, 2:]
    up, down = d - p[..., :-2, 1:-1], d - p[..., 2:, 1:-1]
    return (left.pow(2) + right.pow(2) + up.pow(2) + down.pow(2)).mean()


def exposure_loss(enhanced: torch.Tensor, *, level: float = 0.6, patch: int = 16) -> torch.Tensor:
    """L_exp (Eq. 4): mean of (patch mean intensity - E)^2 over patch x patch regions."""
    means = F.avg_pool2d(enhanced.mean(1, keepdim=True), patch)
    return (means - level).pow(2).mean()


def color_constancy_loss(enhanced: torch.Tensor) -> torch.Tensor:
    """L_col (Eq. 5, as in Myloss.L_color): Gray-World deviation of the channel means."""
    mr, mg, mb = enhanced.mean((2, 3), keepdim=True).split(1, dim=1)
    s = (mr - mg).pow(2).pow(2) + (mr - mb).pow(2).pow(2) + (mb - mg).pow(2).pow(2)
    # sqrt has an infinite slope at 0: take the root only where s > 0 so grey images get grad 0.
    positive = s > 0
    k = torch.where(positive, torch.where(positive, s, torch.ones_like(s)).sqrt(),
                    torch.zeros_like(s))
    return k.mean()


def illumination_smoothness_loss(curves: torch.Tensor) -> torch.Tensor:
    """L_tv (Eq. 6, as in Myloss.L_TV): squared finite differences of the curve maps."""
    N, K, H, W = curves.shape
    if H < 2 or W < 2:
        raise ConfigError(f"illumination_smoothness_loss: curve maps {H}x{W} need H, W >= 2")
    h_tv = (curves[:, :, 1:, :] - curves[:, :, :-1, :]).pow(2).sum()
    w_tv = (curves[:, :, :, 1:] - curves[:, :, :, :-1]).pow(2).sum()
    return 2 * (h_tv / ((H - 1) * W) + w_tv / (H * (W - 1))) / N


# ----------------------------------------------------------------------------------------------
# Fitting on unlabelled dark frames
# ----------------------------------------------------------------------------------------------

# How an enhancer is fitted zero-reference (``fit_zero_reference`` keyword arguments), by protocol
# and enhancer. "original": the authors' lowlight_train.py (Zero-DCE and Zero-DCE++ alike: Adam
# lr 1e-4, weight decay 1e-4, grad-norm clip 0.1, batch 8; the data loader RESIZES every image to
# 256 x 256 (Zero-DCE) or 512 x 512 (Zero-DCE++), it does not crop; 200 / 100 epochs of 2,422
# images, i.e. ~60k / ~30k steps: the step count stays ``steps``). "short": darknb's CPU fit for
# a few hundred steps: lr 1e-3, random crops of 32 px (Zero-DCE) or 128 px (Zero-DCE++, whose
# curve net runs on the crop at scale_factor 1; crops clip to smaller frames). Zero-DCE++ is fitted
# at scale_factor 1 under both, as its authors trained it (see ``fit_zero_reference``).
FIT_PROTOCOLS = {
    "short": {"zerodce": dict(lr=1e-3, weight_decay=1e-4, grad_clip=0.1, batch_size=8, crop=32),
              "zerodce++": dict(lr=1e-3, weight_decay=1e-4, grad_clip=0.1, batch_size=8, crop=128)},
    "original": {"zerodce": dict(lr=1e-4, weight_decay=1e-4, grad_clip=0.1, batch_size=8,
                                 crop=None, resize=256),
                 "zerodce++": dict(lr=1e-4, weight_decay=1e-4, grad_clip=0.1, batch_size=8,
                                   crop=None, resize=512)},
}


def fit_settings(enhancer: str, protocol: str = "short") -> dict:
    """The ``fit_zero_reference`` keyword arguments of ``protocol`` for ``enhancer`` (see
    ``FIT_PROTOCOLS``)."""
    if protocol not in FIT_PROTOCOLS:
        raise ConfigError(f"enhancer fit protocol must be one of {sorted(FIT_PROTOCOLS)}, got {protocol!r}")
    if enhancer not in FIT_PROTOCOLS[protocol]:
        raise ConfigError(f"enhancer {enhancer!r} cannot be fitted (only zerodce / zerodce++)")
    return dict(FIT_PROTOCOLS[protocol][enhancer])


def fit_zero_reference(enhancer: Enhancer, frames: torch.Tensor, *, steps: int = 200,
                       batch_size: int = 8, crop=32, lr: float = 1e-3,
                       weight_decay: float = 1e-4, grad_clip: float = 0.1, seed: int = 0,
                       resize: int | None = None, fit_scale_factor: int = 1,
                       loss: ZeroReferenceLoss | None = None, progress: bool = False) -> dict:
    """Fit a Zero-DCE / Zero-DCE++ enhancer on unlabelled dark frames ``(N, 3, H, W)`` in [0, 1]
    with the zero-reference losses (no paired or labelled data: Zero-DCE Sec. 3.3).

    As the original lowlight_train.py: Adam with L2 weight decay, gradient-norm clipping 0.1,
    batch 8. We raise the learning rate from 1e-4 to 1e-3 because the default pipeline can only
    afford a few hundred steps on CPU (the original ran 200 epochs of 2,422 images).
    ``crop`` (int or (h, w), clipped to the frame size) takes one random crop per sampled frame;
    None uses whole frames. The default 32x32 crops cost ~7x less than whole 96x72 frames and
    fit as well (200 steps: held-out frames of mean 10/20/35 of 255 come out at ~0.44/0.56/0.65).
    ``resize`` (with ``crop=None``) resizes every sampled frame to ``resize`` x ``resize``
    (bilinear, antialiased, aspect not kept), as the original data loaders do (256 / 512 px).
    ``FIT_PROTOCOLS`` / :func:`fit_settings` hold the original settings and darknb's short fit.

    Zero-DCE++ (an enhancer with a ``scale_factor``) is fitted at ``fit_scale_factor`` (default 1:
    its authors train with ``--scale_factor 1`` on 512 x 512 images and test at 12), i.e. the curve
    net sees the crop at full resolution; its own ``scale_factor`` (what it runs at) is restored
    afterwards. Fitting at 12 on 32-px crops would estimate a 2 x 2 curve grid.
    ``loss`` defaults to ``ZeroReferenceLoss(smoothness=enhancer.smoothness_weight)`` (200 for
    Zero-DCE, 1600 for Zero-DCE++). Deterministic for a given seed and initial weights: batches
    and crops come from a private ``torch.Generator``; the global RNG is not touched.

    Returns the history {"loss", "spatial", "exposure", "color", "smoothness", "brightness"}:
    one float per step (brightness = mean of the enhanced batch), plus "seconds" (wall time)."""
    if not hasattr(enhancer, "forward_with_curves"):
        raise ConfigError(f"fit_zero_reference: {type(enhancer).__name__} has no curves to fit "
                          "(only zerodce / zerodce++ can be fitted)")
    check_input(frames, name="fit_zero_reference(frames)", allow_clip=False)
    if frames.shape[0] == 0:
        raise ConfigError("fit_zero_reference: frames is empty")
    lo, hi = float(frames.min()), float(frames.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ConfigError(f"fit_zero_reference: frames must be finite values in [0, 1], found "
                          f"range [{lo:.4g}, {hi:.4g}]")
    if not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"fit_zero_reference: steps must be an integer >= 0, got {steps!r}")
    check_positive_int(batch_size=batch_size)
    if not lr > 0:
        raise ConfigError(f"fit_zero_reference: lr must be > 0, got {lr!r}")
    N, C, H, W = frames.shape
    crop_hw = _crop_size(crop, H, W)
    if resize is not None and (crop_hw is not None or not isinstance(resize, int) or resize < 16):
        raise ConfigError(f"fit_zero_reference: resize={resize!r} needs crop=None and an int >= 16 "
                          "(the exposure loss uses 16 x 16 patches)")
    check_positive_int(fit_scale_factor=fit_scale_factor)
    loss_fn = loss if loss is not None else ZeroReferenceLoss(
        smoothness=getattr(enhancer, "smoothness_weight", 200.0))

    device = next(enhancer.parameters()).device
    params = list(enhancer.parameters())
    # A frozen teacher enhancer has requires_grad=False; fit anyway and restore the flags after.
    requires_grad = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = {k: [] for k in ("loss", "spatial", "exposure", "color", "smoothness", "brightness")}

    was_training = enhancer.training
    run_scale_factor = getattr(enhancer, "scale_factor", None)
    if run_scale_factor is not None:
        enhancer.scale_factor = fit_scale_factor
    enhancer.train()
    iterator = range(steps)
    if progress:
        iterator = tqdm(iterator, desc=f"fit {type(enhancer).__name__}")
    start = time.perf_counter()
    try:
        for step in iterator:
            idx = torch.randint(0, N, (batch_size,), generator=gen)
            batch = _random_crops(frames, idx, crop_hw, gen).to(device)
            if resize is not None:
                batch = F.interpolate(batch, size=(resize, resize), mode="bilinear",
                                      align_corners=False, antialias=True).clamp(0.0, 1.0)
            enhanced, curves = enhancer.forward_with_curves(batch)
            parts = loss_fn(enhanced, batch, curves)
            if not torch.isfinite(parts["loss"]):
                raise TrainingError(f"fit_zero_reference: non-finite loss at step {step}: "
                                    f"{ {k: float(v.detach()) for k, v in parts.items()} }")
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            for k, v in parts.items():
                history.setdefault(k, []).append(float(v.detach()))
            history["brightness"].append(float(enhanced.detach().mean()))
            if progress:
                iterator.set_postfix(loss=history["loss"][-1], bright=history["brightness"][-1])
    finally:  # also on errors: leave the caller's module as it was (mode, frozen flags, scale, no grads)
        enhancer.train(was_training)
        if run_scale_factor is not None:
            enhancer.scale_factor = run_scale_factor
        for p, flag in zip(params, requires_grad):
            p.requires_grad_(flag)
            # a stale .grad would enter a later clip_grad_norm_ over a model holding this enhancer
            # (measured: a teacher fitted in-process then differed from one resumed in a new process)
            p.grad = None
    history["seconds"] = time.perf_counter() - start
    return history


def _crop_size(crop, H: int, W: int) -> tuple[int, int] | None:
    if crop is None:
        return None
    ch, cw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    if not (isinstance(ch, int) and isinstance(cw, int)) or ch < 1 or cw < 1:
        raise ConfigError(f"fit_zero_reference: crop={crop!r} must be a positive int or (h, w)")
    # A crop larger than the frame means "the whole frame" along that side.
    return min(ch, H), min(cw, W)


def _random_crops(frames: torch.Tensor, idx: torch.Tensor, crop_hw, gen: torch.Generator):
    if crop_hw is None:
        return frames[idx]
    N, C, H, W = frames.shape
    ch, cw = crop_hw
    tops = torch.randint(0, H - ch + 1, (len(idx),), generator=gen).tolist()
    lefts = torch.randint(0, W - cw + 1, (len(idx),), generator=gen).tolist()
    return torch.stack([frames[i, :, t:t + ch, l:l + cw]
                        for i, t, l in zip(idx.tolist(), tops, lefts)])
