"""Tiny synthetic capture sets for tests and examples (no dataset or camera needed).

Each class has its own oriented stripe pattern, so a small network learns it in a few steps;
the "capture" is a blurred, shifted, dimmed and noisy copy of the original, stored as JPEG,
so it exercises every part of the format (including multi-frame sets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter

from opticsfree.captures.format import (
    IndexRow,
    lensless_relpath,
    make_manifest,
    original_relpath,
    write_index,
    write_manifest,
)
from opticsfree.captures.writer import ImageJob, write_images


def synthetic_images(labels: np.ndarray, size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Class-patterned uint8 images (N, size, size, channels): stripes at angle pi*label/n."""
    n_classes = int(labels.max()) + 1 if len(labels) else 1
    yy, xx = np.mgrid[0:size, 0:size] / max(size, 1)
    out = np.empty((len(labels), size, size, channels), np.uint8)
    for i, c in enumerate(labels):
        theta = np.pi * c / n_classes
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * 2.0 * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
        base = 0.5 + 0.35 * wave
        tint = rng.uniform(0.7, 1.0, size=channels)
        img = base[..., None] * tint + rng.normal(0, 0.04, (size, size, channels))
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def synthetic_capture(original: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A blurred, shifted, dimmed, noisy version of one (H, W, C) uint8 image."""
    x = original.astype(np.float64) / 255
    x = uniform_filter(x, size=(3, 3, 1), mode="reflect")
    x = np.roll(x, shift=(1, 1), axis=(0, 1))
    x = 0.15 + 0.6 * x + rng.normal(0, 0.03, x.shape)
    return np.clip(x * 255, 0, 255).astype(np.uint8)


def make_capture_set(root: str | Path, n_classes: int = 3, per_class: int = 6, size: int = 8,
                     channels: int = 3, frames: int = 1, splits: tuple[str, ...] = ("train", "test"),
                     seed: int = 0) -> Path:
    """Write a valid tiny capture set.

    Args:
        root: output directory (created).
        n_classes: number of classes (named ``class0``, ``class1``, ...).
        per_class: scenes per class and split.
        size: image side in pixels.
        channels: 1 or 3.
        frames: captures per scene (each with independent noise).
        splits: split names to write.
        seed: random seed (the set is a deterministic function of all arguments).

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    classes = [f"class{c}" for c in range(n_classes)]
    rows: list[IndexRow] = []
    jobs: list[ImageJob] = []
    split_sizes = {}
    for split in splits:
        labels = np.repeat(np.arange(n_classes), per_class)
        images = synthetic_images(labels, size, channels, rng)
        split_sizes[split] = len(labels)
        for i, (img, lab) in enumerate(zip(images, labels)):
            name = classes[lab]
            sid = f"{split}_{i:05d}"
            orel = original_relpath(split, name, sid)
            jobs.append(ImageJob(str(root / orel), img))
            for f in range(frames):
                lrel = lensless_relpath(split, name, sid, f if frames > 1 else None)
                jobs.append(ImageJob(str(root / lrel), synthetic_capture(img, rng), quality=90))
                rows.append(IndexRow(split, sid, int(lab), name, orel, lrel, f))
    write_images(jobs, workers=1)
    write_index(root, rows, frames=frames > 1)
    write_manifest(root, make_manifest(
        source={"dataset": "synthetic", "copy": "opticsfree.captures.testing", "notes": []},
        classes=classes, splits=split_sizes,
        camera={"type": "synthetic", "notes": "3x3 box blur, shift (1,1), gain 0.6, offset 0.15, noise 0.03"},
        seed=seed, frames=frames, channels=channels))
    return root
