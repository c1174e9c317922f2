"""Figures of capture sets: originals beside their captures and the camera's point responses;
and the same scenes across several sets (original | lensless | each reconstruction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from opticsfree.captures.format import open_capture_set
from opticsfree.captures.loader import load_captures
from opticsfree.utils.io import atomic_path, check_out_file


#: The PNG ``Software`` text of every figure these commands write; only such a file is ever
#: overwritten.
FIGURE_SOFTWARE = "opticsfree"


def enclosing_capture_set(path: str | Path) -> Path | None:
    """The capture set (a folder with ``manifest.json`` and ``index.csv``) that ``path`` would be
    written in, or None."""
    for d in Path(path).absolute().parents:
        if (d / "manifest.json").is_file() and (d / "index.csv").is_file():
            return d
    return None


def check_png_out(out: str | Path) -> Path:
    """Check that a figure can be written to ``out`` before any drawing starts.

    A figure is never written inside a capture set, and an existing file is replaced only when
    it is a figure an opticsfree command wrote (its PNG ``Software`` text, :data:`FIGURE_SOFTWARE`).

    Raises:
        ConfigError: ``out`` is a directory, a parent of it is a file, it lies in a capture
            set, or it is an existing file opticsfree did not write (named).
    """
    from PIL import Image

    from opticsfree.errors import ConfigError

    p = check_out_file(out, "a PNG file path")
    inside = enclosing_capture_set(p)
    if inside is not None:
        raise ConfigError(f"--out {p}: inside the capture set {inside}; write figures outside capture sets")
    if p.exists():
        try:
            with Image.open(p) as img:
                ours = img.format == "PNG" and str(img.info.get("Software", "")).startswith(FIGURE_SOFTWARE)
        except OSError:
            ours = False
        if not ours:
            raise ConfigError(f"--out {p}: exists and is not a figure written by opticsfree; "
                              "choose a new file name (or delete it)")
    return p


def save_figure(fig, out: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure to ``out`` as PNG, atomically, marked as opticsfree's."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": FIGURE_SOFTWARE})
    return out


def point_responses(camera_dict: dict, image_shape: tuple[int, int], channels: int):
    """Noiseless responses to one lit display element at the centre and at a corner.

    Returns:
        ``[(title, (Ho, Wo) array), ...]`` or an empty list for real (unknown) cameras.
    """
    from opticsfree.optics import Camera, camera_from_dict

    if camera_dict.get("type") not in ("bare", "lens", "psf"):
        return []
    cam = Camera(camera_from_dict(camera_dict), image_shape, channels)
    h, w = image_shape
    return [("point response: centre", cam.point_response(h // 2, w // 2).numpy()),
            ("point response: corner", cam.point_response(0, 0).numpy())]


def show_capture_set(root: str | Path, out: str | Path, split: str | None = None, n: int = 8,
                     seed: int = 0) -> Path:
    """Write a PNG with ``n`` originals above their captures and the point responses.

    Args:
        root: capture set.
        out: output PNG path (written atomically; ConfigError when it is a directory).
        split: split to sample from (default: test if present, else the first).
        n: number of examples.
        seed: which examples (random, class-spread).
    """
    check_png_out(out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = open_capture_set(root)
    split = split or ("test" if "test" in cs.splits else cs.splits[0])
    data = load_captures(root, split)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(data), size=min(n, len(data)), replace=False)
    resp = point_responses(cs.manifest["camera"], _orig_shape(cs, split), data.original.shape[1])
    cols = len(pick)
    rows = 2 + (1 if resp else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    for j, i in enumerate(pick):
        for r, (img, title) in enumerate([(data.original[i], "original"), (data.lensless[i], "capture")]):
            ax = axes[r][j]
            _draw(ax, img)
            if j == 0:
                ax.set_ylabel(title)
        axes[0][j].set_title(data.classes[int(data.labels[i])], fontsize=8)
    if resp:
        for j in range(cols):
            axes[2][j].axis("off")
        for j, (title, im) in enumerate(resp):
            ax = axes[2][j * 2] if cols >= 4 else axes[2][j]
            ax.axis("on")
            ax.imshow(im, cmap="inferno")
            ax.set_title(title, fontsize=7)
            ax.set_xticks([]); ax.set_yticks([])
    cam = cs.manifest["camera"]
    fig.suptitle(f"{Path(root).name}: camera {cam.get('name', cam.get('type'))}, split {split}", fontsize=9)
    fig.tight_layout()
    out = save_figure(fig, out, dpi=110)
    plt.close(fig)
    return out


def _draw(ax, img) -> None:
    """Show a uint8 (C, H, W) image (grey when C = 1) without ticks; None leaves the cell blank."""
    if img is not None:
        arr = img.permute(1, 2, 0).numpy()
        ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])


def _orig_shape(cs, split: str) -> tuple[int, int]:
    from opticsfree.utils.images import decode_image

    row = cs.rows_for(split)[0]
    a = decode_image(cs.path(row.original))
    return a.shape[0], a.shape[1]


def compare_capture_sets(sets: dict[str, str | Path], out: str | Path, split: str = "test",
                         n: int = 8, size: int | None = None, seed: int = 0) -> Path:
    """Write a PNG grid of the same scenes across capture sets: original, then each set's images.

    The first set gives the originals and picks the scenes (``n``, spread over the classes, the
    first frame of each); the other sets (e.g. reconstructions written by ``reconstruct apply``)
    are looked up by scene id, and a scene a set lacks stays blank.

    Args:
        sets: row title -> capture-set directory, in row order (e.g. ``{"lensless": A,
            "U-Net": B}``).
        out: output PNG path (written atomically).
        split: split to draw from.
        n: number of scenes (columns).
        size: resize every image to ``size`` x ``size`` (None: as stored).
        seed: which scenes.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: no sets.
        DataError: a set or split that cannot be loaded (named).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not sets:
        raise ValueError("compare_capture_sets needs at least one capture set")
    check_png_out(out)
    loaded = {k: load_captures(v, split, size) for k, v in sets.items()}
    base = next(iter(loaded.values()))
    first: dict[str, int] = {}
    for i, sid in enumerate(base.ids):
        first.setdefault(sid, i)
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[str]] = {}
    for sid, i in first.items():
        by_class.setdefault(int(base.labels[i]), []).append(sid)
    picks: list[str] = []
    while len(picks) < min(n, len(first)):
        for c in sorted(by_class):
            if by_class[c] and len(picks) < n:
                picks.append(by_class[c].pop(int(rng.integers(len(by_class[c])))))
    index = {k: {sid: i for i, sid in reversed(list(enumerate(v.ids)))} for k, v in loaded.items()}
    base_key = next(iter(loaded))
    rows = [("original", base_key, "original")] + [(k, k, "lensless") for k in loaded]
    fig, axes = plt.subplots(len(rows), len(picks), figsize=(1.5 * len(picks), 1.55 * len(rows)),
                             squeeze=False)
    for r, (title, key, attr) in enumerate(rows):
        for j, sid in enumerate(picks):
            ax = axes[r][j]
            i = index[key].get(sid)
            _draw(ax, getattr(loaded[key], attr)[i] if i is not None else None)
            if j == 0:
                ax.set_ylabel(title, fontsize=8)
            if r == 0:
                ax.set_title(base.classes[int(base.labels[first[sid]])], fontsize=7)
    fig.tight_layout()
    out = save_figure(fig, out, dpi=100)
    plt.close(fig)
    return out
