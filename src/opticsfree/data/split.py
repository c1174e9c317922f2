"""A seeded, class-stratified train/test split for datasets that ship without one."""

from __future__ import annotations

import numpy as np

#: Fraction of each class that goes to the test split.
TEST_FRACTION = 0.2
#: Seed of the split (fixed, so every run and every machine sees the same split).
SPLIT_SEED = 0


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into train and test, class by class.

    Each class with :math:`n_c` rows sends :math:`t_c = \\operatorname{round}(f\\,n_c)` rows to
    test (at least one when :math:`n_c \\ge 2`, never all of them), chosen by a NumPy PCG64
    generator seeded with ``seed`` (stable across NumPy versions and platforms).

    Args:
        labels: (N,) integer labels.
        test_fraction: fraction :math:`f` of each class for the test split, in (0, 1).
        seed: random seed.

    Returns:
        ``(train_index, test_index)``: sorted int64 arrays that partition ``range(N)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        n = len(rows)
        k = int(round(test_fraction * n))
        if n >= 2:
            k = min(max(k, 1), n - 1)
        else:
            k = 0
        test.append(rng.permutation(rows)[:k])
    test_index = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[test_index] = False
    return np.flatnonzero(mask).astype(np.int64), test_index
