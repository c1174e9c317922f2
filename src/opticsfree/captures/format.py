"""The capture-set format: one directory for simulated and real lensless data.

Layout (paths in ``index.csv`` are relative to the set's root)::

    manifest.json                                   provenance: dataset, camera, seed, version
    index.csv                                       split,id,label,label_name,original,lensless[,frame]
    originals/<split>/<class folder>/<id>.png       the image shown on the display
    lensless/<split>/<class folder>/<id>.jpeg       the capture (``<id>_fNN.jpeg`` with K frames)

Class names are free text (``"T-shirt/top"``); their folders come from one rule,
:func:`class_folders`, used by every command that writes, reads or checks class folders.
See docs/formats.md for the full description.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from opticsfree import __version__
from opticsfree.errors import DataError
from opticsfree.utils.io import read_json, write_json, write_text

FORMAT_VERSION = 1
INDEX_COLUMNS = ["split", "id", "label", "label_name", "original", "lensless"]
REQUIRED_MANIFEST_KEYS = ["format_version", "source", "classes", "splits", "camera", "seed",
                          "package_version", "created"]


@dataclass(frozen=True)
class IndexRow:
    """One row of ``index.csv``: a (scene, frame) pair of original and lensless image."""

    split: str
    id: str
    label: int
    label_name: str
    original: str
    lensless: str
    frame: int = 0


#: Characters replaced by ``_`` in class folder names: path separators, characters Windows
#: forbids, and control characters.
_UNSAFE_FOLDER_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
#: Names Windows reserves (with or without an extension), compared case-insensitively.
_RESERVED_FOLDER_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)])
#: Longer folder names (in UTF-8 bytes) are shortened and get a hash of the class name.
_MAX_FOLDER_BYTES = 120


def class_folder(name: str) -> str:
    """The folder name of one class name, on its own (no collision handling; see :func:`class_folders`).

    The rule (docs/formats.md, "Class folders"): every path separator (``/``, ``\\``), character
    Windows forbids (``<>:"|?*``) and control character becomes ``_``; a leading ``.`` becomes
    ``_`` (no hidden folders, no ``.``/``..``); trailing dots and spaces become ``_``; a name
    Windows reserves (``CON``, ``NUL``, ``COM1``, ...) gets a leading ``_``; an empty name is
    ``_``; a name longer than 120 UTF-8 bytes is cut and ends in ``~`` plus 8 hex digits of its
    SHA-256. A name that needs none of this is its own folder name, and applying the rule to a
    folder name it produced gives the same name back.
    """
    s = _UNSAFE_FOLDER_CHARS.sub("_", str(name))
    if s.startswith("."):
        s = "_" + s[1:]
    stripped = s.rstrip(". ")
    s = stripped + "_" * (len(s) - len(stripped))
    if not s:
        s = "_"
    if s.split(".")[0].upper() in _RESERVED_FOLDER_NAMES:
        s = "_" + s
    if len(s.encode("utf-8", "surrogateescape")) > _MAX_FOLDER_BYTES:
        digest = hashlib.sha256(str(name).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        head = s.encode("utf-8", "surrogateescape")[:_MAX_FOLDER_BYTES - 9].decode("utf-8", "ignore")
        s = f"{head}~{digest}"
    return s


def class_folders(classes: Sequence[str]) -> list[str]:
    """Folder names of ``classes`` (in label order), distinct even on case-insensitive file systems.

    Each name goes through :func:`class_folder`. First, in label order, every class whose name
    is already its own folder name claims it, unless an earlier class claimed the same name up
    to letter case. Then, in label order, every class still without a folder gets the first of
    ``<folder>``, ``<folder>_2``, ``<folder>_3``, ... not taken (compared case-insensitively).
    The result depends only on the list of names, so the same classes always give the same
    folders.

    Example: ``["T-shirt/top", "T-shirt_top"]`` gives ``["T-shirt_top_2", "T-shirt_top"]``.
    """
    base = [class_folder(c) for c in classes]
    out: list[str | None] = [None] * len(base)
    taken: set[str] = set()
    for i, (c, b) in enumerate(zip(classes, base)):
        if b == c and b.casefold() not in taken:
            taken.add(b.casefold())
            out[i] = b
    for i, b in enumerate(base):
        if out[i] is None:
            cand, k = b, 1
            while cand.casefold() in taken:
                k += 1
                cand = f"{b}_{k}"
            taken.add(cand.casefold())
            out[i] = cand
    return [str(f) for f in out]


def original_relpath(split: str, folder: str, id: str) -> str:
    """Path of an original image relative to the set root.

    ``folder`` is the class's folder from :func:`class_folders` (a class name is turned into
    its folder by :func:`class_folder`, which leaves folder names unchanged).
    """
    return f"originals/{split}/{class_folder(folder)}/{id}.png"


def lensless_relpath(split: str, folder: str, id: str, frame: int | None = None,
                     ext: str = "jpeg") -> str:
    """Path of a lensless capture relative to the set root (``_fNN`` suffix for multi-frame).

    ``folder``: as for :func:`original_relpath`.
    """
    stem = id if frame is None else f"{id}_f{frame:02d}"
    return f"lensless/{split}/{class_folder(folder)}/{stem}.{ext}"


def now_iso() -> str:
    """Current UTC time in ISO 8601 (seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def make_manifest(*, source: dict[str, Any], classes: list[str], splits: dict[str, int],
                  camera: dict[str, Any], seed: int | None, frames: int = 1,
                  channels: int, **extra: Any) -> dict[str, Any]:
    """Build a manifest dict with the format's required keys.

    Args:
        source: ``{"dataset": name, "copy": which copy was read, "notes": [...]}``.
        classes: class names in label order.
        splits: number of scenes per split.
        camera: the full camera parameter set, or ``{"type": "real", "notes": ...}``.
        seed: the random seed the set was made with (None for real captures).
        frames: captures per scene.
        channels: image channels (1 or 3).
        **extra: further provenance (e.g. ``derived_from``).
    """
    m = {
        "format_version": FORMAT_VERSION,
        "source": source,
        "classes": list(classes),
        "splits": dict(splits),
        "frames": int(frames),
        "channels": int(channels),
        "camera": camera,
        "seed": seed,
        "package_version": __version__,
        "created": now_iso(),
    }
    m.update(extra)
    return m


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read and validate ``root/manifest.json``."""
    path = Path(root) / "manifest.json"
    if not Path(root).is_dir():
        raise DataError(f"{root}: " + ("is a file; expected a capture set directory (with manifest.json and "
                                       "index.csv)" if Path(root).is_file() else "capture set directory not found"))
    if not path.is_file():
        raise DataError(f"{path}: missing; is {root} a capture set (made by simulate or import)?")
    m = read_json(path)
    if not isinstance(m, dict):
        raise DataError(f"{path}: expected a JSON object")
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in m]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
    if m["format_version"] != FORMAT_VERSION:
        raise DataError(f"{path}: format_version {m['format_version']!r} not supported "
                        f"(expected {FORMAT_VERSION})")
    if not isinstance(m["classes"], list) or not m["classes"] or not all(isinstance(c, str) for c in m["classes"]):
        raise DataError(f"{path}: classes must be a non-empty list of class names")
    return m


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> None:
    """Atomically write ``root/manifest.json``."""
    write_json(Path(root) / "manifest.json", manifest)


def read_index(root: str | Path) -> list[IndexRow]:
    """Read ``root/index.csv``; a malformed row raises DataError naming the line."""
    path = Path(root) / "index.csv"
    if not path.is_file():
        raise DataError(f"{path}: missing")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in INDEX_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} "
                            f"(expected {','.join(INDEX_COLUMNS)}[,frame])")
        has_frame = "frame" in header
        rows = []
        for lineno, r in enumerate(reader, start=2):
            try:
                rows.append(IndexRow(
                    split=r["split"], id=r["id"], label=int(r["label"]), label_name=r["label_name"],
                    original=r["original"], lensless=r["lensless"],
                    frame=int(r["frame"]) if has_frame and r["frame"] not in ("", None) else 0,
                ))
            except (TypeError, ValueError):
                raise DataError(f"{path}: line {lineno}: label and frame must be integers, got "
                                f"label={r.get('label')!r} frame={r.get('frame')!r}") from None
    return rows


def write_index(root: str | Path, rows: Iterable[IndexRow], frames: bool) -> None:
    """Atomically write ``root/index.csv`` (with a ``frame`` column when ``frames``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(INDEX_COLUMNS + (["frame"] if frames else []))
    for r in rows:
        w.writerow([r.split, r.id, r.label, r.label_name, r.original, r.lensless]
                   + ([r.frame] if frames else []))
    write_text(Path(root) / "index.csv", buf.getvalue())


class CaptureSet:
    """An opened capture set: its manifest and index.

    Attributes:
        root: the set directory.
        manifest: the parsed manifest.json.
        rows: all index rows, in file order.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.rows = read_index(self.root)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def class_folders(self) -> list[str]:
        """The folder name of each class (label order), by :func:`class_folders`."""
        return class_folders(self.classes)

    @property
    def splits(self) -> list[str]:
        """Splits present in the index, in first-seen order."""
        return list(dict.fromkeys(r.split for r in self.rows))

    @property
    def frames(self) -> int:
        return int(self.manifest.get("frames", 1))

    @property
    def is_derived(self) -> bool:
        """True when the lensless images are reconstructions (a derived set)."""
        return "derived_from" in self.manifest

    def rows_for(self, split: str) -> list[IndexRow]:
        """The rows of ``split``; DataError when the set has no such split."""
        rows = [r for r in self.rows if r.split == split]
        if not rows:
            raise DataError(f"{self.root}: capture set has no '{split}' split "
                            f"(it has: {', '.join(self.splits) or 'none'})")
        return rows

    def path(self, rel: str) -> Path:
        """Absolute path of an index entry, refusing paths that escape the set."""
        p = (self.root / rel).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise DataError(f"{self.root / 'index.csv'}: path {rel!r} escapes the capture set")
        return p


def open_capture_set(root: str | Path) -> CaptureSet:
    """Open the capture set at ``root`` (validates manifest and index)."""
    return CaptureSet(root)
