"""The training configuration: every field validated, with one-line errors naming the field."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from opticsfree.errors import ConfigError
from opticsfree.losses.names import loss_literal, loss_spec
from opticsfree.models.names import backbone_names, backbone_spec
from opticsfree.utils.runtime import resolve_amp, resolve_channels_last

#: The seed study's checkpoint epochs.
SEED_EPOCHS: tuple[int, ...] = (15, 30, 50)

#: Fields that do not change the numbers a run produces (may differ on --resume).
RUNTIME_FIELDS: frozenset[str] = frozenset({"device", "workers", "threads"})

#: ``Literal`` of the losses registered when this module is imported (opticsfree.losses.names).
LossName = loss_literal()


class TrainConfig(BaseModel):
    """Everything that defines a training run (written to ``RUN/config.json``).

    Defaults are chosen for the CIFAR-10 capture sets (45,000 train scenes, 32 x 32): see
    docs/metric-learning.md for the reasoning. ``None`` means "derived" (see the ``resolved_*``
    methods), so a default can depend on other fields.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # data
    captures: str = Field(description="capture-set directory")
    size: int | None = Field(None, gt=0, description="resize images to size x size (None: as stored)")
    limit: int | None = Field(None, gt=0, description="use at most this many training scenes (class-stratified)")
    val_fraction: float = Field(0.1, ge=0.0, le=0.9, description="fraction of train scenes held out for validation")
    val_prototypes: int = Field(5000, gt=0, description="max train originals for the per-epoch val prototypes")
    # model
    backbone: str = Field("cnn4", description="backbone name")
    width: int | None = Field(None, gt=0, description="backbone width (None: backbone default)")
    embedding_dim: int = Field(128, gt=0, description="embedding dimension")
    shared: bool = Field(False, description="one encoder for both domains")
    pool: Literal["avg", "max", "flatten"] = Field("avg", description="feature pooling before the projection")
    front_end: bool = Field(False, description="lensless tower starts with a learned affine inverse to the display grid, initialised from the camera's regularised inverse (ridge from train captures to originals)")
    front_end_lr_scale: float = Field(0.0, ge=0, description="peak learning rate of the front end, relative to lr (0: frozen at the regularised inverse)")
    lensless_contrast: bool = Field(False, description="the lensless tower also sees each capture standardised by its own mean and std (auto-contrast)")
    global_features: int = Field(0, ge=0, description="maps of a learned global (non-local) linear layer in front of the lensless tower (0: none)")
    # objective
    loss: LossName = Field(description="training loss")
    sampling: Literal["online", "tuples"] = Field("online", description="online batches or the seed's fixed tuples")
    mining: str | None = Field(None, description="in-batch mining (None: the loss's default)")
    margin: float = Field(0.2, gt=0, description="triplet margin m")
    quad_margins: tuple[float, float] = Field((0.05, 0.2), description="quadruplet margins (m1, m2)")
    chen_margins: tuple[float, float] = Field((0.4, 0.2), description="Chen quadruplet margins (a1, a2)")
    ce_weight: float = Field(1.0, ge=0, description="weight of the triplet term in ce+triplet")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    # optimisation
    epochs: int = Field(50, ge=1, le=100000, description="training epochs")
    checkpoints: list[int] | None = Field(None, description="epochs to checkpoint (None: 15,30,50 up to epochs)")
    batch_size: int = Field(256, ge=2, description="global batch size (online: rounded down to classes x m)")
    m_per_class: int | None = Field(None, ge=2, description="online: images per class in a batch (None: auto)")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="optimizer")
    lr: float | None = Field(None, gt=0, description="peak learning rate (None: 2e-3 adamw, 0.1 sgd)")
    weight_decay: float | None = Field(None, ge=0, description="weight decay (None: 0.05 adamw, 5e-4 sgd)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (Nesterov)")
    schedule: Literal["cosine", "onecycle", "constant"] = Field("cosine", description="learning-rate schedule")
    warmup_epochs: float = Field(1.0, ge=0, description="linear warm-up (cosine and constant schedules)")
    weight_averaging: float = Field(0.0, ge=0, lt=1, description="decay of an exponential moving average of the weights (and batch-norm statistics), updated after every step; validation, checkpoints and evaluation use the average (0: off)")
    whiten_bias_epochs: int | None = Field(None, ge=0, description="train the whitening bias of a wvgg backbone for the first N epochs only, then freeze it (about 14% less time per CPU step after it; None: every epoch)")
    augment: Literal["none", "flip", "crop-flip"] = Field("none", description="augment the originals only")
    scene_augment: Literal["none", "flip", "crop-flip"] = Field("none", description="add augmented training scenes re-captured by the set's camera (simulated sets)")
    scene_copies: int = Field(1, ge=1, le=16, description="augmented copies of each training scene (scene_augment)")
    scene_refresh: bool = Field(False, description="draw new augmented copies (and their sensor noise) before every epoch (scene_augment)")
    seed: int = Field(0, ge=0, description="random seed")
    # teacher-student
    teacher: str | None = Field(None, description="a finished training run whose model sees each training scene (the original) and guides the student (None: no teacher)")
    teacher_kd_weight: float = Field(3.0, ge=0, description="weight of the soft-target term T^2 KL(teacher || student) at teacher_temperature (teacher: both with a classifier head; 3 chosen on validation over 1)")
    teacher_temperature: float = Field(4.0, gt=0, description="temperature T of the soft targets")
    teacher_feature_weight: float = Field(0.0, ge=0, description="weight of the feature-alignment term 1 - cos(student embedding, teacher embedding) (equal embedding sizes)")
    # execution
    device: Literal["cpu", "cuda"] = Field("cpu", description="device")
    amp: bool | None = Field(None, description="bf16 autocast (None: on where the hardware has bf16)")
    channels_last: bool | None = Field(None, description="channels_last memory format (None: on for CUDA or with bf16 autocast)")
    sync_bn: bool = Field(True, description="synchronise batch-norm statistics across processes")
    workers: int = Field(0, ge=0, description="processes that decode the tuples (tuples sampling; 0 or 1: this process)")
    threads: int | None = Field(None, gt=0, description="torch CPU threads (None: torch default)")

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: str) -> str:
        if v not in backbone_names():
            raise ValueError(f"unknown backbone {v!r} (expected one of {', '.join(backbone_names())})")
        return v

    @field_validator("captures")
    @classmethod
    def _captures(cls, v: str) -> str:
        if not v:
            raise ValueError("must be a capture-set directory")
        return str(v)

    @field_validator("checkpoints", mode="before")
    @classmethod
    def _parse_checkpoints(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return [int(x) for x in v.replace(" ", "").split(",") if x]
            except ValueError:
                raise ValueError(f"expected comma-separated epochs such as 15,30,50, got {v!r}") from None
        return v

    @field_validator("quad_margins", "chen_margins")
    @classmethod
    def _margins(cls, v: tuple[float, float]) -> tuple[float, float]:
        if any(not math.isfinite(x) or x < 0 for x in v):
            raise ValueError(f"margins must be finite and >= 0, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.checkpoints is not None:
            bad = [e for e in self.checkpoints if not 1 <= e <= self.epochs]
            if bad or not self.checkpoints:
                raise ValueError(f"checkpoints: epochs must be between 1 and epochs={self.epochs}, "
                                 f"got {self.checkpoints}")
        spec = loss_spec(self.loss)
        if self.mining is not None and self.mining not in spec.mining:
            raise ValueError(f"mining: {self.mining!r} is not available for loss {self.loss!r} "
                             f"(expected one of {', '.join(spec.mining)})")
        if spec.online_only and self.sampling == "tuples":
            raise ValueError(f"loss {self.loss} needs sampling 'online' ({spec.online_only})")
        if self.whiten_bias_epochs is not None and not backbone_spec(self.backbone).whitening:
            having = [n for n in backbone_names() if backbone_spec(n).whitening]
            raise ValueError(f"whiten_bias_epochs: only backbone {', '.join(map(repr, having))} has a "
                             f"whitening layer, got backbone {self.backbone!r}")
        if self.scene_refresh and self.scene_augment == "none":
            raise ValueError("scene_refresh: needs scene_augment flip or crop-flip")
        if self.scene_refresh and self.sampling == "tuples":
            raise ValueError("scene_refresh: needs sampling 'online' (tuples sampling reads its fixed rows)")
        if self.teacher is not None and self.sampling == "tuples":
            raise ValueError("teacher: needs sampling 'online' (the teacher scores each batch's scenes)")
        if self.teacher is not None and self.teacher_kd_weight == 0 and self.teacher_feature_weight == 0:
            raise ValueError("teacher: teacher_kd_weight and teacher_feature_weight are both 0, so the "
                             "teacher would do nothing")
        if self.sampling == "tuples" and self.mining not in (None, spec.default_mining):
            raise ValueError("mining: tuples sampling uses each fixed row as its tuple; leave mining unset")
        return self

    # ----- derived values -------------------------------------------------------------------
    def resolved_checkpoints(self) -> list[int]:
        """Checkpoint epochs, ascending, always including the last epoch."""
        base = self.checkpoints if self.checkpoints is not None else [e for e in SEED_EPOCHS if e < self.epochs]
        return sorted(set(base) | {self.epochs})

    def resolved_mining(self) -> str:
        """The in-batch mining (``none`` for ce; unused with tuples sampling)."""
        return self.mining or loss_spec(self.loss).default_mining

    def resolved_lr(self) -> float:
        """Peak learning rate."""
        return self.lr if self.lr is not None else (2e-3 if self.optimizer == "adamw" else 0.1)

    def resolved_weight_decay(self) -> float:
        """Weight decay (decoupled for AdamW), applied to conv and linear weights only."""
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.05 if self.optimizer == "adamw" else 5e-4

    def resolved_amp(self) -> bool:
        """bf16 autocast on or off (:func:`opticsfree.utils.runtime.resolve_amp`)."""
        return resolve_amp(self.amp, self.device)

    def resolved_channels_last(self) -> bool:
        """channels_last memory format on or off (:func:`opticsfree.utils.runtime.resolve_channels_last`)."""
        return resolve_channels_last(self.channels_last, self.device, self.resolved_amp())

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Validate ``d`` into a config; ConfigError naming ``source`` and the field on failure."""
        try:
            return cls.model_validate(d)
        except ValidationError as e:
            raise config_error(e, source) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields (tuples as lists)."""
        return self.model_dump(mode="json")


def config_error(e: ValidationError, source: str = "config") -> ConfigError:
    """A one-line ConfigError from the first pydantic error (field name, message, value)."""
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    extra = "" if err.get("type") in ("value_error", "missing", "extra_forbidden") else f" (got {err.get('input')!r})"
    if err.get("type") == "extra_forbidden":
        msg = f"unknown field (valid fields: {', '.join(TrainConfig.model_fields)})"
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    if not err.get("loc"):  # a cross-field check: its message starts with the field name
        return ConfigError(f"{source}: {msg}{more}")
    return ConfigError(f"{source}: field '{loc}': {msg}{extra}{more}")
