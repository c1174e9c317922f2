"""Matching a run to the seed study's published rows (its Tables 1-4).

The published numbers themselves live in :mod:`opticsfree.seed_study`; this module decides
which of them a run's checkpoint corresponds to (loss, dataset of its capture set, lensless or
reconstructed, epoch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opticsfree.seed_study import DATASET, TABLES, SeedRow, seed_row


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
    if loss not in {t.loss for t in TABLES}:  # the seed's losses
        return None
    facts = capture_set_facts(captures if captures is not None else config.get("captures"))
    if facts["dataset"] is None or _norm_dataset(facts["dataset"]) != DATASET:
        return None
    images = str(config.get("images") or facts["images"]).lower()
    return seed_row(loss, images, epoch)
