"""Class names and the label order of image-folder datasets."""

from __future__ import annotations

from typing import Iterable

#: CIFAR-10's own label order (0..9), as in the official ``batches.meta``.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

#: Fashion-MNIST's label order (0..9), as in the dataset's README.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def folder_class_order(names: Iterable[str]) -> list[str]:
    """Label order for class folder names.

    CIFAR-10's order when the folder names are exactly CIFAR-10's ten class names (so a
    re-packaged copy keeps the official labels whatever order its folders sort in), otherwise
    the names sorted (code point order, as torchvision's ``ImageFolder`` does).
    """
    unique = set(names)
    if unique == set(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return sorted(unique)
