"""Import real lensless captures into a capture set, pairing captures and originals by file stem.

A capture ``lensless/.../cat_s_001459.jpeg`` is paired with the original
``originals/.../cat_s_001459.png`` (both directories are searched recursively). Labels come
from the originals' class folders (``originals/<class>/<stem>.png``, or
``originals/<split>/<class>/<stem>.png`` where ``<split>`` is train, test or val) or from a CSV
with columns ``id,label_name`` and optionally ``split``. Every file that cannot be used (a
capture without original, an original without capture, an id without label, an unreadable
image) is listed in ``OUT/unmatched.txt`` and in the returned report.

The set is built in a temporary directory next to ``OUT`` and renamed onto ``OUT`` at the end,
so an interrupted import leaves no half-written set.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opticsfree.captures.format import (
    IndexRow,
    lensless_relpath,
    make_manifest,
    original_relpath,
    write_index,
    write_manifest,
)
from opticsfree.captures.writer import encode_image, read_image
from opticsfree.errors import DataError, OpticsfreeError
from opticsfree.utils.io import read_json, write_text

#: Image file extensions searched for (lower case).
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Folder names recognised as split names in the originals' tree.
SPLIT_NAMES = ("train", "test", "val")
#: Marker file identifying a temporary import directory.
MARKER = ".opticsfree-import"
POOL_THRESHOLD = 2000
CHUNK = 500


@dataclass
class ImportReport:
    """What :func:`import_captures` did.

    Attributes:
        out: the capture set written.
        n_imported: scenes imported.
        splits: scenes per split.
        classes: class names in label order (sorted).
        lensless_without_original: capture files with no original of the same stem.
        originals_without_capture: original files with no capture of the same stem.
        unlabelled: original files of matched pairs that have no label (no class folder and not
            in the labels CSV).
        labels_without_files: ids of the labels CSV with no capture/original pair.
        unreadable: ``"path: reason"`` for input images that could not be decoded (skipped).
        problems: problems :func:`~opticsfree.captures.check.check_capture_set` found in the
            result (e.g. captures of different sizes), as ``{"file", "problem"}``.
    """

    out: Path
    n_imported: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    lensless_without_original: list[str] = field(default_factory=list)
    originals_without_capture: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    labels_without_files: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def unmatched_sections(self) -> list[tuple[str, list[str]]]:
        """(title, entries) for every kind of unused input."""
        return [
            ("captures without an original", self.lensless_without_original),
            ("originals without a capture", self.originals_without_capture),
            ("pairs without a label", self.unlabelled),
            ("labels CSV ids without files", self.labels_without_files),
            ("unreadable images (skipped)", self.unreadable),
        ]

    @property
    def n_unmatched(self) -> int:
        """Total number of unused inputs."""
        return sum(len(v) for _, v in self.unmatched_sections)

    def unmatched_text(self) -> str:
        """The text of ``unmatched.txt``: one section per kind, one path per line."""
        lines = []
        for title, entries in self.unmatched_sections:
            lines.append(f"# {title}: {len(entries)}")
            lines.extend(entries)
        return "\n".join(lines) + "\n"


def _scan(directory: Path, what: str) -> dict[str, Path]:
    """Image files under ``directory`` (recursive) by stem; DataError on duplicate stems."""
    if not directory.is_dir():
        raise DataError(f"{directory}: {what} directory not found")
    found: dict[str, Path] = {}
    dups: list[str] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith(".") or not fn.lower().endswith(IMAGE_EXTS):
                continue
            p = Path(dirpath) / fn
            stem = p.stem
            if stem in found:
                dups.append(f"{found[stem]} and {p}")
            else:
                found[stem] = p
    if dups:
        raise DataError(f"{directory}: {len(dups)} {what} file name(s) appear twice, pairing by "
                        f"stem is ambiguous: {'; '.join(dups[:5])}" + (" ..." if len(dups) > 5 else ""))
    return found


def _folder_label(originals: Path, path: Path) -> tuple[str | None, str | None]:
    """(label_name, split) from ``originals/[<split>/]<class>/<file>``; None when absent."""
    dirs = path.relative_to(originals).parts[:-1]
    label = None
    if dirs and dirs[-1] not in SPLIT_NAMES:
        label = dirs[-1]
    split = next((d for d in reversed(dirs[:-1] if label else dirs) if d in SPLIT_NAMES), None)
    return label, split


def _check_name(value: str, what: str, where: str) -> str:
    v = value.strip()
    if not v or v in (".", "..") or "/" in v or "\\" in v or v.startswith("."):
        raise DataError(f"{where}: {what} {value!r} is not usable as a folder name")
    return v


def _read_labels_csv(path: Path) -> dict[str, tuple[str, str | None]]:
    """``id -> (label_name, split or None)`` from a CSV with columns id,label_name[,split]."""
    if not path.is_file():
        raise DataError(f"{path}: labels CSV not found")
    out: dict[str, tuple[str, str | None]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        if "id" not in header or "label_name" not in header:
            raise DataError(f"{path}: expected columns id,label_name[,split], got "
                            f"{','.join(header) or 'an empty file'}")
        has_split = "split" in header
        for lineno, r in enumerate(reader, start=2):
            id_ = (r.get("id") or "").strip()
            if not id_:
                raise DataError(f"{path}: line {lineno}: empty id")
            name = _check_name(r.get("label_name") or "", "label_name", f"{path}: line {lineno}")
            split = None
            if has_split and (r.get("split") or "").strip():
                split = _check_name(r["split"], "split", f"{path}: line {lineno}")
            if id_ in out and out[id_] != (name, split):
                raise DataError(f"{path}: line {lineno}: id {id_!r} listed twice with different "
                                f"labels ({out[id_][0]!r} and {name!r})")
            out[id_] = (name, split)
    return out


def _import_one(task: tuple[str, str, str, str, str]) -> tuple[int | None, str | None]:
    """Decode and write one pair; returns (original channels, None) or (None, "path: reason")."""
    src_o, dst_o, src_l, dst_l, mode = task
    try:
        read_image(src_l)  # validate the capture fully
    except DataError as e:
        return None, str(e)
    try:
        px = read_image(src_o)
    except DataError as e:
        return None, str(e)
    os.makedirs(os.path.dirname(dst_o), exist_ok=True)
    os.makedirs(os.path.dirname(dst_l), exist_ok=True)
    with open(dst_o, "wb") as f:
        f.write(encode_image(px, None))
    if mode == "copy":
        shutil.copyfile(src_l, dst_l)
    else:  # other formats: lossless PNG
        with open(dst_l, "wb") as f:
            f.write(encode_image(read_image(src_l), None))
    return px.shape[-1], None


def _import_chunk(tasks: list[tuple[str, str, str, str, str]]) -> list[tuple[int | None, str | None]]:
    return [_import_one(t) for t in tasks]


@contextlib.contextmanager
def _write_errors(where: Path):
    """Turn an OSError while writing the set into a one-line OpticsfreeError."""
    try:
        yield
    except OSError as e:
        raise OpticsfreeError(f"cannot write the capture set in {where}: "
                              f"{e.strerror or e} ({getattr(e, 'filename', '') or ''})") from None


def _lensless_target(src: Path) -> tuple[str, str]:
    """(extension in the set, "copy" | "png") for a capture file."""
    ext = src.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        return "jpeg", "copy"
    if ext == ".png":
        return "png", "copy"
    return "png", "png"


def _is_previous_import(out: Path, inputs: dict[str, Any]) -> bool:
    try:
        m = read_json(out / "manifest.json")
    except Exception:  # noqa: BLE001 - anything unreadable is not a previous import
        return False
    return isinstance(m, dict) and m.get("import") == inputs


def import_captures(lensless_dir: str | Path, originals_dir: str | Path, out: str | Path,
                    labels_csv: str | Path | None = None, notes: str = "",
                    split: str = "train", workers: int | None = None) -> ImportReport:
    """Import real captures and their originals as a capture set at ``out``.

    Args:
        lensless_dir: directory of captures (searched recursively).
        originals_dir: directory of displayed originals (searched recursively); class folders
            give the labels unless ``labels_csv`` is given.
        out: the capture set to write. Refused when it exists, is not empty and is not an
            earlier import of the same inputs (which it replaces).
        labels_csv: optional CSV ``id,label_name[,split]``; when given it is the only source
            of labels.
        notes: free text stored as ``manifest["camera"]["notes"]``.
        split: split of the pairs whose split neither a folder nor the CSV gives.
        workers: processes for decoding (None: 2 when there are many files).

    Returns:
        An :class:`ImportReport` (counts and every unmatched file).

    Raises:
        DataError: when an input directory or the CSV is missing or malformed, stems are
            ambiguous, no capture matches an original (with a label), or ``out`` is not
            safe to overwrite.
    """
    from opticsfree.captures.check import check_capture_set
    from opticsfree.utils.progress import progress

    lensless_dir = Path(lensless_dir).resolve()
    originals_dir = Path(originals_dir).resolve()
    out = Path(out)
    split = _check_name(split, "split", "--split")
    labels_path = Path(labels_csv).resolve() if labels_csv is not None else None
    inputs = {"lensless": str(lensless_dir), "originals": str(originals_dir),
              "labels": str(labels_path) if labels_path else None, "split": split}
    if out.resolve() in (lensless_dir, originals_dir) or lensless_dir in out.resolve().parents \
            or originals_dir in out.resolve().parents:
        raise DataError(f"{out}: the output must not be inside the input directories")
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a directory")
        if any(out.iterdir()) and not _is_previous_import(out, inputs):
            raise DataError(f"{out}: directory is not empty and is not an earlier import of the "
                            f"same inputs; choose a new --out or remove it")

    captures = _scan(lensless_dir, "lensless")
    originals = _scan(originals_dir, "originals")
    labels = _read_labels_csv(labels_path) if labels_path else None

    report = ImportReport(out=out)
    report.lensless_without_original = [str(p) for s, p in captures.items() if s not in originals]
    report.originals_without_capture = [str(p) for s, p in originals.items() if s not in captures]
    paired = sorted(s for s in captures if s in originals)
    if labels is not None:
        report.labels_without_files = sorted(i for i in labels if i not in captures or i not in originals)

    entries: list[tuple[str, str, str]] = []  # (split, label_name, id)
    for stem in paired:
        fsplit = None
        if labels is not None:
            if stem not in labels:
                report.unlabelled.append(str(originals[stem]))
                continue
            name, csplit = labels[stem]
            _, fsplit = _folder_label(originals_dir, originals[stem])
            entries.append((csplit or fsplit or split, name, stem))
        else:
            name, fsplit = _folder_label(originals_dir, originals[stem])
            if name is None:
                report.unlabelled.append(str(originals[stem]))
                continue
            _check_name(name, "class folder", str(originals[stem]))
            entries.append((fsplit or split, name, stem))
    if not entries:
        raise DataError(
            f"no capture in {lensless_dir} ({len(captures)} images) matched a labelled original in "
            f"{originals_dir} ({len(originals)} images) by file stem "
            f"({len(paired)} stem(s) in common, {len(report.unlabelled)} without label)")

    # Build in a temporary sibling directory, then rename onto `out`.
    tmp = out.parent / f".{out.name}.tmp-import"
    if tmp.exists():
        if not (tmp / MARKER).is_file():
            raise DataError(f"{tmp}: exists and was not made by opticsfree import; remove it")
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / MARKER).write_text("temporary import directory\n", encoding="utf-8")
    try:
        tasks = []
        rel: list[tuple[str, str]] = []
        for sp, name, stem in entries:
            ext, mode = _lensless_target(captures[stem])
            ro, rl = original_relpath(sp, name, stem), lensless_relpath(sp, name, stem, ext=ext)
            rel.append((ro, rl))
            tasks.append((str(originals[stem]), str(tmp / ro), str(captures[stem]), str(tmp / rl), mode))
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if len(tasks) >= POOL_THRESHOLD else 1
        step = min(CHUNK, -(-len(tasks) // max(workers, 1)))
        chunks = [tasks[i:i + step] for i in range(0, len(tasks), step)]
        results: list[tuple[int | None, str | None]] = []
        with _write_errors(tmp), progress(transient=True) as bar:
            t = bar.add_task("importing", total=len(tasks))
            if workers <= 1 or len(chunks) == 1:
                for c in chunks:
                    results.extend(_import_chunk(c))
                    bar.advance(t, len(c))
            else:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    for res in pool.map(_import_chunk, chunks):
                        results.extend(res)
                        bar.advance(t, len(res))

        kept = []
        for (sp, name, stem), (ro, rl), (ch, err) in zip(entries, rel, results):
            if err:
                report.unreadable.append(err)
                for p in (tmp / ro, tmp / rl):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            else:
                kept.append((sp, name, stem, ro, rl, ch))
        if not kept:
            raise DataError(f"none of the {len(entries)} matched pairs could be read; first: "
                            f"{report.unreadable[0]}")
        channels = Counter(k[5] for k in kept)
        if len(channels) > 1:  # mixed grayscale/colour originals: store all as RGB
            for k in kept:
                if k[5] == 1:
                    px = read_image(tmp / k[3])
                    (tmp / k[3]).write_bytes(encode_image(np.repeat(px, 3, axis=-1), None))
        n_channels = 3 if len(channels) > 1 else next(iter(channels))

        classes = sorted({k[1] for k in kept})
        label_of = {c: i for i, c in enumerate(classes)}
        split_order = {s: i for i, s in enumerate(SPLIT_NAMES)}
        kept.sort(key=lambda k: (split_order.get(k[0], len(SPLIT_NAMES)), k[0], label_of[k[1]], k[2]))
        rows = [IndexRow(split=sp, id=stem, label=label_of[name], label_name=name,
                         original=ro, lensless=rl) for sp, name, stem, ro, rl, _ in kept]
        splits: dict[str, int] = defaultdict(int)
        for r in rows:
            splits[r.split] += 1
        report.n_imported = len(rows)
        report.splits = dict(splits)
        report.classes = classes

        write_text(tmp / "unmatched.txt", report.unmatched_text())
        write_index(tmp, rows, frames=False)
        manifest = make_manifest(
            source={"dataset": "import", "copy": str(originals_dir)},
            classes=classes, splits=dict(splits),
            camera={"type": "real", "notes": notes}, seed=None, frames=1,
            channels=n_channels, **{"import": inputs})
        write_manifest(tmp, manifest)
        (tmp / MARKER).unlink()

        report.problems = check_capture_set(tmp, decode=False).problems

        # Swap into place.
        if out.exists():
            old = out.parent / f".{out.name}.old-import"
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
