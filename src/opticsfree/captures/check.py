"""Validate a capture set: manifest, index, every image file, labels, sizes, splits, frames.

:func:`check_capture_set` never stops at the first problem: it reports every bad file (or index
line) it finds, so that a user can fix a set in one go. Problems are ``{"file", "problem"}``
dicts, ``file`` being the path relative to the set (``manifest.json``, ``index.csv`` or an image
path from the index).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import posixpath
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from opticsfree.captures.format import (
    FORMAT_VERSION,
    INDEX_COLUMNS,
    REQUIRED_MANIFEST_KEYS,
    IndexRow,
    class_folders,
)
from opticsfree.utils.images import decoded_channels, image_array
from opticsfree.utils.parallel import map_chunks

#: Bytes at the end of a file searched for the end-of-image marker.
TAIL = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class CheckReport:
    """The result of :func:`check_capture_set`.

    Attributes:
        root: the checked directory.
        problems: one ``{"file": str, "problem": str}`` per problem found, ``file`` relative to
            ``root``.
        summary: ``{"n_rows": int, "splits": {split: n_scenes}, "rows_per_split": {split: n_rows},
            "sizes": {"original": "HxWxC" | None, "lensless": "HxWxC" | None}}``.
    """

    root: Path
    problems: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def add(self, file: str, problem: str) -> None:
        """Record a problem with ``file``."""
        self.problems.append({"file": file, "problem": problem})

    def to_json(self) -> dict[str, Any]:
        """The ``check --json`` object: ``{"ok", "n_rows", "problems", "splits", "sizes"}``."""
        return {
            "ok": self.ok,
            "n_rows": int(self.summary.get("n_rows", 0)),
            "problems": list(self.problems),
            "splits": dict(self.summary.get("splits", {})),
            "sizes": dict(self.summary.get("sizes", {})),
        }


# --------------------------------------------------------------------------- manifest / index

def _check_manifest(root: Path, report: CheckReport) -> dict[str, Any] | None:
    """Validate ``manifest.json``; returns it when usable (classes readable), else None."""
    path = root / "manifest.json"
    name = "manifest.json"
    if not path.is_file():
        report.add(name, "missing (a capture set needs manifest.json; made by simulate or import)")
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        report.add(name, "not UTF-8 text")
        return None
    except json.JSONDecodeError as e:
        report.add(name, f"invalid JSON at line {e.lineno}: {e.msg}")
        return None
    except OSError as e:
        report.add(name, f"unreadable ({e.strerror})")
        return None
    if not isinstance(m, dict):
        report.add(name, "expected a JSON object")
        return None
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in m]
    if missing:
        report.add(name, f"missing key(s) {', '.join(missing)}")
    if "format_version" in m and m["format_version"] != FORMAT_VERSION:
        report.add(name, f"format_version {m['format_version']!r} not supported "
                         f"(expected {FORMAT_VERSION})")
    classes = m.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        report.add(name, "classes must be a non-empty list of class names")
        m["classes"] = None
    elif len(set(classes)) != len(classes):
        dup = sorted(c for c, n in Counter(classes).items() if n > 1)
        report.add(name, f"duplicate class name(s) {', '.join(dup)}")
    splits = m.get("splits")
    if "splits" in m and not (isinstance(splits, dict) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in splits.values())):
        report.add(name, "splits must map split names to scene counts (non-negative integers)")
        m["splits"] = None
    frames = m.get("frames", 1)
    if not (isinstance(frames, int) and not isinstance(frames, bool) and frames >= 1):
        report.add(name, f"frames must be a positive integer, got {frames!r}")
        m["frames"] = None
    return m


def _read_index(root: Path, report: CheckReport) -> list[tuple[int, IndexRow]] | None:
    """Parse ``index.csv`` leniently: every malformed line is a problem; returns (line, row)."""
    path = root / "index.csv"
    name = "index.csv"
    if not path.is_file():
        report.add(name, "missing (a capture set needs index.csv)")
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        report.add(name, "not UTF-8 text")
        return None
    except OSError as e:
        report.add(name, f"unreadable ({e.strerror})")
        return None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in INDEX_COLUMNS if c not in header]
    if missing:
        report.add(name, f"missing column(s) {', '.join(missing)} "
                         f"(expected {','.join(INDEX_COLUMNS)}[,frame])")
        return None
    has_frame = "frame" in header
    rows: list[tuple[int, IndexRow]] = []
    n_lines = 0
    try:
        for lineno, r in enumerate(reader, start=2):
            n_lines += 1
            if None in r or any(r.get(c) is None for c in INDEX_COLUMNS):
                report.add(name, f"line {lineno}: expected {len(header)} fields")
                continue
            try:
                label = int(r["label"])
                frame_s = r.get("frame") if has_frame else None
                frame = int(frame_s) if frame_s not in ("", None) else 0
            except ValueError:
                report.add(name, f"line {lineno}: label and frame must be integers, got "
                                 f"label={r.get('label')!r} frame={r.get('frame')!r}")
                continue
            empty = [c for c in ("split", "id", "label_name", "original", "lensless") if not r[c]]
            if empty:
                report.add(name, f"line {lineno}: empty field(s) {', '.join(empty)}")
                continue
            rows.append((lineno, IndexRow(split=r["split"], id=r["id"], label=label,
                                          label_name=r["label_name"], original=r["original"],
                                          lensless=r["lensless"], frame=frame)))
    except csv.Error as e:
        report.add(name, f"malformed CSV: {e}")
    if n_lines == 0:
        report.add(name, "no rows")
    return rows


class _Containment:
    """Decides whether index paths stay inside the set (resolving links, caching directories)."""

    def __init__(self, root: Path):
        self.root = os.path.realpath(root)
        self.prefix = self.root.rstrip(os.sep) + os.sep
        self._dirs: dict[str, bool] = {}

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.prefix)

    def escapes(self, rel: str) -> bool:
        """True when ``rel`` is absolute, has ``..`` parts, or resolves outside the set."""
        if rel.startswith(("/", "\\")) or _DRIVE.match(rel):
            return True
        if ".." in rel.replace("\\", "/").split("/"):
            return True
        full = os.path.join(self.root, rel)
        d = os.path.dirname(full)
        if d not in self._dirs:
            self._dirs[d] = self._inside(os.path.realpath(d))
        if not self._dirs[d]:
            return True
        if os.path.islink(full):
            return not self._inside(os.path.realpath(full))
        return False


# --------------------------------------------------------------------------- image files

def _end_marker_ok(data: bytes) -> str | None:
    """Check that a JPEG/PNG file ends with its end marker; returns a problem or None."""
    tail = data[-TAIL:]
    if data[:3] == b"\xff\xd8\xff":
        if b"\xff\xd9" not in tail:
            return "truncated JPEG (no end-of-image marker)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in tail:
            return "truncated PNG (no IEND chunk)"
    return None


def inspect_image(path: str, decode: bool = True) -> tuple[tuple[int, int, int] | None, str | None]:
    """Inspect one image file.

    Args:
        path: the file.
        decode: fully decode the pixels (detects truncated or corrupt data); when False only
            the header and the end-of-image marker are read.

    Returns:
        ``((H, W, C), None)`` for a good file, ``(None, problem)`` otherwise. ``C`` is the
        channel count the loader's decoder gives (1 or 3,
        :func:`opticsfree.utils.images.decoded_channels`).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, "missing"
    except IsADirectoryError:
        return None, "is a directory, not an image file"
    except OSError as e:
        return None, f"unreadable ({e.strerror})"
    if not data:
        return None, "empty file"
    bad = _end_marker_ok(data)
    if bad:
        return None, bad
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            # decode: the loader's own decoding (opticsfree.utils.images.image_array), so a set
            # that passes is a set the loader reads; else the channel count from the header
            c = image_array(img).shape[2] if decode else decoded_channels(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return None, f"unreadable or truncated image ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return (h, w, c), None


def _inspect_chunk(paths: Sequence[str], decode: bool) -> list[tuple[tuple[int, int, int] | None, str | None]]:
    return [inspect_image(p, decode) for p in paths]


def _inspect_all(paths: list[str], decode: bool, workers: int | None = 0) -> list:
    """Inspect ``paths`` (absolute), with a progress bar, in worker processes when many
    (:func:`~opticsfree.utils.parallel.map_chunks`)."""
    return list(map_chunks(functools.partial(_inspect_chunk, decode=decode), paths, workers=workers,
                           desc="checking images" if decode else "checking files"))


def _fmt_size(s: tuple[int, int, int]) -> str:
    return f"{s[0]}x{s[1]}x{s[2]}"


# --------------------------------------------------------------------------- the check

def check_capture_set(root: str | Path, decode: bool = True, workers: int | None = 0) -> CheckReport:
    """Validate the capture set at ``root`` and list every problem.

    Checks: ``manifest.json`` readable with the required keys; ``index.csv`` readable (every
    malformed line reported); every original and lensless file inside the set, present, readable
    and not truncated; no duplicate ``(split, id, frame)``; no lensless file used twice; labels in
    range of the manifest's classes and ``label_name == classes[label]``; one label and one
    original per scene; one image size within originals and one within lensless captures (the
    files that differ from the majority are named); scenes per split equal to
    ``manifest["splits"]``; with ``frames`` > 1, frames ``0..frames-1`` for every scene; every
    file directly in its class folder, ``originals/<split>/<folder>/`` or
    ``lensless/<split>/<folder>/``, ``<folder>`` being the folder that
    :func:`~opticsfree.captures.format.class_folders` gives the row's class.

    Args:
        root: the capture set directory.
        decode: fully decode every image (slower; detects corrupt data that a header read and
            end-marker check miss).
        workers: processes for reading images (:func:`~opticsfree.utils.parallel.map_chunks`):
            0 one per CPU, 1 in this process, N at most N; few files are read in this process.

    Returns:
        A :class:`CheckReport`; ``report.ok`` is True when the set is valid.
    """
    root = Path(root)
    report = CheckReport(root=root, summary={"n_rows": 0, "splits": {}, "rows_per_split": {},
                                             "sizes": {"original": None, "lensless": None}})
    if not root.is_dir():
        report.add(str(root), "is a file; expected a capture set directory (with manifest.json and index.csv)"
                   if Path(root).is_file() else "capture set directory not found")
        return report
    manifest = _check_manifest(root, report)
    indexed = _read_index(root, report)
    if indexed is None:
        return report
    rows = [r for _, r in indexed]
    report.summary["n_rows"] = len(rows)

    classes = manifest.get("classes") if manifest else None
    frames = manifest.get("frames", 1) if manifest else None

    # --- per-row checks: labels, duplicates, scene consistency
    seen: dict[tuple[str, str, int], int] = {}
    lensless_seen: dict[str, int] = {}
    scene: dict[tuple[str, str], tuple[int, int, str, str]] = {}  # -> (line, label, name, original)
    scene_frames: dict[tuple[str, str], list[int]] = defaultdict(list)
    rows_per_split: Counter = Counter()
    for lineno, r in indexed:
        where = f"line {lineno} (id {r.id!r}, split {r.split!r})"
        rows_per_split[r.split] += 1
        key = (r.split, r.id, r.frame)
        if key in seen:
            what = f"id {r.id!r}" + (f" frame {r.frame}" if frames and frames > 1 else "")
            report.add("index.csv", f"line {lineno}: duplicate {what} in split {r.split!r} "
                                    f"(first at line {seen[key]})")
        else:
            seen[key] = lineno
        if r.lensless in lensless_seen:
            report.add("index.csv", f"line {lineno}: lensless file {r.lensless} already used at "
                                    f"line {lensless_seen[r.lensless]}")
        else:
            lensless_seen[r.lensless] = lineno
        if classes is not None:
            if not 0 <= r.label < len(classes):
                report.add("index.csv", f"{where}: label {r.label} out of range "
                                        f"(manifest has {len(classes)} classes, 0..{len(classes) - 1})")
            elif r.label_name != classes[r.label]:
                report.add("index.csv", f"{where}: label_name {r.label_name!r} disagrees with "
                                        f"classes[{r.label}] = {classes[r.label]!r} ({r.lensless})")
        sk = (r.split, r.id)
        if sk in scene:
            l0, lab0, name0, orig0 = scene[sk]
            if (r.label, r.label_name) != (lab0, name0):
                report.add("index.csv", f"{where}: label {r.label}/{r.label_name!r} differs from "
                                        f"line {l0} ({lab0}/{name0!r}) for the same scene")
            if r.original != orig0:
                report.add("index.csv", f"{where}: original {r.original} differs from line {l0} "
                                        f"({orig0}) for the same scene")
        else:
            scene[sk] = (lineno, r.label, r.label_name, r.original)
        scene_frames[sk].append(r.frame)

    scenes_per_split: Counter = Counter(s for s, _ in scene)
    report.summary["splits"] = dict(scenes_per_split)
    report.summary["rows_per_split"] = dict(rows_per_split)

    # --- frames
    if frames is not None:
        for (split, id_), fr in scene_frames.items():
            if sorted(fr) != list(range(frames)):
                got = ",".join(map(str, sorted(fr)))
                report.add("index.csv", f"scene {id_!r} in split {split!r}: frames [{got}], "
                                        f"expected 0..{frames - 1} (manifest frames={frames})")

    # --- splits against the manifest
    if manifest is not None and isinstance(manifest.get("splits"), dict):
        declared = manifest["splits"]
        for split in list(declared) + [s for s in scenes_per_split if s not in declared]:
            want, got = declared.get(split), scenes_per_split.get(split, 0)
            if want is None:
                report.add("index.csv", f"split {split!r} ({got} scenes) is not in "
                                        f"manifest splits ({', '.join(declared) or 'none'})")
            elif want != got:
                report.add("index.csv", f"split {split!r}: manifest says {want} scenes, "
                                        f"index has {got}")

    # --- files: paths inside the set, present, decodable, consistent size
    contained = _Containment(root)
    kinds: dict[str, list[str]] = {"original": [], "lensless": []}
    bad_paths: set[str] = set()
    for kind in kinds:
        for rel in dict.fromkeys(getattr(r, kind) for r in rows):
            if contained.escapes(rel):
                if rel not in bad_paths:
                    report.add(rel, "path escapes the capture set (absolute, '..' or a link "
                                    "outside); paths must be relative to the set")
                    bad_paths.add(rel)
            else:
                kinds[kind].append(rel)
    # --- class folders: one rule turns class names into folder names (format.class_folders)
    if classes is not None:
        folders = class_folders(classes)
        placed: set[str] = set()
        for r in rows:
            if not 0 <= r.label < len(classes):
                continue
            for kind, top in (("original", "originals"), ("lensless", "lensless")):
                rel = getattr(r, kind)
                if rel in bad_paths or rel in placed:
                    continue
                placed.add(rel)
                want = f"{top}/{r.split}/{folders[r.label]}"
                if posixpath.dirname(rel.replace("\\", "/")) != want:
                    report.add(rel, f"not in the folder of its class {classes[r.label]!r} (label "
                                    f"{r.label}): expected {want}/{posixpath.basename(rel)} (class "
                                    f"folder names: docs/formats.md)")
    all_rel = list(dict.fromkeys(kinds["original"] + kinds["lensless"]))
    results = dict(zip(all_rel, _inspect_all([os.path.join(root, p) for p in all_rel], decode, workers)))
    for rel in all_rel:
        size, problem = results[rel]
        if problem:
            report.add(rel, problem)
    for kind, rels in kinds.items():
        sizes = {rel: results[rel][0] for rel in rels if results[rel][0] is not None}
        if not sizes:
            continue
        counts = Counter(sizes.values())
        majority, n_major = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        report.summary["sizes"][kind] = _fmt_size(majority)
        for rel, s in sizes.items():
            if s != majority:
                report.add(rel, f"size {_fmt_size(s)} (HxWxC) differs from the {kind} images' "
                                f"majority size {_fmt_size(majority)} ({n_major} of {len(sizes)} files)")
    return report


def format_report(report: CheckReport) -> str:
    """Human-readable text of a report: a summary line, then one line per problem."""
    s = report.summary
    splits = " ".join(f"{k}={v}" for k, v in s.get("splits", {}).items()) or "none"
    sizes = s.get("sizes", {})
    head = (f"{report.root}: {s.get('n_rows', 0)} rows; scenes per split: {splits}; "
            f"originals {sizes.get('original') or '?'}, lensless {sizes.get('lensless') or '?'}")
    if report.ok:
        return f"OK {head}"
    lines = [f"INVALID {head}", f"{len(report.problems)} problem(s):"]
    lines += [f"  {p['file']}: {p['problem']}" for p in report.problems]
    return "\n".join(lines)
