"""Clip sampling: which frames (DarkLight's consecutive clips, or uniform segments) and which crop.

Clip protocol (PAPER.md, "Details from the methods it builds on", DarkLight, Chen et al. 2021):
T consecutive frames, random offset in training, centred in test, wrap-around (loop) for videos
shorter than T (a random loop start in training, as DarkLight; the loop centred in test); resize
(DarkLight: 170x128, i.e. short side 128 for a 112 crop), multi-scale crop to 112 + horizontal flip
in training (the same crop for every frame of a clip), centre crop in test. Evaluation can also
average several views (``clip``/``crop`` of :func:`sample_frame_indices` / :func:`crop_box`).

Training crops (:data:`TRAIN_CROPS`, ``RunConfig.crop``):

- ``"multiscale"``: ``MultiScaleCrop(112, [1, .875, .75, .66])`` exactly as DarkLight
  (Ticuby/Darklight-Pytorch ``video_transforms.py``) and LateTemporalModeling3DCNN (the same class)
  define it: a crop size drawn from the 10 pairs of scales at most one step apart (sides
  ``int(short * s)``), placed at one of 13 fixed offsets (:func:`multiscale_offsets`: corners,
  centre, edge centres, quarter points) computed from the OUTPUT size, and cut as numpy slicing
  cuts, i.e. clipped at the frame's edge (a 128-row crop at row offset 16 of a 128-row frame keeps
  112 rows), then resized to ``size x size``.
- ``"scale_jitter"``: the same crop sizes at a uniformly random position inside the frame
  (darknb's earlier "multiscale"; the CPU demo's crop, kept so its clips do not change).
- ``"random"``: a ``size x size`` square at a random position, no scale change.

The gamma view of DarkLight's two-stream model (:func:`gamma_lut`, :func:`with_light_view`) is
made here too, on uint8 frames, before any resize, and travels as a second stream of frames.
"""

from __future__ import annotations

import numpy as np
import torch

from darknb.data.loader import RawClip

__all__ = ["TRAIN_CROPS", "sample_frame_indices", "default_resize_short", "resized_size", "crop_box",
           "multiscale_offsets", "multiscale_sizes", "make_raw_clip", "gamma_lut", "with_light_view"]

TRAIN_CROPS = ("multiscale", "scale_jitter", "random")
MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)  # DarkLight's / LateTemporalModeling's scale_ratios


def sample_frame_indices(n: int, num_frames: int, sampling: str, train: bool,
                         rng: np.random.Generator | None, *, clip: int = 0, clips: int = 1) -> np.ndarray:
    """The T frame indices of a clip from a video with ``n`` real frames.

    ``"consecutive"`` (DarkLight): T consecutive frames, random offset in training, centred in test.
    A video shorter than T is looped: training draws the loop's start (DarkLight's random start);
    test centres the loop (the clip's middle frame is the video's). ``"uniform"``: T equal
    segments, one frame from each (random in training, the centre in test).

    Evaluation views (``train=False``): clip ``clip`` of ``clips`` evenly spaced ones; with
    ``clips=1`` it is the centred clip above. Consecutive: starts spread evenly over [0, n - T]
    (over the loop's n starts for a short video); uniform: the position inside every segment moves
    from its start to its end.
    """
    T = num_frames
    if sampling == "consecutive":
        if train:
            start = int(rng.integers(0, n - T + 1)) if n >= T else int(rng.integers(0, n))
        elif clips == 1:
            start = (n - T) // 2 % n  # == (n - T) // 2 when n >= T; a centred loop when shorter
        elif n >= T:
            start = round(clip * (n - T) / (clips - 1))
        else:
            start = ((n - T) // 2 + clip * n // clips) % n
        return (start + np.arange(T)) % n
    edges = np.linspace(0, n, T + 1)
    lo = np.floor(edges[:-1]).astype(int)
    hi = np.maximum(lo + 1, np.floor(edges[1:]).astype(int))
    if train:
        idx = rng.integers(lo, hi)
    elif clips == 1:
        idx = (lo + hi - 1) // 2
    else:
        idx = lo + ((hi - lo) * (2 * clip + 1)) // (2 * clips)
    return np.minimum(idx, n - 1)


def default_resize_short(size: int) -> int:
    """DarkLight's resize before cropping: short side 128 for a 112 crop, scaled with ``size``."""
    return round(int(size) * 128 / 112)


def resized_size(H: int, W: int, *, size: int, resize_short: int) -> tuple[int, int]:
    """The ``(h, w)`` an ``H x W`` frame has once (virtually) resized to short side
    ``resize_short`` (never below ``size``): the frame the crop is drawn in."""
    scale = resize_short / min(H, W)
    return max(size, round(H * scale)), max(size, round(W * scale))


def multiscale_sizes(h: int, w: int, scales=MULTISCALE_SCALES, max_distort: int = 1) -> list[tuple[int, int]]:
    """``MultiScaleCrop.fillCropSize``: ``(crop_h, crop_w)`` for every pair of scales at most
    ``max_distort`` steps apart, sides ``int(min(h, w) * scale)``, in their order (10 pairs)."""
    base = min(h, w)
    sides = [int(base * s) for s in scales]
    return [(a, b) for i, a in enumerate(sides) for j, b in enumerate(sides) if abs(i - j) <= max_distort]


def multiscale_offsets(h: int, w: int, size: int) -> list[tuple[int, int]]:
    """``MultiScaleCrop.fillFixOffset`` with ``more_fix_crop=True``: the 13 ``(top, left)``
    positions, in their order. The step is a quarter of (frame - OUTPUT size), whatever the crop's
    size: their code computes it from ``self.height``/``self.width``, the network's input."""
    hs, ws = int((h - size) / 4), int((w - size) / 4)
    return [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws),  # corners, centre
            (0, 2 * ws), (4 * hs, 2 * ws), (2 * hs, 0), (2 * hs, 4 * ws),          # edge centres
            (hs, ws), (hs, 3 * ws), (3 * hs, ws), (3 * hs, 3 * ws)]                 # quarter points


def crop_box(H: int, W: int, *, size: int, resize_short: int, train: bool, multiscale: bool,
             rng: np.random.Generator | None, crop: int = 0, crops: int = 1,
             train_crop: str | None = None) -> np.ndarray:
    """The crop of an ``H x W`` frame, as ``(y0, x0, y1, x1)`` in its pixels (float64), that ends
    up as the ``size x size`` network input.

    The frame is (virtually) resized so that its short side is ``resize_short``; the crop is drawn
    there and mapped back, so the frame is resampled once. Training: ``train_crop`` (see the
    module doc: ``"multiscale"`` = DarkLight's MultiScaleCrop, ``"scale_jitter"``, ``"random"``);
    without it, ``multiscale`` picks ``"scale_jitter"`` (True) or ``"random"`` (False). Test: the
    centre ``size`` square, or crop ``crop`` of ``crops`` = 3 at the start, centre and end of the
    long side. A frame already at the resized size (``resize_short`` = its short side: a frame
    cache at short side 128 for 112-px clips) gets an integral box.
    """
    h, w = resized_size(H, W, size=size, resize_short=resize_short)
    if train:
        scheme = train_crop or ("scale_jitter" if multiscale else "random")
        if scheme not in TRAIN_CROPS:
            raise ValueError(f"crop_box: train_crop must be one of {TRAIN_CROPS}, got {scheme!r}")
    if train and scheme == "multiscale":
        sizes = multiscale_sizes(h, w)
        ch, cw = sizes[int(rng.integers(len(sizes)))]  # their order: the size, then the offset
        offsets = multiscale_offsets(h, w, size)
        top, left = offsets[int(rng.integers(len(offsets)))]
        ch, cw = min(ch, h - top), min(cw, w - left)  # numpy slicing stops at the frame's edge
    elif train and scheme == "scale_jitter":
        ch, cw = multiscale_sizes(h, w)[int(rng.integers(10))]
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    elif train:
        ch = cw = size
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    else:
        ch = cw = size
        top, left = (h - size) // 2, (w - size) // 2
        if crops == 3:
            along = h - size if h > w else w - size  # slide along the long side
            offset = (0, along // 2, along)[crop]
            top, left = (offset, left) if h > w else (top, offset)
    sy, sx = H / h, W / w
    return np.array([top * sy, left * sx, (top + ch) * sy, (left + cw) * sx])


def make_raw_clip(frames: np.ndarray, box: np.ndarray, *, flip: bool, label: int, index: int,
                  view: int = 0, exact: bool = False, streams: int = 1) -> RawClip:
    """Cut ``frames`` ``(streams x T, H, W, 3)`` to the rows and columns the resampling of
    ``box`` reads (its bounding box and one pixel around it), shift the box accordingly, and wrap
    it up. ``exact``: the box is integral because the frames are at the crop's resized size (see
    :class:`darknb.data.loader.RawClip`); the clip is then cut exactly and resampled by
    :class:`darknb.data.loader.ClipTransform`'s antialiased crop path. ``streams``: 2 for frames
    made by :func:`with_light_view`."""
    T, H, W, _ = frames.shape
    y0, x0, y1, x1 = box
    exact = bool(exact) and all(float(v).is_integer() for v in box)
    r0, c0 = max(0, int(np.floor(y0)) - 1), max(0, int(np.floor(x0)) - 1)
    r1, c1 = min(H, int(np.floor(y1)) + 2), min(W, int(np.floor(x1)) + 2)
    if exact:  # nothing outside the box is read
        r0, c0, r1, c1 = int(y0), int(x0), int(y1), int(x1)
    cut = np.ascontiguousarray(frames[:, r0:r1, c0:c1])
    shifted = torch.tensor([y0 - r0, x0 - c0, y1 - r0, x1 - c0], dtype=torch.float32)
    return RawClip(torch.from_numpy(cut), shifted, bool(flip), int(label), int(index), int(view),
                   exact, int(streams))


def gamma_lut(gamma: float) -> np.ndarray:
    """DarkLight's gamma lookup table (``datasets/img_to_gamma.py``,
    ``gamma_intensity_correction``): ``((i / 255) ** (1 / gamma)) * 255`` for i = 0..255, cast
    to uint8 (truncated, as their ``.astype("uint8")``), written the way they write it."""
    inv = 1.0 / float(gamma)
    return np.array([((i / 255.0) ** inv) * 255 for i in np.arange(0, 256)]).astype("uint8")


def with_light_view(frames: np.ndarray, gamma: float, light: np.ndarray | None = None) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames -> ``(2T, H, W, 3)``: the frames, then DarkLight's gamma view
    (two streams, for :func:`make_raw_clip` with ``streams=2``): ``light``, or the table applied
    to these frames, which must then be NATIVE ones: DarkLight applies the table to the decoded
    frame before any resize (``ReadSegmentRGB_light``)."""
    if light is None:
        light = gamma_lut(gamma)[frames]
    if light.shape != frames.shape:
        raise ValueError(f"light view {light.shape} does not match the frames {frames.shape}")
    return np.concatenate([frames, light], axis=0)  # whole frames: no per-pixel interleaving
