"""A run's data protocol: which dataset, which classes, which list files, and whether those lists
are the official ones.

A checkpoint stores its dataset's identity (:func:`dataset_identity`); whatever reuses it (resuming
training, distilling a student from a teacher) compares identities first (:func:`check_same_dataset`)
and refuses a mismatch by name: a teacher trained on other classes, another dataset or another
split would otherwise distil silently. Reports label every run with :func:`protocol_label`, so a
run on a subset or a custom split says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from darknb.data.framecache import CACHE_MANIFEST, TRANSFORM_MANIFEST
from darknb.data.synthetic import MANIFEST as SYNTHETIC_MANIFEST
from darknb.errors import CheckpointError
from darknb.files import read_json, sha256_file
from darknb.provenance import data_checksum, digest

# ARID's official list files, recognised by their sha256. Sources (checksums of the files as
# published, see shared/reference/arid/README.md):
# - ARID v1: GitHub xuyu0010/ARID_v1, commit b03d0975f41547e8aa78929b8e26a62248f8e18f,
#   dataset/ARID/raw/list_cvt/ (the `*_other.txt` lists are not a validation set: they share test
#   groups, see PAPER.md).
# - ARID v1.1 (UG2+ 2021 Track 2.1, 6 classes): GitHub Ticuby/Darklight-Pytorch, commit
#   67016930a75077195eaa12dfd71e9ea433482ddb, datasets/settings/ARID/.
# No official ARID v1.5 or Dark-48 list was found: their lists are always "custom list".
OFFICIAL_LISTS: dict[str, str] = {
    "3169e4f6520311965a999f613f5e19a477fa7a78c7614933c58523d69f72caa7": "ARID v1 split 1 train",
    "46d81716111287d46ff49ce79a8907b5685ec9832c8fbbe1be9866f01528d9ad": "ARID v1 split 1 test",
    "94410195bd8ffa29b2a19bb00d9759b1ab8ef3b7f626fcbc5afed5107227b4b1": "ARID v1 split 1 other",
    "8d691d0266a42af1547a62b220f3304e5624b61210b5fdb35bb6c073e0377c35": "ARID v1 split 2 train",
    "ac1f54a500f3c12cba373804c372a953f7784fcb15b33295bc6430c17282912e": "ARID v1 split 2 test",
    "ed0d23d8a187c6aa378caf9cd44550958a467c556afb5c66b2eaf25d8aac1275": "ARID v1 split 2 other",
    "2bb07dabd0d35fabfc4dc7627f9decbfbace56cb73e0eee9113fd618080c1178": "ARID v1 split 3 train",
    "45c62dc519e35477050011653bc9c4a3f40b77d625260eb60dbcbf2704d541e1": "ARID v1 split 3 test",
    "91c079cb259c80c132a72db20659aa3035e6949e5d9801bde8342ec8278ec576": "ARID v1 split 3 other",
    "3dfa6e3b5e5c32b11ec711eb6571548ec3a2a118c73f8d699d7c3fa7f6fa5e1a": "ARID v1.1 (DarkLight) train",
    "6c64823db5754bd486abbdc0297481795ac8d904f2b45398a0bcc495fb5b0b06": "ARID v1.1 (DarkLight) test",
}
CUSTOM = "custom list"
SYNTHETIC = "synthetic (generated lists)"


def official_list(path: str | os.PathLike) -> str | None:
    """The name of the official list ``path`` is byte for byte (e.g. ``"ARID v1 split 1 train"``),
    or None."""
    return OFFICIAL_LISTS.get(sha256_file(path))


def dataset_identity(name: str, splits: Iterable) -> dict:
    """What identifies a run's data: the dataset name, its class names (in label order) and, per
    subset (train / val / test), the list file, its sha256 and its official name (or None).
    ``splits`` are the run's datasets (a :class:`darknb.data.Splits`; None entries are skipped)."""
    splits = [ds for ds in splits if ds is not None]
    if not splits:
        raise ValueError("dataset_identity: no dataset given")
    lists = {}
    for ds in splits:
        path = Path(ds.list_file)
        digest = sha256_file(path)
        lists[getattr(ds, "subset", None) or path.stem] = {
            "file": path.name, "sha256": digest, "official": OFFICIAL_LISTS.get(digest)}
    return {"name": str(name), "classes": list(splits[0].classes), "lists": lists}


def identity_of(name: str, splits) -> dict | None:
    """:func:`dataset_identity` of a run's datasets, or None for datasets without list files
    (a dataset a test or a user built from tensors: nothing to compare)."""
    present = [ds for ds in splits if ds is not None]
    if not present or not all(hasattr(ds, "list_file") for ds in present):
        return None
    return dataset_identity(name, present)


def protocol_label(identity: dict | None) -> str:
    """How reports name a run's lists: ``"official: ARID v1 split 1"`` when every list is an
    official one, the synthetic set's generated lists, else ``"custom list"``."""
    if not identity:
        return CUSTOM
    lists = identity.get("lists", {})
    names = [entry.get("official") for entry in lists.values()]
    if names and all(names):
        splits = sorted({n.rsplit(" ", 1)[0] for n in names})  # "ARID v1 split 1 train" -> "... 1"
        return "official: " + ", ".join(splits)
    if identity.get("name") == "synthetic":
        return SYNTHETIC
    return CUSTOM


def check_same_dataset(saved: dict | None, current: dict, *, what: str) -> None:
    """Refuse to reuse ``what`` (e.g. "teacher checkpoint runs/x/teacher.ckpt") whose dataset
    identity ``saved`` differs from ``current``: a different dataset name, class names, or list
    file contents (compared for the subsets both have). ``saved`` None (a checkpoint written before
    identities were stored) is accepted: there is nothing to compare."""
    if not saved:
        return
    problems = []
    if saved.get("name") != current.get("name"):
        problems.append(f"dataset {saved.get('name')!r} vs {current.get('name')!r} now")
    if list(saved.get("classes", [])) != list(current.get("classes", [])):
        problems.append(f"classes {saved.get('classes')} vs {current.get('classes')} now")
    for subset, entry in saved.get("lists", {}).items():
        now = current.get("lists", {}).get(subset)
        if now is not None and now.get("sha256") != entry.get("sha256"):
            problems.append(f"{subset} list {entry.get('file')} (sha256 {entry.get('sha256', '')[:12]}) "
                            f"vs {now.get('file')} (sha256 {now.get('sha256', '')[:12]}) now")
    if problems:
        raise CheckpointError(f"{what} was made with other data: {'; '.join(problems)}. Use the "
                              "same dataset and lists, or another output_dir")


def dataset_files(dataset) -> list[Path]:
    """The list / manifest files that define a dataset object's protocol."""
    files = []
    list_file = getattr(dataset, "list_file", None)
    if list_file and Path(list_file).is_file():
        files.append(Path(list_file))
    manifest = Path(getattr(dataset, "root", ".")) / SYNTHETIC_MANIFEST
    if manifest.is_file():
        files.append(manifest)
    return sorted(set(files))


def data_provenance(name: str | None, datasets) -> dict:
    """The data part of a :func:`darknb.provenance.provenance` record: a sha256 over the files that
    define the protocol (lists, the synthetic set's manifest), those files, whether the lists
    are the official ones (:func:`protocol_label`) or a "custom list", and the frame caches the
    datasets read (``frame_caches``: folder -> format, ``lossless``, content checksum; a lossy
    cache is also named in ``lossy_frame_cache``)."""
    datasets = [ds for ds in datasets if ds is not None and hasattr(ds, "list_file")]
    files = sorted({f for ds in datasets for f in dataset_files(ds)})
    identity = dataset_identity(name or "", datasets) if datasets else None
    caches = {str(c.dir): c.identity() for ds in datasets
              if (c := getattr(ds, "frame_cache", None)) is not None}
    lossy = sorted(d for d, c in caches.items() if not c["lossless"])
    return {"data_checksum": data_checksum(files) if files else None,
            "data_files": [str(f) for f in files],
            "data_protocol": protocol_label(identity) if identity else None,
            "data_lists": identity["lists"] if identity else None,
            "frame_caches": caches,
            "lossy_frame_cache": (f"{', '.join(lossy)}: frames stored lossily "
                                  f"({', '.join(sorted({caches[d]['format'] for d in lossy}))})"
                                  if lossy else None)}


_ENTRIES_MEMO: dict[tuple[str, int, int], dict] = {}
# A transformed (enhanced) cache's record of the raw frames each of its videos was made from:
# rel -> sha256 of the raw cache's entry (:func:`darknb.engine.teacher.ensure_enhanced_cache`)
SOURCE_RECORD = "raw_frames.json"


def cache_entries(cache_dir: str | os.PathLike | None) -> dict:
    """A frame cache's ``cache.json`` ``videos`` entries (rel -> entry), {} without one;
    remembered per (file, size, mtime) for this process."""
    if cache_dir is None:
        return {}
    marker = Path(cache_dir) / CACHE_MANIFEST
    if not marker.is_file():
        return {}
    st = marker.stat()
    key = (str(marker.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _ENTRIES_MEMO:
        _ENTRIES_MEMO[key] = dict(read_json(marker).get("videos", {}))
    return _ENTRIES_MEMO[key]


def content_identity(dataset) -> str:
    """sha256 of what a dataset's clips are read from, per video it serves: the frame cache's
    ``cache.json`` entry of that video, hashed whole (so whatever the cache records about a file,
    e.g. its checksum, is part of it), and for an enhanced cache its ``transform.json`` (the
    enhancer's weights) and the raw frames each video was made from; a video the cache lacks is decoded, and identified by its size and
    mtime. Paths are relative to the dataset root: a moved project keeps its identity."""
    cache_dir = getattr(dataset, "cache_dir", None)
    entries = cache_entries(cache_dir)
    videos = {}
    for rel, _ in dataset.samples:
        if rel in entries:
            videos[rel] = entries[rel]
        else:
            path = Path(dataset.root) / rel
            st = path.stat() if path.is_file() else None
            videos[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns} if st else None
    extra = {}
    for name in (TRANSFORM_MANIFEST, SOURCE_RECORD):  # an enhanced cache: enhancer, raw frames
        path = Path(cache_dir) / name if cache_dir is not None else None
        if path is not None and path.is_file():
            held = read_json(path)
            extra[name] = held if name == TRANSFORM_MANIFEST else {
                rel: held.get(rel) for rel, _ in dataset.samples}
    return digest({"videos": videos, **extra})


def data_fingerprint(name: str, datasets) -> dict | None:
    """The data part of a stage's fingerprint (:mod:`darknb.provenance`): dataset name, class
    names, each subset's list sha256 (:func:`dataset_identity`) and the content identity of its
    clips (:func:`content_identity`). None for datasets without list files."""
    present = [ds for ds in datasets if ds is not None]
    identity = identity_of(name, present)
    if identity is None:
        return None
    content = {}
    for ds in present:
        subset = getattr(ds, "subset", None) or Path(ds.list_file).stem
        content[subset] = content_identity(ds)
    return {"dataset": identity["name"], "classes": identity["classes"],
            "lists": {k: v["sha256"] for k, v in identity["lists"].items()}, "content": content}
