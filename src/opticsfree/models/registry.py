"""Backbones by name: ``build_backbone("resnet20", in_channels=3)``."""

from __future__ import annotations

from typing import Callable

from torch import nn

from opticsfree.errors import ConfigError
from opticsfree.models.cnn4 import CNN4
from opticsfree.models.names import BACKBONES, DEFAULT_WIDTHS
from opticsfree.models.resnet_cifar import ResNetCIFAR
from opticsfree.models.vit import HybridViT
from opticsfree.models.whitened_vgg import WhitenedVGG

#: name -> (constructor(in_channels, width), default width); names and widths from
#: :mod:`opticsfree.models.names`.
_CONSTRUCTORS: dict[str, Callable[[int, int], nn.Module]] = {
    "cnn4": lambda c, w: CNN4(c, w),
    "resnet8": lambda c, w: ResNetCIFAR(8, c, w),
    "resnet14": lambda c, w: ResNetCIFAR(14, c, w),
    "resnet20": lambda c, w: ResNetCIFAR(20, c, w),
    "resnet32": lambda c, w: ResNetCIFAR(32, c, w),
    "wvgg": lambda c, w: WhitenedVGG(c, w),
    "vit": lambda c, w: HybridViT(c, w),
}
assert tuple(_CONSTRUCTORS) == BACKBONES
_BACKBONES: dict[str, tuple[Callable[[int, int], nn.Module], int]] = {
    n: (_CONSTRUCTORS[n], DEFAULT_WIDTHS[n]) for n in BACKBONES}


def default_width(name: str) -> int:
    """The default first-layer width of backbone ``name``."""
    _check(name)
    return _BACKBONES[name][1]


def _check(name: str) -> None:
    if name not in _BACKBONES:
        raise ConfigError(f"backbone {name!r}: unknown (expected one of {', '.join(BACKBONES)})")


def build_backbone(name: str, in_channels: int, width: int | None = None) -> nn.Module:
    """Build a convolutional backbone that maps images to a feature map.

    Args:
        name: one of :data:`BACKBONES` (``cnn4``, ``resnet8``, ``resnet14``, ``resnet20``,
            ``resnet32``, ``wvgg``: the patch-whitened VGG of the fast CIFAR recipes, ``vit``:
            a convolutional stem and four transformer blocks).
        in_channels: input channels (1 or 3).
        width: first-layer width (None: the backbone's default, 32 for cnn4 and wvgg, 16 for
            the ResNets).

    Returns:
        A module with an ``out_channels`` attribute; ``forward`` maps (N, C, H, W) float
        images to an (N, out_channels, h, w) feature map.

    Raises:
        ConfigError: unknown name or a non-positive width.
    """
    _check(name)
    ctor, w0 = _BACKBONES[name]
    w = w0 if width is None else int(width)
    if w < 1:
        raise ConfigError(f"width: must be a positive integer, got {width}")
    return ctor(int(in_channels), w)
