"""CIFAR-10 (Krizhevsky, 2009): 60,000 RGB 32x32 images, 10 classes, 50,000 train / 10,000 test.

Forms read:

* the official ``cifar-10-python.tar.gz`` (pickled batches ``data_batch_1..5``,
  ``test_batch``, ``batches.meta``), read from the archive without extracting;
* its extracted ``cifar-10-batches-py/`` directory;
* an ImageFolder tree ``train/<class>/*``, ``test/<class>/*`` (a directory, or a tar archive
  of one such as the JPEG re-encoded ``cifar10-jpg.tar.gz``).

Where the copy is looked for: the ``data`` argument (a file, or a directory that is one of the
forms or holds one); ``$OPTICSFREE_DATA``; the user cache ``cache_dir("datasets")``; else the
official archive is downloaded into that cache. Decoded arrays are cached
(:mod:`opticsfree.data.cache`).
"""

from __future__ import annotations

import io
import os
import pickle
import posixpath
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

import numpy as np

from opticsfree.data import download
from opticsfree.data.archive import read_members
from opticsfree.data.base import ImageDataset, Split
from opticsfree.data.cache import Decoded, cached_decode, source_fingerprint
from opticsfree.data.classes import CIFAR10_CLASSES
from opticsfree.data.ids import unique_ids
from opticsfree.data.imagefolder import decode_tree, is_image_path, scan_directory, tree_from_members
from opticsfree.data.locate import datasets_dir, existing_path, offline_message, search_roots
from opticsfree.errors import DataError

NAME = "cifar10"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
OFFICIAL_FILES = frozenset(TRAIN_BATCHES + (TEST_BATCH, META))
STANDARD_SIZES = {"train": 50_000, "test": 10_000}
EXPECTED = (f"{ARCHIVE}, an extracted {BATCHES_DIR}/ directory, or an ImageFolder tree "
            "train/<class>/<image>, test/<class>/<image> (a directory or a .tar.gz of one)")


# --- official pickled batches ------------------------------------------------------------

_NUMPY_CORE = "numpy._core" if find_spec("numpy._core") is not None else "numpy.core"
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain containers and NumPy arrays (no arbitrary code)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if module.startswith("numpy.core"):
            module = _NUMPY_CORE + module[len("numpy.core"):]
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad batch file
        raise DataError(f"{where}: not a readable CIFAR-10 batch ({type(e).__name__}: {e})".splitlines()[0]) from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR-10 batch (expected a dict, got {type(obj).__name__})")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _text(x) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def _read_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, 32, 32, 3), labels (N,), file names) of one official batch."""
    d = _unpickle(data, where)
    if not {"data", "labels", "filenames"} <= d.keys():
        raise DataError(f"{where}: not a CIFAR-10 batch (expected keys data, labels, filenames; "
                        f"got {', '.join(sorted(map(str, d)))})")
    raw = np.asarray(d["data"])
    n = len(raw)
    if raw.dtype != np.uint8 or raw.ndim != 2 or raw.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: data must be uint8 of shape (N, 3072), got {raw.dtype} {raw.shape}")
    labels = np.asarray(d["labels"], dtype=np.int64)
    names = [_text(f) for f in d["filenames"]]
    if labels.shape != (n,) or len(names) != n:
        raise DataError(f"{where}: {n} images but {labels.size} labels and {len(names)} file names")
    if n and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{where}: labels must be in 0..9, got {labels.min()}..{labels.max()}")
    images = np.ascontiguousarray(raw.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels, names


def _decode_official(source: Path, files: dict[str, bytes], splits: Sequence[str], form: str) -> Decoded:
    """Decode official batches ``{base name: bytes}`` read from ``source``."""
    classes = list(CIFAR10_CLASSES)
    if META in files:
        meta = _unpickle(files[META], f"{source}:{META}")
        names = [_text(c) for c in meta.get("label_names", [])]
        if len(names) != len(CIFAR10_CLASSES):
            raise DataError(f"{source}:{META}: expected 10 label_names, got {len(names)}")
        classes = names
    out = {}
    for s in splits:
        batches = TRAIN_BATCHES if s == "train" else (TEST_BATCH,)
        missing = [b for b in batches if b not in files]
        if missing:
            raise DataError(f"{source}: missing {', '.join(missing)} (expected {EXPECTED})")
        parts = [_read_batch(files[b], f"{source}:{b}") for b in batches]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        ids = unique_ids(posixpath.splitext(posixpath.basename(n))[0] for p in parts for n in p[2])
        out[s] = Split(images, labels, ids)
    return Decoded(classes, out, form, [])


# --- ImageFolder copies -----------------------------------------------------------------

def _folder_notes(classes: list[str], splits: dict[str, Split], formats: set[str]) -> list[str]:
    notes = []
    if "JPEG" in formats:
        notes.append("JPEG re-encoded copy of CIFAR-10 (ImageFolder layout): pixels are NOT "
                     "bit-identical to the official cifar-10-python.tar.gz; expect a small accuracy "
                     "loss, and say so with results")
    else:
        notes.append("ImageFolder copy of CIFAR-10, not the official cifar-10-python.tar.gz; "
                     f"pixels may differ from the official release (formats: {', '.join(sorted(formats))})")
    notes.append("ids are this copy's <class>_<file name>, not CIFAR-10's original file names")
    if classes != list(CIFAR10_CLASSES):
        notes.append(f"class folders {classes} are not CIFAR-10's ten classes; labels follow sorted folder names")
    for s, sp in splits.items():
        if len(sp) != STANDARD_SIZES.get(s, len(sp)):
            notes.append(f"{s} has {len(sp)} images, not CIFAR-10's {STANDARD_SIZES[s]}")
        if sp.images.shape[1:3] != (32, 32):
            notes.append(f"{s} images are {sp.images.shape[2]}x{sp.images.shape[1]}, not 32x32")
    return notes


def _decode_tree(tree, splits: Sequence[str], form: str) -> Decoded:
    dec = decode_tree(tree, splits, rgb=True, desc=f"decoding {NAME}")
    return Decoded(dec.classes, dec.splits, form, _folder_notes(dec.classes, dec.splits, dec.formats))


# --- forms and lookup -------------------------------------------------------------------

def _is_batches_dir(d: Path) -> bool:
    return any((d / b).is_file() for b in TRAIN_BATCHES + (TEST_BATCH,))


def _is_folder_dir(d: Path) -> bool:
    return (d / "train").is_dir() or (d / "test").is_dir()


def _search(d: Path) -> Path | None:
    """A known CIFAR-10 form inside directory ``d`` (see the module docstring), or None."""
    if (d / ARCHIVE).is_file():
        return d / ARCHIVE
    if (d / BATCHES_DIR).is_dir() and _is_batches_dir(d / BATCHES_DIR):
        return d / BATCHES_DIR
    children = sorted(c for c in d.glob("cifar10*") if not c.name.startswith("cifar100"))
    for c in children:
        if c.is_dir() and (_is_batches_dir(c) or _is_folder_dir(c)):
            return c
        if c.is_dir() and (c / BATCHES_DIR).is_dir() and _is_batches_dir(c / BATCHES_DIR):
            return c / BATCHES_DIR
    for c in children:
        if c.is_file() and c.name.endswith((".tar.gz", ".tgz", ".tar")):
            return c
    return None


def _resolve_dir(d: Path) -> Path:
    if _is_batches_dir(d) or _is_folder_dir(d):
        return d
    found = _search(d)
    if found is None:
        raise DataError(f"{d}: no CIFAR-10 copy found in this directory (expected {EXPECTED})")
    return found


def locate(data: str | os.PathLike | None = None) -> Path:
    """The CIFAR-10 copy to read: a file or a directory in one of the known forms.

    Args:
        data: a file or directory given by the user, or None to search ``$OPTICSFREE_DATA``
            and the user cache, and finally download the official archive into the cache.

    Returns:
        Path of an archive or of a batches/ImageFolder directory.

    Raises:
        DataError: ``data`` is missing or holds no known form; or nothing is found locally
            and the download fails (the message says how to point at a local copy).
    """
    if data is not None:
        p = existing_path(data, EXPECTED)
        return _resolve_dir(p) if p.is_dir() else p
    roots = search_roots()
    for root in roots:
        found = _search(root)
        if found is not None:
            return found
    dest = datasets_dir() / ARCHIVE
    try:
        return download.download_file(URL, dest, MD5)
    except DataError as e:
        raise DataError(offline_message(NAME, roots, str(e), f"{ARCHIVE} ({URL})")) from None


def _decode(path: Path, splits: Sequence[str]) -> Decoded:
    """Decode ``splits`` from the copy at ``path`` (after :func:`locate`)."""
    if path.is_dir():
        if _is_batches_dir(path):
            files = {f.name: f.read_bytes() for f in path.iterdir() if f.name in OFFICIAL_FILES and f.is_file()}
            return _decode_official(path, files, splits, "official python batches directory")
        tree = scan_directory(path, allow_single=False)
        if tree is None:
            raise DataError(f"{path}: unknown layout (expected {EXPECTED})")
        return _decode_tree(tree, splits, "ImageFolder directory")
    members = read_members(path, lambda n: posixpath.basename(n) in OFFICIAL_FILES or is_image_path(n))
    official = {posixpath.basename(n): b for n, b in members.items() if posixpath.basename(n) in OFFICIAL_FILES}
    if official:
        return _decode_official(path, official, splits, "official python archive")
    tree = tree_from_members(path, members, allow_single=False)
    if tree is None:
        raise DataError(f"{path}: unknown archive layout (expected {EXPECTED})")
    return _decode_tree(tree, splits, "ImageFolder archive")


def load_cifar10(data: str | os.PathLike | None = None, splits: Sequence[str] = ("train", "test")) -> ImageDataset:
    """Load CIFAR-10 from a local copy or the official download (see the module docstring).

    Args:
        data: a file or directory holding a copy, or None to search/download.
        splits: which of ``"train"``, ``"test"`` to load.

    Returns:
        An :class:`ImageDataset` with uint8 images (N, 32, 32, 3), CIFAR-10's class order,
        and ids from the official file names (``cat_s_001459``) or ``<class>_<file stem>``
        for ImageFolder copies; ``notes`` says when the copy is not the official pixels.
    """
    path = locate(data)
    dec = cached_decode(NAME, source_fingerprint(path), splits, lambda missing: _decode(path, missing))
    return ImageDataset(NAME, f"{path} ({dec.form})", dec.classes, dec.splits, dec.notes)
