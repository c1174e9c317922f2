"""What a reconstruction method's class provides (typing only: no torch at import).

A method is registered in :mod:`opticsfree.reconstruction.names` (its name, its class as
``"module:Class"`` and its capabilities as data: ``network``, ``options``, ``camera``). A method
with a network (``network=True``: ``cyclegan``, ``unet``, ``bijective``) implements
:class:`NetworkMethod`; the shared loop of :func:`opticsfree.reconstruction.train.train_reconstruction`
then trains it (batches, schedules, validation, sample grids, checkpoints, ``--resume``) and
saves its inference network in ``model.pt``, which :func:`~opticsfree.reconstruction.apply.load_reconstructor`
rebuilds from the architecture the class reports (:meth:`NetworkMethod.inference`). A fitted
method without a network (``network=False``: ``tikhonov``) names its model class, which
implements :class:`FittedModel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

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


@runtime_checkable
class FittedModel(Protocol):
    """The model of a fitted method without a network (the class a ``network=False`` entry
    names), saved in ``model.pt`` under the method's name."""

    def state(self) -> dict:
        """Tensors and numbers that :meth:`from_state` rebuilds the model from."""
        ...

    @classmethod
    def from_state(cls, state: dict) -> "FittedModel":
        """The model saved by :meth:`state`."""
        ...

    def reconstruct(self, captures: torch.Tensor) -> torch.Tensor:
        """uint8 captures (N, C, H, W) -> uint8 reconstructions."""
        ...
