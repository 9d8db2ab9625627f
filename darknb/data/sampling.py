"""Clip sampling: which frames (DarkLight's consecutive clips, or uniform segments) and which crop.

Clip protocol (PAPER.md, "Details from the methods it builds on", DarkLight, Chen et al. 2021):
T consecutive frames, random offset in training, centred in test, wrap-around (loop) for videos
shorter than T (a random loop start in training, as DarkLight; the loop centred in test); resize
(DarkLight: 170x128, i.e. short side 128 for a 112 crop), multi-scale crop to 112 + horizontal flip
in training (the same crop for every frame of a clip), centre crop in test. Evaluation can also
average several views (``clip``/``crop`` of :func:`sample_frame_indices` / :func:`crop_box`).
"""

from __future__ import annotations

import numpy as np
import torch

from darknb.data.loader import RawClip

__all__ = ["sample_frame_indices", "default_resize_short", "crop_box", "make_raw_clip"]


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


def crop_box(H: int, W: int, *, size: int, resize_short: int, train: bool, multiscale: bool,
             rng: np.random.Generator | None, crop: int = 0, crops: int = 1) -> np.ndarray:
    """The crop of an ``H x W`` frame, as ``(y0, x0, y1, x1)`` in its pixels (float64), that ends
    up as the ``size x size`` network input.

    The frame is (virtually) resized so that its short side is ``resize_short``; the crop is drawn
    there and mapped back, so the frame is resampled once. Training with ``multiscale``:
    DarkLight's GroupMultiScaleCrop (sides from scales 1, .875, .75, .66 of the short side, at
    most one scale step of aspect distortion, random position); training without: a random
    ``size`` square; test: the centre ``size`` square, or crop ``crop`` of ``crops`` = 3 at the
    start, centre and end of the long side.
    """
    scale = resize_short / min(H, W)
    h, w = max(size, round(H * scale)), max(size, round(W * scale))
    if train and multiscale:
        short = min(h, w)
        sides = [int(short * s) for s in (1.0, 0.875, 0.75, 0.66)]
        pairs = [(a, b) for i, a in enumerate(sides) for j, b in enumerate(sides) if abs(i - j) <= 1]
        ch, cw = pairs[int(rng.integers(len(pairs)))]
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
                  view: int = 0) -> RawClip:
    """Cut ``frames`` ``(T, H, W, 3)`` to the rows and columns the resampling of ``box`` reads
    (its bounding box and one pixel around it), shift the box accordingly, and wrap it up."""
    T, H, W, _ = frames.shape
    y0, x0, y1, x1 = box
    r0, c0 = max(0, int(np.floor(y0)) - 1), max(0, int(np.floor(x0)) - 1)
    r1, c1 = min(H, int(np.floor(y1)) + 2), min(W, int(np.floor(x1)) + 2)
    cut = np.ascontiguousarray(frames[:, r0:r1, c0:c1])
    shifted = torch.tensor([y0 - r0, x0 - c0, y1 - r0, x1 - c0], dtype=torch.float32)
    return RawClip(torch.from_numpy(cut), shifted, bool(flip), int(label), int(index), int(view))

