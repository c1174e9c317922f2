"""Backbone names and their default widths (no torch: the command line and the training
config read them without loading the networks)."""

from __future__ import annotations

#: backbone name -> default first-layer width.
DEFAULT_WIDTHS: dict[str, int] = {"cnn4": 32, "resnet8": 16, "resnet14": 16, "resnet20": 16, "resnet32": 16,
                               "wvgg": 32, "vit": 32}

#: Names accepted by :func:`~opticsfree.models.registry.build_backbone`.
BACKBONES: tuple[str, ...] = tuple(DEFAULT_WIDTHS)

#: The smallest input side (pixels) a backbone can take; smaller ones pool to nothing.
#: ``wvgg``: a 2x2 patch layer then three 2x2 max-poolings (measured: 10 px and up run).
MIN_SIZES: dict[str, int] = {"wvgg": 10}
