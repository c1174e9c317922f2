"""The seed study's published numbers: the one place they are written down.

Everything that shows or compares against the seed study (the study report, ``evaluate``'s
tables, the camera preset's targets in the docs) reads them from here; docs/seed-study.md
describes the study and shows them (a test keeps the two equal). Measured on the CIFAR-10 test
set:

- capture degradation of its hardware (lensless captures against the originals) and the image
  quality of its unpaired CycleGAN reconstructions (:data:`DEGRADATION`, :data:`CYCLEGAN`);
- Tables 1-4 (:data:`TABLES`, :data:`ROWS`): accuracy, precision, recall and F1 in percent,
  precision/recall/F1 support-weighted (recall equals accuracy in every row), after 15, 30 and
  50 epochs; Table 1 triplet on lensless captures, 2 triplet on CycleGAN reconstructions, 3
  quadruplet on lensless captures, 4 quadruplet on reconstructions;
- the KL divergences of its Bayesian analysis, in nats (:data:`KL`).

This module imports nothing of opticsfree: it sits at the bottom of the layer order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: The dataset every seed number was measured on (the opticsfree dataset name).
DATASET = "cifar10"


@dataclass(frozen=True)
class PublishedQuality:
    """Image quality as published: PSNR (dB), SSIM and MSE (scale unstated by the seed).

    The seed's MSE figures do not match its PSNR under any single convention (10.74 dB means an
    MSE near 5,480 on the 0-255 scale); both are kept as published.
    """

    mse: float
    psnr: float
    ssim: float

    def to_json(self) -> dict[str, float]:
        """``{"mse", "psnr", "ssim"}``."""
        return {"mse": self.mse, "psnr": self.psnr, "ssim": self.ssim}


#: The seed hardware's lensless captures against the originals (CIFAR-10 test).
DEGRADATION = PublishedQuality(mse=106.15, psnr=10.74, ssim=0.14)
#: The seed's unpaired CycleGAN reconstructions against the originals.
CYCLEGAN = PublishedQuality(mse=82.13, psnr=18.68, ssim=0.59)


@dataclass(frozen=True)
class SeedTable:
    """One of the seed's Tables 1-4: its number, loss and image kind."""

    number: int
    loss: str        # "triplet" | "quadruplet"
    images: str      # "lensless" | "reconstructed"


#: The seed's Tables 1-4, in order.
TABLES: tuple[SeedTable, ...] = (
    SeedTable(1, "triplet", "lensless"),
    SeedTable(2, "triplet", "reconstructed"),
    SeedTable(3, "quadruplet", "lensless"),
    SeedTable(4, "quadruplet", "reconstructed"),
)


@dataclass(frozen=True)
class SeedRow:
    """One published row: loss, image kind, epochs and the four metrics (percent)."""

    table: int
    loss: str        # "triplet" | "quadruplet"
    images: str      # "lensless" | "reconstructed"
    epochs: int
    accuracy: float
    precision: float
    recall: float
    f1: float

    @property
    def label(self) -> str:
        """A short row label, e.g. ``seed Table 1 (triplet, lensless)``."""
        return f"seed Table {self.table} ({self.loss}, {self.images})"

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict (for JSON)."""
        return asdict(self)


#: Every row of the seed's Tables 1-4.
ROWS: tuple[SeedRow, ...] = (
    SeedRow(1, "triplet", "lensless", 15, 16.40, 15.47, 16.40, 10.92),
    SeedRow(1, "triplet", "lensless", 30, 30.73, 30.37, 30.73, 30.22),
    SeedRow(1, "triplet", "lensless", 50, 31.13, 31.16, 31.13, 30.62),
    SeedRow(2, "triplet", "reconstructed", 15, 38.37, 38.75, 38.37, 37.72),
    SeedRow(2, "triplet", "reconstructed", 30, 39.58, 39.89, 39.58, 39.41),
    SeedRow(2, "triplet", "reconstructed", 50, 39.56, 40.07, 39.56, 39.41),
    SeedRow(3, "quadruplet", "lensless", 15, 30.16, 29.78, 30.16, 29.53),
    SeedRow(3, "quadruplet", "lensless", 30, 31.84, 31.57, 31.84, 31.24),
    SeedRow(3, "quadruplet", "lensless", 50, 32.14, 31.85, 32.14, 31.71),
    SeedRow(4, "quadruplet", "reconstructed", 15, 40.76, 40.44, 40.76, 40.26),
    SeedRow(4, "quadruplet", "reconstructed", 30, 40.78, 40.51, 40.78, 40.44),
    SeedRow(4, "quadruplet", "reconstructed", 50, 40.71, 41.26, 40.71, 40.47),
)

#: The seed's KL divergences (nats) by (loss, image kind); which KL it is was not stated
#: (docs/bayes.md argues it is closest to KL(posterior || prior)).
KL: dict[tuple[str, str], float] = {
    ("triplet", "lensless"): 0.41,
    ("quadruplet", "lensless"): 0.84,
    ("triplet", "reconstructed"): 0.57,
    ("quadruplet", "reconstructed"): 0.52,
}


def seed_row(loss: str, images: str, epochs: int) -> SeedRow | None:
    """The published row for (loss, images, epochs), or None when the seed has none.

    Args:
        loss: ``"triplet"`` or ``"quadruplet"`` (the seed's ranking quadruplet; other losses,
            including ``quadruplet-chen``, have no seed row).
        images: ``"lensless"`` or ``"reconstructed"``.
        epochs: 15, 30 or 50 for a match.
    """
    for row in ROWS:
        if row.loss == loss and row.images == images and row.epochs == int(epochs):
            return row
    return None


def table_rows(number: int) -> list[SeedRow]:
    """The rows of the seed's Table ``number`` (1-4), by epochs (empty for another number)."""
    return [r for r in ROWS if r.table == number]


def seed_kl(loss: str, images: str) -> float | None:
    """The seed's KL for (loss, ``lensless`` | ``reconstructed``), or None when it has none."""
    return KL.get((loss, images))
