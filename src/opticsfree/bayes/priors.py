"""Class priors: the belief over classes before a capture is seen.

Three kinds, chosen by a single string (the ``--prior`` option):

- ``"uniform"``: :math:`\\pi_c = 1 / C`.
- ``"train"``: the class frequencies of the training split,
  :math:`\\pi_c = n_c / \\sum_k n_k` (scenes counted once, whatever their number of frames).
- a path to a JSON file ``{"class name": probability, ...}``: every class of the run present,
  no unknown class, every value a finite non-negative number, values summing to 1 within
  :data:`SUM_TOLERANCE`. Anything else raises :class:`~opticsfree.errors.DataError` naming the
  file (and the offending class).

All priors are returned as float64 NumPy arrays of shape (C,) in class-index order.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from opticsfree.errors import DataError

#: Largest accepted ``|sum(p) - 1|`` for a prior file.
SUM_TOLERANCE = 1e-6

#: Names accepted by :func:`resolve_prior` besides a file path.
PRIOR_NAMES = ("uniform", "train")


def uniform_prior(n_classes: int) -> np.ndarray:
    """The uniform prior :math:`\\pi_c = 1/C`.

    Args:
        n_classes: number of classes C (>= 1).

    Returns:
        float64 array of shape (C,).
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    return np.full(n_classes, 1.0 / n_classes, dtype=np.float64)


def train_prior(labels: Sequence[int] | np.ndarray, n_classes: int,
                ids: Sequence[str] | None = None,
                classes: Sequence[str] | None = None) -> np.ndarray:
    """Class frequencies of the training split, :math:`\\pi_c = n_c / N`.

    Args:
        labels: class index per training row, shape (N,).
        n_classes: number of classes C.
        ids: optional scene id per row; when given, each scene is counted once (a multi-frame
            set has one row per frame and the frames of a scene share its id).
        classes: optional class names, only used in error messages.

    Returns:
        float64 array of shape (C,) summing to 1.

    Raises:
        DataError: a class has no training example (its prior would be 0, and no capture could
            ever be assigned to it), or there are no training rows at all.
    """
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if ids is not None:
        if len(ids) != len(y):
            raise ValueError(f"ids ({len(ids)}) and labels ({len(y)}) differ in length")
        first: dict[str, int] = {}
        for i, s in enumerate(ids):
            first.setdefault(str(s), i)
        y = y[np.fromiter(first.values(), dtype=np.int64, count=len(first))]
    if y.size == 0:
        raise DataError("prior 'train': the training split has no rows")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        name = classes[empty[0]] if classes is not None else str(int(empty[0]))
        raise DataError(f"prior 'train': class {name!r} has no training example, "
                        "so its prior would be 0; use --prior uniform or a prior file")
    return counts / counts.sum()


def load_prior_file(path: str | os.PathLike, classes: Sequence[str]) -> np.ndarray:
    """Read and validate a JSON prior file ``{"class name": probability, ...}``.

    Args:
        path: the JSON file.
        classes: the run's class names in label order; the file must name each exactly once.

    Returns:
        float64 array of shape (C,) in the order of ``classes`` (the file's values, not
        re-normalised).

    Raises:
        DataError: unreadable or invalid JSON, not an object, a class missing, an unknown
            class, a value that is not a finite number, a negative value, or values that do not
            sum to 1 within :data:`SUM_TOLERANCE`. The message names the file and, where there
            is one, the offending class.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"prior file {p}: not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"prior file {p}: cannot be read ({e})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"prior file {p}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(obj, dict):
        raise DataError(f"prior file {p}: expected a JSON object of class name -> probability, "
                        f"got {type(obj).__name__}")
    known = set(classes)
    for key in obj:
        if key not in known:
            raise DataError(f"prior file {p}: unknown class {key!r} "
                            f"(the run's classes are {', '.join(classes)})")
    out = np.empty(len(classes), dtype=np.float64)
    for i, name in enumerate(classes):
        if name not in obj:
            raise DataError(f"prior file {p}: class {name!r} is missing "
                            "(every class needs a probability)")
        v = obj[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(f"prior file {p}: class {name!r} has {v!r}, expected a finite number")
        if v < 0:
            raise DataError(f"prior file {p}: class {name!r} has negative probability {v}")
        out[i] = float(v)
    total = float(out.sum())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise DataError(f"prior file {p}: probabilities sum to {total:.9g}, "
                        f"expected 1 within {SUM_TOLERANCE:g}")
    return out


def resolve_prior(spec: str | os.PathLike, classes: Sequence[str],
                  train_labels: Sequence[int] | np.ndarray | None = None,
                  train_ids: Sequence[str] | None = None) -> np.ndarray:
    """Turn a ``--prior`` value into a prior vector.

    Args:
        spec: ``"uniform"``, ``"train"`` or the path of a JSON prior file.
        classes: class names in label order (C of them).
        train_labels: training labels; required for ``"train"``.
        train_ids: training scene ids (optional, see :func:`train_prior`).

    Returns:
        float64 array of shape (C,).

    Raises:
        DataError: an invalid prior file, or ``spec`` is neither a known name nor a file.
    """
    s = str(spec)
    if s == "uniform":
        return uniform_prior(len(classes))
    if s == "train":
        if train_labels is None:
            raise ValueError("prior 'train' needs the training labels")
        return train_prior(train_labels, len(classes), ids=train_ids, classes=classes)
    p = Path(s)
    if not p.exists():
        raise DataError(f"--prior: expected 'uniform', 'train' or a JSON prior file; "
                        f"{s!r} is neither (file not found)")
    return load_prior_file(p, classes)


def prior_label(spec: str | os.PathLike) -> str:
    """A short name of a prior for reports: ``uniform``, ``train`` or the file's name."""
    s = str(spec)
    return s if s in PRIOR_NAMES else f"file:{Path(s).name}"
