"""The stage registry: one entry per kind of study stage, with its version, its function and
what the executors ask about it (no torch, and no stage function imported: the plan reads the
versions without loading the library).

Adding a kind of stage is its function (``(stage, directory, ctx) -> outputs`` in
:mod:`opticsfree.study.stages`) and one :class:`StageSpec` line in :data:`_BUILTIN` below, plus
the lines of :func:`opticsfree.study.plan.plan_study` that say when it runs (docs/architecture.md,
"Adding a study stage"). Every other place reads the registry: the stage keys
(:func:`stage_versions`, :func:`opticsfree.study.engine.assign_keys`), the functions both
executors call (:func:`stage_functions`) and the Ray resources of a stage's task
(:func:`opticsfree.study.executors.stage_resources`). Code that adds a kind at run time calls
:func:`register_stage` before planning.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from opticsfree.study.engine import StageFunction
from opticsfree.utils.registry import Registry


@dataclass(frozen=True)
class StageSpec:
    """One registered kind of stage.

    Attributes:
        name: the kind (``Stage.kind``).
        version: part of every key of its stages: bump it when the kind's outputs change
            meaning, and its stages (and everything downstream) run again.
        function: its stage function, as ``"module:function"`` (imported when the study runs,
            so that the plan does not load the library) or the function itself.
        heavy: it uses every core it gets, or a GPU (simulation, training, reconstruction): a Ray
            task of it asks for :data:`~opticsfree.study.executors.HEAVY_CPUS` CPUs or one GPU,
            any other for one CPU.
    """

    name: str
    version: int
    function: str | StageFunction
    heavy: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.version, int) or isinstance(self.version, bool) \
                or self.version < 1:
            raise ValueError(f"stage kind {self.name!r}: a name and a version >= 1")
        if isinstance(self.function, str) and ":" not in self.function:
            raise ValueError(f"stage kind {self.name!r}: function must be 'module:function' or a "
                             f"callable, got {self.function!r}")
        if not isinstance(self.function, str) and not callable(self.function):
            raise ValueError(f"stage kind {self.name!r}: function must be 'module:function' or a callable")

    def load(self) -> StageFunction:
        """The stage function (imported now when given as ``"module:function"``)."""
        if not isinstance(self.function, str):
            return self.function
        module, _, name = self.function.partition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return fn


_S = "opticsfree.study.stages"

#: The bundled kinds, in plan order: one line per kind. The versions are part of the stage keys
#: of every study directory: change one only to re-run that kind.
_BUILTIN: tuple[StageSpec, ...] = (
    StageSpec("data", 1, f"{_S}:run_data"),
    StageSpec("simulate", 1, f"{_S}:run_simulate", heavy=True),
    StageSpec("external", 1, f"{_S}:run_external"),
    StageSpec("tuples", 1, f"{_S}:run_tuples"),
    StageSpec("recon-train", 1, f"{_S}:run_recon_train", heavy=True),
    StageSpec("recon-apply", 1, f"{_S}:run_recon_apply", heavy=True),
    StageSpec("train", 1, f"{_S}:run_train", heavy=True),
    StageSpec("evaluate", 1, f"{_S}:run_evaluate"),
    StageSpec("bayes", 1, f"{_S}:run_bayes"),
    StageSpec("report", 2, f"{_S}:run_report"),
)

#: The kinds of stage, by name (:class:`~opticsfree.utils.registry.Registry`): ``register_stage``
#: adds one after the registered ones, ``stage_names`` lists them in order, ``stage_spec`` gives
#: an entry (ConfigError naming the registered ones for an unknown kind).
REGISTRY: Registry[StageSpec] = Registry("stage kind")
register_stage, stage_names, stage_spec = REGISTRY.register, REGISTRY.names, REGISTRY.get

for _spec in _BUILTIN:
    register_stage(_spec)


def stage_versions() -> dict[str, int]:
    """kind -> version of every registered kind (the ``versions`` of
    :func:`~opticsfree.study.engine.assign_keys`)."""
    return {name: spec.version for name, spec in REGISTRY.items()}


def stage_functions() -> dict[str, StageFunction]:
    """kind -> stage function of every registered kind (imported now: what the executors run)."""
    return {name: spec.load() for name, spec in REGISTRY.items()}
