"""Issue 15 item 2, the frame cache proves its content; issue 18 item 3, its formats.

The faults measured on commit ab8d1f1, each reproduced here (they failed there):
- half of a cached clip overwritten with 0xFF (header intact) was reused by ``prepare`` and
  trained on;
- a truncated or header-damaged cache file crashed training with numpy's raw ``ValueError``,
  naming no file;
- a source video replaced under the same name (other size, later mtime) was served from the old
  cache, and ``prepare`` reused it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from darknb.cli import main as cli_main
from darknb.config import RunConfig
from darknb.data.dataset import VideoListDataset
from darknb.data.framecache import (
    CACHE_MANIFEST,
    FORMATS,
    PARTIAL_MANIFEST,
    cache_file,
    prepare_dataset,
)
from darknb.data.protocol import data_provenance
from darknb.data.splits import build_datasets, prepare_cache
from darknb.data.video import read_frames, write_video
from darknb.errors import CacheError

try:
    from conftest import TINY_SPEC
    from videohelpers import clip_levels, make_level_video
except ImportError:  # tests/ imported as a package
    from tests.conftest import TINY_SPEC
    from tests.videohelpers import clip_levels, make_level_video


def _dark_frames(seed: int, n: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """Dark, noisy frames (levels ~0..40, as a dark video's): a lossy codec cannot keep them."""
    rng = np.random.default_rng(seed)
    base = np.linspace(4, 24, w)[None, None, :, None] + 6 * np.arange(n)[:, None, None, None] / n
    return np.clip(base + rng.normal(0, 4, (n, h, w, 3)), 0, 255).round().astype(np.uint8)


@pytest.fixture
def videos(tmp_path) -> Path:
    """Two classes x 2 level videos (MPEG-4 AVI with B-frames, as ARID's) and 2 dark noisy ones
    (lossless H.264: their decoded pixels are exactly the frames written); list ``list.txt``."""
    root = tmp_path / "videos"
    lines = []
    for k in range(4):
        rel = f"C{k % 2}/C{k % 2}_{k}_1.avi"
        make_level_video(root / rel, 20 + k, height=48, width=64, bframes=2, gop=6)
        lines.append(f"{k}\t{k % 2}\t{rel}\n")
    for k in range(4, 6):
        rel = f"C{k % 2}/C{k % 2}_{k}_1.mp4"
        write_video(root / rel, _dark_frames(k), lossless=True)
        lines.append(f"{k}\t{k % 2}\t{rel}\n")
    (root / "list.txt").write_text("".join(lines))
    return root


def _rels(root: Path) -> list[str]:
    return [line.split("\t")[2].strip() for line in (root / "list.txt").read_text().splitlines()]


def _dataset(root, cache, **kw) -> VideoListDataset:
    return VideoListDataset(root, "list.txt", cache_dir=cache, num_frames=8, size=32,
                            resize_short=48, **kw)


def _clip(ds, i) -> torch.Tensor:
    return ds[i][0]


# ============================================================================ checksums

def test_the_manifest_records_a_checksum_and_the_source_of_every_file(videos, tmp_path):
    cache = tmp_path / "cache"
    prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    manifest = json.loads((cache / CACHE_MANIFEST).read_text())
    assert manifest["format"] == "npy" and manifest["lossless"] is True
    assert manifest["checksum"] == "xxh3_128"
    for rel in _rels(videos):
        entry = manifest["videos"][rel]
        assert entry["checksum"].startswith("xxh3_128:") and len(entry["checksum"]) == 9 + 32
        assert entry["bytes"] == cache_file(cache, rel).stat().st_size
        st = (videos / rel).stat()
        assert (entry["source"]["bytes"], entry["source"]["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        assert entry["source"]["checksum"].startswith("xxh3_128:")


def test_half_a_clip_overwritten_is_never_trained_on_and_prepare_redecodes_it(videos, tmp_path):
    """The measured fault: 0xFF over the second half of a cached clip (header intact) was reused
    by prepare ("0 written, 12 reused") and trained on (66 % white frames)."""
    cache = tmp_path / "cache"
    prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    rel = _rels(videos)[1]
    path = cache_file(cache, rel)
    good = np.load(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    assert np.load(path).shape == good.shape  # numpy reads it without a word

    ds = _dataset(videos, cache, on_error="skip")  # a damaged cache is never a counted skip
    with pytest.raises(CacheError, match=rf"{path}.* is damaged.*video {rel}.*prepare"):
        ds[1]
    assert _clip(ds, 0) is not None  # the others are served

    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    assert (report["written"], report["reused"]) == (0, 5)
    assert list(report["redecoded"]) == [rel] and report["redecoded"][rel].startswith("damaged:")
    assert np.array_equal(np.load(path), good)
    assert torch.equal(_clip(_dataset(videos, cache), 1), _clip(_dataset(videos, None), 1))


def test_prepare_says_what_it_redecoded(videos, tmp_path, capsys):
    """`prepare`'s closing count: written / reused / re-decoded (damaged, source changed) / failed."""
    for subset, rels in (("train", _rels(videos)[:4]), ("test", _rels(videos)[4:])):
        (videos / f"{subset}.txt").write_text("".join(f"{k}\t{k % 2}\t{r}\n" for k, r in enumerate(rels)))
    cache = tmp_path / "cache"
    args = ["prepare", "--dataset", "dark48", "--root", str(videos), "--cache-dir", str(cache),
            "--short-side", "48"]
    assert cli_main(args) == 0
    assert "6 written, 0 reused, 0 re-decoded" in capsys.readouterr().out
    path = cache_file(cache, _rels(videos)[0])
    path.write_bytes(path.read_bytes()[:-100])
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "0 written, 5 reused, 1 re-decoded (1 damaged, 0 source changed, 0 unverifiable), 0 failed" in out
    assert f"re-decoded: {_rels(videos)[0]}: damaged" in out


@pytest.mark.parametrize("damage", ["truncated", "header", "emptied", "deleted"])
def test_a_truncated_or_header_damaged_file_is_named_not_a_raw_value_error(videos, tmp_path, damage):
    """The measured fault: numpy's raw ValueError from inside training, no file named."""
    cache = tmp_path / "cache"
    prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    rel = _rels(videos)[2]
    path = cache_file(cache, rel)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "header":
        path.write_bytes(data[:10] + b"{'descr': 'XX', " + data[26:])
    elif damage == "emptied":
        path.write_bytes(b"")
    else:
        path.unlink()
    ds = _dataset(videos, cache)
    if damage == "deleted":  # not in the cache any more: decoded from the video, as before
        assert torch.equal(_clip(ds, 2), _clip(_dataset(videos, None), 2))
    else:
        with pytest.raises(CacheError, match=rf"{path}.*(damaged|truncated).*video {rel}"):
            ds[2]
    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    assert list(report["redecoded"]) == [rel] and report["redecoded"][rel].startswith("damaged:")
    assert torch.equal(_clip(_dataset(videos, cache), 2), _clip(_dataset(videos, None), 2))


def test_a_replaced_video_is_never_served_from_the_old_cache(videos, tmp_path):
    """The measured fault: a different video under the same name (other size, later mtime) was
    served from the old frames, and prepare reused them."""
    cache = tmp_path / "cache"
    prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    rel = _rels(videos)[0]  # 20 level frames
    before = (videos / rel).stat()
    make_level_video(videos / rel, 30, height=48, width=64, bframes=2, gop=6)  # another video
    os.utime(videos / rel, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    with pytest.raises(CacheError, match=rf"video .*{rel} changed since it was cached.*prepare"):
        _dataset(videos, cache)[0]
    with pytest.raises(CacheError, match="changed since it was cached"):  # probing too
        _dataset(videos, cache, on_error="skip").check()
    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    assert report["redecoded"][rel].startswith("source changed:")
    assert report["videos"][rel]["frames"] == 30
    ds = _dataset(videos, cache)
    assert ds.frame_count(rel) == 30
    assert torch.equal(_clip(ds, 0), _clip(_dataset(videos, None), 0))


def test_a_touched_video_is_checked_by_content_and_reused(videos, tmp_path):
    """Same bytes, new mtime (touched, copied without -p): served (its content checksum is the
    one cached), and prepare re-decodes nothing, recording the new mtime."""
    cache = tmp_path / "cache"
    prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    rel = _rels(videos)[3]
    os.utime(videos / rel, ns=(1, 10**18))
    assert torch.equal(_clip(_dataset(videos, cache), 3), _clip(_dataset(videos, None), 3))
    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    assert (report["written"], report["reused"], report["redecoded"]) == (0, 6, {})
    assert report["videos"][rel]["source"]["mtime_ns"] == 10**18


def test_a_cache_without_checksums_is_refused_then_redecoded(videos, tmp_path):
    """A cache made before checksums cannot prove its content: named, then re-decoded by prepare."""
    cache = tmp_path / "cache"
    prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    manifest = json.loads((cache / CACHE_MANIFEST).read_text())
    manifest["format"] = "npy-uint8-NHWC"  # what ab8d1f1 wrote
    for entry in manifest["videos"].values():
        entry.pop("checksum")
    (cache / CACHE_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="older darknb.*cannot be verified"):
        _dataset(videos, cache)
    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    assert len(report["redecoded"]) == 6
    assert all(why.startswith("unverifiable:") for why in report["redecoded"].values())
    _dataset(videos, cache)[0]


def test_an_interrupted_prepare_resumes_and_is_not_read_meanwhile(videos, tmp_path):
    cache = tmp_path / "cache"

    def stop_after_three(done, total, rel):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(videos, ["list.txt"], cache, short_side=48, progress=stop_after_three)
    assert (cache / PARTIAL_MANIFEST).is_file() and not (cache / CACHE_MANIFEST).exists()
    with pytest.raises(CacheError, match="unfinished"):
        _dataset(videos, cache)
    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    assert (report["written"], report["reused"]) == (3, 3)
    assert not (cache / PARTIAL_MANIFEST).exists()
    # a re-decode interrupted: the cache is not complete meanwhile, and nothing is decoded twice
    path = cache_file(cache, _rels(videos)[0])
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(videos, ["list.txt"], cache, short_side=48, progress=stop_after_three)
    assert not (cache / CACHE_MANIFEST).exists()
    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    assert (report["written"], report["reused"], report["redecoded"]) == (0, 6, {})


def test_the_synthetic_set_is_checksummed_and_rerendered_when_damaged(tmp_path):
    """The synthetic set renders straight into its cache: its files are checksummed too, a
    damaged one is refused naming the remedy, and rendering again repairs it."""
    from darknb.data.synthetic import make_synthetic_dark

    root = tmp_path / "data" / "synthetic"
    make_synthetic_dark(root, **{**TINY_SPEC, "video_every": 2})
    cfg = RunConfig(data_root=str(root), output_dir=str(tmp_path / "run"), size=32, num_frames=8)
    manifest = json.loads((cfg.frame_cache / CACHE_MANIFEST).read_text())
    assert all(e["checksum"].startswith("xxh3_128:") for e in manifest["videos"].values())
    train = build_datasets(cfg).train
    rel = train.samples[0][0]
    path = cache_file(cfg.frame_cache, rel)
    good = path.read_bytes()
    path.write_bytes(good[:128] + bytes(len(good) - 128))
    train = build_datasets(cfg).train
    with pytest.raises(CacheError, match=rf"{path} is damaged.*delete {cfg.frame_cache}"):
        train[0]
    make_synthetic_dark(root, **{**TINY_SPEC, "video_every": 2})  # sees the damage: renders again
    assert path.read_bytes() == good
    assert torch.equal(build_datasets(cfg).train[0][0], train.with_cache(cfg.frame_cache)[0][0])


# ============================================================================ formats

@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_keeps_the_frames_and_the_lossless_ones_every_pixel(videos, tmp_path, fmt):
    """Frame-exactness (which frames) for every format; pixel-exactness for the lossless ones;
    a lossy cache says so in its manifest and in the run's provenance."""
    cache = tmp_path / fmt
    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48, cache_format=fmt)
    assert report["format"] == fmt and report["lossless"] is FORMATS[fmt].lossless
    assert cache_file(cache, _rels(videos)[0], fmt).is_file()
    raw = _dataset(videos, None, train=True, seed=3)
    ds = _dataset(videos, cache, train=True, seed=3)
    for i in range(4):  # level videos: frame i is grey 6 * i, whatever the codec
        assert clip_levels(_clip(ds, i)) == clip_levels(_clip(raw, i))
    for i in (4, 5):  # dark noise, decoded exactly from lossless H.264
        rel = ds.samples[i][0]
        decoded = read_frames(videos / rel, range(12))
        cached = ds.frames(rel, range(12))
        if FORMATS[fmt].lossless:
            assert np.array_equal(cached, decoded) and torch.equal(_clip(ds, i), _clip(raw, i))
        else:
            err = np.abs(cached.astype(int) - decoded)
            assert 0 < err.mean() < 6  # lossy, and said so:
    prov = data_provenance("dark48", [ds])
    assert prov["frame_caches"][str(cache)]["format"] == fmt
    assert (prov["lossy_frame_cache"] is None) == FORMATS[fmt].lossless
    if not FORMATS[fmt].lossless:
        assert fmt in prov["lossy_frame_cache"]


@pytest.mark.parametrize("fmt", ["zstd", "jpeg"])
def test_a_damaged_compressed_file_is_named_and_redecoded(videos, tmp_path, fmt):
    cache = tmp_path / fmt
    prepare_dataset(videos, ["list.txt"], cache, short_side=48, cache_format=fmt)
    rel = _rels(videos)[4]
    path = cache_file(cache, rel, fmt)
    data = bytearray(path.read_bytes())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match=rf"{path} is damaged.*video {rel}"):
        _dataset(videos, cache)[4]
    report = prepare_dataset(videos, ["list.txt"], cache, short_side=48, cache_format=fmt)
    assert list(report["redecoded"]) == [rel]
    _dataset(videos, cache)[4]


def test_a_cache_holds_one_format_and_auto_gives_each_its_own(videos, tmp_path):
    from darknb.errors import ConfigError

    cache = tmp_path / "cache"
    prepare_dataset(videos, ["list.txt"], cache, short_side=48)
    with pytest.raises(ConfigError, match="holds npy frames, asked for cache_format='zstd'"):
        prepare_dataset(videos, ["list.txt"], cache, short_side=48, cache_format="zstd")
    cfg = RunConfig(dataset="dark48", data_root=str(videos), cache_format="zstd")
    assert cfg.frame_cache == videos.parent / "cache" / "videos.zstd"
    assert RunConfig(dataset="dark48", data_root=str(videos)).frame_cache == videos.parent / "cache" / "videos"
    with pytest.raises(ConfigError, match="cache_format"):
        RunConfig(cache_format="gif")


def test_prepare_cache_takes_the_format_from_the_config(videos, tmp_path):
    for subset, rels in (("train", _rels(videos)[:4]), ("test", _rels(videos)[4:])):
        (videos / f"{subset}.txt").write_text("".join(f"{k}\t{k % 2}\t{r}\n" for k, r in enumerate(rels)))
    cfg = RunConfig(dataset="dark48", data_root=str(videos), cache_format="zstd", val_fraction=0.0,
                    cache_dir=str(tmp_path / "z"), num_frames=8, size=32)
    report = prepare_cache(cfg, short_side=48)
    assert report["format"] == "zstd" and "python -m darknb prepare" in report["remedy"]
    assert "--format zstd" in report["remedy"]
    splits = build_datasets(cfg)
    assert splits.train.frame_cache.format == "zstd"
    shutil.rmtree(tmp_path / "z")


@pytest.mark.slow
def test_the_cache_format_benchmark_runs(tmp_path, capsys):
    """benchmarks/bench_cache_formats.py --smoke: every section prints its rows."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cache_formats.py"
    spec = importlib.util.spec_from_file_location("bench_cache_formats", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--smoke", "--work-dir", str(tmp_path)])
    out = capsys.readouterr().out
    for name in [*FORMATS, "peers: darklight", "peers: ffmpeg"]:
        assert f"| {name} |" in out
    assert "time inside the checksum check" in out and "files verified" in out
