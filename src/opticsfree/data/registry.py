"""The dataset names and :func:`load_dataset`, the one entry point to every source."""

from __future__ import annotations

import os
from typing import Callable, Sequence

from opticsfree.data.base import ImageDataset
from opticsfree.data.cifar10 import load_cifar10
from opticsfree.data.digits import load_digits
from opticsfree.data.fashion_mnist import load_fashion_mnist
from opticsfree.data.folder import load_folder
from opticsfree.errors import ConfigError

#: Dataset names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("cifar10", "fashion-mnist", "digits", "folder")
#: Split names.
SPLITS: tuple[str, ...] = ("train", "test")

_LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "cifar10": load_cifar10,
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
    "folder": load_folder,
}


def _check_splits(splits: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(splits, str):
        splits = (splits,)
    out = tuple(splits)
    if not out or any(s not in SPLITS for s in out) or len(set(out)) != len(out):
        raise ConfigError(f"splits must be distinct names from {', '.join(SPLITS)}; got {list(out)}")
    return out


def load_dataset(name: str, data: str | os.PathLike | None = None,
                 splits: Sequence[str] = ("train", "test")) -> ImageDataset:
    """Load a clean labelled image dataset.

    Args:
        name: one of :data:`DATASETS`.
        data: a local copy (file or directory); required for ``folder``, must be None for
            ``digits``, optional otherwise (then ``$OPTICSFREE_DATA``, the user cache and the
            official download are tried, in that order).
        splits: which of ``"train"``, ``"test"`` to load.

    Returns:
        :class:`~opticsfree.data.base.ImageDataset` with uint8 (N, H, W, C) images, int64
        labels, class names in label order, and ids unique within each split.

    Raises:
        ConfigError: unknown name or split, or a missing/superfluous ``data`` argument.
        DataError: the data cannot be found, downloaded or read (the message names the path).
    """
    key = str(name).strip().lower()
    if key not in _LOADERS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    return _LOADERS[key](data, _check_splits(splits))
