"""The synthetic miniature of DL-KDD's setting: a well-lit pre-training set and a dark target set.

The paper's teacher helps because its backbone was pre-trained on WELL-LIT video (IG65M,
ImageNet) and Zero-DCE moves dark input back toward what that backbone knows (PAPER.md). A
miniature that can test the method needs the same structure, so this module renders:

- a **well-lit pre-training set**: :data:`PRETRAIN_CLASSES`, motions that are NOT the target
  classes (as IG65M's classes are not ARID's), in scenes of their own;
- a **dark target set**: :data:`TARGET_CLASSES`, each clip the well-lit rendering of its scene
  passed through one physical darkening (:class:`Darkening`): low exposure, photon shot noise,
  read noise, 8-bit quantisation. dark = f(well-lit), so the information loss is real;
- dark copies of the pre-training set's validation clips, for the zero-shot check (is there a
  domain gap for enhancement to close?).

Every class has a time-reversed twin (left/right, cw/ccw, in/out ...), so no single frame tells the
class: a model must use time, as ARID's actions require. Splits are scene-disjoint, and a scene
shows every class once, so clips are close to independent and accuracy is averaged over many
scenes (ARID's groups are actors/scenes; its splits are group-disjoint too).

Layout (one root, ARID's conventions, see :func:`make_synthetic_dark`)::

    root/list_cvt/synthetic_split1_{train,val,test}.txt, mapping_table.txt   dark target set
    root/list_cvt/pretrain_{train,val,val_dark}.txt, pretrain_mapping.txt     pre-training set
    root/<Class>/<Class>_<scene>_1.mp4     every ``video_every``-th target scene: real video files
    root/synthetic.json                    parameters, classes, scenes per split, file hashes

Frames live in the frame cache (``darknb.framecache``): clips are rendered straight into it, and
the part written as video files is decoded into it by the same frame-exact reader ARID's files
go through. Those files are lossless (H.264 on RGB planes), so decoded == rendered, which the
generator checks: the video path is exercised without changing the data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from darknb.errors import ConfigError
from darknb.files import read_json, sha256_file, write_json, write_text
from darknb.data.framecache import (
    CACHE_MANIFEST,
    cache_file,
    cache_format as _cache_format,
    cache_manifest,
    default_cache_dir,
    file_checksum,
    write_cache_file,
)
from darknb.data.video import probe, read_frames, write_video

__all__ = ["Darkening", "MANIFEST", "PRETRAIN_CLASSES", "SYNTHETIC_CLASSES", "SyntheticSpec",
           "TARGET_CLASSES", "WellLit", "make_synthetic_dark", "render_lit", "stored_spec",
           "synthetic_is_current"]

MANIFEST = "synthetic.json"  # the set's parameters and file hashes; written last: a complete set
_VERSION = 4                 # bump when rendering or the cache changes (4: checksums), so stale sets are regenerated

TARGET_CLASSES = ("MoveLeft", "MoveRight", "RotateCW", "RotateCCW", "ZoomIn", "ZoomOut",
                  "MoveUp", "MoveDown", "Wave")
SYNTHETIC_CLASSES = TARGET_CLASSES  # the name callers know
PRETRAIN_CLASSES = ("DiagUpLeft", "DiagUpRight", "DiagDownLeft", "DiagDownRight",
                    "OrbitCW", "OrbitCCW", "Pulse", "Shake", "Swing", "Still")
_PRETRAIN_SCENE0 = 100_000   # pre-training scenes are numbered apart: their own appearances


# =========================================================================== scene and motion

def _scene(seed: int, scene: int, H: int, W: int) -> dict:
    """Per-scene appearance: cluttered background albedo and the object's look."""
    rng = np.random.default_rng([seed, 7919, scene])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    bg = np.full((H, W, 3), 0.25, np.float32)
    for _ in range(4):  # low-frequency shading: a few random plane waves per channel
        fx, fy = rng.uniform(-3, 3, 2) * 2 * np.pi
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(fx * xx / W + fy * yy / H + phase)[..., None]
        bg += 0.08 * wave * rng.uniform(0.3, 1.0, 3).astype(np.float32)
    for _ in range(int(rng.integers(4, 8))):  # clutter: static rectangles and discs
        colour = rng.uniform(0.1, 0.6, 3).astype(np.float32)
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        rw, rh = rng.uniform(0.03, 0.15) * W, rng.uniform(0.03, 0.15) * H
        if rng.random() < 0.5:
            m = (np.abs(xx - cx) < rw) & (np.abs(yy - cy) < rh)
        else:
            m = ((xx - cx) / rw) ** 2 + ((yy - cy) / rh) ** 2 < 1
        bg[m] = colour
    return dict(background=np.clip(bg, 0.02, 1.0),
                colour=rng.uniform(0.45, 1.0, 3).astype(np.float32),
                spot=rng.uniform(0.6, 1.0, 3).astype(np.float32),
                stripes=float(rng.uniform(2.0, 4.0)), aspect=float(rng.uniform(0.4, 0.6)),
                size=float(rng.uniform(0.17, 0.22)))


def _motion(cls: str, s: np.ndarray, rng: np.random.Generator, W: int, H: int):
    """Object centre, angle and scale at normalised times ``s`` (T,) for class ``cls``."""
    cx0, cy0 = rng.uniform(0.35, 0.65) * W, rng.uniform(0.35, 0.65) * H  # path stays in view
    a0 = rng.uniform(0, 2 * np.pi)
    sc0 = rng.uniform(0.85, 1.15)
    # Small nuisance drift for every class: translation must be judged by its size, not presence.
    dx, dy = rng.uniform(-0.04, 0.04) * W, rng.uniform(-0.04, 0.04) * H
    cx, cy = cx0 + dx * s, cy0 + dy * s
    ang = a0 + rng.uniform(-0.15, 0.15) * s
    scale = sc0 * np.ones_like(s)
    dist = rng.uniform(0.45, 0.6)
    if cls in ("MoveLeft", "MoveRight"):
        cx = cx + (0.5 - s) * dist * W * (1 if cls == "MoveLeft" else -1)
    elif cls in ("MoveUp", "MoveDown"):
        cy = cy + (0.5 - s) * dist * H * (1 if cls == "MoveUp" else -1)
    elif cls in ("RotateCW", "RotateCCW"):
        turn = rng.uniform(0.6, 1.2) * np.pi  # 108..216 degrees over the clip
        ang = ang + (turn if cls == "RotateCW" else -turn) * s  # y points down: +angle is clockwise
    elif cls in ("ZoomIn", "ZoomOut"):
        f = rng.uniform(1.8, 2.6)
        scale = sc0 * f ** ((s if cls == "ZoomIn" else 1 - s) - 0.5)
    elif cls == "Wave":
        cycles = rng.uniform(1.0, 2.0)
        cx = cx + 0.15 * W * np.sin(2 * np.pi * cycles * s + rng.uniform(0, 2 * np.pi))
    elif cls.startswith("Diag"):
        d = dist / math.sqrt(2)
        cx = cx + (s - 0.5) * d * W * (-1 if "Left" in cls else 1)
        cy = cy + (s - 0.5) * d * H * (-1 if "Up" in cls else 1)
    elif cls in ("OrbitCW", "OrbitCCW"):
        radius = rng.uniform(0.14, 0.2) * W
        phi0 = rng.uniform(0, 2 * np.pi)
        phi = phi0 + rng.uniform(0.7, 1.0) * 2 * np.pi * (1 if cls == "OrbitCW" else -1) * s
        cx = cx + radius * (np.cos(phi) - np.cos(phi0))
        cy = cy + radius * (np.sin(phi) - np.sin(phi0))
    elif cls == "Pulse":
        scale = sc0 * (1.0 + 0.35 * np.sin(2 * np.pi * rng.uniform(1.0, 2.0) * s
                                             + rng.uniform(0, 2 * np.pi)))
    elif cls == "Shake":
        cx = cx + 0.06 * W * rng.standard_normal(s.shape)
        cy = cy + 0.06 * H * rng.standard_normal(s.shape)
    elif cls == "Swing":
        ang = ang + 0.7 * np.sin(2 * np.pi * rng.uniform(1.0, 2.0) * s + rng.uniform(0, 2 * np.pi))
    elif cls != "Still":
        raise ConfigError(f"unknown synthetic class {cls!r}; known: "
                          f"{TARGET_CLASSES + PRETRAIN_CLASSES}")
    return cx, cy, ang, scale


def render_lit(scene: dict, cls: str, rng: np.random.Generator, T: int, H: int, W: int
               ) -> np.ndarray:
    """One clip of class ``cls`` in ``scene`` as linear scene radiance, float32 ``(T, H, W, 3)``
    in [0, 1]: a textured, asymmetric object moving over the scene's clutter, under bright,
    slightly uneven light with 2 % flicker (mean ~0.38). Cameras (well-lit or dark) are applied
    after. The albedos are mapped through ``x ** (1 / 1.5)`` (a flatter, more natural tonal
    spread than the raw random albedos)."""
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
    obj = np.where(spot[..., None], scene["spot"], tex[..., None] * scene["colour"])
    albedo = mask * obj + (1.0 - mask) * scene["background"][None]
    rr = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
    light = rng.uniform(0.85, 1.0) * (1.0 - 0.15 * rr)[None, ..., None]
    flicker = (1.0 + 0.02 * rng.standard_normal(T)).astype(np.float32)[:, None, None, None]
    return np.clip(albedo * light * flicker, 0.0, 1.0).astype(np.float32) ** np.float32(1 / 1.5)


# =========================================================================== cameras

@dataclass(frozen=True)
class WellLit:
    """A normally exposed camera: output ``radiance ** (1 / gamma)`` in 8 bits, no visible noise
    (``gamma=1``: linear, clip mean ~0.38, like normal video)."""

    gamma: float = 1.0

    def __call__(self, radiance: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return _to_uint8(radiance ** (1.0 / self.gamma))


@dataclass(frozen=True)
class Darkening:
    """A camera at low exposure (a physically plausible dark video, Foi et al. 2008's
    Poissonian-Gaussian sensor model):

    1. exposure: the linear radiance is scaled so that the clip's mean signal is ``mean`` of full
       scale (times a per-clip factor drawn from ``jitter``: scenes are not equally dark). 0.08:
       measured on a prototype's validation split, at 0.05 a raw-input student fine-tuned for the
       demo's 10 epochs never left chance (a floor that tests nothing about KD), at 0.08 it does,
       while the zero-shot gap that enhancement closes remains;
    2. photon shot noise: electrons ~ Poisson(signal * ``photons``), ``photons`` electrons at full
       scale (a small full-well / high-gain sensor);
    3. read noise: + N(0, ``read_noise``^2) in full-scale units;
    4. optional camera tone curve ``y ** (1 / tone_gamma)`` (1.0 = linear raw-like output);
    5. 8-bit quantisation.

    The information lost in 2, 3 and 5 is real: no enhancer can restore it. ARID's authors darken
    normal video with a tone curve only (ffmpeg ``eq=gamma``, gamma ~ N(0.2, 0.07)); that keeps
    every distinction of the original, which real dark video does not.
    """

    mean: float = 0.08
    jitter: tuple[float, float] = (0.7, 1.3)
    photons: float = 200.0
    read_noise: float = 0.004
    tone_gamma: float = 1.0

    def __post_init__(self):
        ok = (0.0 < self.mean < 1.0 and 0.0 < self.jitter[0] <= self.jitter[1]
              and self.photons > 0 and self.read_noise >= 0 and self.tone_gamma > 0)
        if not ok:
            raise ConfigError(f"Darkening: invalid parameters {self}")

    def __call__(self, radiance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gain = self.mean * rng.uniform(*self.jitter) / max(float(radiance.mean()), 1e-6)
        electrons = rng.poisson(radiance * (gain * self.photons)).astype(np.float32)
        y = electrons / self.photons + self.read_noise * rng.standard_normal(radiance.shape,
                                                                             dtype=np.float32)
        y = np.clip(y, 0.0, 1.0)
        if self.tone_gamma != 1.0:
            y = y ** (1.0 / self.tone_gamma)
        return _to_uint8(y)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


# =========================================================================== the set

@dataclass(frozen=True)
class SyntheticSpec:
    """What :func:`make_synthetic_dark` renders (the defaults are the demo's set)."""

    num_classes: int = 9             # target classes: the first n of TARGET_CLASSES
    train_scenes: int = 60           # x num_classes clips each (one clip per class per scene)
    val_scenes: int = 17
    test_scenes: int = 70
    pretrain_scenes: int = 180       # x len(PRETRAIN_CLASSES) well-lit clips
    pretrain_val_scenes: int = 18
    num_frames: int = 8
    size: int = 40                   # rendered frame side (the models crop 32 of it)
    video_every: int = 8             # every n-th target scene is also written as video files
    seed: int = 0
    well_lit: WellLit = field(default_factory=WellLit)
    darkening: Darkening = field(default_factory=Darkening)

    def __post_init__(self):
        checks = {"num_classes": 2 <= self.num_classes <= len(TARGET_CLASSES),
                  "train_scenes": self.train_scenes >= 1, "val_scenes": self.val_scenes >= 1,
                  "test_scenes": self.test_scenes >= 1, "pretrain_scenes": self.pretrain_scenes >= 1,
                  "pretrain_val_scenes": self.pretrain_val_scenes >= 1,
                  "num_frames": self.num_frames >= 2, "size": self.size >= 16,
                  "video_every": self.video_every >= 1, "seed": self.seed >= 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"synthetic set: invalid {bad[0]}={getattr(self, bad[0])!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _plan(spec: SyntheticSpec) -> dict[str, list[int]]:
    """Scene ids per split: target scenes 1..n shuffled into train/val/test (seeded)."""
    n = spec.train_scenes + spec.val_scenes + spec.test_scenes
    order = [int(g) for g in np.random.default_rng([spec.seed, 104729]).permutation(np.arange(1, n + 1))]
    a, b = spec.train_scenes, spec.train_scenes + spec.val_scenes
    p0 = _PRETRAIN_SCENE0
    return {"train": sorted(order[:a]), "val": sorted(order[a:b]), "test": sorted(order[b:]),
            "pretrain_train": list(range(p0 + 1, p0 + 1 + spec.pretrain_scenes)),
            "pretrain_val": list(range(p0 + 1 + spec.pretrain_scenes,
                                       p0 + 1 + spec.pretrain_scenes + spec.pretrain_val_scenes))}


def make_synthetic_dark(root: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                        spec: SyntheticSpec | None = None, cache_format: str = "npy",
                        **spec_fields) -> Path:
    """Render the synthetic miniature (see the module docstring) into ``root`` and its frame cache.

    ``cache_dir`` defaults to ``<root's parent>/cache/<root's name>`` (``data/synthetic`` ->
    ``data/cache/synthetic``, the RunConfig default). ``spec`` or its fields as keywords
    (``make_synthetic_dark(root, train_scenes=4, ...)``) say what to render. Deterministic from
    ``spec.seed``; a complete set with the same spec is left as it is (a no-op), anything else is
    rendered again (a cache file that fails its checksum too). ``cache_format``: the frame
    cache's format (:data:`darknb.data.framecache.FORMATS`). Returns ``root``.
    """
    unknown = sorted(set(spec_fields) - {f.name for f in dataclasses.fields(SyntheticSpec)})
    if unknown:
        raise ConfigError(f"make_synthetic_dark: unknown parameter(s) {unknown}; known: "
                          f"{[f.name for f in dataclasses.fields(SyntheticSpec)]}")
    spec = dataclasses.replace(spec or SyntheticSpec(), **spec_fields)
    root = Path(root)
    fmt = _cache_format(cache_format).name
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(root, fmt)
    params = json.loads(json.dumps({"version": _VERSION, **spec.to_dict()}))  # as stored
    if _complete(root, cache_dir, params, fmt):
        return root

    started = time.perf_counter()
    plan = _plan(spec)
    classes = list(TARGET_CLASSES[:spec.num_classes])
    H = W = spec.size
    videos: dict[str, dict] = {}
    files: dict[str, str] = {}
    lists: dict[str, list[tuple[int, str]]] = {}

    def render(scene_id: int, c: int, name: str):
        rng = np.random.default_rng([spec.seed, scene_id, c])
        return render_lit(scenes(scene_id), name, rng, spec.num_frames, H, W), rng

    scene_cache: dict[int, dict] = {}

    def scenes(scene_id: int) -> dict:
        if scene_id not in scene_cache:
            scene_cache.clear()  # scenes are visited in order: keep one
            scene_cache[scene_id] = _scene(spec.seed, scene_id, H, W)
        return scene_cache[scene_id]

    def store(rel: str, frames: np.ndarray, as_video: bool) -> None:
        if as_video:  # real, lossless video file, decoded by the frame-exact reader into the cache
            write_video(root / rel, frames, lossless=True)
            files[rel] = sha256_file(root / rel)
            decoded = read_frames(root / rel, range(probe(root / rel).num_frames))
            if not np.array_equal(decoded, frames):
                raise ConfigError(f"synthetic set: {root / rel} does not decode to the frames written")
            frames = decoded
        videos[rel] = write_cache_file(frames, cache_file(cache_dir, rel, fmt), fmt)
        # the clips written as videos record them, as a prepared cache does: a replaced video is
        # refused by the dataset instead of served from these frames
        videos[rel]["source"] = ({"bytes": (root / rel).stat().st_size,
                                  "mtime_ns": (root / rel).stat().st_mtime_ns,
                                  "checksum": file_checksum(root / rel)} if as_video else None)

    # dark target set: one clip per class per scene
    for subset in ("train", "val", "test"):
        lines = lists[f"synthetic_split1_{subset}"] = []
        for scene_id in plan[subset]:
            for c, name in enumerate(classes):
                radiance, rng = render(scene_id, c, name)
                rel = f"{name}/{name}_{scene_id}_1.mp4"
                store(rel, spec.darkening(radiance, rng), as_video=scene_id % spec.video_every == 0)
                lines.append((c, rel))
    # well-lit pre-training set, and dark copies of its validation clips (zero-shot check)
    dark_lines = lists["pretrain_val_dark"] = []
    for subset in ("train", "val"):
        lines = lists[f"pretrain_{subset}"] = []
        for scene_id in plan[f"pretrain_{subset}"]:
            for c, name in enumerate(PRETRAIN_CLASSES):
                radiance, rng = render(scene_id, c, name)
                rel = f"pretrain/{name}/{name}_{scene_id}_1.mp4"
                store(rel, spec.well_lit(radiance), as_video=False)
                lines.append((c, rel))
                if subset == "val":
                    rel = f"pretrain_dark/{name}/{name}_{scene_id}_1.mp4"
                    store(rel, spec.darkening(radiance, rng), as_video=False)
                    dark_lines.append((c, rel))

    for name, lines in lists.items():
        text = "".join(f"{i}\t{c}\t{rel}\n" for i, (c, rel) in enumerate(lines))
        files[f"list_cvt/{name}.txt"] = _write_list(root / "list_cvt" / f"{name}.txt", text)
    files["list_cvt/mapping_table.txt"] = _write_list(
        root / "list_cvt" / "mapping_table.txt", "".join(f"{i}\t{n}\n" for i, n in enumerate(classes)))
    files["list_cvt/pretrain_mapping.txt"] = _write_list(
        root / "list_cvt" / "pretrain_mapping.txt",
        "".join(f"{i}\t{n}\n" for i, n in enumerate(PRETRAIN_CLASSES)))
    remedy = (f"delete {cache_dir} (the next run renders the synthetic set's cache again, "
              "identically)")
    write_json(cache_manifest(root=root, short_side=spec.size, videos=videos, fmt=fmt,
                              seconds=time.perf_counter() - started, source=MANIFEST, remedy=remedy),
               cache_dir / CACHE_MANIFEST)
    write_json(dict(params=params, classes=classes, pretrain_classes=list(PRETRAIN_CLASSES),
                    scenes=plan, cache_dir=str(cache_dir.resolve()), files=files,
                    clips={k: len(v) for k, v in lists.items()},
                    seconds=round(time.perf_counter() - started, 2),
                    generator="darknb.synthetic.make_synthetic_dark"), root / MANIFEST)
    return root


def _write_list(path: Path, text: str) -> str:
    write_text(text, path)
    return sha256_file(path)


def stored_spec(root: str | os.PathLike) -> SyntheticSpec | None:
    """The spec of the set rendered in ``root`` by this darknb version, or None (absent, damaged
    manifest or another version). Re-rendering a set with it reproduces the same bytes, e.g. into
    another frame cache, instead of replacing the set with the default one."""
    try:
        params = dict(read_json(Path(root) / MANIFEST)["params"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if params.pop("version", None) != _VERSION:
        return None
    try:
        well_lit, darkening = WellLit(**params.pop("well_lit")), Darkening(**params.pop("darkening"))
        darkening = dataclasses.replace(darkening, jitter=tuple(darkening.jitter))
        return SyntheticSpec(**params, well_lit=well_lit, darkening=darkening)
    except (KeyError, TypeError, ConfigError):
        return None


def synthetic_is_current(root: str | os.PathLike, cache_dir: str | os.PathLike,
                         cache_format: str = "npy") -> bool:
    """A complete set of this darknb version is in ``root`` with its cache in ``cache_format``
    (whatever its spec). Cheap: the cache's files are verified when read, not here."""
    try:
        version = read_json(Path(root) / MANIFEST)["params"]["version"]
        held = read_json(Path(cache_dir) / CACHE_MANIFEST).get("format")
    except (OSError, ValueError, KeyError):
        return False
    return version == _VERSION and held == cache_format


def _complete(root: Path, cache_dir: Path, params: dict, fmt: str) -> bool:
    """The set in ``root`` was rendered with ``params``, its files are intact, its cache (in
    format ``fmt``) exists and every cache file matches its checksum."""
    try:
        old = read_json(root / MANIFEST)
        cache = read_json(cache_dir / CACHE_MANIFEST)
    except (OSError, ValueError):
        return False
    if old.get("params") != params or cache.get("format") != fmt:
        return False
    if not all((root / rel).is_file() and sha256_file(root / rel) == digest
               for rel, digest in old.get("files", {}).items()):
        return False
    return all(cache_file(cache_dir, rel, fmt).is_file()
               and file_checksum(cache_file(cache_dir, rel, fmt)) == entry.get("checksum")
               for rel, entry in cache.get("videos", {}).items())
