"""The reconstruction-method registry: one entry per ``--method`` with its capabilities as data
(no torch: the command line and the study config read it without loading the methods).

Adding a method is one new module and one :class:`MethodSpec` line in :data:`_BUILTIN` below
(or a :func:`register_method` call): a network method's module holds a class that implements
:class:`opticsfree.reconstruction.method.NetworkMethod` (its option model, networks, optimizers,
training step and inference network; the shared loop trains, checkpoints, resumes and saves it),
a fitted method's a class that implements :class:`opticsfree.reconstruction.method.FittedModel`
(``fit``, ``reconstruct``, ``state``/``from_state``; the same path trains and saves it). Every
other place reads the registry: ``opticsfree reconstruct train --method``, the study config's
``[reconstruct] methods`` and its option checks, training (which trainer: :attr:`MethodSpec.kind`;
whether ``--set``, ``--camera`` and a physics front end apply), ``reconstruct apply`` (which
class loads a ``model.pt``) and ``reconstruct ensemble`` (which models have a network to
average). Code that adds a method at run time calls :func:`register_method` before importing the
modules that build their choices from it (the study config and the command line).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from opticsfree.utils.registry import Registry

#: What ``--camera`` means to a method: its operator (``"operator"``), the operator of its
#: physics front end (``"front_end"``: with ``--set front_end=true``), or nothing (None).
CameraUse = Literal["operator", "front_end", None]
#: How a method is trained (:attr:`MethodSpec.kind`): the shared epoch loop (``"network"``) or
#: one fit (``"fit"``).
MethodKind = Literal["network", "fit"]
#: The fitted method that is the physics front end of a method with ``camera="front_end"``
#: (``--set front_end=true``): fitted before the first epoch and applied to every capture before
#: the networks; ``model.pt`` keeps its state under this name. Its class implements
#: :class:`~opticsfree.reconstruction.method.FrontEnd`.
FRONT_END = "tikhonov"


@dataclass(frozen=True)
class MethodSpec:
    """One registered reconstruction method.

    Attributes:
        name: the ``--method`` name.
        title: its name in reports (default: ``name``).
        implementation: ``"module:Class"`` of its class, imported only when the method trains
            or loads: for a network method its training class (a
            :class:`~opticsfree.reconstruction.method.NetworkMethod`), else the fitted model's
            class (a :class:`~opticsfree.reconstruction.method.FittedModel`: ``fit``,
            ``from_state``).
        network: a trained network (epochs, batch size, checkpoints and ``--resume``; members of
            ``reconstruct ensemble``); False: a fit without one (one pass, nothing to average).
        options: it takes ``--set KEY=VALUE`` options (validated by its class's ``config_cls``,
            a :class:`~opticsfree.reconstruction.base.MethodOptions`).
        camera: what ``--camera`` is to it (:data:`CameraUse`).
        no_ensemble: why an ensemble of it makes no sense (the message of ``reconstruct
            ensemble``; methods with a network only have ``""``).
    """

    name: str
    implementation: str
    title: str = ""
    network: bool = True
    options: bool = True
    camera: CameraUse = None
    no_ensemble: str = ""

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.name)
        if not self.name or ":" not in self.implementation:
            raise ValueError(f"method {self.name!r}: a name and an implementation 'module:Class'")
        if self.camera not in ("operator", "front_end", None):
            raise ValueError(f"method {self.name!r}: camera must be 'operator', 'front_end' or None")
        if self.network == bool(self.no_ensemble):
            raise ValueError(f"method {self.name!r}: no_ensemble says why a method without a "
                             "network is not averaged (and only then)")

    @property
    def kind(self) -> MethodKind:
        """How it is trained and saved: ``"network"`` (the epoch loop) or ``"fit"`` (one fit)."""
        return "network" if self.network else "fit"

    @property
    def front_end(self) -> bool:
        """Whether ``--set front_end=true`` puts the physics front end (:data:`FRONT_END`, fitted
        to the camera) before its networks."""
        return self.camera == "front_end"

    def load_class(self) -> Any:
        """The implementing class (imported now)."""
        module, _, cls = self.implementation.partition(":")
        return getattr(importlib.import_module(module), cls)


_R = "opticsfree.reconstruction"

#: The bundled methods, in ``--method`` order: one line per method.
_BUILTIN: tuple[MethodSpec, ...] = (
    MethodSpec("cyclegan", f"{_R}.cyclegan:CycleGANMethod", "CycleGAN", camera="front_end"),
    MethodSpec("unet", f"{_R}.unet:UNetMethod", "U-Net"),
    MethodSpec("bijective", f"{_R}.bijective:BijectiveMethod", "bijective"),
    MethodSpec("tikhonov", f"{_R}.tikhonov:TikhonovModel", "Tikhonov", network=False, options=False,
               camera="operator", no_ensemble="it is linear and deterministic: an ensemble of it "
                                              "is itself"),
)

#: The methods, by name (:class:`~opticsfree.utils.registry.Registry`): ``register_method`` adds
#: one after the registered ones, ``method_names`` lists them in order, ``method_spec`` gives an
#: entry (ConfigError naming the registered ones for an unknown name), ``method_literal`` the
#: ``Literal`` annotation of a method field.
REGISTRY: Registry[MethodSpec] = Registry("reconstruction method")
register_method, method_names, method_spec, method_literal = (REGISTRY.register, REGISTRY.names, REGISTRY.get,
                                                              REGISTRY.literal)

for _spec in _BUILTIN:
    register_method(_spec)


def method_class(name: str) -> Any:
    """The class implementing method ``name`` (ConfigError for an unknown name)."""
    return method_spec(name).load_class()


def __getattr__(name: str) -> Any:
    # METHODS is read from the registry on every access (PEP 562), so that an import after
    # register_method() sees the new method.
    if name == "METHODS":
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
