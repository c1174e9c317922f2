"""Cache of decoded dataset splits, so that 60,000 images are decoded once, not every run.

Each split is stored as an uncompressed ``.npz`` under ``cache_dir("decoded")``, named by the
dataset name, a key and the split. The key is a SHA-256 over

* the dataset name,
* :data:`CACHE_VERSION` (bumped whenever decoding or the file layout changes), and
* the source fingerprint: the file's SHA-256 for an archive, or, for a directory, a hash of
  its files' sorted relative paths and states (size, modification and change times, inode:
  :func:`opticsfree.utils.io.file_state`; :func:`source_fingerprint`),

so a changed source file gives a new key and is decoded again, also when its size and
modification time were kept (``cp -p``, ``rsync -t``: the change time moves). Files are written atomically;
a file that cannot be read back or has inconsistent contents is ignored (and rewritten).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from opticsfree.data.base import Split
from opticsfree.utils.io import atomic_path, file_sha256, file_state
from opticsfree.utils.paths import cache_dir

#: Version of the decoded-cache format and of the decoders; part of every key.
CACHE_VERSION = 2  # 2: one decoder (utils.images.decode_image): I;16 rounded, I and F decoded


@dataclass
class Decoded:
    """Splits decoded from one source, plus what the loader learned about the source.

    Attributes:
        classes: class names in label order.
        splits: decoded splits (may hold more splits than were asked for).
        form: the source's layout, e.g. ``"official python archive"`` (for provenance).
        notes: caveats about this copy (path-free, so they stay valid from the cache).
    """

    classes: list[str]
    splits: dict[str, Split]
    form: str
    notes: list[str] = field(default_factory=list)


def source_fingerprint(path: str | os.PathLike) -> str:
    """A hex digest that changes whenever the data at ``path`` changes.

    For a file: its SHA-256. For a directory: the SHA-256 of the sorted list of
    ``(relative path, file_state)`` of every file below it (:func:`~opticsfree.utils.io.file_state`:
    size, mtime, ctime, inode; contents are not read, so fingerprinting a tree of 60,000 images
    takes a fraction of a second, and a file rewritten with its size and mtime restored still
    changes the fingerprint).
    """
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    rows = []
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            state = file_state(full)
            if state is None:
                continue
            rows.append(f"{os.path.relpath(full, p)}\x1f{state}")
    rows.sort()
    return hashlib.sha256("\n".join(rows).encode("utf-8", "surrogateescape")).hexdigest()


def cache_key(name: str, fingerprint: str) -> str:
    """The cache key of dataset ``name`` decoded from a source with ``fingerprint``."""
    return hashlib.sha256(f"{name}\x1f{CACHE_VERSION}\x1f{fingerprint}".encode()).hexdigest()[:40]


def cache_file(name: str, key: str, split: str) -> Path:
    """Where split ``split`` of ``name`` with ``key`` is cached."""
    return cache_dir("decoded") / f"{name}-{key}-{split}.npz"


def _save(path: Path, split: Split, classes: list[str], form: str, notes: list[str]) -> None:
    meta = json.dumps({"version": CACHE_VERSION, "classes": classes, "form": form, "notes": notes})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=split.images, labels=split.labels,
                 ids=np.asarray(split.ids, dtype=np.str_), meta=np.asarray(meta))


def _load(path: Path) -> tuple[Split, dict] | None:
    """The cached split and its metadata, or None when absent, unreadable or inconsistent."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels, ids = z["images"], z["labels"], z["ids"]
            meta = json.loads(str(z["meta"]))
        if meta.get("version") != CACHE_VERSION or not isinstance(meta.get("classes"), list):
            return None
        if labels.dtype != np.int64 or ids.ndim != 1:
            return None
        if len(labels) and (labels.min() < 0 or labels.max() >= len(meta["classes"])):
            return None
        return Split(images, labels, [str(i) for i in ids]), meta
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile,
            json.JSONDecodeError):
        return None


def cached_decode(name: str, fingerprint: str, splits: Sequence[str],
                  build: Callable[[list[str]], Decoded]) -> Decoded:
    """Return ``splits`` of ``name`` from the cache, decoding (via ``build``) what is missing.

    Args:
        name: dataset name (part of the key).
        fingerprint: :func:`source_fingerprint` of the source.
        splits: split names wanted.
        build: called with the list of missing split names; returns a :class:`Decoded`
            holding at least those splits. Every split it returns is written to the cache.

    Returns:
        A :class:`Decoded` with exactly ``splits`` (in that order).
    """
    key = cache_key(name, fingerprint)
    found: dict[str, tuple[Split, dict]] = {}
    for s in splits:
        hit = _load(cache_file(name, key, s))
        if hit is not None:
            found[s] = hit
    metas = [m for _, m in found.values()]
    if metas and any(m["classes"] != metas[0]["classes"] for m in metas):
        found = {}  # inconsistent leftovers: rebuild all
    missing = [s for s in splits if s not in found]
    if not missing:
        meta = metas[0]
        notes: list[str] = []
        for m in metas:
            notes += [n for n in m.get("notes", []) if n not in notes]
        return Decoded(list(meta["classes"]), {s: found[s][0] for s in splits}, str(meta.get("form", "")), notes)
    built = build(missing)
    if found and built.classes != metas[0]["classes"]:
        found = {}
        built = build(list(splits))
    for s, sp in built.splits.items():
        _save(cache_file(name, key, s), sp, built.classes, built.form, built.notes)
    notes = list(built.notes)
    for m in (m for _, m in found.values()):
        notes += [n for n in m.get("notes", []) if n not in notes]
    out = {s: (found[s][0] if s in found else built.splits[s]) for s in splits}
    return Decoded(list(built.classes), out, built.form, notes)
