"""Low-light enhancers T_e for the teacher T = T_c(T_e(x)), and zero-reference fitting.

- ``ZeroDCE``: DCE-Net of Guo et al., "Zero-Reference Deep Curve Estimation for Low-Light Image
  Enhancement", CVPR 2020 (the paper's T_e). Same layer names as the original
  (Li-Chongyi/Zero-DCE, ``Zero-DCE_code/model.py``) so its ``Epoch99.pth`` loads unchanged.
- ``ZeroDCEPP``: Zero-DCE++ (Li, Guo, Loy, TPAMI 2021; Li-Chongyi/Zero-DCE_extension,
  ``Zero-DCE++/model.py``): depthwise-separable layers, curve estimated on a downscaled copy.
- ``GammaCorrection``: DarkLight's GIC, out = (i/255)^(1/gamma) * 255 on uint8 frames.
- ``IdentityEnhancer``: "none", the ablation without enhancement.
- ``ZeroReferenceLoss`` / ``fit_zero_reference``: the four non-reference losses of Zero-DCE
  (``Myloss.py``) and a small deterministic training loop, so Zero-DCE can be fitted on unlabelled
  dark frames when no pretrained weights may be downloaded.

Every enhancer takes frames ``(N, 3, H, W)`` or clips ``(B, 3, T, H, W)`` with values in [0, 1] and
returns a tensor of the same shape (clips are enhanced frame by frame).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from darknb.errors import CheckpointError, ConfigError, TrainingError
from darknb.files import save_torch
from darknb.registry import Registry

__all__ = [
    "Enhancer", "ZeroDCE", "ZeroDCEPP", "GammaCorrection", "IdentityEnhancer",
    "build_enhancer", "list_enhancers", "register_enhancer", "save_enhancer", "load_enhancer_weights", "ZeroReferenceLoss",
    "fit_zero_reference", "fit_settings", "FIT_PROTOCOLS", "enhancer_signature",
]


# ----------------------------------------------------------------------------------------------
# Shared interface: frames or clips in, same shape out
# ----------------------------------------------------------------------------------------------

class Enhancer(nn.Module):
    """Base class: subclasses implement ``enhance_frames`` on ``(N, 3, H, W)``; ``forward`` also
    accepts clips ``(B, 3, T, H, W)``, folds time into the batch and works in chunks of
    ``chunk_frames`` frames so a 64-frame clip batch does not hold all activations at once."""

    chunk_frames: int = 32

    def enhance_frames(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, name=f"{type(self).__name__}.forward(x)", allow_clip=True)
        if x.dim() == 5:
            B, C, T, H, W = x.shape  # clip batch
            frames = rearrange(x, "b c t h w -> (b t) c h w")
            out = self._enhance_in_chunks(frames)
            return rearrange(out, "(b t) c h w -> b c t h w", b=B)
        return self._enhance_in_chunks(x)

    def _enhance_in_chunks(self, frames: torch.Tensor) -> torch.Tensor:
        N = frames.shape[0]
        if N <= self.chunk_frames:
            return self.enhance_frames(frames)
        return torch.cat([self.enhance_frames(chunk) for chunk in frames.split(self.chunk_frames)])


def _check_input(x: torch.Tensor, *, name: str, allow_clip: bool) -> None:
    """Shape/dtype check; values are NOT range-checked per call (a full pass over every clip)."""
    dims = (4, 5) if allow_clip else (4,)
    if not isinstance(x, torch.Tensor) or x.dim() not in dims or x.shape[1] != 3:
        want = "(N, 3, H, W) or (B, 3, T, H, W)" if allow_clip else "(N, 3, H, W)"
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"{name}: expected a tensor {want} in [0, 1], got {got}")
    if not x.is_floating_point():
        raise ConfigError(f"{name}: expected a float tensor in [0, 1], got dtype {x.dtype} "
                          "(divide uint8 frames by 255 first)")


def _apply_curve(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Light-enhancement curve, Zero-DCE Eq. (1)/(2): LE(x) = x + r * (x^2 - x).

    For x in [0, 1] and r in [-1, 1] (tanh), LE maps [0, 1] onto itself and is monotonic, so
    the original code never clamps; we keep its exact arithmetic for parity."""
    return x + r * (torch.pow(x, 2) - x)


# ----------------------------------------------------------------------------------------------
# Zero-DCE (Guo et al., CVPR 2020)
# ----------------------------------------------------------------------------------------------

class ZeroDCE(Enhancer):
    """DCE-Net: 7 plain 3x3 convs (3->32, 32->32 x3, 64->32 x2, 64->3*iterations), skip
    concatenations [x3,x4], [x2,x5], [x1,x6], ReLU, tanh curve maps r_1..r_n (3 channels each),
    applied iteratively LE_n(x) = LE_{n-1} + r_n (LE_{n-1}^2 - LE_{n-1}) (paper Eq. 2, n = 8).

    Attribute names ``e_conv1..e_conv7`` match the original so its state dict loads unchanged.
    Output is not clamped, as in the original (see ``_apply_curve``)."""

    # Weight of L_tv in the original lowlight_train.py (Zero-DCE): 200.
    smoothness_weight = 200.0

    def __init__(self, *, channels: int = 32, iterations: int = 8):
        super().__init__()
        _check_positive_int(channels=channels, iterations=iterations)
        self.channels, self.iterations = channels, iterations
        f = channels
        self.e_conv1 = nn.Conv2d(3, f, 3, 1, 1, bias=True)
        self.e_conv2 = nn.Conv2d(f, f, 3, 1, 1, bias=True)
        self.e_conv3 = nn.Conv2d(f, f, 3, 1, 1, bias=True)
        self.e_conv4 = nn.Conv2d(f, f, 3, 1, 1, bias=True)
        self.e_conv5 = nn.Conv2d(f * 2, f, 3, 1, 1, bias=True)
        self.e_conv6 = nn.Conv2d(f * 2, f, 3, 1, 1, bias=True)
        self.e_conv7 = nn.Conv2d(f * 2, 3 * iterations, 3, 1, 1, bias=True)
        # The original lowlight_train.py re-initialises conv weights with N(0, 0.02) (biases keep
        # PyTorch's default): small weights start the curves near r = 0, i.e. near identity.
        for conv in self._convs():
            nn.init.normal_(conv.weight, 0.0, 0.02)

    def _convs(self):
        return [getattr(self, f"e_conv{k}") for k in range(1, 8)]

    # DCE-Net's convolutions in another precision / memory layout (the engine sets bf16 +
    # channels-last for bf16 runs on a GPU, where this is most of the teacher's time). The curve
    # iterations stay in the input's precision. Parity against float32 is tested on CPU.
    conv_dtype: torch.dtype | None = None
    channels_last: bool = False

    def set_precision(self, dtype: torch.dtype | None, *, channels_last: bool = False) -> "ZeroDCE":
        """Run the convolutions in ``dtype`` (None: the input's, exact) and, with
        ``channels_last``, in NHWC layout (what tensor-core convolutions want)."""
        self.conv_dtype, self.channels_last = dtype, bool(channels_last)
        return self.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    @classmethod
    def from_checkpoint(cls, path) -> "ZeroDCE":
        """Load the original ``Epoch99.pth`` (or a ``save_enhancer`` file) onto the CPU."""
        model = cls()
        load_enhancer_weights(model, path)
        return model

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        """Curve maps r = tanh(DCE-Net(x)): ``(N, 3*iterations, H, W)`` in [-1, 1]."""
        if self.conv_dtype is not None or self.channels_last:
            dtype = x.dtype
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=self.conv_dtype or dtype,
                                enabled=self.conv_dtype is not None):
                return self._curves(x).to(dtype)
        return self._curves(x)

    def _curves(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.relu(self.e_conv1(x))
        x2 = F.relu(self.e_conv2(x1))
        x3 = F.relu(self.e_conv3(x2))
        x4 = F.relu(self.e_conv4(x3))
        x5 = F.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        return torch.tanh(self.e_conv7(torch.cat([x1, x6], 1)))

    def forward_with_curves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(enhanced (N,3,H,W), curves (N,3*iterations,H,W))``; curves feed L_tv in training."""
        _check_input(x, name="ZeroDCE.forward_with_curves(x)", allow_clip=False)
        r = self.curves(x)
        for r_i in r.split(3, dim=1):  # one 3-channel map per iteration, r_1 first
            x = _apply_curve(x, r_i)
        return x, r

    def enhance_frames(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_curves(x)[0]


# ----------------------------------------------------------------------------------------------
# Zero-DCE++ (Li, Guo, Loy, TPAMI 2021)
# ----------------------------------------------------------------------------------------------

class _DepthwiseSeparable(nn.Module):
    """The original ``CSDN_Tem``: depthwise 3x3 (groups=in_ch) then pointwise 1x1, no activation."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.depth_conv = nn.Conv2d(in_ch, in_ch, kernel_size=3, stride=1, padding=1, groups=in_ch)
        self.point_conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=1, padding=0, groups=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class ZeroDCEPP(Enhancer):
    """Zero-DCE++: the DCE-Net topology with depthwise-separable layers, estimated on a copy
    bilinearly downscaled by ``scale_factor``, producing ONE 3-channel curve map that is upsampled
    (bilinear, align_corners=True as the original ``nn.UpsamplingBilinear2d``) and applied
    ``iterations`` times.

    Sizes not divisible by ``scale_factor``: the original test script crops the image to a
    multiple. We instead downscale to ``(max(1, H // s), max(1, W // s))`` and upsample the curve
    map to exactly ``(H, W)``, so every pixel is enhanced and the shape is kept; where H and W
    divide by s this is the original computation (same sampling grid)."""

    # Weight of L_tv in the original Zero-DCE++ lowlight_train.py: 1600 (Zero-DCE uses 200).
    smoothness_weight = 1600.0

    def __init__(self, *, scale_factor: int = 12, channels: int = 32, iterations: int = 8):
        super().__init__()
        _check_positive_int(scale_factor=scale_factor, channels=channels, iterations=iterations)
        self.scale_factor, self.channels, self.iterations = scale_factor, channels, iterations
        f = channels
        self.e_conv1 = _DepthwiseSeparable(3, f)
        self.e_conv2 = _DepthwiseSeparable(f, f)
        self.e_conv3 = _DepthwiseSeparable(f, f)
        self.e_conv4 = _DepthwiseSeparable(f, f)
        self.e_conv5 = _DepthwiseSeparable(f * 2, f)
        self.e_conv6 = _DepthwiseSeparable(f * 2, f)
        self.e_conv7 = _DepthwiseSeparable(f * 2, 3)
        # Default PyTorch init: the original's weights_init is commented out for Zero-DCE++.

    @classmethod
    def from_checkpoint(cls, path, scale_factor: int = 12) -> "ZeroDCEPP":
        """Load the original Zero-DCE++ ``Epoch99.pth`` (or a ``save_enhancer`` file)."""
        model = cls(scale_factor=scale_factor)
        load_enhancer_weights(model, path)
        return model

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution curve map ``(N, 3, H, W)`` in [-1, 1]."""
        N, C, H, W = x.shape
        s = self.scale_factor
        if s == 1:
            x_down = x
        else:
            x_down = F.interpolate(x, size=(max(1, H // s), max(1, W // s)), mode="bilinear",
                                   align_corners=False)
        x1 = F.relu(self.e_conv1(x_down))
        x2 = F.relu(self.e_conv2(x1))
        x3 = F.relu(self.e_conv3(x2))
        x4 = F.relu(self.e_conv4(x3))
        x5 = F.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        r = torch.tanh(self.e_conv7(torch.cat([x1, x6], 1)))
        if s != 1:
            r = F.interpolate(r, size=(H, W), mode="bilinear", align_corners=True)
        return r

    def forward_with_curves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(enhanced (N,3,H,W), curve map (N,3,H,W))``; the same map is used every iteration."""
        _check_input(x, name="ZeroDCEPP.forward_with_curves(x)", allow_clip=False)
        r = self.curves(x)
        for _ in range(self.iterations):
            x = _apply_curve(x, r)
        return x, r

    def enhance_frames(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_curves(x)[0]


# ----------------------------------------------------------------------------------------------
# Gamma intensity correction (DarkLight) and identity
# ----------------------------------------------------------------------------------------------

class GammaCorrection(Enhancer):
    """GIC as in DarkLight: out = (i/255)^(1/gamma) * 255 on uint8, i.e. x^(1/gamma) on [0, 1].

    Input is clamped to [0, 1] first: resampling (e.g. antialiased resize) can leave values a hair
    below 0, and a fractional power of a negative number is NaN."""

    def __init__(self, gamma: float = 1.8):
        super().__init__()
        if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) \
                or not math.isfinite(gamma) or gamma <= 0:
            raise ConfigError(f"GammaCorrection: gamma must be a finite number > 0, got {gamma!r}")
        self.gamma = float(gamma)

    def enhance_frames(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0).pow(1.0 / self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


class IdentityEnhancer(Enhancer):
    """The "none" enhancer: returns its input (ablation: teacher without enhancement)."""

    def enhance_frames(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, name="IdentityEnhancer.forward(x)", allow_clip=True)
        return x


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

_ENHANCERS = Registry("enhancer")
register_enhancer = _ENHANCERS.register
list_enhancers = _ENHANCERS.names
register_enhancer(ZeroDCE, name="zerodce")
register_enhancer(ZeroDCEPP, name="zerodce++")
register_enhancer(GammaCorrection, name="gamma")
register_enhancer(IdentityEnhancer, name="none")


def build_enhancer(name: str, *, checkpoint=None, **kw) -> Enhancer:
    """Build a registered enhancer by name (:func:`list_enhancers`: "zerodce", "zerodce++",
    "gamma", "none"). ``kw`` go to its constructor; ``checkpoint`` (learned enhancers only; "" or
    None = keep the initial weights) is loaded with ``load_enhancer_weights``."""
    cls = _ENHANCERS.get(name)
    try:
        enhancer = cls(**kw)
    except TypeError as err:  # e.g. build_enhancer("gamma", scale_factor=4)
        raise ConfigError(f"enhancer {name!r}: bad parameters {sorted(kw)}: {err}") from None
    if checkpoint:
        if not _has_weights(enhancer):
            raise ConfigError(f"enhancer {name!r} has no weights, but checkpoint={checkpoint!r} "
                              "was given")
        load_enhancer_weights(enhancer, checkpoint)
    return enhancer


def enhancer_signature(enhancer: Enhancer) -> dict:
    """What an enhanced frame cache was made with: the class, its settings (scale factor, gamma)
    and a sha256 of its weights, so a cache is never read with another enhancer's output."""
    digest = hashlib.sha256()
    for key, value in enhancer.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    settings = {k: getattr(enhancer, k) for k in ("scale_factor", "gamma", "iterations")
                if hasattr(enhancer, k)}
    return {"enhancer": type(enhancer).__name__, **settings, "weights_sha256": digest.hexdigest()}


def _has_weights(enhancer: nn.Module) -> bool:
    return any(True for _ in enhancer.parameters())


def _check_positive_int(**values) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")


# ----------------------------------------------------------------------------------------------
# Checkpoints: the ORIGINAL state-dict key format, written atomically, loaded strictly
# ----------------------------------------------------------------------------------------------

def save_enhancer(enhancer: Enhancer, path) -> Path:
    """Write the enhancer's state dict (original key format, CPU tensors) to ``path`` atomically:
    a temporary file in the same folder is renamed over ``path``, so a crash mid-write never
    leaves a truncated checkpoint where ``from_checkpoint`` would find it."""
    if not _has_weights(enhancer):
        raise ConfigError(f"save_enhancer: {type(enhancer).__name__} has no weights to save")
    state = {k: v.detach().to("cpu").clone() for k, v in enhancer.state_dict().items()}
    return save_torch(state, path)


def load_enhancer_weights(enhancer: Enhancer, path) -> Enhancer:
    """Load a state dict saved by the original code or ``save_enhancer`` into ``enhancer``.

    Legacy (pickle) and zip formats both load with ``weights_only=True`` (no arbitrary code runs)
    and ``map_location="cpu"`` (the originals were saved from cuda:0). A missing, truncated or
    corrupt file, non-tensor content, missing/unexpected keys, wrong shapes or non-finite values
    raise ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"enhancer checkpoint {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, not a torch file at all ...
        raise CheckpointError(f"enhancer checkpoint {path}: cannot be read (truncated or corrupt?):"
                              f" {type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"enhancer checkpoint {path}: expected a state dict of tensors, "
                              f"got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}

    expected = enhancer.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"enhancer checkpoint {path}: expected {len(expected)} tensors "
            f"{_describe_keys(expected)} for {type(enhancer).__name__}, found {len(state)}; "
            f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}, "
            f"unexpected {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
    wrong = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(state[k].shape)}"
             for k in expected if state[k].shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"enhancer checkpoint {path}: wrong tensor shapes for "
                              f"{type(enhancer).__name__} ({'; '.join(wrong[:4])})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"enhancer checkpoint {path}: non-finite values in {bad}")
    # Flush subnormal weights to 0. Weight decay left 24% of the original Zero-DCE weights (19,266
    # of 79,416; 685 in Zero-DCE++) below float32's smallest normal number (1.2e-38), and x86
    # CPUs compute with subnormals ~50x slower (3 s instead of 0.07 s for 8 frames of 96x72).
    # Each changes by < 1.2e-38, far below float32 resolution of the outputs.
    state = {k: _flush_subnormal(v) for k, v in state.items()}
    enhancer.load_state_dict(state, strict=True)
    return enhancer


def _flush_subnormal(t: torch.Tensor) -> torch.Tensor:
    if not t.is_floating_point():
        return t
    return torch.where(t.abs() < torch.finfo(t.dtype).tiny, torch.zeros_like(t), t)


def _describe_keys(state: dict) -> str:
    keys = list(state)
    return f"{keys[0]}..{keys[-1]}" if len(keys) > 1 else str(keys)


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
        _check_positive_int(patch=patch)
        self.weights = {"spatial": spatial, "exposure": exposure, "color": color,
                        "smoothness": smoothness}
        self.exposure_level, self.patch = float(exposure_level), patch

    def forward(self, enhanced: torch.Tensor, original: torch.Tensor,
                curves: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_input(enhanced, name="ZeroReferenceLoss(enhanced)", allow_clip=False)
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
    _check_input(frames, name="fit_zero_reference(frames)", allow_clip=False)
    if frames.shape[0] == 0:
        raise ConfigError("fit_zero_reference: frames is empty")
    lo, hi = float(frames.min()), float(frames.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ConfigError(f"fit_zero_reference: frames must be finite values in [0, 1], found "
                          f"range [{lo:.4g}, {hi:.4g}]")
    if not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"fit_zero_reference: steps must be an integer >= 0, got {steps!r}")
    _check_positive_int(batch_size=batch_size)
    if not lr > 0:
        raise ConfigError(f"fit_zero_reference: lr must be > 0, got {lr!r}")
    N, C, H, W = frames.shape
    crop_hw = _crop_size(crop, H, W)
    if resize is not None and (crop_hw is not None or not isinstance(resize, int) or resize < 16):
        raise ConfigError(f"fit_zero_reference: resize={resize!r} needs crop=None and an int >= 16 "
                          "(the exposure loss uses 16 x 16 patches)")
    _check_positive_int(fit_scale_factor=fit_scale_factor)
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
