"""The synthetic dark action set: moving textured objects in cluttered scenes, rendered dark.

Classes are motions of one textured, asymmetric object in a cluttered static scene. Every class
has a time-reversed twin (left/right, cw/ccw, in/out), so no single frame tells the class: a model
must use time, as ARID's actions require. Groups are scenes ("actors"): each group has its own
background and object appearance, and the train/test split is group-disjoint like ARID's.

:func:`make_synthetic_dark` writes real video files in ARID's layout (``<Class>/<Class>_<group>_
<clip>.mp4`` + ``list_cvt/``), so the same loaders, frame-exact reading and cache serve it and ARID.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from darknb.errors import ConfigError
from darknb.files import read_json, sha256_file, write_json, write_text
from darknb.video import write_video

__all__ = ["MANIFEST", "SYNTHETIC_CLASSES", "make_synthetic_dark"]

MANIFEST = "synthetic.json"  # the set's parameters and file hashes; its presence marks a complete set


SYNTHETIC_CLASSES = ("MoveLeft", "MoveRight", "RotateCW", "RotateCCW", "ZoomIn", "ZoomOut",
                     "MoveUp", "MoveDown", "Wave")
_SYNTH_VERSION = 2  # bump when rendering changes, so stale sets are regenerated


def _scene(seed: int, group: int, H: int, W: int) -> dict:
    """Per-group appearance: cluttered background albedo and the object's look."""
    rng = np.random.default_rng([seed, 7919, group])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    bg = np.full((H, W, 3), 0.25, np.float32)
    # Low-frequency shading: a few random plane waves per channel.
    for _ in range(4):
        fx, fy = rng.uniform(-3, 3, 2) * 2 * np.pi
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(fx * xx / W + fy * yy / H + phase)[..., None]
        bg += 0.08 * wave * rng.uniform(0.3, 1.0, 3).astype(np.float32)
    # Clutter: random rectangles and discs (static distractors).
    # (darker and fewer than the object, so that a CPU-sized model learns the motion in minutes)
    for _ in range(int(rng.integers(4, 8))):
        colour = rng.uniform(0.1, 0.6, 3).astype(np.float32)
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        rw, rh = rng.uniform(0.03, 0.15) * W, rng.uniform(0.03, 0.15) * H
        if rng.random() < 0.5:
            m = (np.abs(xx - cx) < rw) & (np.abs(yy - cy) < rh)
        else:
            m = ((xx - cx) / rw) ** 2 + ((yy - cy) / rh) ** 2 < 1
        bg[m] = colour
    return dict(
        background=np.clip(bg, 0.02, 1.0),
        colour=rng.uniform(0.45, 1.0, 3).astype(np.float32),
        spot=rng.uniform(0.6, 1.0, 3).astype(np.float32),
        stripes=float(rng.uniform(2.0, 4.0)),
        aspect=float(rng.uniform(0.4, 0.6)),
        size=float(rng.uniform(0.17, 0.22)),
    )


def _motion(cls: str, s: np.ndarray, rng: np.random.Generator, W: int, H: int):
    """Object centre, angle and scale at normalised times ``s`` (T,) for class ``cls``."""
    # Start near the centre so that the whole path stays mostly in view.
    cx0, cy0 = rng.uniform(0.35, 0.65) * W, rng.uniform(0.35, 0.65) * H
    a0 = rng.uniform(0, 2 * np.pi)
    sc0 = rng.uniform(0.85, 1.15)
    # Small nuisance drift for every class: translation must be judged by its size, not presence.
    dx, dy = rng.uniform(-0.04, 0.04) * W, rng.uniform(-0.04, 0.04) * H
    cx, cy = cx0 + dx * s, cy0 + dy * s
    ang = a0 + rng.uniform(-0.15, 0.15) * s
    scale = sc0 * np.ones_like(s)
    dist = rng.uniform(0.45, 0.6)
    if cls == "MoveLeft":
        cx = cx + (0.5 - s) * dist * W
    elif cls == "MoveRight":
        cx = cx - (0.5 - s) * dist * W
    elif cls == "MoveUp":
        cy = cy + (0.5 - s) * dist * H
    elif cls == "MoveDown":
        cy = cy - (0.5 - s) * dist * H
    elif cls in ("RotateCW", "RotateCCW"):
        turn = rng.uniform(0.6, 1.2) * np.pi  # 108..216 degrees over the clip
        ang = ang + (turn if cls == "RotateCW" else -turn) * s  # y points down: +angle is clockwise
    elif cls in ("ZoomIn", "ZoomOut"):
        f = rng.uniform(1.8, 2.6)
        scale = sc0 * f ** ((s if cls == "ZoomIn" else 1 - s) - 0.5)
    elif cls == "Wave":
        cycles = rng.uniform(1.0, 2.0)
        cx = cx + 0.15 * W * np.sin(2 * np.pi * cycles * s + rng.uniform(0, 2 * np.pi))
    else:  # pragma: no cover - class names are validated by make_synthetic_dark
        raise ConfigError(f"unknown synthetic class {cls!r}")
    return cx, cy, ang, scale


def _render_clip(scene: dict, cls: str, rng: np.random.Generator, T: int, H: int, W: int
                 ) -> np.ndarray:
    """Render one dark clip as uint8 ``(T, H, W, 3)``: motion, then darkening + sensor noise."""
    s = np.linspace(0.0, 1.0, T, dtype=np.float32)
    cx, cy, ang, scale = _motion(cls, s, rng, W, H)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    # Inverse-map every pixel into object coordinates (u, v), all frames at once: (T, H, W).
    px = xx[None] - np.asarray(cx, np.float32)[:, None, None]
    py = yy[None] - np.asarray(cy, np.float32)[:, None, None]
    c, sn = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
    r = (scene["size"] * W * np.asarray(scale, np.float32))[:, None, None]
    u = (px * c + py * sn) / r
    v = (-px * sn + py * c) / r
    # Soft-edged 2:1 bar with stripes across it and an off-centre spot: asymmetric, so rotation
    # and direction are visible.
    edge = 1.0 - np.maximum(np.abs(u), np.abs(v) / scene["aspect"])
    mask = np.clip(edge * 6.0, 0.0, 1.0)[..., None]
    tex = 0.55 + 0.45 * (np.sin(u * scene["stripes"] * np.pi) > 0)
    spot = ((u - 0.55) ** 2 + (v - 0.15 * scene["aspect"]) ** 2) < 0.06
    obj = tex[..., None] * scene["colour"]
    obj = np.where(spot[..., None], scene["spot"], obj)
    albedo = mask * obj + (1.0 - mask) * scene["background"][None]

    # Darkening (a dim scene seen by a gamma-encoding camera at low exposure): gamma-darken, scale
    # by a random exposure and a vignette, small flicker.
    gamma = rng.uniform(1.6, 2.4)
    exposure = rng.uniform(0.35, 0.7)
    rr = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
    vignette = (1.0 - 0.35 * rr)[None, ..., None]
    flicker = (1.0 + 0.04 * rng.standard_normal(T)).astype(np.float32)[:, None, None, None]
    lin = albedo ** gamma * exposure * vignette * flicker
    # Sensor noise: shot noise (photon counting, full scale = `photons` electrons, in its Gaussian
    # approximation -- 10x faster than Poisson draws) + read noise, then 8-bit quantisation.
    photons = rng.uniform(120.0, 400.0)
    sigma = np.sqrt(np.clip(lin, 0, None) / photons + 0.006 ** 2)
    noisy = lin + sigma * rng.standard_normal(lin.shape, dtype=np.float32)
    return np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)


def _synthetic_plan(num_classes: int, videos_per_class: int, test_fraction: float, seed: int):
    """Return (classes, [(class_id, group, clip)], test_groups)."""
    classes = list(SYNTHETIC_CLASSES[:num_classes])
    n_groups = max(2, round(videos_per_class / 4))
    n_test = min(n_groups - 1, max(1, round(n_groups * test_fraction)))
    groups = np.random.default_rng([seed, 104729]).permutation(np.arange(1, n_groups + 1))
    test_groups = sorted(int(g) for g in groups[:n_test])
    items = []
    for c in range(num_classes):
        for k in range(videos_per_class):
            items.append((c, k % n_groups + 1, k // n_groups + 1))
    return classes, items, test_groups


def make_synthetic_dark(root: str | os.PathLike, *, num_classes: int = 6,
                        videos_per_class: int = 16, num_frames: int = 40,
                        size: tuple[int, int] = (96, 72), seed: int = 0,
                        test_fraction: float = 0.25, ext: str = ".mp4") -> Path:
    """Write a small synthetic dark action dataset as real video files in ARID's layout.

    Layout: ``root/<Class>/<Class>_<group>_<clip><ext>``; ``root/list_cvt/synthetic_split1_{train,
    test}.txt`` (ARID's TAB format ``idx, class_id, Class/Class_group_clip.ext``);
    ``root/list_cvt/mapping_table.txt`` (``id<TAB>Name``); ``root/synthetic.json`` (parameters and
    the sha256 of every file). ``size`` is (width, height). The split is group-disjoint (a group is
    a scene, like an ARID actor/scene id). Deterministic from ``seed``; calling it again over a
    complete set with the same parameters is a no-op (checked against the manifest's hashes).
    """
    # ---- validate
    if not 2 <= int(num_classes) <= len(SYNTHETIC_CLASSES):
        raise ConfigError(f"make_synthetic_dark: num_classes must be in [2, "
                          f"{len(SYNTHETIC_CLASSES)}], got {num_classes}")
    if int(videos_per_class) < 2:
        raise ConfigError(f"make_synthetic_dark: videos_per_class must be >= 2, got {videos_per_class}")
    if int(num_frames) < 2:
        raise ConfigError(f"make_synthetic_dark: num_frames must be >= 2, got {num_frames}")
    W, H = (int(x) for x in size)
    if W < 16 or H < 16 or W % 2 or H % 2:
        raise ConfigError(f"make_synthetic_dark: size (width, height) must be even and >= 16, got {size}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"make_synthetic_dark: test_fraction must be in (0, 1), got {test_fraction}")
    if ext not in (".mp4", ".avi"):
        raise ConfigError(f"make_synthetic_dark: ext must be '.mp4' or '.avi', got {ext!r}")
    if int(seed) < 0:
        raise ConfigError(f"make_synthetic_dark: seed must be >= 0, got {seed}")

    root = Path(root)
    params = dict(version=_SYNTH_VERSION, num_classes=int(num_classes),
                  videos_per_class=int(videos_per_class), num_frames=int(num_frames),
                  size=[W, H], seed=int(seed), test_fraction=float(test_fraction), ext=ext)
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        try:
            old = read_json(manifest_path)
        except ValueError:  # a damaged manifest: regenerate
            old = {}
        if old.get("params") == params and all(
                (root / rel).is_file() and sha256_file(root / rel) == digest
                for rel, digest in old.get("files", {}).items()):
            return root  # complete and unchanged: no-op

    classes, items, test_groups = _synthetic_plan(num_classes, videos_per_class, test_fraction, seed)
    scenes: dict[int, dict] = {}
    train_lines, test_lines = [], []
    files: dict[str, str] = {}
    for c, group, clip in items:
        name = classes[c]
        rel = f"{name}/{name}_{group}_{clip}{ext}"
        if group not in scenes:
            scenes[group] = _scene(seed, group, H, W)
        rng = np.random.default_rng([seed, c, group, clip])
        frames = _render_clip(scenes[group], name, rng, num_frames, H, W)
        if ext == ".avi":  # MPEG-4 Part 2 with B-frames, like ARID
            write_video(root / rel, frames, fps=30, bframes=2, gop=12)
        else:
            write_video(root / rel, frames, fps=30, crf=18)
        files[rel] = sha256_file(root / rel)
        (test_lines if group in test_groups else train_lines).append((c, rel))

    lists = root / "list_cvt"
    for subset, lines in (("train", train_lines), ("test", test_lines)):
        text = "".join(f"{i}\t{c}\t{rel}\n" for i, (c, rel) in enumerate(lines))
        write_text(text, lists / f"synthetic_split1_{subset}.txt")
    write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(classes)), lists / "mapping_table.txt")
    for rel in ("list_cvt/synthetic_split1_train.txt", "list_cvt/synthetic_split1_test.txt",
                "list_cvt/mapping_table.txt"):
        files[rel] = sha256_file(root / rel)
    manifest = dict(params=params, classes=classes, test_groups=test_groups,
                    generator="darknb.synthetic.make_synthetic_dark", files=files)
    write_json(manifest, manifest_path)
    return root

