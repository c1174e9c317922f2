"""Train a reconstruction method on a capture set: ``opticsfree reconstruct train``.

A MODEL directory holds::

    config.json              the full training configuration (captures, method, options, ...)
    metrics.jsonl            one JSON object per epoch: losses, lr, val PSNR/SSIM, seconds, images/s
    checkpoints/last.pt      the full state after the last finished epoch (networks, optimizers,
                             image pools, RNG states): ``--resume`` continues from it
    model.pt                 what ``apply`` needs: the lensless -> original network and its
                             architecture (a fitted method: its model), epoch and image size,
                             after the last finished epoch
    best.pt                  the same after the epoch of highest validation PSNR so far (the
                             earlier one among ties; ``apply --checkpoint best``); not written
                             without a validation hold-out
    <method>.json            a fitted method's report (``tikhonov.json``: how lambda was chosen)
    samples/epoch_NNN.png    validation captures | reconstructions | originals after each epoch

Every method is trained here, through :func:`train_reconstruction`: its registered kind
(:attr:`~opticsfree.reconstruction.names.MethodSpec.kind`) picks the trainer (:data:`TRAINERS`:
the epoch loop of a network method, or one fit of a fitted method) and :func:`_train` writes the
MODEL directory for both (config.json, the metrics rows, the sample grids, model.pt). Every file
is written atomically, so an interrupted run leaves the previous epoch intact;
config.json, metrics.jsonl and the checkpoints are kept by the run layer (:mod:`opticsfree.runs`,
kind :data:`RECONSTRUCTION_MODEL`). The validation hold-out is a class-stratified share of the
train split's scenes (:func:`opticsfree.data.split.split_scenes`, the embedding training's
hold-out: for the same seed, val_fraction and limit both hold out the same scenes; config.json
records it as ``"holdout": 2``, see :data:`HOLDOUT`); the test split is never read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch

from opticsfree import __version__
from opticsfree.captures.augment import augment_scenes, refresh_seed, scene_capture
from opticsfree.captures.format import open_capture_set
from opticsfree.captures.loader import CaptureSplit, load_captures
from opticsfree.data.split import split_scenes
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.reconstruction.base import member_seed, parse_options, save_sample_grid, to_model, to_uint8
from opticsfree.reconstruction.cyclegan import unpaired_batches
from opticsfree.reconstruction.method import FitContext
from opticsfree.reconstruction.names import (FRONT_END, REGISTRY, MethodSpec, method_class, method_names,
                                          method_spec)
from opticsfree.reconstruction.schedules import constant_then_linear_decay, decay_start
from opticsfree.runs import (
    Nested,
    ResumeCheck,
    RunDir,
    RunKind,
    capture_rng,
    load_state,
    restore_rng,
    save_state,
)
from opticsfree.utils.io import write_json
from opticsfree.utils.runtime import Runtime, torch_threads
from opticsfree.utils.seeding import derive_seed, seed_everything

CHECKPOINT_FORMAT = 1
#: The model files of a MODEL directory, by the ``--checkpoint`` of ``reconstruct apply`` that
#: names them: the last epoch's and the best validation epoch's.
MODEL_FILES = {"last": "model.pt", "best": "best.pt"}
#: The validation hold-out a MODEL's config.json records (``"holdout"``): 2 is
#: :func:`opticsfree.data.split.split_scenes`, shared with the embedding training. A config.json
#: without it was written by an older version, which may have used the reconstruction's own
#: hold-out (hold-out 1, other scenes for the same seed): such a run is not resumed (it would go on
#: validating on other scenes); the message says how to resume one known to use hold-out 2.
HOLDOUT = 2
#: A reconstruction model's names (MODEL, ``checkpoints/last.pt``) in the run layer.
RECONSTRUCTION_MODEL = RunKind(noun="reconstruction model", placeholder="MODEL",
                               command="opticsfree reconstruct train", resume_file="checkpoints/last.pt")
#: config.json keys that must agree when resuming (epochs may grow). The method options are
#: compared as validated values (``method_config``), so ``width=4`` given as the string "4" by
#: an older command line and as the number 4 now are the same.
RESUME_KEYS = ("method", "captures", "size", "limit", "seed", "val_fraction", "holdout", "method_config",
               "batch_size", "camera")
SAME_MODEL = ResumeCheck(fields=RESUME_KEYS, nested={"method_config": Nested("option ")}, notes={
    "holdout": f"the validation hold-out is not this version's (hold-out {HOLDOUT}; a config.json without "
               f"'holdout' comes from an older version, whose hold-out may have chosen other scenes), so "
               f"resuming would validate on other scenes; train a new model into another --out, or add "
               f"\"holdout\": {HOLDOUT} to config.json if the model was trained with hold-out {HOLDOUT}"})


def __getattr__(name: str) -> Any:
    # DEEP_METHODS: {name: class} of the registered methods with a network, read on every access
    if name == "DEEP_METHODS":
        return {n: s.load_class() for n, s in REGISTRY.items() if s.network}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _camera_methods() -> str:
    """Which methods ``--camera`` applies to, from the registry (for messages)."""
    parts = [f"--method {n}" for n, s in REGISTRY.items() if s.camera == "operator"]
    parts += [f"{n} with --set front_end=true" for n, s in REGISTRY.items() if s.front_end]
    return " and to ".join(parts)


def reconstruction_run(out: str | Path) -> RunDir:
    """The MODEL directory ``out`` of a reconstruction run."""
    return RunDir(out, RECONSTRUCTION_MODEL)


def _begin(run: RunDir, config: dict[str, Any], resume: bool) -> None:
    """Refuse to start over a trained model, or to resume with other settings (before any work).
    A method option added after the model was trained counts as its default."""
    if run.begin(resume):
        check = SAME_MODEL
        spec = REGISTRY.find(config["method"])
        if spec is not None and spec.options:
            defaults = spec.load_class().config_cls().model_dump()
            check = replace(SAME_MODEL, nested={"method_config": Nested("option ", defaults=defaults)})
        run.check_resume(config, check)


def _load_data(captures: Path, size: int | None, val_fraction: float, seed: int, limit: int | None
               ) -> tuple[CaptureSplit, CaptureSplit]:
    data = load_captures(captures, "train", size=size)
    if data.lensless.shape[-2:] != data.original.shape[-2:]:
        raise DataError(f"{captures}: captures {tuple(data.lensless.shape[-2:])} and originals "
                        f"{tuple(data.original.shape[-2:])} differ in size; pass --size")
    tr, va = split_scenes(data.ids, data.labels, val_fraction, seed, limit)
    if len(tr) == 0:
        raise DataError(f"{captures}: no training scenes left after the validation hold-out")
    return data.subset(tr), data.subset(va)


@torch.no_grad()
def reconstruct_with(net: torch.nn.Module, lensless: torch.Tensor, device: torch.device,
                     batch_size: int = 256, channels_last: bool = False) -> torch.Tensor:
    """Run a lensless -> original network on uint8 images (fp32, eval mode); uint8 on the CPU."""
    was_training = net.training
    net.eval()
    out = []
    for i in range(0, len(lensless), batch_size):
        out.append(to_uint8(net(to_model(lensless[i:i + batch_size], device, channels_last))))
    net.train(was_training)
    if not out:
        return torch.empty(0, dtype=torch.uint8)
    return torch.cat(out)


def _val_quality(rec: torch.Tensor, original: torch.Tensor) -> dict[str, float]:
    from opticsfree.captures.quality import image_quality

    if len(rec) == 0:
        return {}
    q = image_quality(rec, original)
    return {"val_psnr": float(q["psnr"].mean()), "val_ssim": float(q["ssim"].mean()),
            "val_mse": float(q["mse"].mean())}


def train_reconstruction(captures: str | Path, method: str, out: str | Path, epochs: int | None = None,
                         device: str = "cpu", resume: bool = False, seed: int = 0, size: int | None = None,
                         limit: int | None = None, *, val_fraction: float = 0.1,
                         batch_size: int | None = None, amp: bool | None = None,
                         channels_last: bool | None = None, options: dict[str, Any] | None = None,
                         camera: str | Path | None = None, samples: int = 8, max_val: int = 1000,
                         threads: int | None = None, on_epoch: Callable[[dict], None] | None = None) -> Path:
    """Train ``method`` on the train split of ``captures`` and write the MODEL directory ``out``.

    Args:
        captures: capture set (its ``train`` split is used; a hold-out of it is validation).
        method: a registered method (``cyclegan``, ``unet``, ``bijective``, ``tikhonov``, ...;
            :mod:`~opticsfree.reconstruction.names`).
        out: MODEL directory (created; with ``resume`` an earlier run is continued).
        epochs: total epochs (default: the method's; ignored by a fitted method, ``tikhonov``).
        device: ``cpu`` or ``cuda`` (same code).
        resume: continue from ``out/checkpoints/last.pt`` (settings must match, epochs may grow).
        seed: seeds weights, shuffling, image pools and the hold-out.
        size: train at ``size`` x ``size`` (default: the stored capture size).
        limit: at most this many training scenes (class-stratified) before the hold-out.
        val_fraction: share of the train scenes held out for validation.
        batch_size: images per step (default: the method's).
        amp: bf16 autocast on (True), off (False) or auto (None; see :func:`opticsfree.utils.runtime.resolve_amp`).
        channels_last: channels-last memory format (default: on for CUDA, off on CPU).
        options: method options (``--set key=value``), validated by the method's option model
            (:class:`~.cyclegan.CycleGANConfig`, :class:`~.unet.UNetConfig`,
            :class:`~.bijective.BijectiveConfig`; strict types, unknown keys refused).
        camera: a method whose ``camera`` capability is ``"operator"`` (``tikhonov``), or
            ``"front_end"`` with ``--set front_end=true`` (``cyclegan``) only: a ``camera.npz`` from
            ``calibrate`` or a camera preset/TOML (default: the camera in the set's manifest,
            else a calibration fitted here).
        samples: validation images in the sample grids (spread over the hold-out).
        max_val: validation images scored after each epoch of a network method (evenly spread
            over the hold-out; a fit is scored once on the whole hold-out; ``tikhonov`` chooses
            lambda on up to 500).
        threads: CPU threads for torch (None: torch's default, one per core). On a machine
            shared with other jobs, 1 thread can be several times faster than 2 (parallel
            regions wait for descheduled threads; see docs/reconstruction.md).
        on_epoch: called with each epoch's metrics row (after its checkpoint is written).

    Returns:
        ``out``.
    """
    spec = REGISTRY.find(method)
    if spec is None:
        raise ConfigError(f"unknown method {method!r} (methods: {', '.join(method_names())})")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    if size is not None and size < 4:
        raise ConfigError(f"--size must be >= 4, got {size}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    captures = Path(captures).resolve()
    run = reconstruction_run(out)
    run.check_path()
    open_capture_set(captures)  # validates manifest and index (DataError naming the file)
    # channels_last only on CUDA by default: not measured for these networks on a bf16 CPU
    rt = Runtime.resolve(device, amp, channels_last, channels_last_with_cpu_amp=False)
    opts = dict(options or {})

    if opts and not spec.options:
        raise ConfigError(f"method {method} takes no options (--set; got {', '.join(opts)})")
    if camera is not None and not (spec.camera == "operator"
                                   or (spec.front_end and opts.get("front_end") is True)):
        raise ConfigError(f"--camera applies to {_camera_methods()} only")
    with torch_threads(threads):
        trainer = TRAINERS[spec.kind](spec, opts, seed, epochs, batch_size, rt, max_val)
        return _train(trainer, captures, run, resume, seed, size, limit, val_fraction, camera, samples,
                      on_epoch)


@dataclass
class _Epoch:
    """What one epoch of a trainer (a fit: its one pass) hands the shared path.

    Attributes:
        number: the 1-based epoch of the metrics row and the sample grid.
        saved: ``model.pt``'s ``"epoch"`` (None for a fit).
        terms: the metrics row's entries before the validation scores (lr and losses; a fit's
            numbers).
        seconds: training (or fitting) time.
        images: images trained on (``images_per_s``; None: not reported).
        reconstruct: uint8 network inputs -> uint8 reconstructions (after the front end, which
            the shared path applied to the pairs already).
        entries: ``model.pt``'s entries of the model (after ``"epoch"``).
        files: other JSON files of the MODEL directory, by name.
        checkpoint: writes the resume state (before ``model.pt``), or None.
    """

    number: int
    saved: int | None
    terms: dict[str, Any]
    seconds: float
    images: int | None
    reconstruct: Callable[[torch.Tensor], torch.Tensor]
    entries: dict[str, Any]
    files: dict[str, Any] = field(default_factory=dict)
    checkpoint: Callable[[], None] | None = None


class Trainer(Protocol):
    """How a method kind is trained (:data:`TRAINERS`), built as ``Trainer(spec, options, seed,
    epochs, batch_size, runtime, max_val)`` (a bad option or setting: one-line ConfigError).

    Attributes:
        spec: the method's registry entry.
        cfg: its validated options (None: a method without options).
        seed: the seed of weights, batches and copies (seeded before the data are loaded).
        total: epochs in all (a fit: 1).
        max_val: validation images scored per epoch (None: the whole hold-out).
    """

    spec: MethodSpec
    cfg: Any
    seed: int
    total: int
    max_val: int | None

    def config_entries(self, camera: str | Path | None) -> dict[str, Any]:
        """config.json's entries after ``holdout`` (options, batch size, epochs, ...)."""
        ...

    def augment(self, captures: Path, train: CaptureSplit) -> tuple[CaptureSplit, int | None]:
        """The training pairs and the number of augmented copies added (None: not recorded)."""
        ...

    def runtime_entries(self) -> dict[str, Any]:
        """config.json's entries after the data sizes (device, precision)."""
        ...

    def start(self, train: CaptureSplit, val: CaptureSplit, ctx: FitContext, config: dict, run: RunDir,
              resume: bool, side: int, cout: int, front: Any) -> int:
        """Build or fit the model (before config.json is written); the epochs already done."""
        ...

    def epochs(self, train: CaptureSplit, val: CaptureSplit, start: int) -> Iterator[_Epoch]:
        """Train the remaining epochs (a fit: hand over the fitted model), one :class:`_Epoch` each."""
        ...


def _train(t: Trainer, captures: Path, run: RunDir, resume: bool, seed: int, size: int | None, limit: int | None,
           val_fraction: float, camera: str | Path | None, samples: int,
           on_epoch: Callable[[dict], None] | None) -> Path:
    """The run bookkeeping every method shares: config.json (checked against a resumed run, written
    before the first epoch), the hold-out, the physics front end, then per epoch the validation
    scores, the sample grid, ``model.pt`` and the metrics row. ``t`` is the method kind's trainer
    (:data:`TRAINERS`)."""
    method = t.spec.name
    config = {"method": method, "captures": str(captures), "size": size, "limit": limit, "seed": seed,
              "val_fraction": val_fraction, "holdout": HOLDOUT, **t.config_entries(camera)}
    _begin(run, config, resume)
    seed_everything(t.seed)
    train, val = _load_data(captures, size, val_fraction, seed, limit)
    train, augmented = t.augment(captures, train)
    side = int(train.lensless.shape[-1])
    cin, cout = int(train.lensless.shape[1]), int(train.original.shape[1])
    config.update({"image_size": side, "in_channels": cin, "out_channels": cout, "n_train": len(train),
                   **({} if augmented is None else {"n_train_augmented": augmented}), "n_val": len(val),
                   **t.runtime_entries()})
    front = None
    if t.spec.front_end and getattr(t.cfg, "front_end", False):
        # physics first: the networks see the front end's reconstruction of every capture
        front = method_class(FRONT_END).fit(train, val, FitContext(method, captures, camera, seed))
        train = replace(train, lensless=front.reconstruct(train.lensless))
        val = replace(val, lensless=front.reconstruct(val.lensless))
        config["front_end_fit"] = front.summary()
    start = t.start(train, val, FitContext(method, captures, camera, seed, t.cfg), config, run, resume,
                    side, cout, front)
    out = run.path
    run.write_config(config)
    run.truncate_metrics(start)
    if start >= t.total:
        return out

    sample_src = val if len(val) else train
    pick = spread(len(sample_src), samples)
    # the network's input row: the capture, or its front end's reconstruction
    first = "capture" if front is None else f"{method_spec(FRONT_END).title}\ninverse"
    val_eval = val.subset(spread(len(val), t.max_val)) if t.max_val is not None and len(val) > t.max_val else val
    best = _best_psnr(run, out / MODEL_FILES["best"])
    for ep in t.epochs(train, val, start):
        rec_val = ep.reconstruct(val_eval.lensless)
        row = {"epoch": ep.number, **ep.terms, **_val_quality(rec_val, val_eval.original),
               "seconds": round(ep.seconds, 3)}
        if ep.images is not None:
            row["images_per_s"] = round(ep.images / max(ep.seconds, 1e-9), 2)
        rec_s = ep.reconstruct(sample_src.lensless[pick])
        save_sample_grid(out / "samples" / f"epoch_{ep.number:03d}.png",
                         [sample_src.lensless[pick], rec_s, sample_src.original[pick]], (first, method, "original"))
        if ep.checkpoint is not None:
            ep.checkpoint()
        for name, obj in ep.files.items():
            write_json(out / name, obj)
        state = _model_state(method, ep.saved, ep.entries, side, cin, cout, config, front)
        save_state(out / MODEL_FILES["last"], state)
        if "val_psnr" in row and (best is None or row["val_psnr"] > best):
            save_state(out / MODEL_FILES["best"], state)
            best = row["val_psnr"]
        run.append_metrics(row)
        if on_epoch:
            on_epoch(row)
    return out


def best_row(rows: list[dict]) -> dict | None:
    """The metrics row of the epoch ``best.pt`` holds: the highest validation PSNR, the earlier
    among ties (None: no row has one)."""
    scored = [r for r in rows if "val_psnr" in r]
    return max(scored, key=lambda r: float(r["val_psnr"])) if scored else None


def _best_psnr(run: RunDir, best_file: Path) -> float | None:
    """The validation PSNR of the epoch ``best.pt`` holds: the best of the metrics rows kept
    (a resumed run's), or None where there is no ``best.pt`` (a new run)."""
    row = best_row(run.read_metrics()) if best_file.is_file() else None
    return None if row is None else float(row["val_psnr"])


class _NetworkTrainer:
    """The epoch loop of a network method (``kind="network"``, a
    :class:`~opticsfree.reconstruction.method.NetworkMethod`): batches, schedules, checkpoints
    and ``--resume``; ``model.pt`` keeps its inference network."""

    def __init__(self, spec: MethodSpec, opts: dict[str, Any], seed: int, epochs: int | None,
                 batch_size: int | None, rt: Runtime, max_val: int):
        self.spec, self.opts, self.rt, self.max_val = spec, opts, rt, max_val
        self.cls = spec.load_class()
        self.cfg = cfg = parse_options(self.cls.config_cls, opts, spec.name)
        self.bs = batch_size or cfg.batch_size
        if self.bs < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.bs}")
        self.total = epochs or cfg.epochs
        try:
            decay_start(self.total, cfg.decay_start)
        except ValueError as e:
            raise ConfigError(f"option decay_start for method {spec.name}: {e}") from None
        self.seed = member_seed(seed, cfg.member)  # weights, batches, copies; the hold-out keeps `seed`

    def config_entries(self, camera: str | Path | None) -> dict[str, Any]:
        entries = {"options": self.opts, "batch_size": self.bs, "epochs": self.total,
                   "method_config": self.cfg.model_dump(), "package_version": __version__}
        if camera is not None:
            entries["camera"] = str(camera)
        return entries

    def augment(self, captures: Path, train: CaptureSplit) -> tuple[CaptureSplit, int]:
        """The training pairs with the scene augmentation's copies (``scene_augment``)."""
        cfg = self.cfg
        self.captured, self.scene_camera = train, None
        if cfg.scene_augment != "none":  # training pairs only: the hold-out and test are never augmented
            self.scene_camera = scene_capture(str(captures), train)
            train = augment_scenes(self.captured, self.scene_camera, cfg.scene_augment, cfg.scene_copies, self.seed)
        return train, len(train) - len(self.captured)

    def runtime_entries(self) -> dict[str, Any]:
        rt = self.rt
        return {"amp": "bf16" if rt.amp else "off", "channels_last": rt.channels_last, "device": rt.device.type}

    def start(self, train: CaptureSplit, val: CaptureSplit, ctx: FitContext, config: dict, run: RunDir,
              resume: bool, side: int, cout: int, front: Any) -> int:
        """Build the method (initialised from the pairs, or restored by a resume); the first epoch."""
        net_in = int(train.lensless.shape[1])
        self.front = front
        self.shuffle = torch.Generator().manual_seed(derive_seed(self.seed, "shuffle"))
        try:
            m = self.cls(self.cfg, net_in, cout, side, self.rt.device, self.shuffle)
        except ValueError as e:
            raise ConfigError(f"method {self.spec.name} at {side}x{side}: {e}") from None
        self.m, self.config = m, config
        resuming = resume and run.resume_path.is_file()
        init = getattr(m, "init_from_data", None)
        if init is not None and not resuming:  # a resume restores the weights
            fit = init(train.lensless, train.original, val.lensless, val.original, ctx.seed)
            if fit is not None:
                config["front_end_fit"] = fit
        elif run.exists:  # resumed: keep the record of the first initialisation
            old_fit = run.read_config().get("front_end_fit")
            if old_fit is not None:
                config["front_end_fit"] = old_fit
        if self.rt.channels_last:
            for net in m.networks().values():
                net.to(memory_format=torch.channels_last)
        self.run = run
        return _restore(run.resume_path, m, self.shuffle, self.rt.device) if resuming else 0

    def epochs(self, train: CaptureSplit, val: CaptureSplit, start: int) -> Iterator[_Epoch]:
        """Train epochs ``start + 1 .. total``, one :class:`_Epoch` after each."""
        m, cfg, dev, cl, bs, total = self.m, self.cfg, self.rt.device, self.rt.channels_last, self.bs, self.total
        a_all = train.lensless.to(dev)
        b_all = train.original.to(dev)
        schedules = [constant_then_linear_decay(o, total, cfg.decay_start, start) for o in m.optimizers().values()]
        first_opt = next(iter(m.optimizers().values()))
        from opticsfree.utils.progress import progress

        for epoch in range(start, total):
            if cfg.scene_refresh and epoch > 0:  # new copies; epoch 1 keeps those drawn above
                train = _refreshed(self.captured, self.scene_camera, cfg.scene_augment, cfg.scene_copies,
                                   self.seed, epoch, self.front)
                a_all, b_all = train.lensless.to(dev), train.original.to(dev)
            lr = first_opt.param_groups[0]["lr"]
            if m.paired:
                perm = torch.randperm(len(train), generator=self.shuffle)
                batches = [(perm[i:i + bs], perm[i:i + bs]) for i in range(0, len(train), bs)]
            else:
                batches = list(unpaired_batches(len(train), len(train), bs, self.shuffle))
            sums: dict[str, torch.Tensor] = {}
            t0 = time.perf_counter()
            seen = 0
            with progress() as bar:
                task = bar.add_task(f"{self.spec.name} epoch {epoch + 1}/{total}", total=len(batches))
                for ia, ib in batches:
                    a = to_model(a_all[ia.to(dev)], None, cl)
                    b = to_model(b_all[ib.to(dev)], None, cl)
                    terms = m.train_step(a, b, self.rt.autocast)
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0) + v.float() * len(ia)
                    seen += len(ia)
                    bar.advance(task)
            seconds = time.perf_counter() - t0
            net_arch, net = m.inference()
            for s in schedules:
                s.step()

            def checkpoint(done: int = epoch + 1) -> None:
                _save_checkpoint(self.run.resume_path, m, self.shuffle, done, self.config)

            yield _Epoch(epoch + 1, epoch + 1, {"lr": lr, **{k: float(v) / max(seen, 1) for k, v in sums.items()}},
                         seconds, seen, lambda x, net=net: reconstruct_with(net, x, dev, channels_last=cl),
                         {"arch": net_arch, "state_dict": net.state_dict()}, checkpoint=checkpoint)


class _FitTrainer:
    """One fit of a fitted method (``kind="fit"``, a
    :class:`~opticsfree.reconstruction.method.FittedModel`): no epochs (one metrics row, epoch 1),
    no checkpoint (``--resume`` fits again); ``model.pt`` keeps the model's state under the
    method's name, and a non-empty :meth:`~opticsfree.reconstruction.method.FittedModel.report`
    is written as ``MODEL/<method>.json``. It is scored on the whole hold-out (one pass)."""

    total = 1
    max_val = None

    def __init__(self, spec: MethodSpec, opts: dict[str, Any], seed: int, epochs: int | None,
                 batch_size: int | None, rt: Runtime, max_val: int):
        self.spec, self.opts, self.seed = spec, opts, seed
        self.cls = spec.load_class()
        self.cfg = parse_options(self.cls.config_cls, opts, spec.name) if spec.options else None

    def config_entries(self, camera: str | Path | None) -> dict[str, Any]:
        entries: dict[str, Any] = {"options": self.opts, "batch_size": None, "epochs": None}
        if self.cfg is not None:
            entries["method_config"] = self.cfg.model_dump()
        return entries | {"camera": None if camera is None else str(camera), "package_version": __version__}

    def augment(self, captures: Path, train: CaptureSplit) -> tuple[CaptureSplit, None]:
        return train, None

    def runtime_entries(self) -> dict[str, Any]:
        return {}

    def start(self, train: CaptureSplit, val: CaptureSplit, ctx: FitContext, config: dict, run: RunDir,
              resume: bool, side: int, cout: int, front: Any) -> int:
        """Fit (before config.json is written: a failed fit leaves no run behind)."""
        t0 = time.perf_counter()
        self.model = self.cls.fit(train, val, ctx)
        self.seconds = time.perf_counter() - t0
        return 0

    def epochs(self, train: CaptureSplit, val: CaptureSplit, start: int) -> Iterator[_Epoch]:
        model, name = self.model, self.spec.name
        report = model.report()
        yield _Epoch(1, None, dict(model.metrics()), self.seconds, None, model.reconstruct,
                     {name: model.state()}, {f"{name}.json": report} if report else {})


#: The trainer of each method kind (:attr:`~opticsfree.reconstruction.names.MethodSpec.kind`).
TRAINERS: dict[str, type[Trainer]] = {"network": _NetworkTrainer, "fit": _FitTrainer}


def _refreshed(captured: CaptureSplit, camera: Any, mode: str, copies: int, seed: int, epoch: int,
               front: Any) -> CaptureSplit:
    """The training pairs of 0-based ``epoch`` with ``scene_refresh``: the captured rows
    followed by new augmented copies, seeded by the run's seed and the epoch (a resumed run
    draws the same ones), through the physics front end where the method has one."""
    fresh = augment_scenes(captured, camera, mode, copies, refresh_seed(seed, epoch))
    return fresh if front is None else replace(fresh, lensless=front.reconstruct(fresh.lensless))


def spread(n: int, k: int) -> torch.Tensor:
    """``min(n, k)`` indices spread evenly over ``range(n)`` (classes are often contiguous)."""
    if n <= k:
        return torch.arange(n)
    return torch.linspace(0, n - 1, k).round().long()


def _save_checkpoint(path: Path, m, shuffle: torch.Generator, epoch: int, config: dict) -> None:
    """The resume state: networks, optimizers, the method's extra state (image pools) and RNGs."""
    state = {"format": CHECKPOINT_FORMAT, "method": m.name, "epoch": epoch, "config": config,
             "networks": {k: n.state_dict() for k, n in m.networks().items()},
             "optimizers": {k: o.state_dict() for k, o in m.optimizers().items()},
             "extra": m.extra_state(), "rng": capture_rng(m.device, {"shuffle": shuffle})}
    save_state(path, state)


def _restore(path: Path, m, shuffle: torch.Generator, dev: torch.device) -> int:
    """Load the resume state into ``m`` and ``shuffle``; the epoch it was saved after."""
    state = load_state(path, what="opticsfree reconstruction checkpoint")
    try:
        if state.get("format") != CHECKPOINT_FORMAT or state.get("method") != m.name:
            raise KeyError("format/method")
        for k, n in m.networks().items():
            n.load_state_dict(state["networks"][k])
        for k, o in m.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        m.load_extra_state(state["extra"])
        restore_rng(state["rng"], dev, {"shuffle": shuffle}, source=str(path))
        return int(state["epoch"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise OpticsfreeError(f"{path}: checkpoint does not match this method/configuration "
                              f"({type(e).__name__}: {e})".splitlines()[0]) from None


def _model_state(method: str, epoch: int | None, entries: dict, side: int, cin: int, cout: int, config: dict,
                 front: Any = None) -> dict:
    """What ``apply`` loads (``model.pt``): the model's entries (a network's ``"arch"`` and
    ``"state_dict"``, a fit's state under the method's name) and, with a physics front end, its
    state under :data:`~opticsfree.reconstruction.names.FRONT_END`."""
    state = {"format": CHECKPOINT_FORMAT, "method": method, "epoch": epoch, **entries, "size": side,
             "in_channels": cin, "out_channels": cout, "captures": config["captures"], "config": config}
    if front is not None:
        state[FRONT_END] = front.state()
    return state


def list_metrics(model_dir: str | Path) -> list[dict]:
    """The rows of ``MODEL/metrics.jsonl``."""
    return reconstruction_run(model_dir).read_metrics()


__all__ = ["train_reconstruction", "reconstruct_with", "list_metrics", "best_row", "DEEP_METHODS", "TRAINERS",
           "MODEL_FILES"]
