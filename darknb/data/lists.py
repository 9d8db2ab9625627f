"""Video list files: ARID's TAB lists, DarkLight's CSV lists, ``path label`` lines, class mappings.

Every entry must stay inside its dataset root (no absolute paths, no ``..``, no symlink out), and
appear once: a duplicated entry is refused naming its lines (it would be trained or tested on
twice). :func:`shared_entries` finds an entry in two lists (a video in train and test).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from darknb.errors import DatasetError

__all__ = ["entry_key", "list_lines", "nonempty_list", "read_list", "read_mapping", "safe_relpath",
           "shared_entries"]


def _is_int(tok: str) -> bool:
    return re.fullmatch(r"-?\d+", tok) is not None


def read_list(list_file: str | os.PathLike, *, label_base: int = 0) -> list[tuple[str, int]]:
    """Parse a video list into ``[(relative path, label)]``, auto-detecting the format; an entry
    listed twice is refused, naming it and its line numbers (:class:`DatasetError`).

    Accepted forms (one clip per line; blank lines ignored):
    * ARID TAB form ``idx<TAB>label<TAB>Class/Class_group_clip.avi`` (no header);
    * DarkLight / UG2+ CSV ``VideoID,Video,ClassID`` (with that header);
    * ``path label`` (whitespace separated), e.g. a Dark-48-style list.
    ``label_base`` is subtracted from every label (1 for 1-based lists).
    """
    numbered = _parse_list(list_file, label_base=label_base)
    _refuse_duplicates(Path(list_file), numbered)
    return [(rel, label) for _, rel, label in numbered]


def entry_key(rel: str) -> str:
    """The form entries are compared in: ``A//b.avi``, ``./A/b.avi`` and ``A/b.avi`` are one video."""
    return os.path.normpath(rel.replace("\\", "/"))


def _refuse_duplicates(list_file: Path, numbered) -> None:
    lines: dict[str, list[int]] = {}
    for lineno, rel, _ in numbered:
        lines.setdefault(entry_key(rel), []).append(lineno)
    repeated = {rel: at for rel, at in lines.items() if len(at) > 1}
    if repeated:
        shown = "; ".join(f"{rel!r} on lines {', '.join(map(str, at))}"
                          for rel, at in list(repeated.items())[:5])
        more = f" (and {len(repeated) - 5} more)" if len(repeated) > 5 else ""
        raise DatasetError(f"{list_file}: {len(repeated)} entr{'y is' if len(repeated) == 1 else 'ies are'} "
                           f"listed more than once (each would be used twice): {shown}{more}. "
                           "Remove the repeated lines")


def list_lines(list_file: str | os.PathLike) -> dict[str, int]:
    """entry (:func:`entry_key`) -> its line number in ``list_file`` (the first, for a header-less
    list line 1 is the first line)."""
    out: dict[str, int] = {}
    for lineno, rel, _ in _parse_list(list_file):
        out.setdefault(entry_key(rel), lineno)
    return out


def shared_entries(named_lists: dict) -> list[str]:
    """Entries found in two or more of ``named_lists`` (name -> (list file, entries)), each
    described with the lists and line numbers that hold it: ``"'A/a_1_1.avi' in train
    (train.txt:3) and test (test.txt:7)"``. Empty when the lists are disjoint."""
    owners: dict[str, list[str]] = {}
    for name, (list_file, entries) in named_lists.items():
        for rel in dict.fromkeys(entry_key(r) for r in entries):
            owners.setdefault(rel, []).append(name)
    shared = {rel: names for rel, names in owners.items() if len(names) > 1}
    if not shared:
        return []
    lines = {name: list_lines(list_file) for name, (list_file, _) in named_lists.items()}
    out = []
    for rel, names in shared.items():
        where = [f"{name} ({Path(named_lists[name][0]).name}:{lines[name].get(rel, '?')})" for name in names]
        out.append(f"{rel!r} in {' and '.join(where)}")
    return out


def _parse_list(list_file: str | os.PathLike, *, label_base: int = 0) -> list[tuple[int, str, int]]:
    """``[(line number, relative path, label)]`` of a list file (see :func:`read_list`)."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise DatasetError(f"list file not found: {list_file}")
    text = list_file.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    out: list[tuple[int, str, int]] = []
    first = next((ln for ln in lines if ln.strip()), "")
    if first.replace(" ", "").lower().startswith("videoid,video,classid"):
        reader = csv.reader(io.StringIO(text))
        next(reader)
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3 or not _is_int(row[2].strip()):
                raise DatasetError(f"{list_file}:{lineno}: expected 'VideoID,Video,ClassID', got {row!r}")
            out.append((lineno, row[1].strip(), int(row[2]) - label_base))
        return out
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        toks = line.split("\t") if "\t" in line else line.split()
        toks = [t.strip() for t in toks if t.strip()]
        if len(toks) == 3 and _is_int(toks[0]) and _is_int(toks[1]):
            out.append((lineno, toks[2], int(toks[1]) - label_base))
        elif len(toks) == 2 and _is_int(toks[1]):
            out.append((lineno, toks[0], int(toks[1]) - label_base))
        else:
            raise DatasetError(
                f"{list_file}:{lineno}: unrecognised list line {line!r} (expected "
                f"'idx<TAB>label<TAB>path', 'path label' or a 'VideoID,Video,ClassID' CSV)")
    return out


def read_mapping(path: str | os.PathLike) -> list[str]:
    """Read ``id<TAB>Name`` (or ``id Name``) lines into names in id order (ids must be 0..K-1)."""
    path = Path(path)
    pairs = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        toks = line.split(None, 1)
        if len(toks) != 2 or not _is_int(toks[0]):
            raise DatasetError(f"{path}:{lineno}: expected 'id<TAB>Name', got {line!r}")
        pairs[int(toks[0])] = toks[1].strip()
    if sorted(pairs) != list(range(len(pairs))):
        raise DatasetError(f"{path}: class ids must be 0..{len(pairs) - 1}, got {sorted(pairs)}")
    return [pairs[i] for i in range(len(pairs))]


def safe_relpath(root_resolved: Path, rel: str, where: str) -> Path:
    """Refuse list entries that escape the dataset root (absolute, '..', symlinks out)."""
    p = Path(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise DatasetError(f"{where}: absolute path {rel!r} refused (entries must be relative to the root)")
    if ".." in p.parts:
        raise DatasetError(f"{where}: path {rel!r} refused: '..' would leave the dataset root")
    full = (root_resolved / p).resolve()
    if full != root_resolved and root_resolved not in full.parents:
        raise DatasetError(f"{where}: path {rel!r} resolves to {full}, outside the dataset root "
                           f"{root_resolved} (symlink?)")
    return full


def nonempty_list(list_file: Path) -> list[tuple[str, int]]:
    """``read_list`` that refuses a list without a single video (it would only fail later, in
    training, far from its cause)."""
    entries = read_list(list_file)
    if not entries:
        raise DatasetError(f"list file {list_file} names no video (it is empty)")
    return entries

