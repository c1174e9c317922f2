"""What a reconstruction method's class provides (typing only: no torch at import).

A method is registered in :mod:`opticsfree.reconstruction.names`: its name, its class as
``"module:Class"`` and its capabilities as data (``network``, ``options``, ``camera``, and from
them its :attr:`~opticsfree.reconstruction.names.MethodSpec.kind`). Every method is trained
through one entry point, :func:`opticsfree.reconstruction.train.train_reconstruction`, and
loaded through one, :func:`opticsfree.reconstruction.apply.load_reconstructor`; the method's kind
picks what its class provides (:data:`ReconstructionMethod`):

- ``"network"`` (``network=True``: ``cyclegan``, ``unet``, ``bijective``): the class implements
  :class:`NetworkMethod` (networks, optimizers, a training step, the inference network); the
  shared epoch loop trains it (batches, schedules, checkpoints, ``--resume``), and ``model.pt``
  keeps its inference network (``"arch"``, ``"state_dict"``), which ``load_reconstructor``
  rebuilds from the architecture (:meth:`NetworkMethod.inference`).
- ``"fit"`` (``network=False``: ``tikhonov``): the class implements :class:`FittedModel`, both
  the fit (:meth:`FittedModel.fit`, one pass over the training pairs) and the fitted model
  (``model.pt`` keeps :meth:`FittedModel.state` under the method's name; ``load_reconstructor``
  calls the class's :meth:`FittedModel.from_state`).

Either way the shared path writes the MODEL directory (``config.json``, one ``metrics.jsonl``
row per epoch, one for a fit, the sample grids and ``model.pt``), and ``reconstruct apply``,
``reconstruct ensemble`` (networks only: the ``no_ensemble`` capability says why not a fit) and
``--resume`` read it the same way.

A network method with ``camera="front_end"`` (``cyclegan``, ``--set front_end=true``) puts a
fitted model before its networks, the physics front end: the registered fitted method
:data:`~opticsfree.reconstruction.names.FRONT_END` (:class:`FrontEnd`), fitted before the
first epoch, frozen, and kept in ``model.pt`` under that method's name.

Adding a method: a network method is one module (its :class:`NetworkMethod` class) and one
:class:`~opticsfree.reconstruction.names.MethodSpec` line; a fitted method is one module (its
:class:`FittedModel` class) and one ``MethodSpec(..., network=False, no_ensemble=...)`` line.
No other file changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    import torch

    from opticsfree.captures.loader import CaptureSplit
    from opticsfree.reconstruction.base import MethodOptions


@runtime_checkable
class NetworkMethod(Protocol):
    """A trained-network reconstruction method (the class a ``network=True`` entry names).

    Class attributes:
        name: the ``--method`` name.
        paired: batches pair each capture with its original (False: two independent
            permutations, as CycleGAN's unpaired domains).
        config_cls: its option model (``--set``), a
            :class:`~opticsfree.reconstruction.base.MethodOptions` with at least ``epochs``,
            ``batch_size`` and ``decay_start``.

    Constructed as ``Class(cfg, in_channels, out_channels, size, device, generator)``; a
    ``ValueError`` there (e.g. an image too small for the network) becomes a one-line
    ConfigError naming the method and size. Optionally ``init_from_data(lensless, original,
    val_lensless, val_original, seed) -> dict | None`` initialises from the training pairs
    before the first epoch (its return is recorded as ``front_end_fit``).
    """

    name: ClassVar[str]
    paired: ClassVar[bool]
    config_cls: ClassVar[type[MethodOptions]]

    def networks(self) -> dict[str, torch.nn.Module]:
        """Every network, by name (saved and restored with the checkpoint)."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer, by name (the first one's learning rate is logged)."""
        ...

    def extra_state(self) -> dict:
        """Other state a resume needs (e.g. image pools)."""
        ...

    def load_extra_state(self, state: dict) -> None:
        """Restore :meth:`extra_state`."""
        ...

    def inference(self) -> tuple[dict, torch.nn.Module]:
        """``(architecture spec, network)`` of the lensless -> original network (the spec
        rebuilds it: ``{"class": ..., "kwargs": {...}}``, see
        :func:`~opticsfree.reconstruction.apply.build_network`)."""
        ...

    def train_step(self, capture: torch.Tensor, original: torch.Tensor, amp: Any) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch in [-1, 1]; the loss terms to log."""
        ...


@dataclass(frozen=True)
class FitContext:
    """What a fit sees besides the training and validation pairs.

    Attributes:
        method: the ``--method`` name (the fitted method's, or the network method whose front
            end is fitted).
        captures: the capture set (resolved; its manifest may name the camera).
        camera: ``--camera`` (a calibration or camera preset/TOML), or None.
        seed: the run's seed.
        options: the validated ``--set`` options (the class's ``config_cls``) of a method with
            the ``options`` capability, else None.
    """

    method: str
    captures: Path
    camera: str | Path | None = None
    seed: int = 0
    options: MethodOptions | None = None


@runtime_checkable
class FittedModel(Protocol):
    """A fitted method without a network (the class a ``network=False`` entry names): its fit
    and the fitted model, saved in ``model.pt`` under the method's name.

    With the ``options`` capability it also has ``config_cls`` (as :class:`NetworkMethod`).
    """

    @classmethod
    def fit(cls, train: CaptureSplit, val: CaptureSplit, ctx: FitContext) -> "FittedModel":
        """The model fitted on the training pairs (uint8 ``lensless`` and ``original``), with
        any choice (e.g. a regularisation weight) made on the validation pairs.

        Raises:
            DataError / ConfigError: data or settings it cannot fit (one line).
        """
        ...

    def reconstruct(self, captures: torch.Tensor) -> torch.Tensor:
        """uint8 captures (N, C, H, W) -> uint8 reconstructions."""
        ...

    def metrics(self) -> dict[str, Any]:
        """The fit's numbers in its ``metrics.jsonl`` row (before the validation scores)."""
        ...

    def report(self) -> dict[str, Any]:
        """The fit's record, written as ``MODEL/<method>.json`` (nothing when empty)."""
        ...

    def state(self) -> dict:
        """Tensors and numbers that :meth:`from_state` rebuilds the model from."""
        ...

    @classmethod
    def from_state(cls, state: dict) -> "FittedModel":
        """The model saved by :meth:`state`."""
        ...


@runtime_checkable
class FrontEnd(FittedModel, Protocol):
    """A fitted model that can be a network method's physics front end
    (:data:`~opticsfree.reconstruction.names.FRONT_END`)."""

    def summary(self) -> dict[str, Any]:
        """What the network's ``config.json`` records of the fit (``front_end_fit``)."""
        ...


#: What a registered method's class is, by its kind: a network method's training class, or a
#: fitted method's model class.
ReconstructionMethod = Union[NetworkMethod, type[FittedModel]]
