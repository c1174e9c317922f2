"""The one registry mechanism: the entries of a concept (losses, backbones), by name, in
registration order. Each concept keeps its own entry type (a frozen dataclass with a ``name``
and its metadata); CLI choices, config validation and docs read the names from here."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from opticsfree.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one concept by name.

    Args:
        concept: the concept's name in messages (``"loss"``, ``"backbone"``).
    """

    def __init__(self, concept: str):
        self.concept = concept
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        """Add an entry (after the registered ones; a name may be registered once).

        Raises:
            ValueError: the name is already registered.
        """
        name = getattr(entry, "name")
        if name in self._entries:
            raise ValueError(f"{self.concept} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, in registration order."""
        return list(self._entries.items())

    def find(self, name: Any) -> T | None:
        """The entry of ``name``, or None (an unknown or missing name)."""
        return self._entries.get(name) if isinstance(name, str) else None

    def get(self, name: str) -> T:
        """The entry of ``name``.

        Raises:
            ConfigError: an unknown name (one line listing the registered ones).
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"{self.concept} {name!r}: unknown (expected one of "
                              f"{', '.join(self._entries)})") from None

    def literal(self) -> Any:
        """``Literal[<every registered name>]``: the annotation of a field that takes one
        (pydantic and typer then list the allowed names in their errors)."""
        return Literal[self.names()]  # type: ignore[valid-type]
