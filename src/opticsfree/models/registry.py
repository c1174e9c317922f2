"""Backbones by name: ``build_backbone("resnet20", in_channels=3)``."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from opticsfree.errors import ConfigError
from opticsfree.models import names
from opticsfree.models.names import BackboneSpec, backbone_spec

__all__ = ["BACKBONES", "DEFAULT_WIDTHS", "build_backbone", "default_width", "constructor"]


def __getattr__(name: str) -> Any:
    # BACKBONES and DEFAULT_WIDTHS: the registry's, read when asked for
    if name in ("BACKBONES", "DEFAULT_WIDTHS"):
        return getattr(names, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def constructor(spec: BackboneSpec) -> Callable[..., nn.Module]:
    """The callable a registry entry names (``"module:callable"``), imported now."""
    module, _, name = spec.constructor.partition(":")
    return getattr(importlib.import_module(module), name)


def default_width(name: str) -> int:
    """The default first-layer width of backbone ``name``."""
    return backbone_spec(name).width


def build_backbone(name: str, in_channels: int, width: int | None = None) -> nn.Module:
    """Build a convolutional backbone that maps images to a feature map.

    Args:
        name: a registered backbone (the table in :mod:`opticsfree.models.names`).
        in_channels: input channels (1 or 3).
        width: first-layer width (None: the backbone's registered default).

    Returns:
        A module with an ``out_channels`` attribute; ``forward`` maps (N, C, H, W) float
        images to an (N, out_channels, h, w) feature map.

    Raises:
        ConfigError: unknown name or a non-positive width.
    """
    spec = backbone_spec(name)
    w = spec.width if width is None else int(width)
    if w < 1:
        raise ConfigError(f"width: must be a positive integer, got {width}")
    args: tuple[Any, ...] = spec.args
    return constructor(spec)(*args, int(in_channels), w)
