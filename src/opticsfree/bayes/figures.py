"""Figures of the Bayesian analysis (matplotlib, Agg backend, PNG written atomically).

- :func:`plot_posterior_bars`: prior, likelihood and posterior bars for a few captures (the
  seed study's figure), with the capture itself when available;
- :func:`plot_reliability`: reliability diagrams before and after temperature fitting;
- :func:`plot_frames`: MAP accuracy and mean KL(posterior || prior) against the number of
  frames, with the mean-of-frames classifier for comparison.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from opticsfree.utils.io import write_bytes  # noqa: E402

if TYPE_CHECKING:
    from opticsfree.bayes.model import BayesResult


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path


def _image(img: Any) -> tuple[np.ndarray, str | None]:
    a = np.asarray(img.cpu().numpy() if hasattr(img, "cpu") else img)
    if a.ndim == 3:
        a = np.transpose(a, (1, 2, 0))  # (C, H, W) -> (H, W, C)
        if a.shape[-1] != 3:
            a = a[..., 0]  # grayscale (or an unusual channel count: show the first channel)
    return a, ("gray" if a.ndim == 2 else None)


def plot_posterior_bars(path: str | Path, classes: Sequence[str], examples: Sequence[dict],
                        images: Any = None, title: str = "") -> Path:
    """One row per capture: [capture], prior, likelihood (normalised), posterior bars.

    Args:
        path: output PNG.
        classes: class names.
        examples: dicts with ``row``, ``label``, ``prior``, ``likelihood``, ``posterior``.
        images: optional indexable of uint8 (C, H, W) captures, indexed by ``row``.
        title: figure title.
    """
    n = len(examples)
    cols = 4 if images is not None else 3
    fig, axes = plt.subplots(n, cols, figsize=(3.2 * cols, 2.3 * n + 0.6), squeeze=False)
    x = np.arange(len(classes))
    for i, ex in enumerate(examples):
        j = 0
        if images is not None:
            a, cmap = _image(images[ex["row"]])
            axes[i, 0].imshow(a, cmap=cmap)
            axes[i, 0].set_axis_off()
            axes[i, 0].set_title(f"capture ({classes[ex['label']]})", fontsize=9)
            j = 1
        for k, (key, name) in enumerate([("prior", "prior"), ("likelihood", "likelihood"),
                                         ("posterior", "posterior")]):
            ax = axes[i, j + k]
            vals = np.asarray(ex[key])
            colors = ["tab:orange" if c == ex["label"] else "tab:blue" for c in x]
            ax.bar(x, vals, color=colors)
            ax.set_ylim(0, max(1e-9, float(vals.max())) * 1.15)
            ax.set_xticks(x)
            ax.set_xticklabels(classes, rotation=60, fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            if i == 0:
                ax.set_title(name, fontsize=10)
    fig.suptitle(title or "prior x likelihood -> posterior (true class in orange)", fontsize=11)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_reliability(path: str | Path, before: dict, after: dict, ece_before: float,
                     ece_after: float, temperature: float) -> Path:
    """Reliability diagrams (accuracy vs confidence per bin) before and after temperature fitting.

    Args:
        path: output PNG.
        before, after: :func:`opticsfree.bayes.calibration.reliability` dicts.
        ece_before, ece_after: the ECEs, shown in the titles.
        temperature: the fitted T.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), squeeze=False)
    for ax, rel, name in [(axes[0, 0], before, f"T = 1, ECE {ece_before:.3f}"),
                          (axes[0, 1], after, f"T = {temperature:.3g}, ECE {ece_after:.3f}")]:
        edges = np.asarray(rel["edges"])
        width = np.diff(edges)
        acc = np.array([np.nan if a is None else a for a in rel["accuracy"]])
        conf = np.array([np.nan if c is None else c for c in rel["confidence"]])
        ok = ~np.isnan(acc)
        ax.bar(edges[:-1][ok], acc[ok], width=width[ok], align="edge", edgecolor="black",
               color="tab:blue", label="accuracy")
        lo = np.minimum(acc, conf)
        ax.bar(edges[:-1][ok], np.abs(conf - acc)[ok], bottom=lo[ok], width=width[ok],
               align="edge", fill=False, edgecolor="tab:red", hatch="//", lw=0.8,
               label="gap to mean confidence")
        counts = np.asarray(rel["count"], dtype=float)
        ax.step(edges[:-1], counts / max(counts.sum(), 1.0), where="post", color="gray",
                lw=1.2, zorder=4, label="fraction of captures")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (max posterior)")
        ax.set_ylabel("accuracy")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_frames(path: str | Path, curve: Sequence[dict], mean_frame: dict | None = None) -> Path:
    """Accuracy and mean KL(posterior || prior) against the number of fused frames.

    Args:
        path: output PNG.
        curve: ``[{"k", "accuracy", "kl"}, ...]``.
        mean_frame: ``{"k", "accuracy", "kl"}`` of the mean-of-frames classifier, or None.
    """
    k = [r["k"] for r in curve]
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    ax.plot(k, [r["accuracy"] for r in curve], "o-", color="tab:blue",
            label="sequential posterior")
    if mean_frame is not None:
        ax.plot([mean_frame["k"]], [mean_frame["accuracy"]], "s", color="tab:green",
                markersize=9, label=f"mean of {mean_frame['k']} frame embeddings")
    ax.set_xlabel("frames fused (k)")
    ax.set_ylabel("MAP accuracy (%)")
    ax.set_xticks(k)
    ax2 = ax.twinx()
    ax2.plot(k, [r["kl"] for r in curve], "^--", color="tab:red", label="mean KL(post||prior)")
    ax2.set_ylabel("KL (nats)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15),
              ncol=2, frameon=False)
    fig.tight_layout()
    return _save(fig, Path(path))


def write_figures(fig_dir: str | Path, result: BayesResult, images: Any = None,
                  split: str = "test") -> list[Path]:
    """Write the figures of a Bayesian analysis.

    Args:
        fig_dir: output directory (``OUT/figures``).
        result: the analysis (:func:`opticsfree.bayes.model.analyse_model`).
        images: optional uint8 (N, C, H, W) captures of the evaluated split.
        split: split name (the result's tag) used in the file names.

    Returns:
        The written paths: ``bayes_<split>_bars.png``, ``bayes_<split>_reliability.png`` and,
        with more than one frame per scene, ``bayes_<split>_frames.png``.
    """
    d = Path(fig_dir)
    a = result.analysis
    out = [
        plot_posterior_bars(d / f"bayes_{split}_bars.png", result.classes,
                            [e.to_json() for e in a.examples], images,
                            title=f"prior ({result.prior}) x likelihood "
                                  f"(T = {a.temperature:.3g}) -> posterior; "
                                  "true class in orange"),
        plot_reliability(d / f"bayes_{split}_reliability.png", a.reliability_before,
                         a.reliability, a.before.ece, a.fitted.ece, a.temperature),
    ]
    if a.frames_per_scene > 1:
        out.append(plot_frames(d / f"bayes_{split}_frames.png", [f.to_json() for f in a.frames],
                               None if a.mean_frame is None else a.mean_frame.to_json()))
    return out
