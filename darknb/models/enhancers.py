"""Low-light enhancers T_e for the teacher T = T_c(T_e(x)), and zero-reference fitting.

- ``ZeroDCE``: DCE-Net of Guo et al., "Zero-Reference Deep Curve Estimation for Low-Light Image
  Enhancement", CVPR 2020 (the paper's T_e). Same layer names as the original
  (Li-Chongyi/Zero-DCE, ``Zero-DCE_code/model.py``) so its ``Epoch99.pth`` loads unchanged.
- ``ZeroDCEPP``: Zero-DCE++ (Li, Guo, Loy, TPAMI 2021; Li-Chongyi/Zero-DCE_extension,
  ``Zero-DCE++/model.py``): depthwise-separable layers, curve estimated on a downscaled copy.
- ``GammaCorrection``: DarkLight's GIC, out = (i/255)^(1/gamma) * 255 on uint8 frames.
- ``IdentityEnhancer``: "none", the ablation without enhancement.
- Zero-reference fitting lives in :mod:`darknb.models.zero_reference`.

Every enhancer takes frames ``(N, 3, H, W)`` or clips ``(B, 3, T, H, W)`` with values in [0, 1] and
returns a tensor of the same shape (clips are enhanced frame by frame).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from darknb.errors import CheckpointError, ConfigError
from darknb.files import load_torch, save_torch
from darknb.registry import Registry

__all__ = [
    "Enhancer", "ZeroDCE", "ZeroDCEPP", "GammaCorrection", "IdentityEnhancer",
    "build_enhancer", "list_enhancers", "register_enhancer", "save_enhancer", "load_enhancer_weights",
    "enhancer_signature", "enhance_uint8",
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
        check_input(x, name=f"{type(self).__name__}.forward(x)", allow_clip=True)
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


def check_input(x: torch.Tensor, *, name: str, allow_clip: bool) -> None:
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
        check_positive_int(channels=channels, iterations=iterations)
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
        check_input(x, name="ZeroDCE.forward_with_curves(x)", allow_clip=False)
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
        check_positive_int(scale_factor=scale_factor, channels=channels, iterations=iterations)
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
        check_input(x, name="ZeroDCEPP.forward_with_curves(x)", allow_clip=False)
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
        check_input(x, name="IdentityEnhancer.forward(x)", allow_clip=True)
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


def enhance_uint8(enhancer: nn.Module | None, frames, *, device=None, chunk: int | None = 16,
                  as_uint8: bool = True):
    """``enhancer`` (frozen) on native-resolution uint8 frames ``(N, H, W, 3)``, ``chunk`` frames at
    a time on ``device`` (default: the enhancer's). ``as_uint8``: back to uint8, rounded (as if the
    enhanced video were saved: the teacher's enhanced frame cache); else float32 in [0, 1] (the
    report figures). ``enhancer=None`` returns the frames scaled. A non-finite output is an error."""
    import numpy as np

    if device is None:
        device = next((p.device for p in (enhancer.parameters() if enhancer is not None else ())),
                      torch.device("cpu"))
    frames = torch.from_numpy(np.ascontiguousarray(frames))
    out = []
    for part in frames.split(chunk or max(1, len(frames))):
        x = part.permute(0, 3, 1, 2).float().div_(255.0).to(device)
        if enhancer is not None:
            with torch.no_grad():
                x = enhancer(x).clamp_(0.0, 1.0)
        if not torch.isfinite(x).all():
            raise ConfigError(f"enhancer {type(enhancer).__name__} produced non-finite values")
        if as_uint8:
            x = x.mul_(255.0).round_().to("cpu", torch.uint8)
        out.append(x.to("cpu").permute(0, 2, 3, 1))
    return torch.cat(out).contiguous().numpy()


def _has_weights(enhancer: nn.Module) -> bool:
    return any(True for _ in enhancer.parameters())


def check_positive_int(**values) -> None:
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
    state = load_torch(path, what="enhancer checkpoint")  # truncated zip, bad pickle, not torch ...
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
