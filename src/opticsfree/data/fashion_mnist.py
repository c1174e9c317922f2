"""Fashion-MNIST (Xiao et al., 2017): 70,000 grayscale 28x28 images, 10 classes, 60k/10k split.

Read from the four official IDX files (gzipped, or already gunzipped) in a directory:
``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz``. Where they are looked for: the ``data`` directory (or its
``fashion-mnist/``, ``fashion_mnist/``, ``FashionMNIST/raw/`` subdirectory); the same
subdirectories of ``$OPTICSFREE_DATA`` and of the user cache; else they are downloaded
(MD5-checked) into ``cache_dir("datasets", "fashion-mnist")``.

Reading the IDX files is a decompression and a copy, so no decoded cache is kept.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from opticsfree.data import download
from opticsfree.data.base import ImageDataset, Split
from opticsfree.data.classes import FASHION_MNIST_CLASSES
from opticsfree.data.locate import datasets_dir, existing_path, offline_message, search_roots
from opticsfree.errors import DataError

NAME = "fashion-mnist"
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: split -> (images file, labels file)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: Official MD5 digests of the gzipped files.
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
SUBDIRS = ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST")
EXPECTED = "a directory with " + ", ".join(f for pair in FILES.values() for f in pair)


def _find(d: Path, gz_name: str) -> Path | None:
    """``gz_name`` or its gunzipped form in ``d``."""
    for cand in (d / gz_name, d / gz_name[:-3]):
        if cand.is_file():
            return cand
    return None


def _has_files(d: Path, splits: Sequence[str]) -> bool:
    return all(_find(d, f) is not None for s in splits for f in FILES[s])


def _search(d: Path, splits: Sequence[str], include_self: bool) -> Path | None:
    cands = ([d] if include_self else []) + [d / s for s in SUBDIRS]
    for c in cands:
        if c.is_dir() and _has_files(c, splits):
            return c
    return None


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read an IDX file of unsigned bytes (``kind`` "images": 3-D, "labels": 1-D).

    The header is a magic number ``0x0000 08 nd`` (08 = unsigned byte, nd = number of
    dimensions) followed by nd big-endian uint32 sizes; the data must fill the rest exactly.

    Raises:
        DataError: the file is not a well-formed IDX file of that kind (names the file).
    """
    ndim = 3 if kind == "images" else 1
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataError(f"{path}: not an IDX {kind} file (expected magic 0x0000080{ndim})")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{path}: IDX header says {dims} but holds {len(body)} bytes")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def locate(data: str | os.PathLike | None, splits: Sequence[str]) -> Path:
    """The directory holding the IDX files of ``splits`` (searching, then downloading).

    Raises:
        DataError: ``data`` lacks the files, or nothing is local and the download fails.
    """
    if data is not None:
        p = existing_path(data, EXPECTED)
        found = _search(p, splits, include_self=True) if p.is_dir() else None
        if found is None:
            raise DataError(f"{p}: Fashion-MNIST files not found (expected {EXPECTED})")
        return found
    roots = search_roots()
    for root in roots:
        found = _search(root, splits, include_self=False)
        if found is not None:
            return found
    dest = datasets_dir() / NAME
    try:
        for s in splits:
            for f in FILES[s]:
                if _find(dest, f) is None:
                    download.download_file(BASE_URL + f, dest / f, MD5[f])
    except DataError as e:
        raise DataError(offline_message(NAME, roots, str(e), f"the four IDX .gz files ({BASE_URL})")) from None
    return dest


def load_fashion_mnist(data: str | os.PathLike | None = None,
                       splits: Sequence[str] = ("train", "test")) -> ImageDataset:
    """Load Fashion-MNIST.

    Args:
        data: a directory holding the IDX files, or None to search/download.
        splits: which of ``"train"``, ``"test"`` to load.

    Returns:
        An :class:`ImageDataset` with uint8 images (N, 28, 28, 1), the official class order,
        and ids ``<split>_<row:05d>`` (row in the official file).
    """
    d = locate(data, splits)
    out = {}
    for s in splits:
        img_path, lab_path = (_find(d, f) for f in FILES[s])
        images = read_idx(img_path, "images")
        labels = read_idx(lab_path, "labels").astype(np.int64)
        if len(images) != len(labels):
            raise DataError(f"{img_path}: {len(images)} images but {lab_path.name} has {len(labels)} labels")
        if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"{lab_path}: labels must be in 0..9, got max {labels.max()}")
        out[s] = Split(images[..., None].copy(), labels, [f"{s}_{i:05d}" for i in range(len(labels))])
    return ImageDataset(NAME, f"{d} (official IDX files)", list(FASHION_MNIST_CLASSES), out, [])
