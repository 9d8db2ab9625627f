"""Video classifiers: a timm ViT per frame + the BERT temporal head, teacher and student.

Teacher T = T_c(T_e(x)) (enhancer then classifier); the student is the classifier alone on raw frames
(DL-KDD, PAPER.md "Architecture"). Models take clips ``(B, 3, T, H, W)`` in [0, 1] and normalise
internally with the backbone's mean/std, so an enhancer can sit in front of the classifier.
DarkLight's two-stream models also take ``(B, 6, T, H, W)``: the clip, then its gamma view made
by the loader (darknb.data: the lookup table on native frames before the resize, as DarkLight).

Which training crop each model gets (``RunConfig.crop="auto"``, darknb.config): the R(2+1)D models
at the paper's size (``r2plus1d_bert``, ``r2plus1d_34_bert``, ``two_stream_r2plus1d_34_bert``)
DarkLight's / LateTemporalModeling3DCNN's ``MultiScaleCrop`` (13 fixed positions, scales 1, .875,
.75, .66); the ViT models and the CPU demo's models scale jitter (the same scales at a random
position). Every model is tested on the centre crop.

Discovery follows timm: ``list_models()`` and ``create_model(name, num_classes, **overrides)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchvision.models.video import r2plus1d_18
from torchvision.models.video.resnet import (
    BasicBlock,
    Conv2Plus1D,
    R2Plus1dStem,
    VideoResNet,
)

from darknb.errors import CheckpointError, ConfigError
from darknb.files import load_torch
from darknb.registry import Registry

# ----------------------------------------------------------------------------------------------
# BERT temporal head (Kalfaoglu et al. 2020, "Late Temporal Modeling in 3D CNN Architectures with
# BERT for Action Recognition"; the BERT5 module of their code, LateTemporalModeling3DCNN; DarkLight's
# ``self_attention`` is the same module with mask_prob=1, i.e. no key masking)
# ----------------------------------------------------------------------------------------------


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"BERT head: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, L, D); key_mask: (B, L) bool, True = this key may be attended to
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class _Block(nn.Module):
    """Pre-norm transformer block: x + drop(attn(norm(x))); x + drop(ffn(norm(x))); then drop(x),
    as BERT5's ``TransformerBlock`` (its ``forward`` ends with ``return self.dropout(x)``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _SelfAttention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_mask):
        x = x + self.drop(self.attn(self.norm1(x), key_mask))
        x = x + self.drop(self.ffn(self.norm2(x)))
        return self.drop(x)


class BERTTemporalHead(nn.Module):
    """Temporal BERT over per-frame features ``(B, T, D)`` → logits ``(B, num_classes)``.

    A learned CLS token is prepended, learned positional embeddings (std 0.02) are added, then
    ``depth`` pre-norm blocks. During training every frame token is kept as an attention *key* with
    probability ``mask_keep_prob`` (the CLS token always), as BERT5's Bernoulli key mask. The
    classifier is Dropout(``head_dropout``) + Linear on the CLS output.

    Variants: ``mask_keep_prob=0.8`` is LateTemporalModeling3DCNN's ``BERT5`` (the R(2+1)D-BERT and
    the DL-KDD models); ``mask_keep_prob=1.0`` is DarkLight's ``self_attention`` (``mask_prob=1``:
    it never masks). tests/test_bert5_parity.py transcribes BERT5's forward (embedding, masked
    attention, sublayer connections, the block's final dropout) and checks equal outputs with
    these weights. Remaining deliberate differences, kept because they are torch's standard
    layers (and fused kernels): exact GELU (BERT5: the tanh approximation) and ``nn.LayerNorm``,
    i.e. ``(x - mean) / sqrt(var + 1e-5)`` with the biased variance (BERT5:
    ``(x - mean) / (std + 1e-6)`` with the unbiased std). Both change outputs by well under 1 %
    at width 512; the parity test swaps in BERT5's forms to show the rest is equal, and bounds
    the difference with them. BERT5 initialises the CLS token and positions with N(0, 0.02) as
    here, and its attention dropout is always 0.1 (here ``dropout``, 0.1 by default).

    The classifier ``fc``: ``fc_init="xavier"`` initialises it as both peers do
    (LateTemporalModeling3DCNN's ``rgb_r2plus1d_64f_34_bert10`` and DarkLight's ``dark_light``:
    ``torch.nn.init.xavier_uniform_(self.fc_action.weight); self.fc_action.bias.data.zero_()``);
    ``"torch"`` keeps ``nn.Linear``'s default (kaiming-uniform weight, uniform bias), the CPU
    demo's models' (their results were measured with it, see ``_TINY_VIT``).
    """

    def __init__(self, dim: int, num_classes: int, *,
                 num_frames: int, depth: int = 1, num_heads: int = 8, mlp_ratio: float = 4.0,
                 dropout: float = 0.1, mask_keep_prob: float = 0.8, head_dropout: float = 0.8,
                 fc_init: str = "xavier"):
        super().__init__()
        if not 0.0 < mask_keep_prob <= 1.0:
            raise ConfigError(f"BERT head: mask_keep_prob must be in (0, 1], got {mask_keep_prob}")
        if fc_init not in ("xavier", "torch"):
            raise ConfigError(f"BERT head: fc_init must be 'xavier' or 'torch', got {fc_init!r}")
        self.fc_init = fc_init
        self.num_frames = num_frames
        self.mask_keep_prob = mask_keep_prob
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_frames + 1, dim))
        self.embed_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            _Block(dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.head_drop = nn.Dropout(head_dropout)
        self.fc = nn.Linear(dim, num_classes)
        if fc_init == "xavier":  # BERT5's and DarkLight's classifier
            nn.init.xavier_uniform_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape  # per-frame features
        if T > self.num_frames:
            raise ConfigError(
                f"BERT head: clip has {T} frames but the head was built for num_frames={self.num_frames}")
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1) + self.pos_embed[:, : T + 1]
        x = self.embed_drop(x)
        key_mask = None
        if self.training and self.mask_keep_prob < 1.0:
            keep = torch.rand(B, T, device=x.device) < self.mask_keep_prob
            key_mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), keep], 1)
        for block in self.blocks:
            x = block(x, key_mask)
        return x[:, 0]  # CLS output (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head_drop(self.forward_features(x)))


# ----------------------------------------------------------------------------------------------
# ViT + BERT
# ----------------------------------------------------------------------------------------------


def pretrained_stats_file(path: str | Path) -> Path:
    """The sidecar of a local backbone file (``x.pth`` -> ``x.json``): the input ``mean`` / ``std``
    the weights were trained with, and what they were trained on. darknb's own pre-training writes
    it; for other files it is optional (then timm's statistics for the architecture apply)."""
    return Path(path).with_suffix(".json")


def _timm_backbone(name: str, *, img_size: int, pretrained: str | bool, **kwargs) -> nn.Module:
    """A headless timm model. ``pretrained``: False/"" (scratch), True/"hub", or a local file
    (with an optional :func:`pretrained_stats_file` giving its input statistics)."""
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, **kwargs)
    if pretrained is True or pretrained == "hub":
        return timm.create_model(name, pretrained=True, num_classes=0, img_size=img_size, **kwargs)
    path = Path(pretrained)
    if not path.is_file():
        raise CheckpointError(f"pretrained backbone file {str(path)!r} does not exist")
    # timm loads the file through the model's own filter (resampling position embeddings to
    # img_size, dropping the classifier), exactly as it does for hub weights.
    overlay = dict(file=str(path))
    stats = pretrained_stats_file(path)
    if stats.is_file():
        info = json.loads(stats.read_text())
        overlay.update({k: tuple(float(v) for v in info[k]) for k in ("mean", "std") if k in info})
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, img_size=img_size,
                                 pretrained_cfg_overlay=overlay, **kwargs)
    except (RuntimeError, KeyError, ValueError, EOFError) as err:
        raise CheckpointError(f"cannot load pretrained backbone {str(path)!r} into {name}: {err}") from err


def _video_classifier_state(pretrained) -> dict | None:
    """The state dict of a local file holding a whole darknb video classifier (keys
    ``backbone.*``, ``head.*``, as :func:`darknb.pretrain.pretrain_backbone` writes), else None
    (hub weights, or a plain backbone file that timm loads)."""
    if not isinstance(pretrained, (str, Path)) or not pretrained or pretrained == "hub":
        return None
    path = Path(pretrained)
    if not path.is_file():
        raise CheckpointError(f"pretrained backbone file {str(path)!r} does not exist")
    try:
        state = load_torch(path, what="pretrained backbone file")
    except CheckpointError:  # not ours to judge here: timm's loader names the problem
        return None
    if isinstance(state, dict) and any(str(k).startswith("backbone.") for k in state) \
            and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    return None


# How a ViT model normalises its input: "backbone" = the statistics its pre-trained weights were
# trained with; "dataset" = the per-channel statistics of the arm's own training inputs (set by
# the engine, darknb.engine.build.set_input_statistics, saved with the weights); "clip" = every
# clip standardised by its own mean and std (a control).
INPUT_NORMS = ("backbone", "dataset", "clip")


def _standardise_clip(x: torch.Tensor) -> torch.Tensor:
    """Standardise each clip ``(B, C, T, H, W)`` by its own mean and std (see :class:`ViTBERT`)."""
    mu = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    return (x - mu) / x.std(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-3)


class ViTBERT(nn.Module):
    """A timm ViT applied to every frame, then :class:`BERTTemporalHead` over time.

    ``input_norm="backbone"`` normalises with fixed per-channel statistics: those the backbone's
    weights were trained with (timm's for hub weights, the pre-training set's for darknb's own
    pre-trained file, see :func:`pretrained_stats_file`), as ImageNet statistics are for ImageNet
    weights. They are buffers saved with the model's weights, so a reloaded model normalises as
    the trained one did. ``"clip"`` standardises every clip by its own mean/std instead (a control:
    it makes an enhanced clip almost rank-identical to the raw one, measured Spearman 0.994 after
    Zero-DCE, so enhancement can add nothing; earlier it was needed to train from scratch, where a
    ViT on dark clips saw an almost constant input after ImageNet-style normalisation).

    Training crop (``crop="auto"``): scale jitter (MultiScaleCrop's scales at random positions);
    the classifier is initialised xavier-uniform, bias 0, as BERT5's (``fc_init``; the CPU
    preset keeps torch's default, see ``_TINY_VIT``).
    """

    def __init__(self, num_classes: int, *,
                 # backbone
                 backbone: str = "vit_base_patch16_224", img_size: int = 112,
                 pretrained: str | bool = "", backbone_kwargs: dict | None = None,
                 input_norm: str = "backbone",
                 # temporal head
                 num_frames: int = 64, bert_depth: int = 1, bert_heads: int = 8,
                 dropout: float = 0.1, mask_keep_prob: float = 0.8, head_dropout: float = 0.8,
                 fc_init: str = "xavier"):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ConfigError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self.input_norm = input_norm
        video_state = _video_classifier_state(pretrained)  # darknb's own pre-trained file?
        self.backbone = _timm_backbone(backbone, img_size=img_size,
                                       pretrained="" if video_state is not None else pretrained,
                                       **(backbone_kwargs or {}))
        self.img_size = img_size
        cfg = getattr(self.backbone, "pretrained_cfg", {}) or {}
        mean, std = cfg.get("mean", (0.5, 0.5, 0.5)), cfg.get("std", (0.5, 0.5, 0.5))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1))
        self.head = BERTTemporalHead(
            self.backbone.num_features, num_classes, num_frames=num_frames, depth=bert_depth,
            num_heads=bert_heads, dropout=dropout, mask_keep_prob=mask_keep_prob,
            head_dropout=head_dropout, fc_init=fc_init)
        if video_state is not None:
            self._load_pretrained_video(video_state, str(pretrained))

    def _load_pretrained_video(self, state: dict, path: str) -> None:
        """Load a pre-trained video classifier of this architecture (darknb's pre-training: per-frame
        ViT, temporal BERT blocks, input statistics) except its classifier ``head.fc``, which is
        for other classes. Position embeddings are resampled by timm's own filter."""
        from timm.models.vision_transformer import checkpoint_filter_fn

        backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        head = {k.removeprefix("head."): v for k, v in state.items()
                if k.startswith("head.") and not k.startswith("head.fc.")}
        pos, want = head.get("pos_embed"), self.head.pos_embed.shape[1] - 1
        if pos is not None and pos.shape[1] - 1 != want and want % (pos.shape[1] - 1) == 0:
            # several streams of the same frames (two-stream: raw, then gamma): each stream's tokens
            # get the pre-trained frame positions; the CLS position stays first
            repeats = want // (pos.shape[1] - 1)
            head["pos_embed"] = torch.cat([pos[:, :1], pos[:, 1:].repeat(1, repeats, 1)], dim=1)
        try:
            self.backbone.load_state_dict(checkpoint_filter_fn(backbone, self.backbone))
            missing, unexpected = self.head.load_state_dict(head, strict=False)
        except RuntimeError as err:
            raise CheckpointError(f"pretrained video model {path!r} does not fit this "
                                  f"architecture: {err}") from err
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise CheckpointError(f"pretrained video model {path!r}: temporal head keys missing "
                                  f"{missing[:6]}, unexpected {unexpected[:6]}")
        with torch.no_grad():
            for name in ("mean", "std"):
                if name in state:
                    getattr(self, name).copy_(state[name].view_as(getattr(self, name)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape  # clip batch in [0, 1]
        if (H, W) != (self.img_size, self.img_size):
            raise ConfigError(f"ViTBERT built for {self.img_size}x{self.img_size} frames, got {H}x{W}")
        x = _standardise_clip(x) if self.input_norm == "clip" else (x - self.mean) / self.std
        feats = self.backbone(rearrange(x, "b c t h w -> (b t) c h w"))  # (B*T, D) pooled
        return rearrange(feats, "(b t) d -> b t d", b=B)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits of per-frame features ``(B, T, D)``; ``pre_logits``: the BERT CLS output the
        classifier reads (timm's convention), e.g. for a linear probe."""
        return self.head.forward_features(feats) if pre_logits else self.head(feats)

    def get_classifier(self) -> nn.Linear:
        """The last layer (timm's name): the linear probe of LP-FT initialises it."""
        return self.head.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------------------------


class Teacher(nn.Module):
    """T(x) = T_c(T_e(x)): enhance the raw clip, then classify. The enhancer is frozen by default
    (kept in eval mode and without gradients) since Zero-DCE is fitted separately, zero-reference."""

    def __init__(self, enhancer: nn.Module, classifier: nn.Module, *, train_enhancer: bool = False):
        super().__init__()
        self.enhancer = enhancer
        self.classifier = classifier
        self.train_enhancer = train_enhancer
        if not train_enhancer:
            self.enhancer.requires_grad_(False)
            self.enhancer.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.train_enhancer:
            self.enhancer.eval()
        return self

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        if self.train_enhancer:
            return self.enhancer(x)
        with torch.no_grad():
            return self.enhancer(x).clamp(0.0, 1.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.forward_features(self.enhance(x))

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.classifier.forward_head(feats, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Linear:
        return self.classifier.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.enhance(x))


class NativeResolutionTeacher(nn.Module):
    """The teacher as the paper runs it: Zero-DCE on native-resolution frames, then resize to the
    classifier's input (enhancement before resizing), then the classifier."""

    def __init__(self, enhancer: nn.Module, classifier: nn.Module, size: int):
        super().__init__()
        self.enhancer, self.classifier, self.size = enhancer, classifier, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape  # native-resolution clip
        enhanced = self.enhancer(x).clamp(0, 1)
        frames = rearrange(enhanced, "b c t h w -> (b t) c h w")
        small = F.interpolate(frames, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.classifier(rearrange(small, "(b t) c h w -> b c t h w", b=B))


# ----------------------------------------------------------------------------------------------
# Registry (timm style)
# ----------------------------------------------------------------------------------------------

_MODELS = Registry("model")
register_model = _MODELS.register
list_models = _MODELS.names


def create_model(name: str, num_classes: int, **overrides) -> nn.Module:
    """Build a registered video classifier; ``overrides`` replace the preset's keyword arguments."""
    builder = _MODELS.get(name)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return builder(num_classes, **overrides)


@register_model
def vit_bert(num_classes: int, **overrides) -> ViTBERT:
    """The paper preset: ViT-B/16 at 112 px (7x7 patches), 64 frames, BERT 1 layer 8 heads;
    scale-jitter training crops, BERT5's classifier init (xavier-uniform, bias 0)."""
    kw = dict(backbone="vit_base_patch16_224", img_size=112, num_frames=64)
    return ViTBERT(num_classes, **{**kw, **overrides})


# The CPU-sized ViT: 3 blocks, width 64, 8x8 patches at 32 px, shared by vit_bert_tiny and
# two_stream_bert_tiny. Measured on the synthetic miniature (pre-training on the well-lit set):
# with the paper's head settings (CLS pooling, BERT key mask keep 0.8, dropout 0.1) it stayed at
# chance; average-pooled frame features, no key mask and no BERT dropout learned. Head dropout
# 0.1: the paper's 0.8 (on 512-768-d features) starves a 64-d one.
# Its classifier keeps torch's default init (fc_init="torch"), not BERT5's xavier: a different
# initial head gives different demo results, and the demo's recipe is being re-tuned on this model.
_TINY_VIT = dict(backbone="vit_tiny_patch16_224", img_size=32, num_frames=8, mask_keep_prob=1.0,
                 dropout=0.0, head_dropout=0.1, fc_init="torch",
                 backbone_kwargs=dict(patch_size=8, embed_dim=64, depth=3, num_heads=4,
                                      global_pool="avg"))


@register_model
def vit_bert_tiny(num_classes: int, **overrides) -> ViTBERT:
    """A CPU-sized ViT + the same BERT head (``_TINY_VIT``)."""
    return ViTBERT(num_classes, **{**_TINY_VIT, **overrides})


# ----------------------------------------------------------------------------------------------
# Baselines for the comparison table (trained on the same data as the teacher and student)
# ----------------------------------------------------------------------------------------------


def r2plus1d_34_backbone() -> VideoResNet:
    """R(2+1)D-34 exactly as moabitcoin/ig65m-pytorch's ``r2plus1d_34`` builds it (the network
    DarkLight and LateTemporalModeling3DCNN import with IG65M weights): torchvision's
    ``VideoResNet(BasicBlock, [Conv2Plus1D] * 4, layers [3, 4, 6, 3], R2Plus1dStem)`` with

    - the Caffe2 mid-planes of the first block's second conv in layers 2-4 (288, 576, 1152, not
      torchvision's 230, 460, 921; VMZ issue 89, torchvision issue 1265), without which the IG65M
      weights do not fit, and
    - BatchNorm ``eps=1e-3, momentum=0.9`` as set there (ig65m-pytorch's "exact Caffe2 momentum").

    The classifier ``fc`` is kept (512 -> 400) only so the key layout is torchvision's; the BERT
    models use ``stem`` and ``layer1..4``."""
    net = VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[3, 4, 6, 3],
                      stem=R2Plus1dStem)
    net.layer2[0].conv2[0] = Conv2Plus1D(128, 128, 288)
    net.layer3[0].conv2[0] = Conv2Plus1D(256, 256, 576)
    net.layer4[0].conv2[0] = Conv2Plus1D(512, 512, 1152)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.eps, m.momentum = 1e-3, 0.9
    return net


# ig65m-pytorch's released classifiers, by size (its README / models.py): what a file was trained on
IG65M_HEADS = {359: "IG65M, 32-frame clips", 487: "IG65M, 8-frame clips",
               400: "IG65M, fine-tuned on Kinetics-400"}
_RESNET_PARTS = ("stem", "layer1", "layer2", "layer3", "layer4")  # = backbone.0 .. backbone.4


def load_ig65m_backbone(backbone: nn.Sequential, path: str | Path) -> dict:
    """Load an ig65m-pytorch converted checkpoint (e.g. ``r2plus1d_34_clip32_ig65m_from_scratch-
    449a7af9.pth``, a torchvision ``VideoResNet`` state dict) into ``backbone`` =
    ``Sequential(stem, layer1, ..., layer4)`` of :func:`r2plus1d_34_backbone`, dropping its
    classifier (``fc.*``, 359 / 487 / 400 classes). Refuses, naming the file and the keys, any
    file whose other keys or shapes differ. Returns ``{"file", "classes", "source"}``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"IG65M checkpoint {str(path)!r} does not exist (download it from "
                              "moabitcoin/ig65m-pytorch's releases; darknb never downloads)")
    state = load_torch(path, what="IG65M checkpoint")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"IG65M checkpoint {str(path)!r} is not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    # our key -> the checkpoint's (torchvision) key: backbone.0 is ``stem``, backbone.k ``layer{k}``
    ours = backbone.state_dict()
    theirs = {k: "{}.{}".format(_RESNET_PARTS[int(k.split(".", 1)[0])], k.split(".", 1)[1]) for k in ours}
    expected = set(theirs.values())
    # num_batches_tracked only counts steps (BatchNorm uses momentum): tolerated when absent
    missing = sorted(k for k in expected - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in set(state) - expected if not k.startswith("fc."))
    if missing or unexpected:
        raise CheckpointError(
            f"IG65M checkpoint {str(path)!r} does not fit R(2+1)D-34 (ig65m-pytorch's r2plus1d_34 "
            f"layout): missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''} "
            f"({len(missing)}), unexpected keys {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)})")
    wrong = [f"{theirs[k]}: file {tuple(state[theirs[k]].shape)}, model {tuple(v.shape)}"
             for k, v in ours.items() if theirs[k] in state and state[theirs[k]].shape != v.shape]
    if wrong:
        raise CheckpointError(f"IG65M checkpoint {str(path)!r}: wrong shapes for R(2+1)D-34 "
                              f"({'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''})")
    backbone.load_state_dict({k: state[t] for k, t in theirs.items() if t in state}, strict=False)
    classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else None
    return {"file": path.name, "classes": classes,
            "source": IG65M_HEADS.get(classes, f"unknown ({classes}-class head)")}


# Input statistics the R(2+1)D models normalise with. LateTemporalModeling3DCNN's training script
# (two_stream_bert2.py) uses torchvision's Kinetics-400 video statistics for every "r2plus1d" arch;
# DarkLight's (darklight.py) ImageNet's for both of its streams, with the same IG65M weights.
INPUT_STATS = {"kinetics": ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),
               "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


class R2Plus1DBERT(nn.Module):
    """R(2+1)D (Tran et al. 2018) + the BERT head over its temporal feature map: the raw-video
    R(2+1)D-BERT of Kalfaoglu et al. 2020 (``rgb_r2plus1d_64f_34_bert10``: BERT5, key mask keep
    0.8, Dropout(0.8) + Linear on CLS, the Linear xavier-uniform with bias 0), the paper's
    "R(2+1)D + BERT (DarkLight setting)" row.

    ``depth=34``: :func:`r2plus1d_34_backbone`, ``pretrained`` = the local path of an ig65m-pytorch
    checkpoint (:func:`load_ig65m_backbone`; the paper's row uses IG65M). ``depth=18``: torchvision's
    ``r2plus1d_18``, from scratch only. The backbone downsamples time by 8 and space by 16; the
    spatial mean (LateTemporalModeling's AvgPool3d((1, 7, 7)) at 112 px) of each of the T/8 steps
    is one BERT token (at least 1).

    Preprocessing as LateTemporalModeling3DCNN's: ``input_norm="backbone"`` (= ``"kinetics"``)
    normalises with Kinetics-400 statistics (:data:`INPUT_STATS`), and with ``crop="auto"`` it
    trains on MultiScaleCrop's 13 fixed positions (darknb.data.sampling)."""

    NORM = "kinetics"  # what input_norm="backbone" means for this class

    def __init__(self, num_classes: int, *, depth: int = 18, num_frames: int = 64,
                 input_norm: str = "backbone", pretrained: str | bool = "", bert_heads: int = 8,
                 head_dropout: float = 0.8, mask_keep_prob: float = 0.8, num_tokens: int | None = None,
                 fc_init: str = "xavier"):
        super().__init__()
        if depth not in (18, 34):
            raise ConfigError(f"R(2+1)D depth must be 18 or 34, got {depth!r}")
        if pretrained and depth == 18:
            raise ConfigError("r2plus1d_bert (R(2+1)D-18): pretrained weights are not wired in; use "
                              "r2plus1d_34_bert with an ig65m-pytorch checkpoint file, or train from scratch")
        if pretrained is True or pretrained == "hub":
            raise ConfigError("R(2+1)D-34: pretrained must be the local path of an ig65m-pytorch "
                              "checkpoint (e.g. r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth); "
                              "darknb downloads nothing")
        input_norm = self.NORM if input_norm == "backbone" else input_norm  # its own statistics
        if input_norm not in (*INPUT_STATS, "clip"):
            raise ConfigError(f"input_norm must be 'backbone' (= {self.NORM!r}), one of "
                              f"{sorted(INPUT_STATS)} or 'clip' (the ViT models also take 'dataset'), got {input_norm!r}")
        net = r2plus1d_18(weights=None) if depth == 18 else r2plus1d_34_backbone()
        self.depth = depth
        self.backbone = nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
        self.pretrained_info = load_ig65m_backbone(self.backbone, pretrained) if pretrained else None
        self.input_norm = input_norm
        mean, std = INPUT_STATS[input_norm if input_norm != "clip" else self.NORM]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1), persistent=False)
        self.head = BERTTemporalHead(512, num_classes, num_frames=num_tokens or max(1, num_frames // 8),
                                     num_heads=bert_heads, head_dropout=head_dropout,
                                     mask_keep_prob=mask_keep_prob, fc_init=fc_init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = _standardise_clip(x) if self.input_norm == "clip" else (x - self.mean) / self.std
        fmap = self.backbone(x)  # (B, 512, T/8, H/16, W/16)
        return rearrange(fmap.mean(dim=(3, 4)), "b d t -> b t d")

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head.forward_features(feats) if pre_logits else self.head(feats)

    def get_classifier(self) -> nn.Linear:
        return self.head.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _two_views(x: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-stream model's input -> (raw clip, gamma view), each ``(B, 3, T, H, W)``.

    ``(B, 6, ...)``: the loader's two views, the gamma view made as DarkLight makes it (its uint8
    lookup table on the native frames, before the resize: darknb.data.sampling.with_light_view);
    what training, evaluation and ``predict`` pass to ``two_stream_r2plus1d_34_bert`` and
    ``two_stream_bert``. ``(B, 3, ...)``: one view; the gamma view is made here from the resized
    clip, ``x ** (1 / gamma)`` (darknb's earlier approximation: the CPU demo's
    ``two_stream_bert_tiny``, and cost counting)."""
    if x.shape[1] == 6:
        return x[:, :3], x[:, 3:]
    if x.shape[1] != 3:
        raise ConfigError(f"two-stream model: expected 3 (one view) or 6 (clip + gamma view) "
                          f"channels, got {x.shape[1]}")
    return x, x.clamp(0.0, 1.0) ** (1.0 / gamma)


class TwoStreamR2Plus1DBERT(R2Plus1DBERT):
    """DarkLight's dual-light network as its code builds it (Chen et al. 2021, Darklight-Pytorch
    ``dark_light`` with ``both_flow='True'``): ONE R(2+1)D-34 (IG65M) applied to the raw clip and
    to its gamma-corrected view (GIC, gamma 1.8), the 2 x T/8 tokens of both concatenated into
    DarkLight's ``self_attention`` (BERT5 with ``mask_prob=1``: no key masking), Dropout(0.8) +
    Linear on CLS (xavier-uniform, bias 0). Inference runs the backbone twice.

    Preprocessing as DarkLight's ``darklight.py``: both streams normalised with ImageNet statistics
    (``input_norm="backbone"`` = ``"imagenet"``), the gamma view from the loader (6 channels, see
    :func:`_two_views`: the uint8 table on native frames before the resize), and with
    ``crop="auto"`` MultiScaleCrop's 13 fixed positions, the same crop for both views."""

    NORM = "imagenet"

    def __init__(self, num_classes: int, *, gamma: float = 1.8, num_frames: int = 64,
                 mask_keep_prob: float = 1.0, **kw):
        super().__init__(num_classes, num_frames=num_frames, num_tokens=2 * max(1, num_frames // 8),
                         mask_keep_prob=mask_keep_prob, **kw)
        self.gamma = gamma

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raw, light = _two_views(x, self.gamma)
        return torch.cat([super().forward_features(raw), super().forward_features(light)], dim=1)


class TwoStreamViTBERT(ViTBERT):
    """DarkLight's dual pathway (Chen et al. 2021) on the student's ViT: the raw clip and its
    gamma-corrected view (GIC, gamma 1.8) go through ONE shared backbone; the BERT head attends
    over the 2T frame tokens of both views (learned positions tell the views apart) without key
    masking, as DarkLight's ``self_attention`` (``mask_prob=1``). Inference runs the backbone twice.
    DarkLight itself is :class:`TwoStreamR2Plus1DBERT` (R(2+1)D-34). Both views are normalised
    with the ViT's own statistics. ``two_stream_bert`` gets its gamma view from the loader (see
    :func:`_two_views`); the CPU demo's ``two_stream_bert_tiny`` makes it from the resized clip.
    Training crop: scale jitter, as the other ViT models."""

    def __init__(self, num_classes: int, *, gamma: float = 1.8, num_frames: int = 64,
                 mask_keep_prob: float = 1.0, **kw):
        super().__init__(num_classes, num_frames=2 * num_frames, mask_keep_prob=mask_keep_prob, **kw)
        self.gamma = gamma

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raw, light = _two_views(x, self.gamma)
        return torch.cat([super().forward_features(raw), super().forward_features(light)], dim=1)


@register_model
def r2plus1d_bert(num_classes: int, **overrides) -> R2Plus1DBERT:
    """Raw-video R(2+1)D-18 + BERT5 at the paper's clip (64 frames, 112 px), from scratch. NOT the
    paper's "DarkLight setting" row: that is ``r2plus1d_34_bert`` with IG65M weights.
    LateTemporalModeling3DCNN's preprocessing: Kinetics statistics, MultiScaleCrop."""
    kw = dict(num_frames=64)
    kw.update(overrides)
    kw.pop("img_size", None)  # convolutional: any frame size
    return R2Plus1DBERT(num_classes, **kw)


@register_model
def r2plus1d_bert_tiny(num_classes: int, **overrides) -> R2Plus1DBERT:
    """R(2+1)D-18 + BERT5, scratch-trained on CPU clips: per-clip standardisation (see ViTBERT);
    the CPU demo's crop (scale jitter) and torch's default classifier init, as ``_TINY_VIT``."""
    kw = dict(num_frames=8, input_norm="clip", head_dropout=0.1, fc_init="torch")
    kw.update(overrides)
    kw.pop("img_size", None)
    return R2Plus1DBERT(num_classes, **kw)


@register_model
def r2plus1d_34_bert(num_classes: int, **overrides) -> R2Plus1DBERT:
    """R(2+1)D-34 + BERT5 at the paper's clip (64 frames, 112 px): the paper's "R(2+1)D + BERT
    (DarkLight setting)" row when ``pretrained`` is an ig65m-pytorch IG65M checkpoint file.
    LateTemporalModeling3DCNN's preprocessing: Kinetics statistics, MultiScaleCrop."""
    kw = dict(depth=34, num_frames=64)
    kw.update(overrides)
    kw.pop("img_size", None)  # convolutional: any frame size
    return R2Plus1DBERT(num_classes, **kw)


@register_model
def two_stream_r2plus1d_34_bert(num_classes: int, **overrides) -> TwoStreamR2Plus1DBERT:
    """DarkLight (raw + gamma 1.8, one shared R(2+1)D-34, self_attention without key masking) at
    the paper's clip; give ``pretrained`` an ig65m-pytorch IG65M checkpoint file as DarkLight does.
    DarkLight's preprocessing: ImageNet statistics for both streams, the gamma view from the
    loader (table on native frames, before the resize), MultiScaleCrop."""
    kw = dict(depth=34, num_frames=64)
    kw.update(overrides)
    kw.pop("img_size", None)
    return TwoStreamR2Plus1DBERT(num_classes, **kw)


@register_model
def two_stream_bert(num_classes: int, **overrides) -> TwoStreamViTBERT:
    """DarkLight's raw + gamma two-stream (no key masking) on the paper's ViT-B/16 + BERT; the
    gamma view from the loader (table on native frames), scale-jitter crops."""
    kw = dict(backbone="vit_base_patch16_224", img_size=112, num_frames=64)
    return TwoStreamViTBERT(num_classes, **{**kw, **overrides})


@register_model
def two_stream_bert_tiny(num_classes: int, **overrides) -> TwoStreamViTBERT:
    """The ViT two-stream (no key masking) on vit_bert_tiny's backbone: the CPU demo's; as
    earlier darknb, its gamma view is made in the model from the resized clip."""
    return TwoStreamViTBERT(num_classes, **{**_TINY_VIT, **overrides})
