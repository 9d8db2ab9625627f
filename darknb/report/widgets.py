"""Looking at dark videos: raw vs enhanced frames, interactively (ipywidgets) and as static figures.

DL-KDD's premise (PAPER.md, "Problem") is that enhancement both helps and *destroys* information
present in the original frames. These views put the raw frame next to each enhancer's output
(Zero-DCE, Guo et al. 2020; DarkLight's gamma correction) with the mean brightness of each, so a
reader can see what the teacher sees and the student does not.

- :func:`frame_comparison` — an ipywidgets player: one image per variant, a frame slider + Play.
- :func:`comparison_figure` — the same as a static matplotlib grid (rows = variants, cols = frames).
- :func:`filmstrip` — the player's clip as a static strip, frames evenly spaced: what an HTML
  report shows where no kernel can drive the player (a report opened offline, or anywhere: the
  player's images are drawn by Python on every slider move).
- :func:`brightness_histograms` — pixel-value histograms, raw vs enhanced.
- :func:`class_counts`, :func:`pick_video`, :func:`brightness_summary` — the small tables
  notebook 00 shows, so the notebook itself only calls the library.

Brightness is the mean of the R, G, B values in [0, 1]. Frames are decoded once (up to
``max_frames``); each variant is enhanced lazily, one frame at a time, and cached. ipywidgets and
matplotlib are imported inside the functions that need them (slow imports, figures only).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn

from darknb.data.video import probe, read_frames
from darknb.errors import ConfigError
from darknb.models.enhancers import build_enhancer
from darknb.models.enhancers import enhance_uint8 as _enhance

RAW = "raw"
# Enhancers whose output depends on learned weights: without a checkpoint they are random.
_LEARNED = ("zerodce", "zerodce++")
_MIN_DISPLAY_WIDTH = 240  # synthetic clips are 96 px wide: too small to judge on screen


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------


def load_frames(path: str | os.PathLike, *, max_frames: int = 64) -> np.ndarray:
    """The first ``min(max_frames, num_frames)`` frames of a video, uint8 ``(N, H, W, 3)``."""
    if not isinstance(max_frames, int) or max_frames < 1:
        raise ConfigError(f"max_frames must be an int >= 1, got {max_frames!r}")
    n = min(probe(path).num_frames, max_frames)
    return read_frames(path, range(n))


def resolve_enhancers(enhancers, *, checkpoint=None) -> dict[str, nn.Module]:
    """``{label: module}`` from names (built with ``build_enhancer``) or a ``{label: module|name}`` dict.

    ``checkpoint``: a path for the single learned enhancer named, or ``{name: path}``. A learned
    enhancer named without weights warns and is labelled "(untrained)": its output is a random
    curve, not Zero-DCE's.
    """
    if isinstance(enhancers, str):
        enhancers = (enhancers,)
    items = list(enhancers.items()) if isinstance(enhancers, Mapping) else [(n, n) for n in enhancers]
    learned_named = [v for _, v in items if isinstance(v, str) and v in _LEARNED]
    if checkpoint and not isinstance(checkpoint, Mapping):
        if len(learned_named) != 1:
            raise ConfigError(f"checkpoint={checkpoint!r} is ambiguous or unused: it needs exactly one "
                              f"learned enhancer ({_LEARNED}) among {[v for _, v in items]}; "
                              "pass {name: path} instead")
        checkpoint = {learned_named[0]: checkpoint}
    checkpoint = dict(checkpoint or {})

    out: dict[str, nn.Module] = {}
    for label, spec in items:
        label = str(label)
        if isinstance(spec, str):
            ckpt = checkpoint.get(spec) or None
            module = build_enhancer(spec, checkpoint=ckpt)
            if spec in _LEARNED and not ckpt:
                warnings.warn(f"enhancer {spec!r} has untrained (random) weights, so its output is "
                              f"not {spec}'s; pass checkpoint=<path> or {{label: enhancer fitted "
                              "with darknb.enhance.fit_zero_reference}", UserWarning, stacklevel=3)
                label = f"{label} (untrained)"
        elif isinstance(spec, nn.Module):
            module = spec
        else:
            raise ConfigError(f"enhancer {label!r}: expected a name or an nn.Module, got "
                              f"{type(spec).__name__}")
        if label == RAW or label in out:
            raise ConfigError(f"enhancer label {label!r} is duplicated or reserved ({RAW!r} is the "
                              "unenhanced frame)")
        out[label] = module.eval()
    return out


def enhance_uint8(module: nn.Module | None, frames: np.ndarray) -> np.ndarray:
    """Apply an enhancer to uint8 frames ``(N, H, W, 3)``; returns floats in [0, 1], same layout
    (:func:`darknb.models.enhancers.enhance_uint8`, whole, on the CPU)."""
    return _enhance(module, frames, device="cpu", chunk=None, as_uint8=False)


def _to_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((image * 255.0).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _check_frame_indices(frames: Sequence[int] | None, n: int) -> list[int]:
    if frames is None:
        return sorted({0, n // 2, n - 1})  # first, middle, last
    idx = [int(i) for i in frames]
    bad = [i for i in idx if not 0 <= i < n]
    if bad or not idx:
        raise ConfigError(f"frames={list(frames)!r}: indices must be in [0, {n}) (frames decoded)")
    return idx


def class_counts(**subsets) -> "pandas.DataFrame":  # noqa: F821
    """Videos per class and subset, e.g. ``class_counts(train=train_set, test=test_set)``.

    Rows are the classes in label order (from the first dataset's ``classes``), one column per
    subset plus ``total``; a class absent from a subset counts 0 rather than disappearing.
    """
    if not subsets:
        raise ConfigError("class_counts: give at least one dataset, e.g. train=train_set")
    classes = list(next(iter(subsets.values())).classes)
    columns = {}
    for name, ds in subsets.items():
        labels = np.array([label for _, label in ds.samples], dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ConfigError(f"class_counts: subset {name!r} has labels outside 0..{len(classes) - 1}")
        columns[name] = np.bincount(labels, minlength=len(classes))
    table = pd.DataFrame(columns, index=pd.Index(classes, name="class"))
    table["total"] = table.sum(axis=1)
    return table


def pick_video(dataset, index: int):
    """Path of video ``index`` of a dataset (``root / samples[index][0]``), range-checked."""
    n = len(dataset.samples)
    if not isinstance(index, int) or not 0 <= index < n:
        raise ConfigError(f"video_index={index!r} is out of range: the dataset has {n} videos")
    return Path(dataset.root) / dataset.samples[index][0]


def video_frames(dataset, index: int, *, max_frames: int = 64) -> np.ndarray:
    """uint8 frames ``(N, H, W, 3)`` of video ``index`` as the dataset stores them: from its
    frame cache when it has one (the synthetic set's clips mostly live only there), else decoded."""
    pick_video(dataset, index)  # range check
    rel = dataset.samples[index][0]
    n = min(dataset.frame_count(rel), max_frames)
    return dataset.frames(rel, np.arange(n))


def brightness_summary(source, enhancers=("zerodce", "gamma"), *, checkpoint=None,
                       max_frames: int = 64) -> "pandas.DataFrame":  # noqa: F821
    """Per variant: mean brightness, its frame-to-frame std, and the share of pixels clipped at 1
    (>= 254.5/255: information an enhancer destroyed) and crushed at 0 (<= 0.5/255)."""
    decoded = source if isinstance(source, np.ndarray) else load_frames(source, max_frames=max_frames)
    rows = []
    for label, module in {RAW: None, **resolve_enhancers(enhancers, checkpoint=checkpoint)}.items():
        values = enhance_uint8(module, decoded)  # (N, H, W, 3)
        per_frame = values.mean(axis=(1, 2, 3))
        rows.append({"variant": label, "mean_brightness": float(values.mean()),
                     "frame_std": float(per_frame.std()),
                     "clipped_white_pct": 100.0 * float((values >= 254.5 / 255).mean()),
                     "black_pct": 100.0 * float((values <= 0.5 / 255).mean())})
    return pd.DataFrame(rows).set_index("variant")


# ----------------------------------------------------------------------------------------------
# Interactive player
# ----------------------------------------------------------------------------------------------


def frame_comparison(source, enhancers=("zerodce", "gamma"), *, checkpoint=None,
                     max_frames: int = 64, display_size: tuple[int, int] | None = None):
    """An ipywidgets player: raw frame + one image per enhancer, a frame slider linked to Play.

    ``source``: a video path or uint8 frames ``(N, H, W, 3)``.
    ``enhancers``: names for ``build_enhancer`` or ``{label: nn.Module}`` (e.g. a Zero-DCE fitted
    with ``fit_zero_reference``). ``display_size`` = (width, height) in screen pixels; None shows
    the frame at least 240 px wide (aspect kept). Returns an ``ipywidgets.VBox`` with attributes
    ``slider``, ``play``, ``images`` / ``brightness`` (``{label: Image / Label}``, "raw" first) and
    ``num_frames``; moving the slider (or Play) updates every image and brightness label.
    """
    import ipywidgets as W

    variants: dict[str, nn.Module | None] = {RAW: None, **resolve_enhancers(enhancers,
                                                                             checkpoint=checkpoint)}
    frames = _frames_of(source, max_frames, "frame_comparison")
    N, H, Wd, _ = frames.shape
    if display_size is None:
        width = max(Wd, _MIN_DISPLAY_WIDTH)
        display_size = (width, round(H * width / Wd))
    disp_w, disp_h = (int(v) for v in display_size)

    cache: dict[tuple[str, int], tuple[bytes, float]] = {}

    def render(label: str, i: int) -> tuple[bytes, float]:
        # Enhance one frame on demand: sliding through 64 frames x 3 variants stays interactive
        # and a variant never looked at costs nothing.
        if (label, i) not in cache:
            image = enhance_uint8(variants[label], frames[i:i + 1])[0]
            cache[(label, i)] = (_to_png(image), float(image.mean()))
        return cache[(label, i)]

    images, brightness, columns = {}, {}, []
    for label in variants:
        images[label] = W.Image(format="png", width=disp_w, height=disp_h)
        brightness[label] = W.Label()
        columns.append(W.VBox([W.HTML(f"<b>{label}</b>"), images[label], brightness[label]],
                              layout=W.Layout(align_items="center", margin="0 6px")))

    slider = W.IntSlider(value=0, min=0, max=N - 1, description="frame", continuous_update=True)
    play = W.Play(value=0, min=0, max=N - 1, step=1, interval=150, description="play")
    W.jslink((play, "value"), (slider, "value"))  # in the browser: Play drives the slider

    def show(i: int) -> None:
        for label in variants:
            png, mean = render(label, i)
            images[label].value = png
            brightness[label].value = f"mean brightness {mean:.3f}"

    slider.observe(lambda change: show(change["new"]), names="value")
    show(0)

    name = "frames" if isinstance(source, np.ndarray) else os.fspath(source)
    title = W.HTML(f"<code>{name}</code> &nbsp; {N} frames, {Wd}x{H} px")
    box = W.VBox([title, W.HBox([play, slider]), W.HBox(columns)])
    box.slider, box.play, box.images, box.brightness, box.num_frames = (
        slider, play, images, brightness, N)
    return box


# ----------------------------------------------------------------------------------------------
# Static figures
# ----------------------------------------------------------------------------------------------


def comparison_figure(source, enhancers=("zerodce", "gamma"), *, checkpoint=None,
                      frames: Sequence[int] | None = None, max_frames: int = 64,
                      panel_width: float = 2.6, reference: Mapping[str, np.ndarray] | None = None,
                      title: str | None = None):
    """A static grid, rows = variants ("raw" first), cols = frames (default: first, middle, last).

    ``source``: a video path or uint8 frames ``(N, H, W, 3)``. ``reference``: extra rows shown
    first, e.g. ``{"well-lit": frames}``, the same clip before darkening. Each row is labelled
    with its variant; each title gives the frame index and that frame's mean brightness. Returns
    a ``matplotlib.figure.Figure`` (not registered with pyplot: no global state, nothing leaks).
    """
    from matplotlib.figure import (
        Figure,  # lazy: matplotlib only for figures (slow to import)
    )

    decoded = _frames_of(source, max_frames, "comparison_figure")
    references = {k: _frames_of(v, max_frames, "comparison_figure") for k, v in (reference or {}).items()}
    variants: dict[str, nn.Module | np.ndarray | None] = {
        **references, RAW: None, **resolve_enhancers(enhancers, checkpoint=checkpoint)}
    idx = _check_frame_indices(frames, decoded.shape[0])
    N, H, Wd, _ = decoded.shape
    rows, cols = len(variants), len(idx)
    fig = Figure(figsize=(panel_width * cols, panel_width * H / Wd * rows + 0.6 * rows),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, (label, module) in enumerate(variants.items()):
        if isinstance(module, np.ndarray):  # a reference row: its own frames
            enhanced = module[idx].astype(np.float32) / 255.0
        else:
            enhanced = enhance_uint8(module, decoded[idx])  # (cols, H, W, 3)
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(enhanced[c], vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"frame {i} | mean {enhanced[c].mean():.3f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:  # the variant names the row; long labels would collide as titles
                ax.set_ylabel(label, fontsize=8)
    if title is None and not isinstance(source, np.ndarray):
        title = os.path.basename(os.fspath(source))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def filmstrip(source, enhancers=("zerodce", "gamma"), *, checkpoint=None, columns: int = 8,
              max_frames: int = 64, reference: Mapping[str, np.ndarray] | None = None,
              title: str | None = None):
    """The clip of :func:`frame_comparison` as a static strip: one row per variant (``reference``
    rows such as ``{"well-lit": frames}`` first, then the raw frames, then each enhancer), up to
    ``columns`` frames evenly spaced from the first to the last, each titled with its index and
    mean brightness. A report's HTML shows this where the live player cannot run; it needs no
    JavaScript. Returns a ``matplotlib.figure.Figure``."""
    decoded = _frames_of(source, max_frames, "filmstrip")
    n = decoded.shape[0]
    if not isinstance(columns, int) or columns < 1:
        raise ConfigError(f"filmstrip: columns must be an int >= 1, got {columns!r}")
    idx = sorted({int(i) for i in np.linspace(0, n - 1, min(columns, n)).round()})
    return comparison_figure(decoded, enhancers, checkpoint=checkpoint, frames=idx,
                             max_frames=max_frames, reference=reference, panel_width=1.5,
                             title=title or f"{len(idx)} of {n} frames, evenly spaced")


def _frames_of(source, max_frames: int, name: str) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` frames: ``source`` itself, or decoded from a video path."""
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 4 or source.shape[-1] != 3:
            raise ConfigError(f"{name}: frames must be uint8 (N, H, W, 3), got "
                              f"{source.dtype} {source.shape}")
        return source[:max_frames]
    return load_frames(source, max_frames=max_frames)


def brightness_histograms(source, enhancers=("zerodce", "gamma"), *, checkpoint=None,
                          max_frames: int = 64, bins: int = 64):
    """Pixel-value histograms (all channels, values in [0, 1]) of raw vs enhanced frames.

    ``source``: a video path, or uint8 frames ``(N, H, W, 3)`` (e.g. frames pooled over several
    videos). Dark video piles up near 0; a good enhancer spreads it without clipping at 1.
    The legend gives each variant's mean brightness. Returns a ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import (
        Figure,  # lazy: matplotlib only for figures (slow to import)
    )

    decoded = _frames_of(source, max_frames, "brightness_histograms")
    variants = {RAW: None, **resolve_enhancers(enhancers, checkpoint=checkpoint)}
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    edges = np.linspace(0.0, 1.0, bins + 1)
    for label, module in variants.items():
        values = enhance_uint8(module, decoded).ravel()
        ax.hist(values, bins=edges, histtype="step", linewidth=1.5, density=True,
                label=f"{label} (mean {values.mean():.3f})")
    ax.set_yscale("log")  # dark frames put most mass in a few bins; log shows the tail too
    ax.set_xlabel("pixel value (R, G, B in [0, 1])")
    ax.set_ylabel("density")
    ax.set_title(f"pixel histograms, {decoded.shape[0]} frames")
    ax.legend(fontsize=8)
    return fig
