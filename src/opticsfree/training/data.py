"""Training data in memory: the train split, its validation hold-out and input statistics.

The validation split is a class-stratified hold-out of the *scenes* of the train split (all
frames of a held-out scene go to validation, so no displayed image is seen in both), chosen by
:func:`opticsfree.data.split.split_scenes` (the one the reconstruction methods use too, so both
hold out the same scenes); it is a pure function of the scene ids, their labels,
``val_fraction``, ``limit`` and ``seed``, so
``TrainedModel.load_split("val")`` rebuilds it from ``config.json`` (and checks it against
the recorded hash of the held-out ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from opticsfree.captures.loader import CaptureSplit, load_captures
from opticsfree.data.base import stratified_limit
from opticsfree.data.split import split_scenes
from opticsfree.errors import DataError
from opticsfree.utils.seeding import derive_seed


@dataclass
class TrainVal:
    """The rows of the train split used for training and for validation.

    Attributes:
        train: the training rows.
        val: the held-out rows (empty when ``val_fraction`` is 0).
        val_ids_sha256: SHA-256 of the sorted held-out scene ids (joined by newlines).
        n_train_scenes, n_val_scenes: scene counts.
    """

    train: CaptureSplit
    val: CaptureSplit
    val_ids_sha256: str
    n_train_scenes: int
    n_val_scenes: int


def ids_sha256(ids: list[str]) -> str:
    """SHA-256 of sorted, newline-joined scene ids."""
    return hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()


def train_val(captures: str, size: int | None, val_fraction: float, seed: int,
              limit: int | None = None) -> TrainVal:
    """Load the train split of ``captures`` and split it into training and validation rows.

    Raises:
        DataError: no train split, or a class of the manifest with no training scene.
    """
    full = load_captures(captures, "train", size)
    train_rows, val_rows = split_scenes(full.ids, full.labels.numpy(), val_fraction, seed, limit)
    tr = full.subset(train_rows)
    va = full.subset(val_rows)
    present = set(tr.labels.tolist())
    missing = [c for i, c in enumerate(full.classes) if i not in present]
    if missing:
        raise DataError(f"{captures}: class(es) {', '.join(map(repr, missing))} have no training "
                        f"scene in the train split (every class of the manifest needs some)")
    return TrainVal(tr, va, ids_sha256(va.ids), len(set(tr.ids)), len(set(va.ids)))


def channel_stats(x: torch.Tensor, chunk: int = 4096,
                  transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                  ) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W) on the [0, 1] scale,
    or of ``transform(images)`` (float, any channel count) when given."""
    c = x.shape[1]
    s = s2 = None
    n = 0
    for i in range(0, len(x), chunk):
        v = (transform(x[i:i + chunk]).to(torch.float64) if transform is not None
             else x[i:i + chunk].to(torch.float64) / 255.0)
        c = v.shape[1]
        if s is None:
            s = torch.zeros(c, dtype=torch.float64)
            s2 = torch.zeros(c, dtype=torch.float64)
        s += v.sum(dim=(0, 2, 3))
        s2 += (v * v).sum(dim=(0, 2, 3))
        n += v.numel() // c
    if s is None:  # no images
        s = s2 = torch.zeros(c, dtype=torch.float64)
    mean = s / max(n, 1)
    std = (s2 / max(n, 1) - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


def prototype_rows(split: CaptureSplit, limit: int, seed: int) -> np.ndarray:
    """One row per scene (its first frame), at most ``limit`` scenes, class-stratified."""
    seen: dict[str, int] = {}
    for i, s in enumerate(split.ids):
        seen.setdefault(s, i)
    rows = np.asarray(list(seen.values()), dtype=np.int64)
    keep = stratified_limit(split.labels.numpy()[rows], limit, seed=derive_seed("proto", seed) % (2**32))
    return rows[keep]
