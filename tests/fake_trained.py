"""The one test stand-in for a trained model (``from fake_trained import FakeTrained``).

:class:`FakeTrained` satisfies :class:`opticsfree.evaluation.contract.TrainedEmbedder` (the one
trained-model contract) with fixed random maps instead of a network: it has the contract's
members and nothing else a library function may use. Two feature maps:

- ``"pixels"``: the mean-removed pixels of the (3-channel) image times a random projection;
- ``"spectrum"``: ``|FFT|`` of the mean-removed grey image times a random projection (blind to a
  pattern's phase and to the capture's shift, sensitive to its orientation).

The embeddings are the L2-normalised features; the logits (``head=True``) are
``(logit_scale * embedding) @ W`` with a random ``W``. The splits are either given in memory
(``splits``: name -> a duck-typed ``CaptureSplit``; a missing one is a DataError) or read from
the capture set ``captures`` with :func:`opticsfree.captures.loader.load_captures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from opticsfree.errors import DataError

FEATURES = ("pixels", "spectrum")


class FakeTrained:
    """A :class:`~opticsfree.evaluation.contract.TrainedEmbedder` stand-in.

    Args:
        captures: the capture-set directory (the splits are read from it unless ``splits``).
        epoch: the checkpoint's epoch.
        loss: the training loss name.
        classes: class names (default ``k0``, ``k1``, ...).
        n_classes: number of classes when ``classes`` is not given.
        dim: embedding dimension.
        head: whether :meth:`logits` returns logits.
        splits: in-memory splits by name, or None to load them from ``captures``.
        features: ``"pixels"`` or ``"spectrum"`` (see the module docstring).
        seed: seed of the random projection (drawn first) and head (drawn second).
        logit_scale: the logits' factor.
        size: input side in pixels.

    Attributes:
        calls: images embedded so far per domain.
    """

    def __init__(self, captures: Path, epoch: int = 1, loss: Any = "triplet", *,
                 classes: Sequence[str] | None = None, n_classes: int = 3, dim: int = 16,
                 head: bool = False, splits: Mapping[str, Any] | None = None,
                 features: str = "pixels", seed: int = 7, logit_scale: float = 1.0,
                 size: int = 8):
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        self.captures = captures
        self.epoch = epoch
        self.loss = loss
        self.classes = list(classes) if classes is not None else [f"k{c}" for c in range(n_classes)]
        self.size = size
        self.has_head = head
        self.config = {"loss": loss, "resolved": {"size": size, "classes": self.classes}}
        self.model = None
        self.mirror = False
        self.calls = {"lensless": 0, "original": 0}
        self.features = features
        self.logit_scale = logit_scale
        n_in = 3 * size * size if features == "pixels" else size * (size // 2 + 1)
        g = torch.Generator().manual_seed(seed)
        self._proj = torch.randn(n_in, dim, generator=g)
        self._head = torch.randn(dim, len(self.classes), generator=g)
        self._splits = dict(splits) if splits is not None else None

    def embed(self, x: torch.Tensor, domain: str, batch_size: int = 512) -> torch.Tensor:
        assert x.dtype == torch.uint8 and domain in ("lensless", "original")
        self.calls[domain] += int(x.shape[0])
        if self.features == "pixels":
            z = (x.float() / 255 - 0.5).flatten(1)
            z = z - z.mean(dim=1, keepdim=True)
        else:
            g = x.float().mean(1) / 255
            g = g - g.mean((1, 2), keepdim=True)
            z = torch.fft.rfft2(g).abs().flatten(1)
        return torch.nn.functional.normalize(z @ self._proj, dim=1)

    def logits(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor | None:
        if not self.has_head:
            return None
        return self.logit_scale * self.embed(x, "lensless") @ self._head

    def load_split(self, split: str) -> Any:
        if self._splits is None:
            from opticsfree.captures.loader import load_captures

            return load_captures(self.captures, split)
        if split not in self._splits:
            raise DataError(f"{self.captures}: no split {split!r}")
        return self._splits[split]
