"""Checkpoints of a training run and the trained model they hold.

RUN layout::

    RUN/config.json               the training config ("resolved": values derived at start)
    RUN/metrics.jsonl             one JSON object per epoch
    RUN/checkpoints/epoch_NNN.pt  the listed epochs and the last one
    RUN/resume.pt                 the state after the last finished epoch (for --resume)

The files are kept by the run layer (:mod:`opticsfree.runs`, kind :data:`TRAINING_RUN`). A
checkpoint is a dict of tensors and plain containers (loadable with
``torch.load(weights_only=True)``): ``model`` (state dict), ``config`` (the config.json
dict), ``epoch``, ``step``, ``optimizer`` (state dict), ``scheduler`` (``{"name", "step",
"total_steps", "warmup_steps", "state"}``, ``state`` being the torch scheduler's state dict),
``rng`` (``{"torch": ByteTensor}``, and ``"cuda"`` on a GPU: :func:`opticsfree.runs.capture_rng`)
and ``metrics`` (the epoch's metrics line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from opticsfree.captures.loader import CaptureSplit, load_captures
from opticsfree.errors import ConfigError, DataError
from opticsfree.models.embedding import DOMAINS, EmbeddingModel
from opticsfree.runs import Nested, ResumeCheck, RunDir, RunKind
from opticsfree.runs import load_state as _load_state
from opticsfree.training.config import RUNTIME_FIELDS, TrainConfig

CHECKPOINT_KEYS = ("model", "config", "epoch", "optimizer", "rng")

#: A training run's names (RUN, ``resume.pt``) in the run layer.
TRAINING_RUN = RunKind(noun="training run", placeholder="RUN", command="opticsfree train",
                       resume_file="resume.pt")

#: What must agree to resume a run or load its checkpoint: every field but the runtime-only ones
#: (device, workers, threads), and of the derived values those that shape the model and the data.
#: A field missing from an older run's config counts as its default (which keeps the behaviour
#: from before the field existed).
SAME_RUN = ResumeCheck(ignore=RUNTIME_FIELDS, nested={"resolved": Nested("resolved.", (
    "size", "classes", "lensless_channels", "original_channels", "val_ids_sha256", "has_head"))},
    defaults={k: f.get_default(call_default_factory=True) for k, f in TrainConfig.model_fields.items()
              if not f.is_required()},
    notes={"epochs": "the learning-rate schedule is laid out over the recorded epochs, so a run cannot be "
                     "extended: train a new one with --epochs N and another --out",
           "backbone": "a run started from other settings resumes with the same recipe and options "
                       "(runs made before recipes: add --recipe seed)"})


def training_run(run: str | Path) -> RunDir:
    """The run directory ``run`` of a training run."""
    return RunDir(run, TRAINING_RUN)


def list_checkpoints(run: str | Path) -> list[int]:
    """Epochs that have a checkpoint in ``RUN/checkpoints``, ascending.

    Raises:
        DataError: ``run`` is not a training run directory.
    """
    return training_run(run).list_checkpoints()


def load_state(path: str | Path) -> dict[str, Any]:
    """Safely load a training checkpoint (weights_only) and check that it has the expected keys.

    Raises:
        DataError: not a training checkpoint (names the file and the keys).
    """
    return _load_state(path, CHECKPOINT_KEYS, "opticsfree training checkpoint")


def build_model(config: dict[str, Any]) -> EmbeddingModel:
    """The (untrained) model described by a run config."""
    r = config["resolved"]
    return EmbeddingModel(config["backbone"], r["lensless_channels"], r["original_channels"],
                          r["size"], config["embedding_dim"], config["shared"],
                          len(r["classes"]) if r["has_head"] else None, config["width"], config["pool"],
                          config.get("global_features", 0), config.get("lensless_contrast", False),
                          config.get("front_end", False))


class TrainedModel:
    """A trained embedding model at one checkpoint, ready for inference.

    Attributes:
        config: the run's config.json dict.
        epoch: the checkpoint's epoch.
        classes: class names in label order.
        captures: the capture set the run was trained on.
        size: input side in pixels.
        model: the :class:`EmbeddingModel` (eval mode).
        device: where inference runs.
    """

    def __init__(self, model: EmbeddingModel, config: dict[str, Any], epoch: int,
                 run: Path | None = None, device: str = "cpu", mirror: bool = False):
        self.model = model.to(device).eval()
        self.mirror = bool(mirror)
        self.config = config
        self.epoch = int(epoch)
        self.run = run
        self.device = device
        r = config["resolved"]
        self.classes: list[str] = list(r["classes"])
        self.captures = Path(config["captures"])
        self.size = int(r["size"])

    @property
    def has_head(self) -> bool:
        """True when the model has a classifier head (``ce``, ``ce+triplet``)."""
        return self.model.has_head

    @property
    def loss(self) -> str:
        """The training loss (``config["loss"]``; part of the evaluation contract,
        :class:`opticsfree.evaluation.contract.TrainedEmbedder`)."""
        return str(self.config["loss"])

    def _check(self, x: Tensor, domain: str) -> None:
        c = self.model.norms[domain].channels
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != c or tuple(x.shape[2:]) != (self.size, self.size):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected {domain} images (N, {c}, {self.size}, {self.size}), got {shape}")

    @torch.no_grad()
    def embed(self, x: Tensor, domain: str, batch_size: int = 512) -> Tensor:
        """L2-normalised embeddings of images from one domain.

        Args:
            x: uint8 images (N, C, H, W) at the run's size.
            domain: ``"lensless"`` or ``"original"``.
            batch_size: images per forward pass.

        Returns:
            float32 (N, D) CPU tensor with unit-norm rows.
        """
        if domain not in DOMAINS:
            raise ValueError(f"domain must be 'lensless' or 'original', got {domain!r}")
        self._check(x, domain)
        mirror = self.mirror and domain == "lensless"
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(self.device)
            e = self.model.encode(xb, domain)
            if mirror:  # test-time mirroring: the mean of y's and F y's embeddings, renormalised
                e = torch.nn.functional.normalize(e + self.model.encode(xb.flip(-1), domain), dim=1)
            out.append(e.cpu())
        return torch.cat(out) if out else torch.empty(0, self.model.embedding_dim)

    @torch.no_grad()
    def logits(self, x: Tensor, batch_size: int = 512) -> Tensor | None:
        """Class logits (N, n_classes) of lensless images, or None without a classifier head."""
        if not self.has_head:
            return None
        self._check(x, "lensless")
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(self.device)
            z = self.model.logits(xb)
            if self.mirror:  # test-time mirroring: the mean of y's and F y's logits
                z = 0.5 * (z + self.model.logits(xb.flip(-1)))
            out.append(z.cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.classes))

    def load_split(self, split: str) -> CaptureSplit:
        """A split of the run's capture set at the run's size.

        ``"train"`` is the training part of the train split (after ``--limit`` and without the
        validation hold-out), ``"val"`` the held-out part; any other name is loaded as stored.

        Raises:
            DataError: the capture set changed since training (the held-out ids differ).
        """
        if split not in ("train", "val"):
            return load_captures(self.captures, split, self.size)
        from opticsfree.training.data import train_val

        c, r = self.config, self.config["resolved"]
        tv = train_val(str(self.captures), r["size"], c["val_fraction"], c["seed"], c["limit"])
        if tv.val_ids_sha256 != r["val_ids_sha256"]:
            raise DataError(f"{self.captures}: the train split changed since the run was trained "
                            f"(validation scenes differ); retrain or restore the capture set")
        return tv.train if split == "train" else tv.val


def load_trained(run: str | Path, epoch: int | None = None, device: str = "cpu",
                 mirror: bool = False) -> TrainedModel:
    """Load the model of a training run at a checkpoint.

    Args:
        run: the run directory.
        epoch: a checkpointed epoch (None: the last one).
        device: ``"cpu"`` or ``"cuda"``.
        mirror: test-time mirroring: every lensless capture :math:`y` is also classified as
            :math:`F y` (left-right flipped) and the two are averaged (embeddings, renormalised;
            logits). Valid only for a left-right symmetric camera: check it with
            :func:`check_mirror` (``evaluate --mirror`` and ``predict --mirror`` do).

    Raises:
        DataError: not a run, no checkpoint, an unknown epoch, an unreadable file or a checkpoint
            written by a different config.
    """
    rd = training_run(run)
    p = rd.path
    config = rd.read_config()
    epochs = rd.list_checkpoints()
    if not epochs:
        raise DataError(f"{p}: no checkpoint yet (RUN/checkpoints/epoch_NNN.pt)")
    if epoch is None:
        epoch = epochs[-1]
    if epoch not in epochs:
        raise DataError(f"{p}: no checkpoint for epoch {epoch} (have {', '.join(map(str, epochs))})")
    path = rd.checkpoint_path(epoch)
    state = load_state(path)
    diff = SAME_RUN.differences(config, state["config"])
    if diff:
        raise DataError(f"{path}: written by a different training config than {rd.config_path} "
                        f"(differs in {SAME_RUN.names(diff)})")
    model = build_model(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise DataError(f"{path}: weights do not fit the model of config.json "
                        f"({str(e).splitlines()[0]})") from None
    return TrainedModel(model, config, int(state["epoch"]), p, device, mirror=mirror)


def check_mirror(captures: str | Path, size: int, channels: int = 3) -> str:
    """Whether test-time mirroring is valid for the captures of a capture set.

    The set's camera (its manifest's; for a reconstructed set, its source's) is rebuilt at the
    image size and measured with :func:`opticsfree.optics.symmetry.mirror_symmetry`.

    Args:
        captures: the capture set.
        size: the image side the run works at.
        channels: image channels.

    Returns:
        One line for the user: the camera's asymmetries, or that a set of real captures has no
        camera model to check (mirroring then rests on the user's knowledge of the rig).

    Raises:
        ConfigError: the camera is not left-right symmetric (names the asymmetry).
    """
    from opticsfree.captures.format import read_manifest
    from opticsfree.optics import Camera, camera_from_dict
    from opticsfree.optics.symmetry import mirror_symmetry

    m = read_manifest(captures)
    cam = m.get("camera") or {}
    if cam.get("type") == "reconstruction":
        cam = (m.get("derived_from") or {}).get("camera") or {}
    if "geometry" not in cam:
        return (f"{captures}: real captures (no camera model): mirroring assumes the rig is "
                "left-right symmetric (sensor centred under the display, no coded mask)")
    sym = mirror_symmetry(Camera(camera_from_dict(cam), (size, size), channels))
    if not sym.symmetric:
        raise ConfigError(f"--mirror: the camera of {captures} is not left-right symmetric "
                          f"({sym.describe()}); a mirrored capture is not what it records of the "
                          "mirrored scene")
    return f"mirroring valid: {sym.describe()}"
