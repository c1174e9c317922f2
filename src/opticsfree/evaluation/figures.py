"""Evaluation figures (matplotlib, Agg backend), written atomically as PNG.

- :func:`plot_distance_histogram`: the seed's "threshold for lensless images" figure: the
  distance distributions of matching and non-matching (lensless, class prototype) pairs with the
  decision threshold.
- :func:`plot_confusion_matrix`: row-normalised confusion matrix with counts.
- :func:`plot_embedding_map`: 2-D t-SNE map of lensless and original embeddings by class.
- :func:`plot_learning_curves`: loss, validation accuracy and learning rate per epoch from
  ``RUN/metrics.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from opticsfree.runs import read_metrics_file
from opticsfree.errors import DataError
from opticsfree.utils.io import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    plt = _plt()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_distance_histogram(matching: np.ndarray, non_matching: np.ndarray,
                            threshold: float | None, path: str | Path, title: str = "",
                            note: str = "") -> Path:
    """Histograms of matching and non-matching pair distances with the threshold line.

    Args:
        matching: (N,) distances of matching (same-class) pairs.
        non_matching: (M,) distances of non-matching pairs.
        threshold: the decision threshold (None: no line).
        path: output PNG.
        title: figure title.
        note: extra legend text (e.g. verification accuracy and EER).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    m = np.asarray(matching, dtype=np.float64)
    n = np.asarray(non_matching, dtype=np.float64)
    lo, hi = float(min(m.min(), n.min())), float(max(m.max(), n.max()))
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 50)
    ax.hist(n, bins=bins, density=True, alpha=0.55, color="tab:red",
            label=f"non-matching pairs (n={len(n)})")
    ax.hist(m, bins=bins, density=True, alpha=0.55, color="tab:blue",
            label=f"matching pairs (n={len(m)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1.5,
                   label=f"threshold t = {threshold:.3f}" + (f"\n{note}" if note else ""))
    ax.set_xlabel("Euclidean distance (lensless embedding, class prototype)")
    ax.set_ylabel("density")
    ax.set_title(title or "Distance threshold for lensless images")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                          title: str = "") -> Path:
    """Confusion matrix (rows: true class, columns: predicted), coloured by row fraction.

    Args:
        cm: C x C counts.
        classes: C class names.
        path: output PNG.
        title: figure title.
    """
    plt = _plt()
    c = np.asarray(cm, dtype=np.float64)
    frac = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    size = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(c[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_title(title or "Confusion matrix")
    return _save(fig, path)


def plot_embedding_map(lensless: np.ndarray, original: np.ndarray, labels: np.ndarray,
                       classes: Sequence[str], path: str | Path, max_points: int = 2000,
                       seed: int = 0, title: str = "") -> Path | None:
    """2-D t-SNE map of lensless (dots) and original (triangles) embeddings, coloured by class.

    At most ``max_points`` points are embedded: a seeded random subset of ``max_points // 2``
    rows, each contributing its lensless and its original embedding.

    Args:
        lensless: (N, D) lensless embeddings.
        original: (N, D) original embeddings of the same rows.
        labels: (N,) classes.
        classes: class names.
        path: output PNG.
        max_points: upper bound on the points given to t-SNE.
        seed: subset and t-SNE seed.
        title: figure title.

    Returns:
        The path, or None when there are too few rows for t-SNE (fewer than 3).
    """
    from sklearn.manifold import TSNE

    plt = _plt()
    n = len(labels)
    rows = min(n, max(1, max_points // 2))
    if rows < 3:
        return None
    idx = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    x = np.concatenate([lensless[idx], original[idx]]).astype(np.float32)
    perplexity = float(min(30.0, (len(x) - 1) / 3.0))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
              random_state=seed).fit_transform(x)
    y = np.asarray(labels)[idx]
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7.0, 6.0))
    for c, name in enumerate(classes):
        sel = y == c
        if not sel.any():
            continue
        col = cmap(c % cmap.N)
        ax.scatter(xy[:rows][sel, 0], xy[:rows][sel, 1], s=8, marker="o", color=col, alpha=0.6,
                   label=name)
        ax.scatter(xy[rows:][sel, 0], xy[rows:][sel, 1], s=18, marker="^", color=col,
                   edgecolors="k", linewidths=0.3, alpha=0.9)
    ax.scatter([], [], s=8, marker="o", color="grey", label="lensless (dot)")
    ax.scatter([], [], s=18, marker="^", color="grey", edgecolors="k", label="original (triangle)")
    ax.legend(fontsize=7, markerscale=1.5, loc="best", ncol=2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of embeddings ({rows} rows x 2 domains)")
    return _save(fig, path)


def read_metrics_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (:func:`opticsfree.runs.read_metrics_file`).

    Raises:
        DataError: a complete line is not a JSON object (names the file and line).
    """
    return read_metrics_file(path)


def plot_learning_curves(metrics_jsonl: str | Path, path: str | Path,
                         title: str = "") -> Path | None:
    """Loss, validation accuracy and learning rate against epoch.

    Returns:
        The path, or None when the file is missing or holds no epoch with a loss.
    """
    p = Path(metrics_jsonl)
    if not p.is_file():
        return None
    rows = [r for r in read_metrics_jsonl(p) if "epoch" in r]
    if not rows:
        return None
    keys = [k for k in ("loss", "val_accuracy", "lr")
            if any(_num(r.get(k)) and (k != "lr" or r[k] > 0) for r in rows)]
    if not keys:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.0 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["epoch"], r[key]) for r in rows
               if _num(r.get(key)) and (key != "lr" or r[key] > 0)]
        ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        if key == "lr":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(title or "Learning curves")
    fig.tight_layout()
    return _save(fig, path)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))
