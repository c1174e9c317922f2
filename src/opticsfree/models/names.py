"""The backbone registry: one entry per ``--backbone`` (no torch: the command line and the
training config read it without loading the networks).

Adding a backbone is one new module (a network class taking ``(in_channels, width)`` with an
``out_channels`` attribute) and one line in :data:`_BUILTIN` below (docs/architecture.md,
"Adding a loss or a backbone"). :func:`opticsfree.models.registry.build_backbone` imports the
constructor only when it builds the network. Code that adds a backbone at run time calls
:func:`register_backbone` before importing the command line (it builds its choices then).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opticsfree.utils.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone.

    Attributes:
        name: the ``--backbone`` name.
        constructor: ``"module:callable"``, called as ``callable(*args, in_channels, width)``
            and returning an ``nn.Module`` with an ``out_channels`` attribute that maps (N, C,
            H, W) images to a feature map.
        width: the default first-layer width.
        args: leading arguments of the constructor (a family's depth: ``ResNetCIFAR(20, ...)``).
        min_size: the smallest input side (pixels) it can take; smaller ones pool to nothing.
        whitening: it has a data-initialised whitening layer whose bias ``whiten_bias_epochs``
            may freeze.
    """

    name: str
    constructor: str
    width: int
    args: tuple[Any, ...] = ()
    min_size: int = 1
    whitening: bool = False

    def __post_init__(self) -> None:
        if not self.name or ":" not in self.constructor:
            raise ValueError(f"backbone {self.name!r}: constructor must be 'module:callable', "
                             f"got {self.constructor!r}")
        if self.width < 1 or self.min_size < 1:
            raise ValueError(f"backbone {self.name!r}: width and min_size must be positive")


_RESNET = "opticsfree.models.resnet_cifar:ResNetCIFAR"

#: The bundled backbones, in ``--backbone`` order: one line per backbone.
_BUILTIN: tuple[BackboneSpec, ...] = (
    BackboneSpec("cnn4", "opticsfree.models.cnn4:CNN4", 32),
    BackboneSpec("resnet8", _RESNET, 16, args=(8,)),
    BackboneSpec("resnet14", _RESNET, 16, args=(14,)),
    BackboneSpec("resnet20", _RESNET, 16, args=(20,)),
    BackboneSpec("resnet32", _RESNET, 16, args=(32,)),
    # a 2x2 patch layer then three 2x2 max-poolings (measured: 10 px and up run)
    BackboneSpec("wvgg", "opticsfree.models.whitened_vgg:WhitenedVGG", 32, min_size=10, whitening=True),
    BackboneSpec("vit", "opticsfree.models.vit:HybridViT", 32),
)

#: The backbones, by name (:class:`~opticsfree.utils.registry.Registry`).
REGISTRY: Registry[BackboneSpec] = Registry("backbone")
#: Add a backbone (after the registered ones; a name may be registered once).
register_backbone = REGISTRY.register
#: The registered backbone names, in registration order.
backbone_names = REGISTRY.names
#: The entry of a backbone (ConfigError naming the registered ones for an unknown name).
backbone_spec = REGISTRY.get

for _spec in _BUILTIN:
    register_backbone(_spec)


if TYPE_CHECKING:
    #: backbone name -> default first-layer width.
    DEFAULT_WIDTHS: dict[str, int]
    #: Names accepted by :func:`~opticsfree.models.registry.build_backbone`.
    BACKBONES: tuple[str, ...]
    #: The smallest input side (pixels) of the backbones that cannot take any size.
    MIN_SIZES: dict[str, int]


def __getattr__(name: str) -> Any:
    # read from the registry on every access (PEP 562): an import after register_backbone()
    # sees the new backbone
    if name == "BACKBONES":
        return backbone_names()
    if name == "DEFAULT_WIDTHS":
        return {n: s.width for n, s in REGISTRY.items()}
    if name == "MIN_SIZES":
        return {n: s.min_size for n, s in REGISTRY.items() if s.min_size > 1}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
