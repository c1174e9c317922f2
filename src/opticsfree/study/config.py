"""The study configuration (``opticsfree run CONFIG.toml``): a TOML file validated by pydantic.

Every table and key is checked: an unknown key, a wrong type or a value outside the allowed set
raises :class:`~opticsfree.errors.ConfigError` with one line naming the file, the key (as
``[table] key``) and the allowed values. Types are strict: an integer key takes only a TOML
integer (``epochs = 1.0`` and ``epochs = true`` are errors), a boolean key only ``true`` or
``false``, a string key only a string; a float key takes a float or an integer. A local dataset
copy (``[data] data``) and an existing capture set (``[captures] path``) must exist. Relative paths (a camera TOML, a local dataset copy, an
existing capture set) are resolved against the directory of the config file; ``$VARS`` and
``~`` are expanded. See docs/study.md for every key.

Example (``configs/quick.toml`` holds a complete, commented one)::

    [study]
    name = "quick"
    seed = 0

    [data]
    dataset = "cifar10"
    limit = 1000

    [captures]
    camera = "seed"

    [reconstruct]
    methods = ["cyclegan", "unet"]
    epochs = 3

    [train]
    losses = ["triplet", "quadruplet"]
    epochs = 4
    [train.options]
    backbone = "cnn4"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from opticsfree.data.registry import DATASETS
from opticsfree.errors import ConfigError
from opticsfree.evaluation.names import distance_classifier_literal, distance_classifier_names
from opticsfree.losses.names import loss_literal
from opticsfree.reconstruction.names import method_literal, method_names
from opticsfree.optics.config import list_presets
from opticsfree.seed_study import TABLES
from opticsfree.utils.io import read_toml

#: Reconstruction methods: those registered when this module is imported
#: (opticsfree.reconstruction.names).
RECONSTRUCTION_METHODS: tuple[str, ...] = method_names()
#: TrainConfig fields the study sets itself (not allowed under ``[train.options]``).
STUDY_TRAIN_FIELDS: frozenset[str] = frozenset({"captures", "loss", "epochs", "checkpoints",
                                                "device", "seed"})
#: The image kind of raw captures in ``[train] images``.
LENSLESS = "lensless"

_Method = method_literal()
#: the losses registered when this module is imported (opticsfree.losses.names)
_Loss = loss_literal()
#: the distance classifiers registered when this module is imported (opticsfree.evaluation.names;
#: the head is used automatically for runs of a head-only loss)
_Classifier = distance_classifier_literal()
_CLASSIFIERS = distance_classifier_names()


class _Section(BaseModel):
    # strict: no coercion (1.0 or true for an int, 1 for a bool, "1" for a number); a float
    # field still takes an int
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class StudySection(_Section):
    """``[study]``: name, master seed, default device."""

    name: str = Field("study", min_length=1, description="study name (report title)")
    seed: int = Field(0, ge=0, description="master seed: simulation, tuples, training, bootstrap")
    device: Literal["cpu", "cuda"] = Field("cpu", description="default device (--device overrides)")


class DataSection(_Section):
    """``[data]``: the clean dataset shown on the display (``captures.source = "simulate"``)."""

    dataset: str = Field("cifar10", description="dataset name")
    data: str | None = Field(None, description="local copy (file or folder); default: "
                             "$OPTICSFREE_DATA, the user cache, then the official download")
    limit: int | None = Field(None, gt=0, description="images per split, class-stratified "
                              "(omit: all)")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        key = v.strip().lower()
        if key not in DATASETS:
            raise ValueError(f"unknown dataset {v!r} (allowed: {', '.join(DATASETS)})")
        return key


class CapturesSection(_Section):
    """``[captures]``: simulate a capture set, or use an existing (simulated or real) one."""

    source: Literal["simulate", "path"] = Field("simulate", description="simulate, or path "
                                                "(an existing capture set)")
    camera: str = Field("seed", description=f"camera preset ({', '.join(list_presets())}) or TOML file")
    frames: int = Field(1, ge=1, le=1000, description="captures per scene")
    path: str | None = Field(None, description="existing capture set (source = path)")
    quality_size: int = Field(32, gt=0, description="image side for the quality metrics")

    @model_validator(mode="after")
    def _path_given(self) -> "CapturesSection":
        if self.source == "path" and not self.path:
            raise ValueError("path: required when source = 'path' (the capture-set directory)")
        if self.source == "simulate" and self.path:
            raise ValueError("path: only used with source = 'path' (remove it, or set "
                             "source = 'path')")
        return self


class MethodSettings(_Section):
    """``[reconstruct.method.NAME]``: per-method settings (override ``[reconstruct]``)."""

    epochs: int | None = Field(None, ge=1, description="training epochs of this method")
    size: int | None = Field(None, ge=4, description="train and reconstruct at size x size")
    limit: int | None = Field(None, gt=0, description="training scenes (class-stratified)")
    batch_size: int | None = Field(None, ge=1, description="images per step")
    options: dict[str, Any] = Field(default_factory=dict, description="method options "
                                    "(see docs/reconstruction.md)")


class ReconstructSection(_Section):
    """``[reconstruct]``: reconstruction methods to train and apply, and their defaults."""

    methods: list[_Method] = Field(default_factory=list, description="methods to train")
    epochs: int | None = Field(None, ge=1, description="training epochs (omit: each method's default)")
    size: int | None = Field(None, ge=4, description="train and reconstruct at size x size "
                             "(omit: as stored)")
    limit: int | None = Field(None, gt=0, description="training scenes, class-stratified (omit: all)")
    batch_size: int | None = Field(None, ge=1, description="images per step (omit: method default)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="train scenes held out for validation")
    method: dict[_Method, MethodSettings] = Field(default_factory=dict, description="per method")

    @field_validator("methods")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"methods listed twice: {v}")
        return v

    @model_validator(mode="after")
    def _known(self) -> "ReconstructSection":
        extra = sorted(set(self.method) - set(self.methods))
        if extra:
            raise ValueError(f"method: settings for {', '.join(extra)}, which is not in methods "
                             f"{self.methods}")
        return self

    def settings_for(self, method: str) -> dict[str, Any]:
        """``{"epochs", "size", "limit", "batch_size", "val_fraction", "options"}`` of ``method``."""
        s = self.method.get(method)  # type: ignore[call-overload]
        out: dict[str, Any] = {}
        for k in ("epochs", "size", "limit", "batch_size"):
            v = getattr(s, k) if s is not None else None
            out[k] = v if v is not None else getattr(self, k)
        out["val_fraction"] = self.val_fraction
        out["options"] = dict(s.options) if s is not None else {}
        return out


class TrainSection(_Section):
    """``[train]``: losses x images, epochs and checkpoints, and TrainConfig options."""

    losses: list[_Loss] = Field(default_factory=lambda: list(dict.fromkeys(t.loss for t in TABLES)),
                                min_length=1, description="training losses (default: the seed's)")
    images: list[str] | None = Field(None, description="lensless and/or reconstruction methods "
                                     "(default: lensless + every reconstruct method)")
    epochs: int = Field(50, ge=1, description="training epochs")
    checkpoints: list[int] | None = Field(None, description="checkpoint epochs "
                                          "(default: 15, 30, 50 up to epochs, and the last)")
    options: dict[str, Any] = Field(default_factory=dict, description="other TrainConfig fields")

    @field_validator("losses")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"losses listed twice: {v}")
        return v

    @model_validator(mode="after")
    def _checkpoints(self) -> "TrainSection":
        if self.checkpoints is not None:
            bad = [e for e in self.checkpoints if not 1 <= e <= self.epochs]
            if bad or not self.checkpoints:
                raise ValueError(f"checkpoints: epochs must be between 1 and epochs={self.epochs}, "
                                 f"got {self.checkpoints}")
        clash = sorted(set(self.options) & STUDY_TRAIN_FIELDS)
        if clash:
            use = {"loss": "[train] losses", "epochs": "[train] epochs",
                   "checkpoints": "[train] checkpoints", "device": "[study] device or --device",
                   "seed": "[study] seed", "captures": "[captures]"}[clash[0]]
            raise ValueError(f"[train.options] {clash[0]}: set by the study, not allowed here "
                             f"(use {use})")
        return self


class BaselinesSection(_Section):
    """``[baselines]``: cross-entropy and the clean-image upper bound."""

    ce: bool = Field(True, description="cross-entropy on the lensless captures")
    upper_bound: bool = Field(True, description="the same backbone on captures of the "
                              "upper-bound camera (a lens: near-clean images)")
    upper_bound_camera: str = Field("lens", description="camera of the upper bound")
    upper_bound_losses: list[_Loss] | None = Field(None, description="losses of the upper bound "
                                                   "(default: the first of [train] losses)")
    recipe: str | None = Field(None, description="also train this training recipe (best, fast, seed or "
                               "a recipe file) with its default loss on the lensless captures, for the "
                               "same epochs: our recipe beside the seed's protocol")

    @field_validator("recipe")
    @classmethod
    def _recipe(cls, v: str | None) -> str | None:
        if v is not None:
            from opticsfree.training.recipes import load_recipe

            try:
                load_recipe(v)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        return v


class EvaluateSection(_Section):
    """``[evaluate]``: classifiers (the first one fills Tables 1-4) and bootstrap resamples."""

    classifiers: list[_Classifier] = Field(default_factory=lambda: list(_CLASSIFIERS),
                                           min_length=1, description="classifiers")
    split: Literal["test"] = Field("test", description="the evaluated split")
    bootstrap: int = Field(1000, ge=10, description="bootstrap resamples of the accuracy CI")

    @field_validator("classifiers")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"classifiers listed twice: {v}")
        return v


class BayesSection(_Section):
    """``[bayes]``: the Bayesian analysis of every main run."""

    enabled: bool = Field(True, description="run the Bayes stage")
    prior: str = Field("uniform", description="uniform, train or a JSON prior file")
    checkpoint: int | None = Field(None, ge=1, description="epoch (default: the last)")
    frames: int | None = Field(None, ge=1, description="frames per scene (default: all)")


class ReportSection(_Section):
    """``[report]``: title and sample count."""

    title: str | None = Field(None, description="report title (default from [study] name)")
    samples: int = Field(8, ge=1, le=32, description="images in the sample grids")


class StudyConfig(_Section):
    """A whole study: one TOML file, one ``opticsfree run``.

    Attributes:
        source: the config file (set by :func:`load_study_config`; not a TOML key).
    """

    study: StudySection = Field(default_factory=StudySection)
    data: DataSection = Field(default_factory=DataSection)
    captures: CapturesSection = Field(default_factory=CapturesSection)
    reconstruct: ReconstructSection = Field(default_factory=ReconstructSection)
    train: TrainSection = Field(default_factory=TrainSection)
    baselines: BaselinesSection = Field(default_factory=BaselinesSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    bayes: BayesSection = Field(default_factory=BayesSection)
    report: ReportSection = Field(default_factory=ReportSection)
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _images(self) -> "StudyConfig":
        allowed = [LENSLESS] + list(self.reconstruct.methods)
        images = self.train.images if self.train.images is not None else allowed
        bad = [i for i in images if i not in allowed]
        if bad:
            raise ValueError(f"[train] images: {bad[0]!r} is not allowed (allowed: "
                             f"{', '.join(allowed)}; a reconstruction must be listed in "
                             f"[reconstruct] methods)")
        if len(set(images)) != len(images) or not images:
            raise ValueError(f"[train] images: expected distinct names, got {images}")
        return self

    # ----- derived -------------------------------------------------------------------------
    def images(self) -> list[str]:
        """The image kinds trained on: ``lensless`` and/or reconstruction methods."""
        return list(self.train.images) if self.train.images is not None else \
            [LENSLESS] + list(self.reconstruct.methods)

    def checkpoints(self) -> list[int]:
        """Checkpoint epochs, ascending, always with the last epoch."""
        base = self.train.checkpoints
        if base is None:
            base = [e for e in (15, 30, 50) if e < self.train.epochs]
        return sorted(set(base) | {self.train.epochs})

    def upper_bound_losses(self) -> list[str]:
        """Losses of the clean-image upper bound (empty when disabled)."""
        if not self.baselines.upper_bound:
            return []
        return list(self.baselines.upper_bound_losses or self.train.losses[:1])

    def title(self) -> str:
        """The report title."""
        return self.report.title or f"opticsfree study: {self.study.name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every section (resolved paths)."""
        return self.model_dump(mode="json")


# ----- loading ------------------------------------------------------------------------------

_TABLE_KEYS = {"study", "data", "captures", "reconstruct", "train", "baselines", "evaluate",
               "bayes", "report"}


def _section_model(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at ``loc`` (for 'allowed keys' messages)."""
    model: type[BaseModel] = StudyConfig
    parts = [str(p) for p in loc[:-1]]
    i = 0
    while i < len(parts):
        part = parts[i]
        if model is ReconstructSection and part == "method":
            model = MethodSettings
            i += 2  # skip the method name
            continue
        field = model.model_fields.get(part)
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
        i += 1
    return model


def _key_name(loc: tuple[Any, ...]) -> str:
    """``("train", "options", "x")`` -> ``[train.options] x``; top level -> ``[x]``."""
    parts = [str(p) for p in loc]
    if not parts:
        return "(top level)"
    if len(parts) == 1:
        return f"[{parts[0]}]"
    # list indices belong to the key before them: [train] losses[1]
    key_parts: list[str] = []
    for p in parts:
        if p.isdigit() and key_parts:
            key_parts[-1] += f"[{p}]"
        else:
            key_parts.append(p)
    if len(key_parts) == 1:
        return f"[{key_parts[0]}]"
    return f"[{'.'.join(key_parts[:-1])}] {key_parts[-1]}"


def config_error(e: ValidationError, source: str) -> ConfigError:
    """One-line ConfigError from the first pydantic error: file, key, problem, allowed values."""
    err = e.errors()[0]
    loc = tuple(err.get("loc", ()))
    # Literal keys of a dict (reconstruct.method.X) report "[...]-[key]" locations: drop them
    loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("[key]")))
    typ = err.get("type", "")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    if typ == "extra_forbidden":
        model = _section_model(loc)
        allowed = ", ".join(k for k in (model.model_fields if model else ()) if k != "source")
        where = _key_name(loc)
        what = "unknown table" if len(loc) == 1 else "unknown key"
        return ConfigError(f"{source}: {where}: {what} (allowed: {allowed}){more}")
    if typ == "literal_error":
        ctx = err.get("ctx", {}) or {}
        expected = str(ctx.get("expected", "")).replace("'", "")
        return ConfigError(f"{source}: {_key_name(loc)}: {err.get('input')!r} is not allowed "
                           f"(allowed: {expected}){more}")
    if typ == "value_error" and msg.startswith("["):  # the message names its key itself
        return ConfigError(f"{source}: {msg}{more}")
    if typ == "value_error" and msg and ":" in msg.split(" ")[0] and len(loc) <= 1:
        # a cross-field check whose message starts with the key name ("path: ...")
        key, rest = msg.split(":", 1)
        return ConfigError(f"{source}: {_key_name(loc + (key,))}:{rest}{more}")
    got = "" if typ in ("value_error", "missing") else f" (got {err.get('input')!r})"
    return ConfigError(f"{source}: {_key_name(loc)}: {msg}{got}{more}")


def _resolve(path: str, base: Path) -> str:
    p = Path(os.path.expandvars(os.path.expanduser(path)))
    return str(p if p.is_absolute() else (base / p).resolve())


def _is_file_like(camera: str) -> bool:
    return camera.endswith(".toml") or "/" in camera or os.sep in camera


def _check_option_types(options: dict[str, Any], model: type[BaseModel], source: str) -> None:
    """Strict types for the int, float and bool fields of ``[train.options]`` (as for every
    other key: ``width = 4.0`` or ``shared = 1`` is an error; a float field takes an int)."""
    import types
    import typing

    from pydantic import TypeAdapter

    for key, value in options.items():
        field = model.model_fields.get(key)
        if field is None:
            continue  # unknown keys are reported by the full validation
        ann = field.annotation
        if typing.get_origin(ann) not in (None, typing.Union, types.UnionType):
            continue  # Literal, tuple, list, ...: validated as before
        kinds = [a for a in (typing.get_args(ann) or (ann,)) if a is not type(None)]
        if not kinds or not all(k in (int, float, bool) for k in kinds):
            continue
        try:
            TypeAdapter(ann).validate_python(value, strict=True)
        except ValidationError as e:
            msg = str(e.errors()[0].get("msg", "invalid"))
            raise ConfigError(f"{source}: [train.options] {key}: {msg} (got {value!r})") from None


def validate_train_options(cfg: StudyConfig, source: str) -> None:
    """Check ``[train.options]`` (and every loss) against the trainer's TrainConfig."""
    from pydantic import ValidationError as VE

    from opticsfree.training.config import TrainConfig

    _check_option_types(cfg.train.options, TrainConfig, source)

    losses = list(dict.fromkeys(cfg.train.losses + cfg.upper_bound_losses()
                                + (["ce"] if cfg.baselines.ce else [])))
    for loss in losses:
        fields = {**cfg.train.options, "captures": "captures", "loss": loss,
                  "epochs": cfg.train.epochs, "checkpoints": cfg.checkpoints(), "seed": cfg.study.seed}
        try:
            TrainConfig.model_validate(fields)
        except VE as e:
            err = e.errors()[0]
            loc = [str(x) for x in err.get("loc", ())]
            typ = err.get("type", "")
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if typ == "extra_forbidden":
                allowed = ", ".join(k for k in TrainConfig.model_fields if k not in STUDY_TRAIN_FIELDS)
                raise ConfigError(f"{source}: [train.options] {loc[0]}: unknown key "
                                  f"(allowed: {allowed})") from None
            key = loc[0] if loc else None
            got = "" if typ in ("value_error", "missing") else f" (got {err.get('input')!r})"
            where = f"[train.options] {key}" if key in cfg.train.options else \
                (f"[train] {key}" if key else "[train]")
            raise ConfigError(f"{source}: {where}: {msg}{got} (with loss {loss!r})") from None


def study_config_from_dict(d: dict[str, Any], source: str = "config", base: Path | None = None) -> StudyConfig:
    """Validate a study dict (the parsed TOML); ConfigError naming ``source`` and the key.

    Args:
        d: the TOML tables.
        source: file name for messages.
        base: directory relative paths are resolved against (default: the working directory).
    """
    base = base or Path.cwd()
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected TOML tables")
    try:
        cfg = StudyConfig.model_validate(d)
    except ValidationError as e:
        raise config_error(e, source) from None
    # resolve relative paths against the config file's directory
    if cfg.data.data:
        cfg.data.data = _resolve(cfg.data.data, base)
    if cfg.captures.path:
        cfg.captures.path = _resolve(cfg.captures.path, base)
    if _is_file_like(cfg.captures.camera):
        cfg.captures.camera = _resolve(cfg.captures.camera, base)
    if _is_file_like(cfg.baselines.upper_bound_camera):
        cfg.baselines.upper_bound_camera = _resolve(cfg.baselines.upper_bound_camera, base)
    if cfg.bayes.prior not in ("uniform", "train"):
        cfg.bayes.prior = _resolve(cfg.bayes.prior, base)
        if not Path(cfg.bayes.prior).is_file():
            raise ConfigError(f"{source}: [bayes] prior: {cfg.bayes.prior} not found (allowed: "
                              f"uniform, train or a JSON prior file)")
    if cfg.data.dataset == "folder" and cfg.captures.source == "simulate" and not cfg.data.data:
        raise ConfigError(f"{source}: [data] data: required for dataset 'folder' (an ImageFolder tree)")
    if cfg.data.dataset == "digits" and cfg.data.data:
        raise ConfigError(f"{source}: [data] data: dataset 'digits' is bundled; remove data")
    if cfg.captures.source == "simulate" and cfg.data.data and not Path(cfg.data.data).exists():
        raise ConfigError(f"{source}: [data] data: {cfg.data.data} not found (expected a local copy "
                          f"of {cfg.data.dataset}: a file or folder)")
    if cfg.captures.source == "path" and not Path(str(cfg.captures.path)).is_dir():
        raise ConfigError(f"{source}: [captures] path: {cfg.captures.path} is not a directory "
                          "(expected an existing capture set)")
    for key, cam in (("[captures] camera", cfg.captures.camera),
                     ("[baselines] upper_bound_camera", cfg.baselines.upper_bound_camera)):
        if key.startswith("[baselines]") and not cfg.baselines.upper_bound:
            continue
        if key.startswith("[captures]") and cfg.captures.source != "simulate":
            continue
        _check_camera(cam, key, source)
    validate_train_options(cfg, source)
    validate_method_options(cfg, source)
    cfg.source = source
    return cfg


def validate_method_options(cfg: StudyConfig, source: str) -> None:
    """Check each ``[reconstruct.method.NAME] options`` against the method's option model, so
    that a wrong key or value stops the study before it starts, not at its reconstruction stage."""
    from opticsfree.reconstruction.base import parse_options
    from opticsfree.reconstruction.names import method_spec

    for name, settings in cfg.reconstruct.method.items():
        if not settings.options:
            continue
        spec = method_spec(name)
        if not spec.options:
            raise ConfigError(f"{source}: [reconstruct.method.{name}] options: method {name} takes no "
                              f"options (got {', '.join(settings.options)})")
        try:
            parse_options(spec.load_class().config_cls, settings.options, name)
        except ConfigError as e:
            raise ConfigError(f"{source}: [reconstruct.method.{name}] options: {e}") from None


def _check_camera(camera: str, key: str, source: str) -> None:
    from opticsfree.optics import list_presets, load_camera_config

    try:
        load_camera_config(camera)
    except ConfigError as e:
        raise ConfigError(f"{source}: {key}: {e} (allowed: {', '.join(list_presets())} or a "
                          f"camera TOML file)") from None


def load_study_config(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study TOML file.

    Raises:
        ConfigError: missing or unreadable file, invalid TOML, or an invalid key (named, with
            the allowed values).
    """
    p = Path(path)
    d = read_toml(p, "study config")
    return study_config_from_dict(d, str(p), p.resolve().parent)
