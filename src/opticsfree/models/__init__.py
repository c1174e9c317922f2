"""Embedding networks: small CNN and CIFAR ResNet backbones, one- or two-tower encoders."""

from opticsfree.models.cnn4 import CNN4
from opticsfree.models.embedding import DOMAINS, EmbeddingModel
from opticsfree.models.global_linear import GlobalLinear
from opticsfree.models.registry import BACKBONES, build_backbone, default_width
from opticsfree.models.resnet_cifar import ResNetCIFAR

__all__ = ["CNN4", "ResNetCIFAR", "EmbeddingModel", "DOMAINS", "BACKBONES", "build_backbone",
           "default_width", "GlobalLinear"]
