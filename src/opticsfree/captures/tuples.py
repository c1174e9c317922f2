"""Training tuples for quadruplet/triplet losses: ``tuples_<split>.csv`` inside a capture set.

One row per lensless capture of the split::

    anchor_img,positive_img,close_positive_img,negative_img,label,label_name

``anchor_img`` is the lensless capture, ``positive_img`` its own original, ``close_positive_img``
the original of another scene of the same class and ``negative_img`` the original of a scene of
another class; all paths relative to the capture set. The draws come from
``numpy.random.default_rng(seed)``: the same set and seed give an identical file.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from opticsfree.captures.format import open_capture_set
from opticsfree.errors import DataError
from opticsfree.utils.io import write_text

TUPLE_COLUMNS = ["anchor_img", "positive_img", "close_positive_img", "negative_img", "label",
                 "label_name"]


def tuples_path(root: str | Path, split: str) -> Path:
    """``root/tuples_<split>.csv``."""
    return Path(root) / f"tuples_{split}.csv"


def make_tuples(root: str | Path, split: str = "train", seed: int = 0) -> Path:
    """Write ``root/tuples_<split>.csv`` (atomically) and return its path.

    For a capture row of class :math:`c` and scene :math:`i`, the close positive is drawn
    uniformly from the other scenes of class :math:`c` (:math:`n_c - 1` choices) and the
    negative uniformly from the scenes of the other classes (:math:`N - n_c` choices), where
    scenes are the distinct ids of the split. Every frame of a multi-frame scene gets a row.

    Args:
        root: the capture set.
        split: which split (``train``, ``test``, ...).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        The path of the written CSV.

    Raises:
        DataError: when the split is missing, a class of the split has a single scene (no close
            positive exists), or the split has a single class (no negative exists).
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split in (".", ".."):
        raise DataError(f"split {split!r}: expected a plain split name such as train or test")
    cs = open_capture_set(root)
    rows = cs.rows_for(split)

    # Distinct scenes in first-seen order: their original and label.
    scene_of: dict[str, int] = {}
    scene_orig: list[str] = []
    scene_label: list[int] = []
    for r in rows:
        if r.id not in scene_of:
            scene_of[r.id] = len(scene_orig)
            scene_orig.append(r.original)
            scene_label.append(r.label)
    labels = np.asarray(scene_label, dtype=np.int64)
    present = sorted(set(scene_label))
    names = {r.label: r.label_name for r in rows}
    for c in present:
        if int((labels == c).sum()) < 2:
            sid = scene_orig[int(np.flatnonzero(labels == c)[0])]
            raise DataError(f"{cs.root}: class {names[c]!r} (label {c}) has a single image in split "
                            f"{split!r} ({sid}); a close positive needs at least 2 per class")
    if len(present) < 2:
        raise DataError(f"{cs.root}: split {split!r} has only class {names[present[0]]!r}; "
                        f"negatives need at least 2 classes")

    rng = np.random.default_rng(seed)
    row_scene = np.asarray([scene_of[r.id] for r in rows], dtype=np.int64)
    row_label = labels[row_scene]
    close = np.empty(len(rows), dtype=np.int64)
    neg = np.empty(len(rows), dtype=np.int64)
    for c in present:  # classes in label order: deterministic draw order
        same = np.flatnonzero(labels == c)
        other = np.flatnonzero(labels != c)
        at = np.flatnonzero(row_label == c)
        # Position of each row's own scene within `same`; draw among the n_c - 1 others.
        own = np.searchsorted(same, row_scene[at])
        j = rng.integers(0, len(same) - 1, size=len(at))
        j = j + (j >= own)
        close[at] = same[j]
        neg[at] = other[rng.integers(0, len(other), size=len(at))]

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TUPLE_COLUMNS)
    for k, r in enumerate(rows):
        w.writerow([r.lensless, r.original, scene_orig[close[k]], scene_orig[neg[k]], r.label,
                    r.label_name])
    out = tuples_path(cs.root, split)
    write_text(out, buf.getvalue())
    return out


def read_tuples(path: str | Path) -> list[dict]:
    """Read a tuples CSV written by :func:`make_tuples`.

    Args:
        path: the CSV file.

    Returns:
        One dict per row with the keys of :data:`TUPLE_COLUMNS` (``label`` as int).

    Raises:
        DataError: naming the file when it is missing, its header is not exactly
            :data:`TUPLE_COLUMNS`, or a row is malformed.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: tuples file not found (make it with: opticsfree tuples DIR --split NAME)")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != TUPLE_COLUMNS:
            raise DataError(f"{p}: expected columns {','.join(TUPLE_COLUMNS)}, got "
                            f"{','.join(header) if header else 'an empty file'}")
        out = []
        for lineno, rec in enumerate(reader, start=2):
            if len(rec) != len(TUPLE_COLUMNS):
                raise DataError(f"{p}: line {lineno}: expected {len(TUPLE_COLUMNS)} fields, "
                                f"got {len(rec)}")
            d = dict(zip(TUPLE_COLUMNS, rec))
            try:
                d["label"] = int(d["label"])
            except ValueError:
                raise DataError(f"{p}: line {lineno}: label must be an integer, got "
                                f"{d['label']!r}") from None
            out.append(d)
    return out
