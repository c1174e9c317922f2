"""Import real lensless captures into a capture set, pairing captures and originals by file stem.

A capture ``lensless/.../cat_s_001459.jpeg`` is paired with the original
``originals/.../cat_s_001459.png`` (both directories are searched recursively). Labels come
from the originals' class folders (``originals/<class>/<stem>.png``, or
``originals/<split>/<class>/<stem>.png`` where ``<split>`` is train, test or val) or from a CSV
with columns ``id,label_name`` and optionally ``split``. Every file that cannot be used (a
capture without original, an original without capture, an id without label, an unreadable
image) is listed in ``OUT/unmatched.txt`` and in the returned report.

Without a split from folders or the CSV every pair goes to ``split`` (train by default);
``test_fraction`` then holds out a seeded, class-stratified share of the train scenes as the
test split (:func:`hold_out_test`), which ``quality`` and ``camera info --captures`` need.

A class folder of the originals with no image in it (``originals/dog/`` empty) gives no pair,
so its class is left out of the class list (labels number the classes that have pairs, as
they always have); :attr:`ImportReport.empty_class_folders` names every such folder, and the
command line prints one warning line (:meth:`ImportReport.empty_folders_warning`). A class kept
anyway (pairs in another folder, or a class of the capture set the originals come from) is
said to be kept.

Class names may be any text (``T-shirt/top``); the set stores them in ``manifest["classes"]``
and its folders follow :func:`~opticsfree.captures.format.class_folders`. When the originals
directory belongs to a capture set (``manifest.json`` in it or one or two levels above, as in
``SET/originals``), its class folders are read back with that rule: the labels get the set's
class names, in the set's order.

The set is built in a temporary directory next to ``OUT`` and renamed onto ``OUT`` at the end,
so an interrupted import leaves no half-written set.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opticsfree.captures.format import (
    IndexRow,
    class_folders,
    lensless_relpath,
    make_manifest,
    original_relpath,
    write_index,
    write_manifest,
)
from opticsfree.captures.writer import encode_image
from opticsfree.utils.images import decode_image
from opticsfree.utils.parallel import map_chunks
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.utils.io import read_json, write_text

#: Image file extensions searched for (lower case).
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Folder names recognised as split names in the originals' tree.
SPLIT_NAMES = ("train", "test", "val")
#: The ``import`` inputs of the manifest that identify an earlier import of the same files
#: (the one an import may replace); the split options may differ.
SAME_INPUTS = ("lensless", "originals", "labels")
#: Largest ``test_fraction`` (the command line's FRACTION bound).
MAX_TEST_FRACTION = 0.9
#: Marker file identifying a temporary import directory.
MARKER = ".opticsfree-import"


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
        empty_class_folders: ``{folder: class name}`` of the class folders of the originals
            that hold no image (folders relative to the originals directory, POSIX), when
            labels come from folders; :attr:`dropped_classes` says which classes that leaves
            out.
        test_fraction: share of the train scenes held out as test (0: none).
        seed: the seed of that split.
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
    empty_class_folders: dict[str, str] = field(default_factory=dict)
    test_fraction: float = 0.0
    seed: int = 0

    @property
    def dropped_classes(self) -> list[str]:
        """Classes of :attr:`empty_class_folders` left out of the class list (no pair in any
        folder), sorted."""
        return sorted({c for c in self.empty_class_folders.values() if c not in self.classes})

    def empty_folders_warning(self, originals: str | Path | None = None) -> str | None:
        """One line naming the empty class folders and what became of their classes (None
        when there is none); ``originals`` (the originals directory) prefixes it."""
        if not self.empty_class_folders:
            return None
        from opticsfree.data.imagefolder import empty_folders_line

        kept = sorted({c for c in self.empty_class_folders.values() if c in self.classes})
        return empty_folders_line(f"{originals}: " if originals is not None else "",
                                  list(self.empty_class_folders), self.dropped_classes, kept, "pairs",
                                  "pairs in other folders, or a class of the originals' capture set")

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


def _set_classes(originals: Path) -> tuple[Path, list[str]] | None:
    """(manifest path, classes) of the capture set ``originals`` belongs to, or None.

    Looks for ``manifest.json`` in ``originals`` and up to two levels above (``SET``,
    ``SET/originals``, ``SET/originals/<split>``).
    """
    for d in [originals, *list(originals.parents)[:2]]:
        m = d / "manifest.json"
        if not m.is_file():
            continue
        try:
            data = read_json(m)
        except Exception:  # noqa: BLE001 - an unreadable manifest: not a capture set
            return None
        if not isinstance(data, dict) or "format_version" not in data:
            return None
        classes = data.get("classes")
        if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
            return m, list(classes)
        return None
    return None


def _known_folders(classes: list[str]) -> dict[str, str]:
    """``relative folder path -> class name`` for a capture set's classes: each class's folder
    (:func:`class_folders`), and, for sets written before that rule, a name with separators as
    the nested folders it made."""
    known = {c: c for c in classes if "/" in c}
    known.update(zip(class_folders(classes), classes))
    return known


def _folder_label(originals: Path, path: Path,
                  known: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(label_name, split) from ``originals/[<split>/]<class>/<file>``; None when absent.

    With ``known`` (from :func:`_known_folders`) the deepest folder path that names a class of
    the set gives the label.
    """
    dirs = path.relative_to(originals).parts[:-1]
    if known:
        for k in range(len(dirs) - 1, -1, -1):
            cand = "/".join(dirs[k:])
            if cand in known:
                return known[cand], next((d for d in reversed(dirs[:k]) if d in SPLIT_NAMES), None)
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


def _label_name(value: str, where: str) -> str:
    """A class name from the labels CSV: any non-empty text (its folder follows class_folders)."""
    v = value.strip()
    if not v:
        raise DataError(f"{where}: empty label_name")
    return v


def _read_labels_csv(path: Path) -> dict[str, tuple[str, str | None]]:
    """``id -> (label_name, split or None)`` from a CSV with columns id,label_name[,split]."""
    if not path.is_file():
        raise DataError(f"{path}: labels CSV not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: labels CSV is not UTF-8 text (byte {e.start}); save it as UTF-8 "
                        f"with columns id,label_name[,split]") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the labels CSV ({e.strerror or e})") from None
    try:
        return _parse_labels_csv(path, text)
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e}); expected columns id,label_name[,split]") from None


def _parse_labels_csv(path: Path, text: str) -> dict[str, tuple[str, str | None]]:
    out: dict[str, tuple[str, str | None]] = {}
    with io.StringIO(text, newline="") as f:
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
            name = _label_name(r.get("label_name") or "", f"{path}: line {lineno}")
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
        decode_image(src_l)  # validate the capture fully
    except DataError as e:
        return None, str(e)
    try:
        px = decode_image(src_o)
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
            f.write(encode_image(decode_image(src_l), None))
    return px.shape[-1], None


def _import_chunk(tasks: list[tuple[str, str, str, str, str]]) -> list[tuple[int | None, str | None]]:
    return [_import_one(t) for t in tasks]


@contextlib.contextmanager
def _write_errors(where: Path):
    """Turn an OSError while writing the set into a one-line OpticsfreeError."""
    try:
        yield
    except OSError as e:
        name = getattr(e, "filename", None)
        raise OpticsfreeError(f"cannot write the capture set in {where}: {e.strerror or e}"
                              + (f" ({name})" if name else "")) from None


def _lensless_target(src: Path) -> tuple[str, str]:
    """(extension in the set, "copy" | "png") for a capture file."""
    ext = src.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        return "jpeg", "copy"
    if ext == ".png":
        return "png", "copy"
    return "png", "png"


def _is_previous_import(out: Path, inputs: dict[str, Any]) -> bool:
    """Whether ``out`` is an earlier import of the same files (:data:`SAME_INPUTS`; its split
    options may differ, so that rerunning with another ``--test-fraction`` replaces it)."""
    try:
        m = read_json(out / "manifest.json")
    except Exception:  # noqa: BLE001 - anything unreadable is not a previous import
        return False
    if not isinstance(m, dict) or not isinstance(m.get("import"), dict):
        return False
    return all(m["import"].get(k) == inputs.get(k) for k in SAME_INPUTS)


def _empty_class_folders(originals: Path, known: dict[str, str] | None
                         ) -> list[tuple[str, str]]:
    """``(folder relative to originals, class name)`` of every folder of the originals that
    would name a class (:func:`_folder_label`) but holds no image: a folder without
    subfolders (hidden ones aside) and without image files, not named like a split."""
    out: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(originals):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        if d == originals or dirnames:
            continue
        if any(not f.startswith(".") and f.lower().endswith(IMAGE_EXTS) for f in filenames):
            continue
        name, _ = _folder_label(originals, d / "_", known)
        if name is not None:
            out.append((d.relative_to(originals).as_posix(), name))
    return out


def hold_out_test(entries: list[tuple[str, str, str]], test_fraction: float, seed: int
                  ) -> list[tuple[str, str, str]]:
    """Move a seeded, class-stratified share of the train scenes to the test split.

    scikit-learn's ``train_test_split(..., test_size=test_fraction, stratify=<class>,
    random_state=seed)`` over the train scenes in id order: the same inputs and seed give the
    same split on every machine; another seed, another split.

    Args:
        entries: ``(split, class name, id)`` per scene, in id order.
        test_fraction: the share in (0, :data:`MAX_TEST_FRACTION`]; 0 returns ``entries``.
        seed: the split's random seed (>= 0).

    Returns:
        ``entries`` with the held-out scenes' split set to ``"test"``.

    Raises:
        DataError: the inputs already give some scenes the test split, there is no train
            scene, or a class has too few train scenes to stratify (the message names it).
    """
    if test_fraction == 0:
        return entries
    opt = f"--test-fraction {test_fraction:g}"
    given = sum(1 for sp, _, _ in entries if sp == "test")
    if given:
        raise DataError(f"{opt}: the originals' folders or the labels CSV already put {given} "
                        "scene(s) in the test split; leave out --test-fraction or those splits")
    train = [i for i, (sp, _, _) in enumerate(entries) if sp == "train"]
    if not train:
        raise DataError(f"{opt}: no scene is in the train split to hold test scenes out of "
                        f"(splits: {', '.join(sorted({sp for sp, _, _ in entries}))})")
    labels = [entries[i][1] for i in train]
    counts = Counter(labels)
    few = sorted(c for c, n in counts.items() if n < 2)
    if few:
        raise DataError(f"{opt}: cannot stratify the train scenes by class: "
                        f"{', '.join(f'{c!r} ({counts[c]} scene)' for c in few)}; each class needs "
                        "at least 2 train scenes (import more, give splits by originals/test/ "
                        "folders or --labels, or leave out --test-fraction)")
    from sklearn.model_selection import train_test_split

    try:
        _, test = train_test_split(train, test_size=test_fraction, stratify=labels,
                                   random_state=seed % 2**32)
    except ValueError as e:  # fewer test (or train) scenes than classes
        reason = " ".join(str(e).split())
        n, c = len(train), len(counts)
        lo, hi = math.ceil(100 * c / n) / 100, min(math.floor(100 * (n - c) / n) / 100,
                                                   MAX_TEST_FRACTION)
        fix = (f"choose a --test-fraction in [{lo:g}, {hi:g}]" if lo <= hi
               else "import more scenes")
        raise DataError(f"{opt}: cannot stratify {n} train scenes of {c} classes ({reason}); "
                        f"both splits need a scene of every class: {fix}") from None
    held = set(test)
    return [("test", name, stem) if i in held else (sp, name, stem)
            for i, (sp, name, stem) in enumerate(entries)]


def import_captures(lensless_dir: str | Path, originals_dir: str | Path, out: str | Path,
                    labels_csv: str | Path | None = None, notes: str = "",
                    split: str = "train", workers: int | None = 0,
                    test_fraction: float = 0.0, seed: int = 0) -> ImportReport:
    """Import real captures and their originals as a capture set at ``out``.

    Args:
        lensless_dir: directory of captures (searched recursively).
        originals_dir: directory of displayed originals (searched recursively); class folders
            give the labels unless ``labels_csv`` is given.
        out: the capture set to write. Refused when it exists, is not empty and is not an
            earlier import of the same inputs (directories and labels CSV, whatever its
            ``split``, ``test_fraction`` and ``seed``), which it replaces.
        labels_csv: optional CSV ``id,label_name[,split]``; when given it is the only source
            of labels.
        notes: free text stored as ``manifest["camera"]["notes"]``.
        split: split of the pairs whose split neither a folder nor the CSV gives.
        workers: processes for decoding (:func:`~opticsfree.utils.parallel.map_chunks`): 0 one
            per CPU, 1 in this process, N at most N; few pairs are imported in this process.
        test_fraction: hold out this share of the train scenes as the test split, stratified
            by class and seeded with ``seed`` (:func:`hold_out_test`); 0 keeps them all in
            train. Refused when folders or the CSV already give a test split.
        seed: the random seed of that split.

    Returns:
        An :class:`ImportReport` (counts and every unmatched file).

    Raises:
        DataError: when an input directory or the CSV is missing or malformed, stems are
            ambiguous, no capture matches an original (with a label), ``out`` is not
            safe to overwrite, or ``test_fraction`` cannot stratify the train scenes.
        ConfigError: ``test_fraction`` outside [0, 0.9] or a negative ``seed``.
    """
    from opticsfree.captures.check import check_capture_set

    lensless_dir = Path(lensless_dir).resolve()
    originals_dir = Path(originals_dir).resolve()
    out = Path(out)
    split = _check_name(split, "split", "--split")
    if not 0.0 <= test_fraction <= MAX_TEST_FRACTION:
        raise ConfigError(f"--test-fraction: expected a share of the train scenes in "
                          f"[0, {MAX_TEST_FRACTION}], got {test_fraction}")
    if seed < 0:
        raise ConfigError(f"--seed: expected an integer >= 0, got {seed}")
    labels_path = Path(labels_csv).resolve() if labels_csv is not None else None
    inputs = {"lensless": str(lensless_dir), "originals": str(originals_dir),
              "labels": str(labels_path) if labels_path else None, "split": split}
    if test_fraction > 0:  # recorded only when used: a plain import's manifest is unchanged
        inputs.update(test_fraction=test_fraction, seed=seed)
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
    from_set = _set_classes(originals_dir) if labels is None else None
    known = _known_folders(from_set[1]) if from_set else None

    report = ImportReport(out=out, test_fraction=test_fraction, seed=seed)
    empty = _empty_class_folders(originals_dir, known) if labels is None else []
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
            name, fsplit = _folder_label(originals_dir, originals[stem], known)
            if name is None:
                report.unlabelled.append(str(originals[stem]))
                continue
            if not (known and name in known.values()):
                _check_name(name, "class folder", str(originals[stem]))
            entries.append((fsplit or split, name, stem))
    if not entries:
        raise DataError(
            f"no capture in {lensless_dir} ({len(captures)} images) matched a labelled original in "
            f"{originals_dir} ({len(originals)} images) by file stem "
            f"({len(paired)} stem(s) in common, {len(report.unlabelled)} without label)")
    entries = hold_out_test(entries, test_fraction, seed)

    def order(names: set[str]) -> list[str]:
        """Class order: the capture set's (all its classes) when the originals come from one,
        then the other names sorted."""
        first = list(from_set[1]) if from_set else []
        return first + sorted(names - set(first))

    # Files are written into the folders of the classes of all entries; should a class lose
    # all its pairs (unreadable), the folders are recomputed and files moved below.
    folder_of = dict(zip(order({n for _, n, _ in entries}), class_folders(order({n for _, n, _ in entries}))))

    # Build in a temporary sibling directory, then rename onto `out`.
    tmp = out.parent / f".{out.name}.tmp-import"
    with _write_errors(out.parent):
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
            ro = original_relpath(sp, folder_of[name], stem)
            rl = lensless_relpath(sp, folder_of[name], stem, ext=ext)
            rel.append((ro, rl))
            tasks.append((str(originals[stem]), str(tmp / ro), str(captures[stem]), str(tmp / rl), mode))
        with _write_errors(tmp):
            results = list(map_chunks(_import_chunk, tasks, workers=workers, desc="importing"))

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
                    px = decode_image(tmp / k[3])
                    (tmp / k[3]).write_bytes(encode_image(np.repeat(px, 3, axis=-1), None))
        n_channels = 3 if len(channels) > 1 else next(iter(channels))

        classes = order({k[1] for k in kept})
        label_of = {c: i for i, c in enumerate(classes)}
        final = dict(zip(classes, class_folders(classes)))
        with _write_errors(tmp):
            for i, k in enumerate(kept):
                if final[k[1]] != folder_of[k[1]]:  # a class was dropped: folders reassigned
                    sp, name, stem, ro, rl, ch = k
                    new_o = original_relpath(sp, final[name], stem)
                    new_l = lensless_relpath(sp, final[name], stem, ext=rl.rsplit(".", 1)[-1])
                    for a, b in ((ro, new_o), (rl, new_l)):
                        os.makedirs(os.path.dirname(tmp / b), exist_ok=True)
                        os.replace(tmp / a, tmp / b)
                    kept[i] = (sp, name, stem, new_o, new_l, ch)
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
        report.empty_class_folders = dict(empty)

        write_text(tmp / "unmatched.txt", report.unmatched_text())
        write_index(tmp, rows, frames=False)
        source = {"dataset": "import", "copy": str(originals_dir)}
        if from_set:
            source["classes_from"] = str(from_set[0])
        manifest = make_manifest(
            source=source,
            classes=classes, splits=dict(splits),
            camera={"type": "real", "notes": notes}, seed=None, frames=1,
            channels=n_channels, **{"import": inputs})
        write_manifest(tmp, manifest)
        (tmp / MARKER).unlink()

        report.problems = check_capture_set(tmp, decode=False).problems

        # Swap into place.
        with _write_errors(out.parent):
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
