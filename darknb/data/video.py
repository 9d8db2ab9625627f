"""Frame-exact video reading, probing and writing.

Every clip the paper trains on is "64 consecutive frames" (PAPER.md, DarkLight protocol), so the
reader must return *exactly* the frames asked for. That is not a given:

    Measured on this machine (decord 0.6.0): decord's random access (``VideoReader.get_batch`` /
    ``vr[i]``, both seek) returns WRONG frames on MPEG-4 Part 2 video with B-frames -- asking an AVI
    for frames 20..83 returned frames 4..67, single seeks were off by up to 22 frames -- and single
    seeks into MPEG-4 Part 2 *in MP4* were off by 2. H.264 in MP4 was exact. ARID ships
    MPEG-4 Part 2 ``.avi`` files, i.e. the risky family.

So :func:`read_frames` picks a *path* per file from its codec/container (:func:`probe`):

* ``decord-random``  -- decord ``get_batch`` on the sorted unique indices; only for H.264 in
  MP4/MOV, where it was verified exact (tests/test_video.py re-verifies it on every run);
* ``pyav-seek`` -- PyAV seeks to the last keyframe at or before the first wanted frame and decodes
  forward, naming each decoded frame by its timestamp and *checking its pixels*: :func:`probe`'s
  one full decode also records, per frame in presentation order, its pts and a 64-bit checksum
  of its decoded planes (the per-file :class:`_SeekIndex`, bounded LRU). A decoded frame is
  returned only when its pts names index ``i`` AND its checksum equals frame ``i``'s from the
  decode from frame 0 -- so a seek that lands wrong, a guessed AVI pts that shifts after a seek, or
  a B-frame decoded from a missing reference can cost time but never return a wrong frame: any
  unknown pts, checksum mismatch or missing frame retries one keyframe further back, then falls
  back to ``pyav-sequential`` (and that file stays sequential). Used for everything not
  ``decord-random`` when the wanted frames start after the first keyframe;
* ``pyav-sequential`` -- PyAV decodes forward from frame 0 and counts frames in presentation order
  (what ``decode`` yields), converting only the wanted frames to RGB. Exact by construction for any
  codec; used when seeking cannot help (clip in the first GOP), when a file's timestamps are
  unusable, as the fallback of ``pyav-seek``, and whenever ``backend="pyav"``;
* ``decord-sequential`` -- ``backend="decord"`` on a risky file: decord's ``get_batch`` on the
  contiguous range ``0..max(indices)``, which decodes forward without seeking (measured exact on
  the same AVIs where random access failed).

Which path served the latest read is in :data:`last_backend`; :data:`read_stats` counts all reads
per path, so reports can say which backend was used.

Bad input (missing, empty, truncated, corrupt) raises :class:`~darknb.errors.VideoReadError`
naming the file and the cause. A file is *truncated* when decoding stops with an error or yields
fewer frames than its container claims (an AVI cut in half: 81 claimed, 32 decode); it is refused,
because a clip sampled from it would silently loop its first frames. ``allow_truncated=True``
(:func:`probe`, :func:`read_frames`) reads its certain frames instead. An index at or past the *real* decodable frame count (containers
over-report; :func:`probe` counts by decoding) raises ``VideoReadError`` naming the index and the
count -- the dataset sampler uses the real count, so it never asks for one.
"""

from __future__ import annotations

import collections
import fractions
import os
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from darknb.errors import ConfigError, VideoReadError
from darknb.files import atomic_path

__all__ = [
    "VideoInfo",
    "available_backends",
    "count_frames",
    "last_backend",
    "probe",
    "read_frames",
    "read_stats",
    "write_video",
]

# (codec, container) pairs whose decord random access was verified frame-exact (see module doc).
# PyAV names the MP4/MOV demuxer "mov,mp4,m4a,3gp,3g2,mj2".
_DECORD_EXACT_CODECS = {"h264"}
_DECORD_EXACT_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2"}

last_backend: str | None = None
"""The path ("decord-random", "decord-sequential", "pyav-seek", "pyav-sequential") that served the
last read in this process."""

read_stats: collections.Counter = collections.Counter()
"""Number of :func:`read_frames` calls served by each path in this process (plus
``"decord-failed"`` / ``"pyav-seek-failed"``: reads whose first path failed and fell back)."""

FrameTransform = Callable[[np.ndarray], np.ndarray]  # one (H, W, 3) uint8 frame -> another

_PROBE_CACHE: dict[tuple, "VideoInfo"] = {}
_PROBE_LOCK = threading.Lock()

# Per-file seek indices (see _SeekIndex), keyed like _PROBE_CACHE, least recently used evicted.
# ~16 bytes per frame: 4096 files of 150 frames is ~10 MB. An evicted index is rebuilt by one full
# decode on the next read that needs it.
_INDEX_MAX = 4096
_INDEX_CACHE: "collections.OrderedDict[tuple, _SeekIndex]" = collections.OrderedDict()


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about one video.

    ``num_frames`` is the number of frames that actually decode (counted by decoding, because AVI /
    MP4 headers over-report on truncated files); ``container_frames`` is what the header claims.
    """

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    codec: str
    container: str
    has_b_frames: bool
    container_frames: int
    truncated: bool = False  # decoding failed or gave fewer frames than claimed (see module doc)

    @property
    def decord_exact(self) -> bool:
        """True when decord random access is known to be frame-exact for this codec/container."""
        # decord 0.6.0 also fails outright ("size must exactly match") on frames narrower than 64
        # pixels (measured: widths 16 and 48 fail, 32 and 64..330 work), so small videos skip it.
        return (self.codec in _DECORD_EXACT_CODECS and self.container in _DECORD_EXACT_CONTAINERS
                and self.width >= 64)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- backends

def _import_av():
    try:
        import av  # heavy: imported lazily
    except ImportError as exc:  # pragma: no cover - av is a hard dependency of the project
        raise VideoReadError(f"PyAV is not installed ({exc}); install 'av'") from exc
    return av


def _import_decord():
    try:
        import decord  # heavy and optional: imported lazily
    except ImportError:
        return None
    return decord


def available_backends() -> list[str]:
    """Names of the decoding backends importable here, preferred first (``"decord"``, ``"pyav"``)."""
    names = []
    if _import_decord() is not None:
        names.append("decord")
    try:
        import av  # noqa: F401
        names.append("pyav")
    except ImportError:  # pragma: no cover
        pass
    return names


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(f"video file not found: {path}")
    if not path.is_file():
        raise VideoReadError(f"video path is not a regular file: {path}")
    if path.stat().st_size == 0:
        raise VideoReadError(f"video file is empty (0 bytes): {path}")


def _open_av(path: Path):
    av = _import_av()
    try:
        container = av.open(str(path))
    except Exception as exc:  # av.error.* are OSError/ValueError subclasses; keep the cause
        raise VideoReadError(f"cannot open video {path}: {type(exc).__name__}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"no video stream in {path}")
    return container


@dataclass
class _SeekIndex:
    """What one full decode of a file tells the ``pyav-seek`` path (built by :func:`_scan`).

    ``pts[i]`` / ``sums[i]``: timestamp and plane checksum of frame ``i`` in presentation order
    (the order :func:`_read_pyav_sequential` counts). ``key_idx`` / ``key_pts``: presentation index
    and pts of the container's keyframe packets (the seek points), ascending. ``seekable`` is False
    when the timestamps cannot name frames (missing, repeated or not increasing) or, sticky, after
    a seek read of this file failed verification; ``why`` says which.
    """

    pts: np.ndarray
    sums: np.ndarray
    key_idx: np.ndarray
    key_pts: np.ndarray
    seekable: bool
    why: str = ""

    def index_of(self, pts) -> int:
        """Presentation index of the frame with timestamp ``pts``; -1 when no frame has it."""
        if pts is None:
            return -1
        j = int(np.searchsorted(self.pts, pts))
        return j if j < len(self.pts) and self.pts[j] == pts else -1


# Planar 8-bit pixel formats: a plane's visible bytes per row equal its width. Other formats
# checksum whole rows including padding, which at worst makes verification fail (-> sequential).
_PLANAR8 = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p",
            "yuvj440p", "yuv411p", "yuv410p", "gray"}


def _frame_sum(frame) -> int:
    """64-bit checksum of a decoded frame's visible pixels: crc32 of the first plane (luma) in the
    high half, chained crc32 of the other planes in the low half. ~40 us for 320x240 yuv420p."""
    planar8 = frame.format.name in _PLANAR8
    sums = [0, 0]
    for k, plane in enumerate(frame.planes):
        ls = plane.line_size
        buf = np.frombuffer(plane, np.uint8)
        width = plane.width
        if planar8 and ls > width and buf.size >= ls * plane.height:
            rows = buf[: ls * plane.height].reshape(plane.height, ls)
            buf = np.ascontiguousarray(rows[:, :width])
        slot = 0 if k == 0 else 1
        sums[slot] = zlib.crc32(buf, sums[slot])
    return (sums[0] << 32) | sums[1]


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _scan(path: Path) -> tuple[VideoInfo, _SeekIndex]:
    """One full decode of ``path``: the :class:`VideoInfo` of :func:`probe` and the seek index."""
    av = _import_av()
    container = _open_av(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # as the readers; decoders are bit-exact either way
        ctx = stream.codec_context
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        types: list[int] = []  # picture type per decoded frame, presentation order (3 = B)
        pts: list = []  # frame timestamps, presentation order
        sums: list[int] = []  # _frame_sum per frame, presentation order
        key_pkt_pts: list = []  # pts of keyframe packets (demuxer's view: what seeks land on)
        broken = False
        try:
            for packet in container.demux(stream):
                if packet.is_keyframe and packet.pts is not None:
                    key_pkt_pts.append(packet.pts)
                for frame in packet.decode():
                    types.append(int(frame.pict_type))
                    pts.append(frame.pts)
                    sums.append(_frame_sum(frame))
        except av.error.FFmpegError as exc:
            # A truncated/corrupt tail: frames decoded so far are real; a file with none is not a video.
            if not types:
                raise VideoReadError(
                    f"cannot decode any frame of {path}: {type(exc).__name__}: {exc}") from exc
            broken = True
        if not types:
            raise VideoReadError(f"no frame of {path} decodes (truncated or corrupt file)")
        n = len(types)
        claimed = int(stream.frames or 0)
        if broken or n < claimed:
            # Truncated file. Its tail cannot be trusted (measured on cut MPEG-4 AVIs): the last
            # packet may be partial (a concealed, wrong-looking frame), and the B-frames stored
            # after the last reference frame but shown before it are lost while that I/P frame
            # still decodes -- so it lands at a wrong index (frame 39 served as index 38). Drop the
            # last frame, then any B-frames before it, ending on a reference frame.
            n -= 1
            while n > 1 and types[n - 1] == 3:
                n -= 1
        info = VideoInfo(
            path=str(path), num_frames=n, fps=fps, width=int(ctx.width), height=int(ctx.height),
            codec=str(ctx.name), container=str(container.format.name),
            has_b_frames=bool(getattr(ctx, "has_b_frames", False)),
            container_frames=claimed, truncated=broken or n < claimed,
        )
    finally:
        container.close()
    return info, _make_index(pts, sums, key_pkt_pts)


def _make_index(pts: list, sums: list[int], key_pkt_pts: list) -> _SeekIndex:
    empty = np.zeros(0, np.int64)
    sum_arr = np.array(sums, np.uint64)
    if any(t is None for t in pts):
        return _SeekIndex(empty, sum_arr, empty, empty, False, "frames without pts")
    pts_arr = np.array(pts, np.int64)
    if len(pts_arr) > 1 and not bool(np.all(np.diff(pts_arr) > 0)):
        return _SeekIndex(pts_arr, sum_arr, empty, empty, False,
                          "frame pts not strictly increasing in presentation order")
    index = _SeekIndex(pts_arr, sum_arr, empty, empty, True)
    keys = sorted({j for j in (index.index_of(t) for t in key_pkt_pts) if j >= 0})
    index.key_idx = np.array(keys, np.int64)
    index.key_pts = pts_arr[index.key_idx] if keys else empty
    if len(keys) < 2:
        index.seekable, index.why = False, "fewer than 2 keyframes with known pts"
    return index


def _remember_index(key: tuple, index: _SeekIndex) -> None:
    with _PROBE_LOCK:
        _INDEX_CACHE[key] = index
        _INDEX_CACHE.move_to_end(key)
        while len(_INDEX_CACHE) > _INDEX_MAX:
            _INDEX_CACHE.popitem(last=False)


def _probe_keyed(path: Path, allow_truncated: bool = False) -> tuple[tuple, VideoInfo]:
    _check_file(path)
    key = _file_key(path)
    with _PROBE_LOCK:
        info = _PROBE_CACHE.get(key)
    if info is None:
        info, index = _scan(path)
        if info.num_frames <= 0:
            raise VideoReadError(f"video {path} has no frame that decodes at a certain index")
        with _PROBE_LOCK:
            _PROBE_CACHE[key] = info
        _remember_index(key, index)
    if info.truncated and not allow_truncated:
        raise VideoReadError(
            f"video {path} is truncated or corrupt: its container claims {info.container_frames} "
            f"frames, only the first {info.num_frames} decode at certain indices (re-copy the "
            "file, or skip it with on_error='skip')")
    return key, info


def _seek_index(path: Path, key: tuple) -> _SeekIndex:
    """The cached seek index of ``path`` (``key`` from :func:`_probe_keyed`), rebuilt if evicted."""
    with _PROBE_LOCK:
        index = _INDEX_CACHE.get(key)
        if index is not None:
            _INDEX_CACHE.move_to_end(key)
            return index
    _, index = _scan(path)
    _remember_index(key, index)
    return index


def probe(path: str | os.PathLike, *, allow_truncated: bool = False) -> VideoInfo:
    """Return :class:`VideoInfo` for ``path``; ``num_frames`` is the real decodable count.

    A truncated file raises :class:`VideoReadError` unless ``allow_truncated`` (then
    ``num_frames`` counts its frames whose indices are certain and ``truncated`` is True).

    Counting decodes every frame (single-threaded, without RGB conversion, but checksumming each
    frame for the ``pyav-seek`` path: ~23 ms for 150 frames of 320x240, ~6 ms of it checksums),
    once per file version: results are cached in-process keyed by (path, size, mtime), the seek
    index in a bounded LRU.
    """
    return _probe_keyed(Path(path), allow_truncated)[1]


def count_frames(path: str | os.PathLike) -> int:
    """The real number of decodable frames of ``path`` (see :func:`probe`)."""
    return probe(path).num_frames


def _rgb_converter(transform: FrameTransform | None = None):
    """A function frame -> uint8 (H, W, 3) RGB equal to ``frame.to_ndarray(format="rgb24")``, but
    reusing one swscale context for all frames of a read: every decoded frame otherwise builds its
    own (``VideoFrame.reformat`` makes a new ``VideoReformatter`` per frame), which measured ~200 of
    the ~260 us per 320x240 frame. ``transform`` (see :func:`read_frames`) is applied to each
    frame as it is converted."""
    try:
        from av.video.reformatter import VideoReformatter
        reformatter = VideoReformatter()
    except Exception:  # pragma: no cover - a PyAV without it: the per-frame way
        def rgb(frame) -> np.ndarray:
            return frame.to_ndarray(format="rgb24")
    else:
        def rgb(frame) -> np.ndarray:
            return reformatter.reformat(frame, format="rgb24").to_ndarray()

    if transform is None:
        return rgb
    return lambda frame: transform(rgb(frame))


def _read_pyav_sequential(path: Path, order: Sequence[int], last: int,
                          transform: FrameTransform | None = None) -> dict[int, np.ndarray]:
    # Decode forward from frame 0, counting frames in presentation order: exact for every codec
    # because no seek (and no timestamp -> index arithmetic) is involved. Only wanted frames are
    # converted to RGB, which is most of the per-frame cost.
    wanted = set(order)
    out: dict[int, np.ndarray] = {}
    to_rgb = _rgb_converter(transform)
    container = _open_av(path)
    try:
        stream = container.streams.video[0]
        # No decoder threads: measured fastest on 2 cores (52 ms vs 66 ms with AUTO for 100
        # frames of 320x240 MPEG-4), and DataLoader workers already use the cores.
        stream.thread_type = "NONE"
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out[i] = to_rgb(frame)
                if i >= last:
                    break
        except Exception as exc:
            raise VideoReadError(
                f"decoding {path} failed after {len(out)} wanted frames: "
                f"{type(exc).__name__}: {exc}") from exc
    finally:
        # Close explicitly: leaving containers to the GC keeps decoder threads and buffers alive.
        container.close()
    return out


class _SeekMiss(Exception):
    """A ``pyav-seek`` attempt could not prove its frames right (retried, then sequential)."""


# A seek (flush, demux repositioning, re-decoding the keyframe's leading frames) costs about as much
# as decoding a few frames: don't seek to skip fewer.
_SEEK_MIN_SKIP = 6


def _plan_runs(index: _SeekIndex, unique: list[int]) -> list[tuple[int, list[int]]] | None:
    """Split sorted ``unique`` into runs, each decoded forward after one seek.

    A run is (k, frames): seek to keyframe ``index.key_idx[k]``, the last one at or before the run's
    first frame. A frame starts a new run only when seeking to its keyframe skips at least
    ``_SEEK_MIN_SKIP`` frames after the current run's last one (a contiguous clip is one run). None
    when seeking cannot help: the first frame precedes the second keyframe and one run covers
    everything (decoding from frame 0 costs the same).
    """
    keys = index.key_idx
    runs: list[tuple[int, list[int]]] = []
    for i in unique:
        k = int(np.searchsorted(keys, i, side="right")) - 1
        if k < 0:
            return None  # before the first seek point: only a decode from frame 0 reaches it
        if runs and keys[k] - runs[-1][1][-1] - 1 < _SEEK_MIN_SKIP:
            runs[-1][1].append(i)
        else:
            runs.append((k, [i]))
    if len(runs) == 1 and runs[0][0] == 0:
        return None
    return runs


def _decode_run(container, stream, index: _SeekIndex, k: int, want: list[int],
                out: dict[int, np.ndarray], seek: bool, to_rgb) -> None:
    if seek:
        container.seek(int(index.key_pts[k]), backward=True, any_frame=False, stream=stream)
    wanted, last = set(want), want[-1]
    for frame in container.decode(stream):
        j = index.index_of(frame.pts)
        if j < 0:
            raise _SeekMiss(f"decoded a frame with pts {frame.pts}, which no frame had when "
                            f"decoding from frame 0")
        if j in wanted and j not in out:
            # The pts names the frame; the checksum proves it is that frame, pixel for pixel.
            if _frame_sum(frame) != int(index.sums[j]):
                raise _SeekMiss(f"frame {j} decoded after a seek differs from frame {j} decoded "
                                f"from frame 0")
            out[j] = to_rgb(frame)
        if j >= last:
            break
    missing = [i for i in want if i not in out]
    if missing:
        raise _SeekMiss(f"frame {missing[0]} not produced after seeking to keyframe "
                        f"{int(index.key_idx[k])}")


def _read_pyav_seek(path: Path, unique: list[int], index: _SeekIndex,
                    transform: FrameTransform | None = None) -> dict[int, np.ndarray] | None:
    """Frames ``unique`` (sorted) via seeks, each verified against ``index``; None when this path
    cannot serve them (caller decodes from frame 0 instead)."""
    runs = _plan_runs(index, unique)
    if runs is None:
        return None
    out: dict[int, np.ndarray] = {}
    try:
        container = _open_av(path)
    except VideoReadError:
        return None  # the sequential path reports it
    fresh, to_rgb = True, _rgb_converter(transform)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # see _read_pyav_sequential
        for k, want in runs:
            # The last keyframe at or before the run; should that fail verification (an open GOP
            # whose frames reference the previous one), the keyframe before it.
            tries = [k, k - 1] if k > 0 else [k]
            for t, kk in enumerate(tries):
                try:
                    _decode_run(container, stream, index, kk, want, out,
                                seek=not (fresh and kk == 0), to_rgb=to_rgb)
                    break
                except _SeekMiss:
                    if t == len(tries) - 1:
                        raise
                finally:
                    fresh = False
    except Exception as exc:  # _SeekMiss, or a demux/decode/seek error: sequential path judges
        # Sticky: this file's timestamps or seeks are not trustworthy; later reads go sequential.
        index.seekable, index.why = False, f"{type(exc).__name__}: {exc}"
        read_stats["pyav-seek-failed"] += 1
        return None
    finally:
        container.close()
    return out


def _read_pyav(path: Path, key: tuple, unique: list[int], transform: FrameTransform | None = None
               ) -> tuple[str, dict[int, np.ndarray]]:
    """PyAV read of sorted ``unique``: ``pyav-seek`` where it can serve them, else sequential."""
    index = _seek_index(path, key)
    if index.seekable:
        frames = _read_pyav_seek(path, unique, index, transform)
        if frames is not None:
            return "pyav-seek", frames
    return "pyav-sequential", _read_pyav_sequential(path, unique, unique[-1], transform)


def _read_decord(path: Path, unique: list[int], sequential: bool,
                 transform: FrameTransform | None = None) -> dict[int, np.ndarray]:
    decord = _import_decord()
    if decord is None:
        raise VideoReadError(f"backend 'decord' requested for {path} but decord is not installed")
    try:
        # A fresh reader per call, deleted at once: long-lived decord VideoReaders grow RSS
        # (known decord leak, see benchmarks/bench_video.py for the measured growth).
        vr = decord.VideoReader(str(path), num_threads=1)
        try:
            if sequential:
                # Contiguous 0..max decodes forward without seeking: exact where seeks are not.
                batch = vr.get_batch(list(range(0, unique[-1] + 1))).asnumpy()
                frames = {i: batch[i] if transform is None else transform(batch[i]) for i in unique}
            else:
                batch = vr.get_batch(unique).asnumpy()
                frames = {i: batch[k] if transform is None else transform(batch[k])
                          for k, i in enumerate(unique)}
        finally:
            del vr
    except VideoReadError:
        raise
    except Exception as exc:  # decord raises DECORDError (a RuntimeError) with C++ context
        raise VideoReadError(f"decord failed on {path}: {type(exc).__name__}: {exc}") from exc
    return frames


def read_frames(path: str | os.PathLike, indices: Iterable[int], backend: str | None = None, *,
                allow_truncated: bool = False, transform: FrameTransform | None = None) -> np.ndarray:
    """Read exactly the frames ``indices`` of ``path`` as uint8 RGB ``(len(indices), H, W, 3)``.

    Order is the order asked; duplicates are allowed. ``backend``: None (decord random access where
    verified exact, else PyAV with verified seeks, else PyAV sequential), ``"pyav"`` (always
    sequential) or ``"decord"`` (random access where exact, else decord sequential). Raises
    ``VideoReadError`` for an unreadable or truncated file (``allow_truncated``: see :func:`probe`)
    or an index outside ``[0, probe(path).num_frames)``.

    ``transform``: a function of one decoded frame ``(H, W, 3)`` uint8 to another (e.g. a resize),
    applied as each frame arrives, so that only transformed frames are kept (inference on long
    HD videos: :mod:`darknb.engine.inference`); the result stacks its outputs. Such a read goes
    through PyAV (verified seeks) even where decord is exact (``backend=None``): decord's random
    access raised the peak memory by 0.5-0.7 GB for 80 frames of a 3,000-frame 720p H.264 video,
    PyAV's seeks by 30 MB for the same frames (measured, benchmarks/bench_predict.py), and the
    per-file seek index is already there (:func:`probe` built it).
    """
    global last_backend
    if backend not in (None, "decord", "pyav"):
        raise ConfigError(f"read_frames: backend must be None, 'decord' or 'pyav', got {backend!r}")
    path = Path(path)
    order = [int(i) for i in indices]
    if not order:
        raise ConfigError(f"read_frames: empty index list for {path}")
    key, info = _probe_keyed(path, allow_truncated)
    bad = [i for i in order if i < 0 or i >= info.num_frames]
    if bad:
        raise VideoReadError(
            f"frame index {bad[0]} out of range for {path}: it has {info.num_frames} decodable "
            f"frames (container claims {info.container_frames})")
    unique = sorted(set(order))

    if backend == "pyav":
        used = "pyav-sequential"
        frames = _read_pyav_sequential(path, unique, unique[-1], transform)
    elif backend is None and (not info.decord_exact or _import_decord() is None
                              or transform is not None):
        used, frames = _read_pyav(path, key, unique, transform)
    else:
        sequential = not info.decord_exact
        used = "decord-sequential" if sequential else "decord-random"
        try:
            frames = _read_decord(path, unique, sequential, transform)
        except VideoReadError:
            if backend == "decord":
                raise
            # Automatic choice: a decord failure on a file PyAV probed fine is decord's problem;
            # PyAV either reads it exactly or raises its own error naming the file.
            read_stats["decord-failed"] += 1
            used, frames = _read_pyav(path, key, unique, transform)

    missing = [i for i in unique if i not in frames]
    if missing:
        raise VideoReadError(
            f"{used} returned no frame {missing[0]} of {path} (probe counted {info.num_frames})")
    last_backend = used
    read_stats[used] += 1
    return np.stack([frames[i] for i in order])


# --------------------------------------------------------------------------- writing

def _default_codec(suffix: str, av) -> str:
    if suffix == ".avi":
        return "mpeg4"  # MPEG-4 Part 2, the family ARID ships
    if suffix in (".mp4", ".mov", ".mkv"):
        return "libx264" if "libx264" in av.codecs_available else "mpeg4"
    raise ConfigError(f"write_video: unsupported extension {suffix!r} (use .mp4, .avi, .mov, .mkv)")


def write_video(path: str | os.PathLike, frames: np.ndarray, *, fps: int = 30,
                codec: str | None = None, gop: int | None = None, bframes: int | None = None,
                crf: int | None = None, lossless: bool = False) -> Path:
    """Encode uint8 RGB ``frames`` ``(T, H, W, 3)`` into ``path``.

    ``.mp4`` -> H.264 (libx264; mpeg4 when the wheel lacks it), ``.avi`` -> MPEG-4 Part 2 (as ARID).
    ``bframes`` sets ``max_b_frames`` (B-frames are what breaks decord's seeks); ``gop`` the keyframe
    interval; ``crf`` the libx264 quality (default: encoder default). Even sizes only (yuv420p).
    ``lossless=True`` (``.mp4``/``.mkv``): H.264 on RGB planes at qp 0 (libx264rgb), so decoding
    gives back exactly ``frames``, any size. Written atomically (temp file + rename).
    """
    av = _import_av()
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ConfigError(f"write_video: frames must be uint8 (T, H, W, 3) with T > 0, got "
                          f"{frames.dtype} {frames.shape} for {path}")
    _, H, W, _ = frames.shape
    if lossless:
        if path.suffix.lower() not in (".mp4", ".mkv") or codec not in (None, "libx264rgb"):
            raise ConfigError(f"write_video: lossless needs .mp4/.mkv and libx264rgb, got {path.name}, "
                              f"codec={codec!r}")
        codec = "libx264rgb"
    elif H % 2 or W % 2:
        raise ConfigError(f"write_video: height and width must be even for yuv420p, got {H}x{W}")
    codec = codec or _default_codec(path.suffix.lower(), av)
    with atomic_path(path) as tmp:  # the container format follows tmp's suffix (path's own)
        _encode(av, tmp, frames, codec=codec, fps=fps, gop=gop, bframes=bframes, crf=crf)
    return path


def _encode(av, path: Path, frames: np.ndarray, *, codec: str, fps: int, gop, bframes, crf) -> None:
    _, H, W, _ = frames.shape
    container = av.open(str(path), "w")
    try:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = W, H
        stream.pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv420p"
        # One encoder thread: with frame threads x264's output bytes varied between runs
        # (measured), and the synthetic set's manifest promises byte-identical files.
        stream.codec_context.thread_count = 1
        if gop is not None:
            stream.codec_context.gop_size = int(gop)
        if bframes is not None:
            stream.codec_context.max_b_frames = int(bframes)
        if codec in ("libx264", "libx264rgb"):
            # Deterministic, thread-count-independent output (sliced threads would vary).
            # mbtree=0: with macroblock-tree rate control on, x264's bytes differed between
            # identical runs even single-threaded (measured: 3 of 24 small clips); without, identical.
            opts = {"threads": "1", "preset": "veryfast", "x264-params": "threads=1:mbtree=0"}
            if codec == "libx264rgb":
                opts["qp"] = "0"  # mathematically lossless
            elif crf is not None:
                opts["crf"] = str(int(crf))
            if bframes is not None:
                opts["bframes"] = str(int(bframes))
            stream.codec_context.options = opts
        elif codec == "mpeg4":
            stream.codec_context.options = {"threads": "1"}
            # q-scale keeps MPEG-4 Part 2 quality reasonable at small sizes (default bitrate is low).
            # (= ffmpeg -q:v 3: fixed quantiser, FF_QP2LAMBDA = 118).
            stream.codec_context.qscale = True
            stream.codec_context.global_quality = 3 * 118
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i  # explicit timestamps (time base 1/fps): constant frame rate, reproducible
            vf.time_base = fractions.Fraction(1, int(fps))
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
