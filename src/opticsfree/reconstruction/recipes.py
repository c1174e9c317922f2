"""Named settings of ``reconstruct train`` (``--recipe``): per method, the options to start from.

A recipe is a TOML file (``name``, ``description``, and a ``[method.<name>]`` table per method it
sets, with a ``measured`` line saying what those settings reached); the bundled ones are in
``reconstruction/recipes/``: ``best`` (the default: the U-Net's best measured settings) and
``plain`` (every method's own defaults). A user may pass a recipe file. The options a recipe
gives are validated by the method's option model like ``--set``; ``--set`` and ``--epochs`` win.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from opticsfree.errors import ConfigError
from opticsfree.utils.io import bundled_or_file, read_toml, validate_file

#: Where the bundled recipes live.
RECIPE_DIR = Path(__file__).parent / "recipes"
#: The recipe of ``reconstruct train`` without ``--recipe``.
DEFAULT_RECIPE = "best"
#: Options that re-capture scenes through a simulated camera (left out on real captures).
SIMULATED_ONLY = ("scene_augment", "scene_copies", "scene_refresh")


class _RecipeFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    method: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class ReconstructionRecipe:
    """A loaded recipe: ``options`` per method (without ``measured``), ``measured`` per method."""

    name: str
    description: str
    options: dict[str, dict[str, Any]]
    measured: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def for_method(self, method: str, simulated: bool = True) -> tuple[dict[str, Any], list[str]]:
        """``(options, left out)`` for ``method``: its table (empty without one), without the
        :data:`SIMULATED_ONLY` options when the captures are real."""
        values = dict(self.options.get(method, {}))
        dropped = [k for k in SIMULATED_ONLY if not simulated and k in values and values.pop(k) not in ("none", 1, False)]
        return values, dropped


def list_recipes() -> list[str]:
    """Names of the bundled recipes."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def load_recipe(name_or_path: str | Path) -> ReconstructionRecipe:
    """A bundled recipe by name, or a recipe file.

    Raises:
        ConfigError: an unknown name, an unreadable file, or a bad field (one line naming the
            file and the field); the options themselves are checked when training starts.
    """
    from opticsfree.reconstruction.names import method_names

    path = bundled_or_file(name_or_path, list_recipes(), RECIPE_DIR, "reconstruction recipe")
    raw = validate_file(_RecipeFile, read_toml(path, "recipe file"), path)
    unknown = sorted(set(raw.method) - set(method_names()))
    if unknown:
        raise ConfigError(f"{path}: [method.{unknown[0]}]: unknown method (expected one of "
                          f"{', '.join(method_names())})")
    options = {m: {k: v for k, v in t.items() if k != "measured"} for m, t in raw.method.items()}
    measured = {m: str(t["measured"]) for m, t in raw.method.items() if "measured" in t}
    return ReconstructionRecipe(raw.name, raw.description, options, measured, str(path))


def recipes_help() -> str:
    """``--recipe`` help: each bundled recipe and what it sets."""
    parts = []
    for name in list_recipes():
        r = load_recipe(name)
        sets = "; ".join(f"{m}: {', '.join(f'{k}={v}' for k, v in o.items())}" for m, o in r.options.items())
        parts.append(f"{name} ({r.description}{': ' + sets if sets else ''})")
    return "the options to start from: " + "; ".join(parts) + "; or a recipe file"
