"""The frame cache: its formats, its reader and its writer, and the checksums that prove its content.

One file per video, ``cache_dir/<relative path>.<suffix>``, holding its ``N`` frames at short side
``short_side`` (uint8 ``(N, h, w, 3)``), written atomically; then ``cache_dir/cache.json`` (written
last: its presence marks a complete cache) with the dataset root, the short side, the format and,
per video, the frame count, the file's size and checksum, and the identity of what it was decoded
from (the source video's size, mtime and content checksum). A cache holds one dataset root's
videos, in one format.

Formats (:data:`FORMATS`; measured by ``benchmarks/bench_cache_formats.py``, see the README's
**Cache** paragraph for the table):

- ``npy``: one uint8 ``.npy`` per video, read through ``np.load(mmap_mode="r")``: no decoder, a
  clip reads only its frames. Lossless. ~65 KB per 170x128 frame (ARID v1: ~25 GB).
- ``zstd``: a frame container (below), each frame compressed with Zstandard (level 1): lossless,
  2.5x smaller than ``npy`` on ARID-like frames, ~13 ms of CPU per 64-frame clip (measured on a
  loaded 2-core machine; ``npy``: under 2 ms). The documented choice for ARID-size data.
- ``png``: the container with one PNG per frame: lossless, 3.5x smaller, ~7x slower than zstd.
- ``jpeg``: the container with one JPEG per frame at quality 95, 4:2:0 (what DarkLight's frame
  extraction writes: ``cv2.imwrite``'s default). LOSSY: 16x smaller than ``npy``, but frames
  differ from the decoded video by ~0.8 grey levels on average (up to 10) where dark frames live
  in the lowest ~30 levels, exactly what an enhancer amplifies. The manifest says
  ``"lossless": false`` and the run's provenance repeats it
  (:func:`darknb.data.protocol.data_provenance`).

Every format keeps the frames exactly (frame i of the cache is frame i of the video); the
lossless ones keep every pixel.

The frame container (``zstd``, ``png``, ``jpeg``): ``b"DKNBFRM1"``, a little-endian uint32 header
length, a JSON header ``{"codec", "shape", "ends"}`` (``ends``: where each frame's bytes end, from
the start of the payload), then the frames' encoded bytes one after the other, so a clip decodes
only its frames.

Checksums (issue 15): xxHash's XXH3-128 of every file's bytes (measured on a 4.2 MB clip: ~50
GB/s, against sha256's 1.8 and blake2b's 0.9: the check stays invisible next to reading the
file; it guards against damage, not against an adversary). :class:`FrameCache` verifies a file
the first time this process reads it (and again if its size or mtime changes), so a damaged,
truncated or overwritten file is never served: it is a :class:`CacheError` naming the file, the
video and the command that re-decodes it. The source video is checked at first read too: its
size and mtime (a stat), and its content checksum only when those changed: a video replaced under
the same name is refused, not served from the old frames, while a touched or copied one is
served. :func:`prepare_dataset` re-verifies every file and re-decodes what no longer matches
(a damaged file, a replaced source: by content checksum, so a merely touched or copied video is
reused).
"""

from __future__ import annotations

import io
import json
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xxhash

from darknb.config import CACHE_FORMATS, default_cache_dir
from darknb.data.lists import nonempty_list, safe_relpath
from darknb.data.video import probe, read_frames
from darknb.errors import CacheError, ConfigError, VideoReadError
from darknb.files import atomic_path, read_json, write_json

__all__ = ["CACHE_MANIFEST", "FORMATS", "PARTIAL_MANIFEST", "TRANSFORM_MANIFEST", "CacheFormat",
           "FrameCache", "cache_file", "cache_identity", "cache_manifest", "check_cache_root",
           "decode_file", "default_cache_dir", "encode_frames", "file_checksum", "prepare_dataset",
           "read_cached", "resize_short_uint8", "write_cache_file"]

CACHE_MANIFEST = "cache.json"          # a complete cache: written last
PARTIAL_MANIFEST = "cache.partial.json"  # what an unfinished prepare has written so far (resumable)
TRANSFORM_MANIFEST = "transform.json"  # a transformed cache's transform signature, written before any frame
CHECKSUM = "xxh3_128"


# =========================================================================== formats

@dataclass(frozen=True)
class CacheFormat:
    """One way of storing a video's frames: ``encode`` one frame ``(h, w, 3)`` uint8 -> bytes,
    ``decode`` a list of those -> ``(k, h, w, 3)`` uint8 (None for ``npy``: one array per file)."""

    name: str
    suffix: str
    lossless: bool
    codec: dict
    encode: Callable[[np.ndarray], bytes] | None = None
    decode: Callable[[list, tuple], np.ndarray] | None = None


# Level 1: on ARID-like frames 3 % larger than level 3 and ~25 % faster to decode (measured, 64
# frames at 170x128: 2.33x vs 2.41x smaller than npy, 5.2 vs 7.1 ms per clip); decoding is what
# every training epoch pays, encoding only prepare.
ZSTD_LEVEL = 1


def _zstd_encode(frame: np.ndarray) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(np.ascontiguousarray(frame).tobytes())


def _zstd_decode(chunks: list, shape: tuple) -> np.ndarray:
    import zstandard

    d = zstandard.ZstdDecompressor()
    out = np.empty((len(chunks), *shape), np.uint8)
    for k, chunk in enumerate(chunks):
        out[k] = np.frombuffer(d.decompress(chunk), np.uint8).reshape(shape)
    return out


def _image_encode(fmt: str, **options) -> Callable[[np.ndarray], bytes]:
    def encode(frame: np.ndarray) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame), "RGB").save(buf, format=fmt, **options)
        return buf.getvalue()
    return encode


def _image_decode(chunks: list, shape: tuple) -> np.ndarray:
    # Pillow (libjpeg-turbo, zlib): torchvision's image codecs are deprecated since 0.29
    from PIL import Image

    out = np.empty((len(chunks), *shape), np.uint8)
    for k, chunk in enumerate(chunks):
        with Image.open(io.BytesIO(chunk)) as image:
            frame = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        if frame.shape != tuple(shape):
            raise ValueError(f"a frame decoded to {frame.shape}, the header says {tuple(shape)}")
        out[k] = frame
    return out


JPEG_QUALITY = 95  # DarkLight's frames: cv2.imwrite's default quality, 4:2:0 (libjpeg's default)
FORMATS: dict[str, CacheFormat] = {
    "npy": CacheFormat("npy", ".npy", True, {"name": "npy", "dtype": "uint8", "layout": "NHWC"}),
    "zstd": CacheFormat("zstd", ".zstd.frames", True, {"name": "zstd", "level": ZSTD_LEVEL, "per": "frame"},
                        _zstd_encode, _zstd_decode),
    "png": CacheFormat("png", ".png.frames", True, {"name": "png", "compress_level": 6},
                       _image_encode("PNG", compress_level=6), _image_decode),
    "jpeg": CacheFormat("jpeg", ".jpeg.frames", False,
                        {"name": "jpeg", "quality": JPEG_QUALITY, "subsampling": "4:2:0"},
                        _image_encode("JPEG", quality=JPEG_QUALITY, subsampling="4:2:0"), _image_decode),
}
assert tuple(FORMATS) == CACHE_FORMATS  # config validates cache_format by these names


def cache_format(name: str) -> CacheFormat:
    if name not in FORMATS:
        raise ConfigError(f"cache_format must be one of {list(FORMATS)}, got {name!r}")
    return FORMATS[name]


def cache_file(cache_dir: str | os.PathLike, rel: str, fmt: str = "npy") -> Path:
    """Where video ``rel`` (relative to its dataset root) lives in a cache of format ``fmt``."""
    return Path(cache_dir) / (rel + cache_format(fmt).suffix)


# =========================================================================== bytes <-> frames

_MAGIC = b"DKNBFRM1"


def encode_frames(frames: np.ndarray, fmt: str) -> bytes:
    """The bytes of one cache file holding ``frames`` (uint8 ``(N, h, w, 3)``) in format ``fmt``."""
    spec = cache_format(fmt)
    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ConfigError(f"frame cache: frames must be uint8 (N, h, w, 3), got {frames.dtype} {frames.shape}")
    if spec.encode is None:
        buf = io.BytesIO()
        np.save(buf, frames)
        return buf.getvalue()
    chunks = [spec.encode(f) for f in frames]
    header = json.dumps({"codec": spec.name, "shape": list(frames.shape),
                         "ends": np.cumsum([len(c) for c in chunks]).tolist()}).encode()
    return b"".join([_MAGIC, struct.pack("<I", len(header)), header, *chunks])


def _container(data: memoryview) -> tuple[CacheFormat, tuple, np.ndarray, int]:
    """Parse a frame container: (format, shape, frame byte offsets (N + 1,), payload start)."""
    if bytes(data[:8]) != _MAGIC:
        raise ValueError("not a darknb frame container (bad magic bytes)")
    (n,) = struct.unpack("<I", data[8:12])
    header = json.loads(bytes(data[12:12 + n]))
    spec, shape = FORMATS[header["codec"]], tuple(header["shape"])
    offsets = np.concatenate([[0], np.asarray(header["ends"], np.int64)])
    start = 12 + n
    if len(offsets) != shape[0] + 1 or start + offsets[-1] != len(data):
        raise ValueError(f"truncated or padded: {len(data)} bytes, the header promises {start + offsets[-1]}")
    return spec, shape, offsets, start


def decode_file(data: bytes, path: str | os.PathLike, indices: Sequence[int] | None = None
                ) -> np.ndarray:
    """The frames (all, or ``indices`` in order, repeats allowed) of a cache file's bytes
    ``data``; a damaged file is a :class:`CacheError` naming ``path``."""
    try:
        if data[:6] == b"\x93NUMPY":
            array = np.load(io.BytesIO(data))
            if array.dtype != np.uint8 or array.ndim != 4:
                raise ValueError(f"holds {array.dtype} {array.shape}, not uint8 (N, h, w, 3)")
            return array if indices is None else np.ascontiguousarray(array[np.asarray(indices)])
        view = memoryview(data)
        spec, shape, offsets, start = _container(view)
        if indices is None:
            unique = list(range(shape[0]))
        else:
            unique = sorted({int(i) for i in indices})
            if unique and not 0 <= unique[0] <= unique[-1] < shape[0]:
                raise IndexError(f"frames {unique[0]}..{unique[-1]} asked of {shape[0]}")
        decoded = spec.decode([view[start + offsets[i]:start + offsets[i + 1]] for i in unique],
                              shape[1:])
        if indices is None or list(indices) == unique:
            return decoded
        return decoded[np.searchsorted(np.asarray(unique), np.asarray(indices))]
    except Exception as exc:  # numpy, json, zstandard, Pillow: whatever a damaged file raises
        raise CacheError(f"frame cache file {path} cannot be decoded (damaged or truncated): "
                         f"{type(exc).__name__}: {exc}") from exc


def checksum_bytes(data) -> str:
    return f"{CHECKSUM}:{xxhash.xxh3_128_hexdigest(data)}"


def file_checksum(path: str | os.PathLike) -> str:
    """``"xxh3_128:<hex>"`` of a file's bytes (read in 4 MB pieces)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(4 << 20), b""):
            digest.update(piece)
    return f"{CHECKSUM}:{digest.hexdigest()}"


def write_cache_file(frames: np.ndarray, path: str | os.PathLike, fmt: str = "npy") -> dict:
    """Write ``frames`` as one cache file (atomically; read back and checked before it becomes
    visible; a lossless format must decode to ``frames`` exactly) and return its manifest entry
    ``{"frames", "shape", "bytes", "checksum"}``. Not fsynced: a torn file after a power cut
    fails its checksum and is re-decoded, and ``cache.json`` is written durably last."""
    spec = cache_format(fmt)
    data = encode_frames(frames, fmt)
    digest = checksum_bytes(data)
    if spec.lossless:  # the codec's own round trip, once, at write time
        back = decode_file(data, path)
        if not np.array_equal(back, frames):
            raise CacheError(f"frame cache: {fmt} did not give back the frames of {path} exactly")
    with atomic_path(path, durable=False) as tmp:
        tmp.write_bytes(data)
        if file_checksum(tmp) != digest:
            raise OSError(f"verification of {tmp} failed: it does not read back as written")
    return dict(frames=int(frames.shape[0]), shape=list(frames.shape), bytes=len(data), checksum=digest)


# =========================================================================== reading

# Reading: a small video's frames are decoded whole once and kept in this process's memory (least
# recently used first out, ``DARKNB_CACHE_MEMORY_MB``, default 512 MB, 0 = never): the synthetic
# set's clips are 38 KB each, and opening a memory map per clip cost 11 % of a demo training run
# (0.18 ms vs 0.12 ms per read, then ~0.01 ms from memory). A larger .npy is memory-mapped, so a
# clip reads only its frames; a larger container is read and only the clip's frames are decoded.
# An entry is keyed by the file's size and mtime: a rewritten file is read (and verified) again.
SMALL_FILE = 4 << 20


class _Memory:
    def __init__(self):
        self.arrays: OrderedDict[str, tuple[tuple, np.ndarray]] = OrderedDict()
        self.bytes = 0

    def limit(self) -> int:
        return int(float(os.environ.get("DARKNB_CACHE_MEMORY_MB", "512")) * (1 << 20))

    def get(self, path: str, stamp: tuple) -> np.ndarray | None:
        hit = self.arrays.get(path)
        if hit is None or hit[0] != stamp:
            return None
        self.arrays.move_to_end(path)
        return hit[1]

    def put(self, path: str, stamp: tuple, array: np.ndarray) -> None:
        old = self.arrays.pop(path, None)
        if old is not None:
            self.bytes -= old[1].nbytes
        limit = self.limit()
        if array.nbytes > limit:
            return
        while self.arrays and self.bytes + array.nbytes > limit:
            self.bytes -= self.arrays.popitem(last=False)[1][1].nbytes
        array.flags.writeable = False  # shared by every read: callers copy what they cut out
        self.arrays[path] = (stamp, array)
        self.bytes += array.nbytes

    def clear(self) -> None:
        self.arrays.clear()
        self.bytes = 0


_memory = _Memory()
_verified: dict[str, tuple] = {}  # path -> (size, mtime_ns, inode, checksum) this process checked


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _verify(path: str, data, stamp: tuple, checksum: str) -> None:
    got = checksum_bytes(data) if data is not None else file_checksum(path)
    if got != checksum:
        raise CacheError(f"frame cache file {path} is damaged: its content ({got}) is not what was "
                         f"written ({checksum}, recorded in {CACHE_MANIFEST})")
    _verified[path] = (*stamp, checksum)


def _read(path: str, checksum: str | None, indices: np.ndarray | None) -> np.ndarray:
    """Frames of one cache file (all when ``indices`` is None: then possibly read-only and shared)."""
    st = os.stat(path)
    stamp = _stamp(st)
    verify = checksum is not None and _verified.get(path) != (*stamp, checksum)
    array = None if verify else _memory.get(path, stamp)  # memory holds only what was checked
    if array is None:
        if path.endswith(".npy") and st.st_size > SMALL_FILE:
            if verify:
                _verify(path, None, stamp, checksum)
            try:
                array = np.load(path, mmap_mode="r")
            except (ValueError, OSError) as exc:
                raise CacheError(f"frame cache file {path} cannot be read (damaged or truncated): "
                                 f"{exc}") from exc
        else:
            data = Path(path).read_bytes()
            if verify:
                _verify(path, data, stamp, checksum)
            if indices is not None and not path.endswith(".npy") and _decoded_bytes(data) > SMALL_FILE:
                return decode_file(data, path, indices)  # a large container: only these frames
            array = decode_file(data, path)
            if array.nbytes <= SMALL_FILE:
                _memory.put(path, stamp, array)
    return array if indices is None else np.ascontiguousarray(array[indices])


def _decoded_bytes(data: bytes) -> int:
    try:
        (n,) = struct.unpack("<I", data[8:12])
        return int(np.prod(json.loads(data[12:12 + n])["shape"]))
    except (ValueError, KeyError, TypeError, struct.error):
        return 0  # decode_file names what is wrong


def read_cached(path: str | os.PathLike, checksum: str | None = None) -> np.ndarray:
    """The frames ``(N, h, w, 3)`` uint8 of one cache file, read-only: from this process's memory
    when it holds them (small files, see above), else read (and kept) or memory-mapped. With
    ``checksum`` (the manifest's) the file is verified the first time this process reads it; a
    mismatch, or a file that cannot be decoded, is a :class:`CacheError` naming it."""
    return _read(str(path), checksum, None)


def read_cached_frames(path: str | os.PathLike, indices, checksum: str | None = None) -> np.ndarray:
    """Frames ``indices`` (in order, repeats allowed) of one cache file, as a new uint8 array
    ``(len(indices), h, w, 3)``; a large container decodes only those frames. ``checksum``: as
    :func:`read_cached`."""
    return _read(str(path), checksum, np.asarray(indices, dtype=np.int64))


# =========================================================================== one cache

def check_cache_root(manifest: dict, cache_dir: Path, root_resolved: Path) -> None:
    """A cache holds one dataset root's videos: refuse to mix another root into it."""
    if manifest.get("root") and Path(manifest["root"]) != root_resolved:
        raise ConfigError(f"frame cache {cache_dir} holds videos of {manifest['root']}, not of "
                          f"{root_resolved}; give this dataset its own cache_dir (or cache_dir='')")


def _remedy(manifest: dict) -> str:
    return manifest.get("remedy") or "prepare the cache again (`python -m darknb prepare`)"


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def _source_identity(path: Path, *, content: bool = True) -> dict | None:
    """What a cached video was decoded from: size, mtime and (``content``) checksum, or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    out = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    if content:
        out["checksum"] = file_checksum(path)
    return out


_manifests: dict[str, tuple] = {}  # cache.json path -> ((path, size, mtime_ns), its content)


class FrameCache:
    """A prepared frame cache (``cache_dir`` with its ``cache.json``), as datasets read it: every
    file checked against its recorded checksum the first time this process reads it, every source
    video's size and mtime against those it had when it was cached (see the module doc)."""

    def __init__(self, cache_dir: str | os.PathLike, manifest: dict):
        self.dir = Path(cache_dir)
        self.manifest = manifest
        self.format = manifest.get("format", "npy-uint8-NHWC")
        self.format = "npy" if self.format == "npy-uint8-NHWC" else self.format
        self.videos: dict[str, dict] = manifest.get("videos", {})
        self._sources_checked: set[str] = set()
        old = [rel for rel, entry in self.videos.items() if "checksum" not in entry]
        if old or self.format not in FORMATS:
            raise CacheError(f"frame cache {self.dir} was made by an older darknb (no checksums"
                             f"{'' if self.format in FORMATS else ', format ' + repr(self.format)}): "
                             f"its content cannot be verified; {_remedy(manifest)} (it re-decodes "
                             "what it cannot verify)")

    @classmethod
    def open(cls, cache_dir: str | os.PathLike | None) -> "FrameCache | None":
        """The cache in ``cache_dir``, or None when there is none; an unfinished one (prepare was
        interrupted) is a :class:`CacheError` saying so."""
        if cache_dir is None:
            return None
        cache_dir = Path(cache_dir)
        marker = cache_dir / CACHE_MANIFEST
        if not marker.is_file():
            if (cache_dir / PARTIAL_MANIFEST).is_file():
                raise CacheError(f"frame cache {cache_dir} is unfinished (a prepare was interrupted "
                                 f"or failed): {_remedy(read_json(cache_dir / PARTIAL_MANIFEST))} "
                                 "to finish it")
            return None
        st = marker.stat()
        key = (str(marker), st.st_size, st.st_mtime_ns)
        if _manifests.get(str(marker), (None,))[0] != key:  # train / val / test share one parse
            _manifests[str(marker)] = (key, read_json(marker))
        return cls(cache_dir, _manifests[str(marker)][1])

    @property
    def lossless(self) -> bool:
        return FORMATS[self.format].lossless

    def path(self, rel: str) -> Path | None:
        """The file holding video ``rel``, or None when the cache does not hold it."""
        if rel not in self.videos:
            return None
        p = cache_file(self.dir, rel, self.format)
        return p if p.is_file() else None

    def frame_count(self, rel: str, root: Path | None = None) -> int:
        if root is not None:
            self.check_source(rel, root)
        return int(self.videos[rel]["frames"])

    def check_source(self, rel: str, root: Path) -> None:
        """Refuse frames of a video that was replaced since it was cached; checked once per video
        per process: its size and mtime (a stat) and, only when they changed, its content checksum
        (a touched or copied video is still served). A video that is absent is not checked: the
        cache may outlive its sources (the synthetic set keeps most clips only here)."""
        if rel in self._sources_checked:
            return
        then = self.videos[rel].get("source") or {}
        if "bytes" in then:
            path = Path(root) / rel
            now = _source_identity(path, content=False)
            if now is not None and (now["bytes"], now["mtime_ns"]) != (then["bytes"], then["mtime_ns"]) \
                    and file_checksum(path) != then.get("checksum"):
                raise CacheError(
                    f"video {path} changed since it was cached in {self.dir} (size {then['bytes']} "
                    f"-> {now['bytes']} bytes, modified {_when(then['mtime_ns'])} -> "
                    f"{_when(now['mtime_ns'])}, other content): its cached frames are the old "
                    f"video's; {_remedy(self.manifest)} to re-decode it")
        self._sources_checked.add(rel)

    def read(self, rel: str, indices, root: Path | None = None) -> np.ndarray:
        """Frames ``indices`` of video ``rel``, verified (see the class doc)."""
        if root is not None:
            self.check_source(rel, root)
        entry = self.videos[rel]
        try:
            return read_cached_frames(cache_file(self.dir, rel, self.format), indices,
                                      checksum=entry["checksum"])
        except CacheError as exc:
            raise CacheError(f"{exc} (video {rel}); {_remedy(self.manifest)} to re-decode it") from exc

    def identity(self) -> dict:
        """:func:`cache_identity` of this cache (computed once)."""
        if getattr(self, "_identity", None) is None:
            self._identity = cache_identity(self.manifest)
        return self._identity


def cache_identity(manifest: dict) -> dict:
    """What identifies a cache's content, for provenance and fingerprints: its format, whether
    it is lossless, its short side, its transform, and one checksum over every file's checksum."""
    fmt = manifest.get("format", "npy")
    digest = xxhash.xxh3_128()
    for rel in sorted(manifest.get("videos", {})):
        digest.update(f"{rel}\t{manifest['videos'][rel].get('checksum')}\n".encode())
    return {"format": fmt, "lossless": bool(manifest.get("lossless", True)),
            "codec": manifest.get("codec"), "short_side": manifest.get("short_side"),
            "transform": manifest.get("transform"), "videos": len(manifest.get("videos", {})),
            "content": f"{CHECKSUM}:{digest.hexdigest()}"}


def resize_short_uint8(frames: np.ndarray, short_side: int) -> np.ndarray:
    T, H, W, _ = frames.shape
    scale = short_side / min(H, W)
    h, w = round(H * scale), round(W * scale)
    if (h, w) == (H, W):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# =========================================================================== writing

def cache_manifest(*, root: Path, short_side: int, videos: dict, failed: dict | None = None,
                   seconds: float = 0.0, fmt: str = "npy", **extra) -> dict:
    """The content of ``cache.json``: ``videos`` maps rel -> {"frames": N, "shape": [N, h, w, 3],
    "bytes", "checksum", "source"} (see :func:`write_cache_file`)."""
    spec = cache_format(fmt)
    return dict(format=spec.name, lossless=spec.lossless, codec=spec.codec, checksum=CHECKSUM,
                short_side=int(short_side), root=str(Path(root).resolve()), videos=videos,
                failed=dict(failed or {}), seconds=round(float(seconds), 3), **extra)


def _cache_suffixes() -> tuple[str, ...]:
    return tuple(spec.suffix for spec in FORMATS.values())


def _check_cache_transform(cache_dir: Path, signature: dict | None) -> None:
    """A transformed cache holds ONE transform's frames, a raw cache none: refuse to mix them."""
    path = cache_dir / TRANSFORM_MANIFEST
    held = read_json(path) if path.is_file() else None
    if held is None and signature is not None and any(
            p.name.endswith(_cache_suffixes()) for p in cache_dir.rglob("*") if p.is_file()):
        raise ConfigError(f"{cache_dir} holds raw (untransformed) frames; give the transformed "
                          "(e.g. enhanced) cache its own directory")
    if held is not None and held != signature:
        raise ConfigError(f"frame cache {cache_dir} was made with {held}, asked for "
                          f"{signature or 'raw frames'}; use another directory or delete it")
    if signature is not None and held is None:
        write_json(signature, path)


def _stale(entry: dict | None, out: Path, source: dict | None) -> str | None:
    """Why the cached file ``out`` (manifest ``entry``) cannot be reused, or None when it can:
    ``"new"`` (never recorded), ``"damaged: ..."``, ``"source changed: ..."`` or ``"unverifiable:
    ..."``. ``source``: the source's identity now (a video's size / mtime / checksum, or a source
    cache entry's checksum), None when the source is absent."""
    if entry is None:
        return "new"
    if "checksum" not in entry:
        return "unverifiable: no checksum (cached by an older darknb)"
    if not out.is_file():
        return "damaged: its cache file is missing"
    got = file_checksum(out)
    if got != entry["checksum"]:
        return f"damaged: its cache file's checksum is {got[-8:]}, not {entry['checksum'][-8:]}"
    then = entry.get("source") or {}
    if source is not None and then.get("checksum") and source.get("checksum") != then["checksum"]:
        return (f"source changed: {then.get('bytes', '?')} -> {source.get('bytes', '?')} bytes, "
                "another content checksum")
    return None


def prepare_dataset(root, list_files: Sequence, cache_dir, *, short_side: int = 128,
                    on_error: str = "raise",
                    progress: bool | Callable[[int, int, str], None] | None = None,
                    transform: Callable[[np.ndarray], np.ndarray] | None = None,
                    signature: dict | None = None,
                    source_cache: str | os.PathLike | None = None,
                    cache_format: str = "npy", remedy: str | None = None) -> dict:
    """Decode every video named in ``list_files`` once (sequentially: exact) into a frame cache.

    Each video becomes one file in ``cache_dir`` (format ``cache_format``, see the module doc;
    uint8 frames at short side ``short_side``), written atomically and read back; ``cache.json``
    (the done-marker) is written last with per-video frame counts, checksums and source
    identities. An interrupted run resumes where it stopped (``cache.partial.json`` records what
    is written so far). :class:`VideoListDataset` reads the cache when given ``cache_dir``.

    A file already in the cache is reused only when its bytes still match its checksum and its
    source video's content checksum is the one it was decoded from; otherwise it is re-decoded
    and the result's ``redecoded`` says why (video -> ``"damaged: ..."``, ``"source changed:
    ..."`` or ``"unverifiable: ..."``, a cache made before checksums). A source whose size or mtime
    changed but whose content did not (touched, copied) is reused and its new stat recorded.

    A missing, empty, corrupt or truncated video raises :class:`VideoReadError` naming it, or with
    ``on_error="skip"`` is listed in the manifest's ``failed`` (video -> reason) and not cached (a
    dataset then meets the same error and skips it too). An empty list file is refused.
    ``progress``: True shows a tqdm bar; a callable gets ``(done, total, video)`` after each video.
    Returns the manifest dict with ``written`` / ``reused`` counts and the ``redecoded`` dict
    (``failed`` is the dict of failures). ``remedy``: the command that re-makes this cache, named
    in the errors a dataset raises on a damaged file or a changed video.

    With ``transform`` (uint8 ``(N, H, W, 3)`` -> uint8, same shape; e.g. a frozen Zero-DCE, see
    :func:`darknb.engine.teacher.ensure_enhanced_cache`) every native-resolution frame is
    transformed before the resize: a clip of item i from this cache is the raw clip's crop of the
    same frames (same frame counts and sizes, so the same sampling), transformed before resizing.
    ``signature`` (required with ``transform``: what it is, e.g. the enhancer's class, settings
    and weights' sha256) goes to ``cache_dir/transform.json`` and ``cache.json``'s ``transform``;
    a cache made with another transform, or a raw one, is refused. ``source_cache``: read the
    native frames from that (verified) cache instead of decoding (a set rendered into its cache at
    its own size: the synthetic one).
    """
    if int(short_side) < 8:
        raise ConfigError(f"prepare_dataset: short_side must be >= 8, got {short_side}")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"prepare_dataset: on_error must be 'raise' or 'skip', got {on_error!r}")
    fmt = _format_name(cache_format)
    root, cache_dir = Path(root), Path(cache_dir)
    root_resolved = root.resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    marker, journal = cache_dir / CACHE_MANIFEST, cache_dir / PARTIAL_MANIFEST
    old = read_json(marker) if marker.is_file() else {}
    partial = read_json(journal) if journal.is_file() else {}
    for held in (old, partial):
        check_cache_root(held, cache_dir, root_resolved)
        if held and held.get("short_side") != int(short_side):
            raise ConfigError(f"prepare_dataset: {cache_dir} holds short_side={held.get('short_side')}, "
                              f"asked {short_side}; use another cache_dir")
        held_fmt = held.get("format", "npy") if held else None
        if held_fmt is not None and (held_fmt == "npy-uint8-NHWC" and fmt != "npy"
                                     or held_fmt != "npy-uint8-NHWC" and held_fmt != fmt):
            raise ConfigError(f"prepare_dataset: {cache_dir} holds {held_fmt} frames, asked for "
                              f"cache_format={fmt!r}; use another cache_dir (cache_dir='auto' gives "
                              "every format its own)")
    if (transform is None) != (signature is None):
        raise ConfigError("prepare_dataset: a transform needs its signature (and a signature its "
                          "transform): the cache records what made its frames")
    _check_cache_transform(cache_dir, signature)
    source = FrameCache.open(source_cache) if source_cache is not None else None

    rels: list[str] = []
    seen: set[str] = set()
    for lf in list_files:
        lf = Path(lf) if Path(lf).is_file() else root / lf
        entries = nonempty_list(lf)
        for lineno, (rel, _) in enumerate(entries, start=1):
            safe_relpath(root_resolved, rel, f"{lf}:{lineno}")
            if rel not in seen:
                seen.add(rel)
                rels.append(rel)

    known = {**old.get("videos", {}), **partial.get("videos", {})}
    videos = {rel: entry for rel, entry in known.items() if rel not in seen}  # other lists' videos
    failed: dict[str, str] = {}
    redecoded: dict[str, str] = {}
    written = reused = 0
    extra = dict(transform=signature, remedy=remedy or old.get("remedy") or partial.get("remedy"))

    def manifest(seconds: float, *, journal: bool = False) -> dict:
        # the journal also keeps the entries not reached yet: the next run verifies them again
        # instead of decoding them again
        held = {**{r: e for r, e in known.items() if r not in failed}, **videos} if journal else videos
        return cache_manifest(root=root_resolved, short_side=short_side, videos=held,
                              failed=failed, seconds=seconds, fmt=fmt, **extra)

    t0 = last_journal = time.perf_counter()
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rels), desc=f"prepare {cache_dir.name}", unit="video")
    try:
        for k, rel in enumerate(rels):
            out = cache_file(cache_dir, rel, fmt)
            if source is not None:
                src = source.videos.get(rel)
                now = {"cache": str(source.dir), "checksum": src["checksum"]} if src else None
            else:
                now = _source_identity(root / rel)
            why = _stale(known.get(rel), out, now)
            if why is None:
                entry = dict(known[rel])
                if now is not None and "bytes" in now:
                    entry["source"] = now  # same content; a new mtime (touched, copied) is recorded
                videos[rel] = entry
                reused += 1
            else:
                if marker.is_file():  # the cache changes: not complete until cache.json is rewritten
                    write_json(manifest(0.0, journal=True), journal)
                    marker.unlink()
                if why != "new":
                    redecoded[rel] = why
                entry = _decode_one(root, rel, out, int(short_side), fmt, on_error, failed,
                                    transform=transform, source=source)
                if entry is None:
                    videos.pop(rel, None)
                    redecoded.pop(rel, None)
                else:
                    videos[rel] = {**entry, "source": now}
                    written += rel not in redecoded
            if bar is not None:
                bar.update(1)
                bar.set_postfix(written=written, reused=reused, redecoded=len(redecoded),
                                failed=len(failed), refresh=False)
            elif callable(progress):
                progress(k + 1, len(rels), rel)
            if time.perf_counter() - last_journal > 30 and not marker.is_file():
                write_json(manifest(time.perf_counter() - t0, journal=True), journal)  # a kill loses < 30 s
                last_journal = time.perf_counter()
    except BaseException:
        if not marker.is_file():  # what is written so far, for the next run to resume from
            write_json(manifest(time.perf_counter() - t0, journal=True), journal)
        raise
    finally:
        if bar is not None:
            bar.close()

    result = manifest(time.perf_counter() - t0)
    write_json(result, marker)
    journal.unlink(missing_ok=True)
    return dict(result, written=written, reused=reused, redecoded=redecoded)


def _format_name(name: str) -> str:
    return cache_format(name).name


def _decode_one(root: Path, rel: str, out: Path, short_side: int, fmt: str, on_error: str,
                failed: dict, *, transform=None, source: FrameCache | None = None) -> dict | None:
    """Decode (or read from ``source``), transform, resize and write one video; its manifest
    entry, or None when it failed under ``on_error="skip"``."""
    try:
        if source is not None:
            if rel not in source.videos:
                raise VideoReadError(f"{rel} is not in the source cache {source.dir}")
            frames = source.read(rel, range(source.frame_count(rel)))
        else:
            n = probe(root / rel).num_frames  # a truncated video raises here
            frames = read_frames(root / rel, range(n), backend="pyav")
    except (VideoReadError, FileNotFoundError) as exc:
        if on_error == "raise":
            raise
        failed[rel] = str(exc)
        return None
    if transform is not None:
        frames = transform(frames)
    return write_cache_file(resize_short_uint8(frames, short_side), out, fmt)
