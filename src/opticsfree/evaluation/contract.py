"""The one trained-model contract: what evaluation, Bayes and inference need of a trained model.

One protocol, :class:`TrainedEmbedder`, built on the part of it that only embeds:

- :class:`Embedder`: a model that maps images to embeddings (and, with a classifier head, to
  class logits). This is all that embedding a loaded split needs.
- :class:`TrainedEmbedder`: an :class:`Embedder` that also knows how it was trained: the
  checkpoint's epoch, the training loss, the capture set it was trained on and that set's
  splits as the run divided them (``train`` without the validation scenes, ``val``, ``test``),
  the run's config and its network. ``opticsfree evaluate`` and ``opticsfree bayes`` need the
  facts of training (the class prototypes are built from the ``train`` originals; thresholds,
  ``k`` and temperatures are tuned on ``val``); ``opticsfree predict`` and ``export`` (the
  inference package, which reaches a trained model through ``opticsfree.inference.adapter``
  only) also read the run's config (the preprocessing), its network (export) and whether it
  mirrors.

:class:`opticsfree.training.TrainedModel` (``opticsfree.training.load_trained``) satisfies both;
tests use one small stand-in (``tests/fake_trained.py``). The functions that take one never load anything themselves: the
caller (the command line, the study) loads the model and passes it, with an output folder.

Images are uint8 tensors (N, C, size, size), as the capture-set loader returns them; models see
them as float32 in [0, 1] internally. Both protocols are ``runtime_checkable``, so
``isinstance(model, TrainedEmbedder)`` checks that the members exist (not their types).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor

    from opticsfree.captures.loader import CaptureSplit

#: The two inputs an embedder embeds: lensless captures and the originals that were displayed.
DOMAINS = ("lensless", "original")


@runtime_checkable
class Embedder(Protocol):
    """A trained embedding model: images in, L2-normalised embeddings (and logits) out.

    Attributes:
        classes: class names in label order (label ``i`` is ``classes[i]``; logits columns
            follow this order).
        size: the input side in pixels (images are ``size x size``).
        has_head: True when :meth:`logits` returns logits (a classifier head was trained).
    """

    @property
    def classes(self) -> Sequence[str]: ...

    @property
    def size(self) -> int: ...

    @property
    def has_head(self) -> bool: ...

    def embed(self, images: Tensor, domain: str, /, batch_size: int = 512) -> Tensor:
        """Embeddings of images from one domain.

        Args:
            images: uint8 images of the domain.
            domain: ``"lensless"`` (captures) or ``"original"`` (displayed images).
            batch_size: images per forward pass (memory only; callers may leave it out).

        Returns:
            float32 embeddings with unit-norm rows, on the CPU.

        Shape:
            images: (N, C, size, size), C the domain's channel count.
            returns: (N, D), D the embedding dimension (the same for both domains).
        """
        ...

    def logits(self, images: Tensor, /, batch_size: int = 512) -> Tensor | None:
        """Class logits of lensless captures, or None when the model has no classifier head.

        Args:
            images: uint8 lensless captures.
            batch_size: images per forward pass (memory only; callers may leave it out).

        Returns:
            float32 logits on the CPU (columns in :attr:`classes` order), or None.

        Shape:
            images: (N, C, size, size).
            returns: (N, len(classes)).
        """
        ...


@runtime_checkable
class TrainedEmbedder(Embedder, Protocol):
    """An :class:`Embedder` together with the facts of its training run.

    Attributes:
        epoch: the checkpoint's epoch.
        loss: the training loss name (``triplet``, ``quadruplet``, ``quadruplet-chen``, ``ce``,
            ``ce+triplet``): decides the default classifier and likelihood, and whether the seed
            study has a published row for the run.
        captures: the capture-set directory the run was trained on (its ``manifest.json`` says
            which dataset and whether the images are reconstructions).
        config: the run's ``config.json`` dict (``resolved`` holds the size, classes and
            channels; inference reads the preprocessing from it).
        model: the network (a ``torch.nn.Module`` in eval mode; export traces it), or None for
            a stand-in without one.
        mirror: whether :meth:`embed` and :meth:`logits` average each capture with its
            left-right flip (test-time mirroring; an exported graph does not).
    """

    @property
    def epoch(self) -> int: ...

    @property
    def loss(self) -> str: ...

    @property
    def captures(self) -> Path: ...

    @property
    def config(self) -> Mapping[str, Any]: ...

    @property
    def model(self) -> Any: ...

    @property
    def mirror(self) -> bool: ...

    def load_split(self, split: str, /) -> CaptureSplit:
        """A split of the run's capture set at the model's input size.

        Args:
            split: ``"train"`` (the scenes the model was trained on: the train split after the
                run's ``limit``, without the validation scenes; the source of the class
                prototypes), ``"val"`` (the held-out scenes; used to tune thresholds, ``k`` and
                temperatures) or ``"test"`` (used only for the reported numbers).

        Returns:
            The split: uint8 ``lensless`` and ``original`` images, ``labels``, scene ``ids``
            and ``frames``, one row per (scene, frame).

        Raises:
            OpticsfreeError: the split does not exist or the capture set changed since
                training.
        """
        ...
