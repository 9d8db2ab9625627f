"""darknb.synthetic: the synthetic dark action set (layout, darkness, determinism, validation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from darknb import video
from darknb.data import read_list
from darknb.errors import ConfigError
from darknb.synthetic import make_synthetic_dark

SMALL = dict(num_classes=3, videos_per_class=8, num_frames=16, size=(64, 48), seed=3)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dark(tmp_path_factory.mktemp("synth"), **SMALL)


def test_synthetic_layout_and_lists(synth):
    manifest = json.loads((synth / "synthetic.json").read_text())
    classes = manifest["classes"]
    assert classes == ["MoveLeft", "MoveRight", "RotateCW"]
    assert (synth / "list_cvt" / "mapping_table.txt").read_text() == "0\tMoveLeft\n1\tMoveRight\n2\tRotateCW\n"
    train = read_list(synth / "list_cvt" / "synthetic_split1_train.txt")
    test = read_list(synth / "list_cvt" / "synthetic_split1_test.txt")
    assert len(train) + len(test) == 3 * 8 and test
    for rel, label in train + test:
        cls, name = rel.split("/")
        c, group, clip = name[: -len(".mp4")].split("_")
        assert c == cls == classes[label] and group.isdigit() and clip.isdigit()
        assert (synth / rel).is_file()
    # Group-disjoint like ARID: no <Class>_<group> (nor group) in both train and test.
    groups = lambda items: {rel.split("/")[1].split("_")[1] for rel, _ in items}  # noqa: E731
    assert groups(train).isdisjoint(groups(test))
    # ARID's exact line form: idx<TAB>class<TAB>path, idx counting from 0.
    first = (synth / "list_cvt" / "synthetic_split1_train.txt").read_text().splitlines()[0]
    assert first.split("\t")[0] == "0" and len(first.split("\t")) == 3
    # Manifest hashes match the files.
    import hashlib
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((synth / rel).read_bytes()).hexdigest() == digest


def test_synthetic_is_dark_and_decodable(synth):
    decord = pytest.importorskip("decord")
    rels = [rel for rel, _ in read_list(synth / "list_cvt" / "synthetic_split1_train.txt")]
    means = []
    for rel in rels[::4]:
        frames = video.read_frames(synth / rel, range(16), backend="pyav")
        vr = decord.VideoReader(str(synth / rel))
        assert len(vr) == 16
        via_decord = vr.get_batch(list(range(16))).asnumpy()
        del vr
        assert np.array_equal(frames, via_decord)  # H.264: both decoders agree bit for bit
        means.append(frames.mean())
    assert max(means) < 80 and 5 < np.mean(means) < 40, means
    # Motion is there: frames of a clip differ by more than noise alone would explain.
    f = video.read_frames(synth / rels[0], [0, 15]).astype(float)
    assert np.abs(f[0] - f[1]).mean() > 1.0


def test_synthetic_deterministic_and_noop(synth, tmp_path):
    other = make_synthetic_dark(tmp_path / "again", **SMALL)
    a = json.loads((synth / "synthetic.json").read_text())["files"]
    b = json.loads((other / "synthetic.json").read_text())["files"]
    assert a == b  # same seed -> byte-identical videos and lists
    victim = other / next(r for r in b if r.endswith(".mp4"))
    mtime = victim.stat().st_mtime_ns
    make_synthetic_dark(other, **SMALL)
    assert victim.stat().st_mtime_ns == mtime  # complete set: no-op
    victim.unlink()
    make_synthetic_dark(other, **SMALL)  # incomplete: regenerated identically
    assert json.loads((other / "synthetic.json").read_text())["files"] == a
    c = make_synthetic_dark(tmp_path / "seed4", **dict(SMALL, seed=4))
    assert json.loads((c / "synthetic.json").read_text())["files"] != a


def test_synthetic_validates(tmp_path):
    for bad in (dict(num_classes=1), dict(num_classes=99), dict(size=(47, 32)),
                dict(test_fraction=1.0), dict(ext=".gif"), dict(videos_per_class=1)):
        with pytest.raises(ConfigError):
            make_synthetic_dark(tmp_path, **bad)
