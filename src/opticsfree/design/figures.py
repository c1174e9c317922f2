"""Figures of the camera design tools: footprint map, singular spectrum, linear reconstructions
(``camera info --out``) and sweep heatmaps (``camera sweep``). Every file is written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from opticsfree.design.info import InfoArtifacts, TransferGeometry
from opticsfree.design.params import Axis
from opticsfree.utils.io import atomic_path, ensure_dir


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def draw_footprints(geo: TransferGeometry, path: Path, H: torch.Tensor | None = None) -> Path:
    """Each sensor pixel's footprint centroid over the displayed image grid; with ``H``, the
    footprints of the centre, an edge and a corner pixel drawn as contours."""
    h, w = geo.image_shape
    ho, wo = geo.output_size
    fig, ax = _figure(figsize=(5, 5))
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, lw=1.5, ec="k"))
    c = geo.centroids
    ax.scatter(c[:, 0], c[:, 1], s=4, c=np.arange(len(c)) % wo, cmap="viridis")
    if H is not None:
        for k, colour in ((ho // 2 * wo + wo // 2, "tab:red"), (ho // 2 * wo + wo - 1, "tab:orange"),
                          (ho * wo - 1, "tab:purple")):
            fp = H[k].double().reshape(h, w).numpy()
            if fp.max() > 0:
                ax.contour(np.arange(w), np.arange(h), fp / fp.max(), levels=[0.5], colors=[colour])
                ax.plot(*c[k], "x", color=colour, ms=8)
    ax.set_xlim(-0.5 - 0.05 * w, w - 0.5 + 0.05 * w)
    ax.set_ylim(h - 0.5 + 0.05 * h, -0.5 - 0.05 * h)
    ax.set_aspect("equal")
    ax.set_xlabel("display x (pixels)")
    ax.set_ylabel("display y (pixels)")
    ax.set_title(f"footprint centroids: coverage {geo.coverage:.2f}, spread {geo.footprint_spread_px:.1f} px\n"
                 "(contours: half-maximum footprints of the centre, edge and corner pixels)", fontsize=9)
    return _save(fig, path)


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


def draw_linear(art: InfoArtifacts, path: Path) -> Path:
    """Rows: originals, captures, linear reconstructions of the first test scenes."""
    rows = [("original", art.originals), ("capture", art.captures), ("linear", art.linear)]
    rows = [(name, x) for name, x in rows if x is not None]
    n = min(len(x) for _, x in rows)
    fig, axes = _figure(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows)), squeeze=False)
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
    return _save(fig, path)


def draw_info(art: InfoArtifacts, out: str | Path, H: torch.Tensor | None = None) -> list[Path]:
    """Write the ``camera info --out`` figures that ``art`` has data for."""
    out = ensure_dir(out)
    paths = []
    if art.geometry is not None:
        paths.append(draw_footprints(art.geometry, out / "footprints.png", H))
        paths.append(draw_spectrum(art.geometry, out / "spectrum.png"))
    if art.originals is not None:
        paths.append(draw_linear(art, out / "reconstructions.png"))
    return paths


def draw_sweep(rows: Sequence[dict], axes: Sequence[Axis], metric: str, path: Path) -> Path:
    """A heatmap of ``metric`` over two parameters (a line plot over one)."""
    fig, ax = _figure(figsize=(6, 4.5))
    if len(axes) == 1:
        a = axes[0]
        xs = [r[a.path] for r in rows]
        ys = [r.get(metric) for r in rows]
        ax.plot(xs, [np.nan if y is None else y for y in ys], "o-")
        ax.set_xlabel(a.path)
        ax.set_ylabel(metric)
    else:
        a, b = axes
        grid = np.full((a.n, b.n), np.nan)
        for i, r in enumerate(rows):
            v = r.get(metric)
            grid[i // b.n, i % b.n] = np.nan if v is None else v
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_yticks(range(a.n), [f"{v:.3g}" for v in a.values()])
        ax.set_xticks(range(b.n), [f"{v:.3g}" for v in b.values()])
        ax.set_ylabel(a.path)
        ax.set_xlabel(b.path)
        for i in range(a.n):
            for j in range(b.n):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(metric)
    return _save(fig, path)
