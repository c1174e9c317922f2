"""The in-memory form of a clean labelled image dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    """One split of a dataset.

    Attributes:
        images: uint8 array of shape (N, H, W, C), C = 1 (grayscale) or 3 (RGB).
        labels: int64 array of shape (N,), class indices into ``ImageDataset.classes``.
        ids: N stable string ids, unique within the split (used as file stems).
    """

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N,H,W,C), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images) or len(self.ids) != len(self.images):
            raise ValueError("images, labels and ids must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "Split":
        """The rows ``index`` (an integer array) of this split."""
        return Split(self.images[index], self.labels[index], [self.ids[i] for i in index])


@dataclass
class ImageDataset:
    """A labelled image dataset with named splits.

    Attributes:
        name: dataset name (``cifar10``, ``fashion-mnist``, ``digits``, ``folder``).
        source: which copy was read (a path and its form, or "sklearn bundled"), for provenance.
        classes: class names in label order.
        splits: ``{"train": Split, "test": Split}`` (the splits that were requested).
        notes: caveats a user of this copy must know (e.g. JPEG re-encoding), for provenance.
    """

    name: str
    source: str
    classes: list[str]
    splits: dict[str, Split]
    notes: list[str] = field(default_factory=list)


def stratified_limit(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``limit`` rows, class-stratified, in original order.

    Classes get ``limit // n_classes`` rows each (the remainder goes to the first classes), or
    all their rows when they have fewer. Reproducible for a given ``seed``.

    Args:
        labels: (N,) integer labels.
        limit: maximum number of rows, or None for all.
        seed: random seed for which rows of each class are kept.

    Returns:
        Sorted int64 index array.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    base, extra = divmod(limit, len(classes))
    keep = []
    for i, c in enumerate(classes):
        rows = np.flatnonzero(labels == c)
        k = min(len(rows), base + (1 if i < extra else 0))
        keep.append(rng.choice(rows, size=k, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)
