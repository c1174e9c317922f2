"""Embedding networks: small CNN and CIFAR ResNet backbones, one- or two-tower encoders.

The names are loaded on first use (PEP 562), so that :mod:`opticsfree.models.names` (the
backbone registry, read by the command line and the training config) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opticsfree.utils.lazy import lazy_getattr

if TYPE_CHECKING:
    from opticsfree.models.cnn4 import CNN4
    from opticsfree.models.embedding import DOMAINS, EmbeddingModel
    from opticsfree.models.global_linear import GlobalLinear
    from opticsfree.models.names import BACKBONES
    from opticsfree.models.registry import build_backbone, default_width
    from opticsfree.models.resnet_cifar import ResNetCIFAR

__all__ = ["CNN4", "ResNetCIFAR", "EmbeddingModel", "DOMAINS", "BACKBONES", "build_backbone",
           "default_width", "GlobalLinear"]


__getattr__ = lazy_getattr(__name__, __all__,
                           ('names', 'cnn4', 'embedding', 'global_linear', 'registry', 'resnet_cifar'))
