"""Figures of the camera design tools: footprint map, singular spectrum, linear reconstructions
(``camera info --out``) and sweep heatmaps (``camera sweep``). Every file is written atomically.

The figures with something to check are built by a ``*_figure`` function that returns the
matplotlib Figure (closed by the caller) and written by its ``draw_*`` function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from opticsfree.design.info import METRIC_UNITS, InfoArtifacts, TransferGeometry
from opticsfree.design.params import Axis
from opticsfree.optics.config import field_unit
from opticsfree.utils.io import atomic_path, ensure_dir


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def with_unit(name: str, unit: str) -> str:
    """An axis label: ``name (unit)``, or ``name (dimensionless)`` for ``unit`` ``""``."""
    return f"{name} ({unit or 'dimensionless'})"


def metric_label(metric: str) -> str:
    """The axis label of a ``camera info`` metric with its unit (:data:`METRIC_UNITS`).

    Raises:
        ValueError: ``metric`` is not a ``camera info`` metric.
    """
    if metric not in METRIC_UNITS:
        raise ValueError(f"metric: unknown camera info metric {metric!r}; expected one of: "
                         f"{', '.join(METRIC_UNITS)}")
    return with_unit(metric, METRIC_UNITS[metric])


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


#: The sensor pixels whose half-maximum footprints the footprint map outlines: (name, colour).
FOOTPRINT_PIXELS = (("centre", "tab:red"), ("edge", "tab:orange"), ("corner", "tab:purple"))


def footprints_figure(geo: TransferGeometry, H: torch.Tensor | None = None):
    """The footprint map: each sensor pixel's footprint centroid over the displayed image grid;
    with ``H``, the half-maximum footprints of the centre, an edge and a corner pixel drawn as
    contours. A legend names every element drawn.

    Args:
        geo: the transfer matrix's geometry.
        H: the transfer matrix (sensor pixels x display pixels), for the contours.

    Returns:
        The matplotlib Figure (one Axes).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    h, w = geo.image_shape
    ho, wo = geo.output_size
    fig, ax = _figure(figsize=(5, 5))
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, lw=1.5, ec="k", label="displayed image"))
    c = geo.centroids
    ax.scatter(c[:, 0], c[:, 1], s=4, c=np.arange(len(c)) % wo, cmap="viridis",
               label="sensor pixel footprint centroid\n(colour: sensor column, first purple to last yellow)")
    handles, _ = ax.get_legend_handles_labels()
    if H is not None:
        pixels = dict(zip((name for name, _ in FOOTPRINT_PIXELS),
                          (ho // 2 * wo + wo // 2, ho // 2 * wo + wo - 1, ho * wo - 1)))
        for name, colour in FOOTPRINT_PIXELS:
            k = pixels[name]
            fp = H[k].double().reshape(h, w).numpy()
            if fp.max() > 0:
                ax.contour(np.arange(w), np.arange(h), fp / fp.max(), levels=[0.5], colors=[colour])
                ax.plot(*c[k], "x", color=colour, ms=8)
                handles.append(Line2D([], [], color=colour, marker="x", ms=8,
                                      label=f"{name} pixel: half-maximum footprint, x its centroid"))
    ax.set_xlim(-0.5 - 0.05 * w, w - 0.5 + 0.05 * w)
    ax.set_ylim(h - 0.5 + 0.05 * h, -0.5 - 0.05 * h)
    ax.set_aspect("equal")
    ax.set_xlabel("display x (pixels)")
    ax.set_ylabel("display y (pixels)")
    ax.set_title(f"footprint centroids: coverage {geo.coverage:.2f}, spread {geo.footprint_spread_px:.1f} px",
                 fontsize=9)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)
    return fig


def draw_footprints(geo: TransferGeometry, path: Path, H: torch.Tensor | None = None) -> Path:
    """Write :func:`footprints_figure` to ``path`` (PNG, atomically)."""
    return _save(footprints_figure(geo, H), path)


def draw_spectrum(geo: TransferGeometry, path: Path) -> Path:
    """The singular values of H relative to the largest, with the 1e-2 and 1e-3 levels."""
    s = geo.singular_values
    fig, ax = _figure(figsize=(6, 4))
    ax.semilogy(np.arange(1, len(s) + 1), s / s[0])
    for level, n in ((1e-2, geo.rank_1e2), (1e-3, geo.rank_1e3)):
        ax.axhline(level, ls="--", lw=0.8, c="grey")
        ax.text(len(s), level, f" {n} above {level:g}", va="bottom", ha="right", fontsize=8)
    ax.set_xlabel("index")
    ax.set_ylabel("singular value / largest")
    ax.set_title("singular spectrum of the transfer matrix H")
    return _save(fig, path)


#: Longest class name written above a sample column (longer ones are cut, ending in "...").
CLASS_NAME_CHARS = 14


def _class_name(label: int, classes: Sequence[str] | None) -> str:
    name = classes[label] if classes is not None and 0 <= label < len(classes) else f"class {label}"
    return name if len(name) <= CLASS_NAME_CHARS else name[:CLASS_NAME_CHARS - 3] + "..."


def linear_figure(art: InfoArtifacts):
    """The sample test scenes (one of each class first, :func:`~opticsfree.design.info.class_samples`):
    rows original, capture and linear reconstruction; each column titled with its scene's class
    (its name where ``art.classes`` has it) when ``art.labels`` is known.

    Args:
        art: the artifacts of ``camera info`` (``originals`` must be set).

    Returns:
        The matplotlib Figure (rows x samples Axes).

    Raises:
        ValueError: ``art`` has no sample scenes.
    """
    rows = [("original", art.originals), ("capture", art.captures), ("linear", art.linear)]
    rows = [(name, x) for name, x in rows if x is not None]
    if not rows or min(len(x) for _, x in rows) == 0:
        raise ValueError("art: no sample scenes to draw (originals missing or empty)")
    n = min(len(x) for _, x in rows)
    fig, axes = _figure(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows) + 0.3), squeeze=False)
    for r, (name, x) in enumerate(rows):
        for i in range(n):
            img = x[i].float() / 255 if x.dtype == torch.uint8 else x[i].float()
            img = img.clamp(0, 1).permute(1, 2, 0).numpy()
            ax = axes[r][i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name)
            if r == 0 and art.labels is not None and i < len(art.labels):
                ax.set_title(_class_name(int(art.labels[i]), art.classes), fontsize=8)
    return fig


def draw_linear(art: InfoArtifacts, path: Path) -> Path:
    """Write :func:`linear_figure` to ``path`` (PNG, atomically)."""
    return _save(linear_figure(art), path)


def draw_info(art: InfoArtifacts, out: str | Path, H: torch.Tensor | None = None) -> list[Path]:
    """Write the ``camera info --out`` figures that ``art`` has data for."""
    out = ensure_dir(out)
    paths = []
    if art.geometry is not None:
        paths.append(draw_footprints(art.geometry, out / "footprints.png", H))
        paths.append(draw_spectrum(art.geometry, out / "spectrum.png"))
    if art.originals is not None and len(art.originals):
        paths.append(draw_linear(art, out / "reconstructions.png"))
    return paths


def sweep_figure(rows: Sequence[dict], axes: Sequence[Axis], metric: str):
    """A heatmap of ``metric`` over two parameters (a line plot over one), every axis and the
    colour bar labelled with its unit (:func:`~opticsfree.optics.config.field_unit`,
    :data:`~opticsfree.design.info.METRIC_UNITS`).

    Args:
        rows: the sweep's rows in grid order (first parameter slowest), each with the parameter
            values by path and the metrics (None where not computed).
        axes: the one or two swept parameters.
        metric: the ``camera info`` metric drawn.

    Returns:
        The matplotlib Figure (the plot's Axes first, then the colour bar's).

    Raises:
        ValueError: not one or two axes, rows that do not fill the grid, or an unknown metric
            (the message names the argument).
        ConfigError: an axis that names no camera field.
    """
    if not 1 <= len(axes) <= 2:
        raise ValueError(f"axes: expected one or two swept parameters, got {len(axes)}")
    size = int(np.prod([a.n for a in axes]))
    if len(rows) != size:
        raise ValueError(f"rows: expected {size} (the grid of {' x '.join(str(a.n) for a in axes)}), got {len(rows)}")
    label = metric_label(metric)
    fig, ax = _figure(figsize=(6, 4.5))
    if len(axes) == 1:
        a = axes[0]
        xs = [r[a.path] for r in rows]
        ys = [r.get(metric) for r in rows]
        ax.plot(xs, [np.nan if y is None else y for y in ys], "o-")
        ax.set_xlabel(with_unit(a.path, field_unit(a.path)))
        ax.set_ylabel(label)
    else:
        a, b = axes
        grid = np.full((a.n, b.n), np.nan)
        for i, r in enumerate(rows):
            v = r.get(metric)
            grid[i // b.n, i % b.n] = np.nan if v is None else v
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_yticks(range(a.n), [f"{v:.3g}" for v in a.values()])
        ax.set_xticks(range(b.n), [f"{v:.3g}" for v in b.values()])
        ax.set_ylabel(with_unit(a.path, field_unit(a.path)))
        ax.set_xlabel(with_unit(b.path, field_unit(b.path)))
        for i in range(a.n):
            for j in range(b.n):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(im, ax=ax, label=label)
    ax.set_title(label)
    return fig


def draw_sweep(rows: Sequence[dict], axes: Sequence[Axis], metric: str, path: Path) -> Path:
    """Write :func:`sweep_figure` to ``path`` (PNG, atomically)."""
    return _save(sweep_figure(rows, axes, metric), path)
