"""Named training recipes: the settings ``opticsfree train`` starts from.

A recipe is a TOML file (the bundled ones in ``opticsfree/training/recipes/``: ``best``,
``fast``, ``seed``; or a user's file) with a ``[loss.<name>]`` table per loss, each listing the
:class:`~opticsfree.training.config.TrainConfig` fields it sets and a ``measured`` line (what
the settings reached, for ``train --help`` and docs/metric-learning.md)::

    name = "fast"
    description = "ten epochs of the whitened VGG, width 16"
    default_loss = "ce"            # the loss when --loss is not given

    [loss.ce]
    measured = "63.97% test in 10 epochs (6.9 min on 2 CPU cores)"
    backbone = "wvgg"
    epochs = 10

``opticsfree train SET --out RUN`` uses ``best`` and its default loss; ``--loss L`` takes that
loss's table; any option given on the command line (or with ``--set``) wins over the recipe.
``seed`` is the seed study's setup (the package's own TrainConfig defaults written out). A loss
without a table in a recipe is an error naming the recipe. Scene augmentation needs a simulated
capture set (its camera re-captures the augmented scenes): on a real set the recipe's
``scene_augment``, ``scene_refresh`` and ``scene_copies`` are left out, and the caller is told.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opticsfree.errors import ConfigError
from opticsfree.losses.names import loss_names
from opticsfree.models.names import backbone_names, backbone_spec
from opticsfree.utils.io import bundled_or_file, read_toml, validate_file

#: Where the bundled recipes live.
RECIPE_DIR = Path(__file__).parent / "recipes"
#: The recipe of ``opticsfree train`` without ``--recipe``.
DEFAULT_RECIPE = "best"
#: Fields that need a simulated capture set (left out on real ones).
SIMULATED_ONLY = ("scene_augment", "scene_refresh", "scene_copies")
#: Fields a recipe may not set (the command's own arguments).
NOT_IN_RECIPES = ("captures", "loss")


class _RecipeFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    default_loss: str
    loss: dict[str, dict[str, Any]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A loaded recipe.

    Attributes:
        name: its name.
        description: one line.
        default_loss: the loss when none is given.
        losses: ``{loss: {field: value}}`` (without ``measured``).
        measured: ``{loss: what it reached}``.
        source: the file it came from.
    """

    name: str
    description: str
    default_loss: str
    losses: dict[str, dict[str, Any]]
    measured: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def fields(self, loss: str | None = None, simulated: bool = True) -> tuple[str, dict[str, Any], list[str]]:
        """``(loss, TrainConfig fields, fields left out)`` for ``loss`` (default: the recipe's).

        Args:
            loss: the loss (None: :attr:`default_loss`).
            simulated: the capture set has a simulated camera; False leaves out
                :data:`SIMULATED_ONLY`.

        Raises:
            ConfigError: the recipe has no table for ``loss``.
        """
        loss = loss or self.default_loss
        if loss not in self.losses:
            raise ConfigError(f"recipe {self.name!r} ({self.source}) has no [loss.{loss}] table "
                              f"(it has: {', '.join(self.losses)})")
        values = dict(self.losses[loss])
        dropped = []
        if not simulated:
            off = {"scene_augment": "none", "scene_refresh": False, "scene_copies": 1}
            for k in SIMULATED_ONLY:
                if k in values and values.pop(k) != off[k]:
                    dropped.append(k)  # named only when it would have done something
        return loss, values, dropped


def list_recipes() -> list[str]:
    """Names of the bundled recipes."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A bundled recipe by name, or a recipe file.

    Raises:
        ConfigError: an unknown name, an unreadable file, or a bad field (the file and the field
            named, one line): unknown losses, fields TrainConfig does not have, values it refuses.
    """
    from opticsfree.training.config import TrainConfig, config_error

    path = bundled_or_file(name_or_path, list_recipes(), RECIPE_DIR, "recipe")
    raw = validate_file(_RecipeFile, read_toml(path, "recipe file"), path)
    for loss in [raw.default_loss, *raw.loss]:
        if loss not in loss_names():
            raise ConfigError(f"{path}: unknown loss {loss!r} (expected one of {', '.join(loss_names())})")
    losses: dict[str, dict[str, Any]] = {}
    measured: dict[str, str] = {}
    for loss, values in raw.loss.items():
        values = dict(values)
        measured[loss] = str(values.pop("measured", ""))
        for k in values:
            if k in NOT_IN_RECIPES or k not in TrainConfig.model_fields:
                why = "set by the command, not a recipe" if k in NOT_IN_RECIPES else "not a training option"
                raise ConfigError(f"{path}: field 'loss.{loss}.{k}': {why}")
        try:
            TrainConfig.model_validate({"captures": ".", "loss": loss, **values})
        except ValidationError as e:
            raise ConfigError(str(config_error(e, f"{path} [loss.{loss}]"))) from None
        losses[loss] = values
    if raw.default_loss not in losses:
        raise ConfigError(f"{path}: default_loss {raw.default_loss!r} has no [loss.{raw.default_loss}] table")
    return Recipe(raw.name, raw.description, raw.default_loss, losses, measured, str(path))


def recipes_help() -> str:
    """One line per bundled recipe: its name, description and the default loss's number."""
    out = []
    for name in list_recipes():
        r = load_recipe(name)
        out.append(f"{name} ({r.description}; {r.default_loss}: {r.measured.get(r.default_loss, '')})")
    return "; ".join(out)


def has_simulated_camera(captures: str | Path) -> bool:
    """Whether a capture set's scenes can be re-captured (its manifest's camera, or for a
    derived set its source's, is a simulated one); True when the manifest cannot be read (the
    trainer then names the problem)."""
    from opticsfree.captures.format import read_manifest
    from opticsfree.errors import OpticsfreeError

    try:
        m = read_manifest(captures)
    except OpticsfreeError:
        return True
    cams = [m.get("camera"), (m.get("derived_from") or {}).get("camera") if isinstance(m.get("derived_from"), dict) else None]
    return any(isinstance(c, dict) and "geometry" in c for c in cams)


def merge(recipe_values: dict[str, Any], explicit: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The recipe's fields overridden by the ``explicit`` ones (the command line), without the
    recipe fields the explicit choices make meaningless.

    ``whiten_bias_epochs`` belongs to a backbone with a whitening layer (``wvgg``);
    ``scene_refresh`` needs ``scene_augment`` and online sampling. When an explicit option rules one of them out, the
    recipe's value is dropped (and named in the second return value); an explicit value is
    never dropped (TrainConfig then says what is wrong).

    Returns:
        ``(fields, dropped)``.
    """
    out = {**recipe_values, **explicit}
    dropped = []
    rules = (("whiten_bias_epochs", lambda f: not _whitens(f.get("backbone", "cnn4"))),
             ("scene_refresh", lambda f: f.get("scene_augment", "none") == "none" or f.get("sampling") == "tuples"))
    for key, ruled_out in rules:
        if key in recipe_values and key not in explicit and ruled_out(out):
            out.pop(key)
            dropped.append(key)
    return out, dropped


def _whitens(backbone: str) -> bool:
    """Whether ``backbone`` has a whitening layer (False for an unknown name: TrainConfig names it)."""
    return backbone in backbone_names() and backbone_spec(backbone).whitening
