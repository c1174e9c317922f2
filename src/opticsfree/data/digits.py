"""scikit-learn's bundled handwritten digits (UCI optdigits test set), for fast offline tests.

1,797 grayscale 8x8 images with values 0..16, 10 classes. Upscaled to 32x32 by bilinear
interpolation and scaled to 0..255, split 80/20 train/test (seeded, stratified).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from opticsfree.data.base import ImageDataset, Split
from opticsfree.data.split import SPLIT_SEED, TEST_FRACTION, stratified_split
from opticsfree.errors import ConfigError

NAME = "digits"
SIZE = 32


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix of 1-D linear interpolation with pixel-centre alignment.

    Output pixel :math:`j` samples the input at :math:`x_j = (j + 1/2)\\,n_{in}/n_{out} - 1/2`
    (clamped to :math:`[0, n_{in}-1]`) with weights :math:`1 - (x_j - \\lfloor x_j \\rfloor)`
    and :math:`x_j - \\lfloor x_j \\rfloor` on its two neighbours, the convention of
    ``align_corners=False`` resizing.
    """
    x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = x - lo
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] += 1 - frac
    w[np.arange(n_out), hi] += frac
    return w


def _raw() -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 8, 8) float64 in 0..16, labels (N,)) from scikit-learn's bundled file.

    The CSV that ``sklearn.datasets.load_digits`` reads is parsed directly when it can be
    found, because importing ``sklearn.datasets`` takes about a second; otherwise the public
    function is used. Both give the same arrays.
    """
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        csv = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            with gzip.open(csv, "rt") as f:
                table = np.loadtxt(f, delimiter=",")
            if table.ndim == 2 and table.shape[1] == 65:
                return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray, np.ndarray]:
    small, labels = _raw()  # (N, 8, 8), 0..16
    w = bilinear_matrix(small.shape[1], SIZE)
    big = (w @ small @ w.T) * (255.0 / 16.0)  # (N, 32, 32)
    images = np.clip(np.rint(big), 0, 255).astype(np.uint8)[..., None]
    ids = tuple(f"digit_{i:04d}" for i in range(len(labels)))
    train, test = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    for a in (images, labels, train, test):
        a.flags.writeable = False
    return images, labels, ids, train, test


def load_digits(data: str | os.PathLike | None = None, splits: Sequence[str] = ("train", "test")) -> ImageDataset:
    """Load the bundled digits (offline; parsed once per process, then memoised).

    Args:
        data: must be None (the data ship with scikit-learn).
        splits: which of ``"train"``, ``"test"`` to load.

    Returns:
        An :class:`ImageDataset` with uint8 images (N, 32, 32, 1), classes ``"0".."9"``, ids
        ``digit_<row:04d>`` (row in scikit-learn's array); 1,437 train and 360 test images.
    """
    if data is not None:
        raise ConfigError(f"digits ships with scikit-learn and takes no data path (got {data})")
    images, labels, ids, train, test = _arrays()
    index = {"train": train, "test": test}
    out = {s: Split(images[index[s]], labels[index[s]], [ids[i] for i in index[s]]) for s in splits}
    return ImageDataset(NAME, "scikit-learn bundled digits (sklearn.datasets.load_digits)",
                        [str(d) for d in range(10)], out,
                        ["8x8 images (values 0..16) upscaled to 32x32 by bilinear interpolation and scaled "
                         f"to 0..255; seeded stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} "
                         f"train/test split (seed {SPLIT_SEED})"])
