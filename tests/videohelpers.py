"""Shared test helpers: videos whose frames encode their own index, and the reference-data path.

Two encodings, both robust to lossy compression:
* barcode frames (8 bits as big black/white vertical bands) -- for :func:`read_frames` tests;
* flat grey-level frames (level = STEP * index) -- survive resize/crop, for dataset sampling tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from darknb.data.video import write_video

BITS = 8
LEVEL_STEP = 6  # grey-level step per frame index: 0, 6, 12, ... (<= 42 frames in 0..255)


def reference_dir() -> Path:
    return Path(os.environ.get("DARKNB_REFERENCE",
                               Path(__file__).resolve().parents[2] / "shared" / "reference"))


def require_reference(*parts: str) -> Path:
    """The reference path ``parts`` or ``pytest.skip`` when the read-only reference data is absent."""
    path = reference_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (set DARKNB_REFERENCE)")
    return path


# ---------------------------------------------------------------------------- barcodes

def barcode_frame(index: int, height: int = 96, width: int = 128, bits: int = BITS) -> np.ndarray:
    """uint8 (H, W, 3): bit b of ``index`` as band b (white = 1), bands W // bits wide.

    ``bits`` bands encode indices below ``2 ** bits`` (default 8: 256 frames); longer videos need
    more bits (e.g. 10 bits at width 160 keeps 16-pixel bands)."""
    if index >= 1 << bits:
        raise ValueError(f"frame index {index} needs more than {bits} barcode bits")
    frame = np.zeros((height, width, 3), np.uint8)
    band = width // bits
    for b in range(bits):
        if (index >> b) & 1:
            frame[:, b * band:(b + 1) * band] = 255
    # A mid-grey border row keeps the encoder honest about motion between frames.
    frame[:4] = 128
    return frame


def decode_barcode(frame: np.ndarray, bits: int = BITS) -> int:
    """Inverse of :func:`barcode_frame` (reads the centre of each band)."""
    H, W, _ = frame.shape
    band = W // bits
    centre = frame[H // 2, band // 2::band][:bits].astype(float).mean(-1)
    return int(sum(1 << b for b, v in enumerate(centre) if v > 127))


def make_barcode_video(path, num_frames: int, *, height: int = 96, width: int = 128,
                       bits: int = BITS, **write_kw) -> Path:
    frames = np.stack([barcode_frame(i, height, width, bits) for i in range(num_frames)])
    return write_video(path, frames, **write_kw)


# ---------------------------------------------------------------------------- grey levels

def make_level_video(path, num_frames: int, *, height: int = 48, width: int = 64, **write_kw
                     ) -> Path:
    """Frame i is flat grey LEVEL_STEP * i (a clip's frame indices survive resizing and crops)."""
    if num_frames * LEVEL_STEP > 255:
        raise ValueError(f"at most {255 // LEVEL_STEP} frames for level videos, got {num_frames}")
    levels = (np.arange(num_frames) * LEVEL_STEP).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()
    return write_video(path, frames, **write_kw)


def clip_levels(clip) -> list[int]:
    """Frame indices of a (3, T, H, W) clip in [0, 1] made from a level video."""
    means = clip.float().mean(dim=(0, 2, 3)).numpy() * 255.0
    return [int(round(m / LEVEL_STEP)) for m in means]
