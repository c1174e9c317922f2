"""Clean labelled image datasets as uint8 arrays: CIFAR-10, Fashion-MNIST, digits, ImageFolder.

Entry point: :func:`load_dataset` (names in :data:`DATASETS`).
"""

from opticsfree.data.base import ImageDataset, Split, stratified_limit
from opticsfree.data.classes import CIFAR10_CLASSES, FASHION_MNIST_CLASSES
from opticsfree.data.registry import DATASETS, SPLITS, load_dataset

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "ImageDataset",
    "SPLITS",
    "Split",
    "load_dataset",
    "stratified_limit",
]
