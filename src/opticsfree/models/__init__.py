"""Embedding networks: small CNN and CIFAR ResNet backbones, one- or two-tower encoders.

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.models.names` (the
backbone names, read by the command line and the training config) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opticsfree.models.names import BACKBONES

if TYPE_CHECKING:
    from opticsfree.models.cnn4 import CNN4
    from opticsfree.models.embedding import DOMAINS, EmbeddingModel
    from opticsfree.models.global_linear import GlobalLinear
    from opticsfree.models.registry import build_backbone, default_width
    from opticsfree.models.resnet_cifar import ResNetCIFAR

__all__ = ["CNN4", "ResNetCIFAR", "EmbeddingModel", "DOMAINS", "BACKBONES", "build_backbone",
           "default_width", "GlobalLinear"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from opticsfree.models import cnn4, embedding, global_linear, registry, resnet_cifar

    for module in (cnn4, embedding, global_linear, registry, resnet_cifar):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
