"""Package attributes loaded on first use (PEP 562), so that light modules of a package (names,
configs) import without the heavy ones (torch)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence


def lazy_getattr(package: str, names: Sequence[str], modules: Sequence[str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports ``names`` from ``modules``.

    Args:
        package: the package's ``__name__``.
        names: the public names served lazily (the package's ``__all__`` entries not defined
            eagerly).
        modules: submodule names searched in order for each name.

    Returns:
        ``__getattr__(name)``: the attribute, or AttributeError for a name not in ``names``.
    """
    served = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name in served:
            for mod in modules:
                module = importlib.import_module(f"{package}.{mod}")
                if hasattr(module, name):
                    return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
