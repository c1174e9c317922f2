"""The seed study's published results (its Tables 1-4), and matching a run to them.

The numbers are those of ../shared/docs/seed-study.md: CIFAR-10 test set, percent; precision,
recall and F1 are support-weighted (recall equals accuracy in every row). Table 1: triplet on
lensless captures, Table 2: triplet on CycleGAN reconstructions, Table 3: quadruplet on lensless
captures, Table 4: quadruplet on reconstructions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: The dataset every seed row was measured on (the opticsfree dataset name).
SEED_DATASET = "cifar10"


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


SEED_ROWS: tuple[SeedRow, ...] = (
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


def seed_row(loss: str, images: str, epochs: int) -> SeedRow | None:
    """The published row for (loss, images, epochs), or None when the seed has none.

    Args:
        loss: ``"triplet"`` or ``"quadruplet"`` (the seed's ranking quadruplet; other losses,
            including ``quadruplet-chen``, have no seed row).
        images: ``"lensless"`` or ``"reconstructed"``.
        epochs: 15, 30 or 50 for a match.
    """
    for row in SEED_ROWS:
        if row.loss == loss and row.images == images and row.epochs == int(epochs):
            return row
    return None


def seed_table(loss: str, images: str) -> list[SeedRow]:
    """All rows of the seed table for (loss, images), by epochs (empty when none)."""
    return [r for r in SEED_ROWS if r.loss == loss and r.images == images]


def _norm_dataset(name: Any) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


def capture_set_facts(captures: str | Path | None) -> dict[str, Any]:
    """What a capture set's ``manifest.json`` says about its dataset and image kind.

    A set is ``reconstructed`` when its manifest has a ``derived_from`` entry (a derived set
    whose lensless images are reconstructions, as ``CaptureSet.is_derived``) or a
    ``reconstruction`` entry; otherwise ``lensless``.

    Returns:
        ``{"dataset": name or None, "images": "lensless" | "reconstructed"}``; both unknown
        fields fall back (dataset None, images "lensless") when the manifest is unreadable.
    """
    import json

    facts: dict[str, Any] = {"dataset": None, "images": "lensless"}
    if captures is None:
        return facts
    try:
        manifest = json.loads((Path(captures) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return facts
    if not isinstance(manifest, dict):
        return facts
    source = manifest.get("source")
    if isinstance(source, dict):
        facts["dataset"] = source.get("dataset")
    if "derived_from" in manifest or manifest.get("reconstruction"):
        facts["images"] = "reconstructed"
    return facts


def match_run(config: dict[str, Any], epoch: int, captures: str | Path | None = None) -> SeedRow | None:
    """The seed row a run's checkpoint corresponds to, if any.

    A checkpoint matches when the run's loss is ``triplet`` or ``quadruplet``, its captures are
    CIFAR-10 (the manifest's ``source.dataset``), and the epoch is one of the seed's (15, 30,
    50). Lensless vs reconstructed comes from ``config["images"]`` when present, else from the
    capture set's manifest (:func:`capture_set_facts`).

    Args:
        config: the run's ``config.json``.
        epoch: the checkpoint's epoch.
        captures: the run's capture-set directory (default ``config["captures"]``).
    """
    loss = str(config.get("loss", "")).lower()
    if loss not in ("triplet", "quadruplet"):
        return None
    facts = capture_set_facts(captures if captures is not None else config.get("captures"))
    if facts["dataset"] is None or _norm_dataset(facts["dataset"]) != SEED_DATASET:
        return None
    images = str(config.get("images") or facts["images"]).lower()
    return seed_row(loss, images, epoch)
