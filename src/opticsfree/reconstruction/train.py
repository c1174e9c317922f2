"""Train a reconstruction method on a capture set: ``opticsfree reconstruct train``.

A MODEL directory holds::

    config.json              the full training configuration (captures, method, options, ...)
    metrics.jsonl            one JSON object per epoch: losses, lr, val PSNR/SSIM, seconds, images/s
    checkpoints/last.pt      the full state after the last finished epoch (networks, optimizers,
                             image pools, RNG states): ``--resume`` continues from it
    model.pt                 what ``apply`` needs: the lensless -> original network (or the
                             Tikhonov inverse), its architecture, epoch and image size
    samples/epoch_NNN.png    validation captures | reconstructions | originals after each epoch

Every file is written atomically, so an interrupted run leaves the previous epoch intact;
config.json, metrics.jsonl and the checkpoints are kept by the run layer (:mod:`opticsfree.runs`,
kind :data:`RECONSTRUCTION_MODEL`). The validation hold-out is a class-stratified share of the
train split's scenes (:func:`opticsfree.data.split.split_scenes`, the embedding training's
hold-out: for the same seed, val_fraction and limit both hold out the same scenes; config.json
records it as ``"holdout": 2``, see :data:`HOLDOUT`); the test split is never read.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from opticsfree import __version__
from opticsfree.captures.augment import augment_scenes, refresh_seed, scene_capture
from opticsfree.captures.format import open_capture_set
from opticsfree.captures.loader import CaptureSplit, load_captures
from opticsfree.data.split import split_scenes
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.reconstruction.base import member_seed, parse_options, save_sample_grid, to_model, to_uint8
from opticsfree.reconstruction.cyclegan import unpaired_batches
from opticsfree.reconstruction.names import REGISTRY, MethodSpec, method_class, method_names
from opticsfree.reconstruction.schedules import constant_then_linear_decay, decay_start
from opticsfree.runs import (
    Nested,
    ResumeCheck,
    RunDir,
    RunKind,
    Runtime,
    capture_rng,
    load_state,
    restore_rng,
    save_state,
    torch_threads,
)
from opticsfree.utils.io import write_json
from opticsfree.utils.seeding import derive_seed, seed_everything

CHECKPOINT_FORMAT = 1
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
        method: ``cyclegan``, ``unet``, ``bijective`` or ``tikhonov``.
        out: MODEL directory (created; with ``resume`` an earlier run is continued).
        epochs: total epochs (default: the method's; ignored by ``tikhonov``).
        device: ``cpu`` or ``cuda`` (same code).
        resume: continue from ``out/checkpoints/last.pt`` (settings must match, epochs may grow).
        seed: seeds weights, shuffling, image pools and the hold-out.
        size: train at ``size`` x ``size`` (default: the stored capture size).
        limit: at most this many training scenes (class-stratified) before the hold-out.
        val_fraction: share of the train scenes held out for validation.
        batch_size: images per step (default: the method's).
        amp: bf16 autocast on (True), off (False) or auto (None; see :func:`opticsfree.runs.resolve_amp`).
        channels_last: channels-last memory format (default: on for CUDA, off on CPU).
        options: method options (``--set key=value``), validated by the method's option model
            (:class:`~.cyclegan.CycleGANConfig`, :class:`~.unet.UNetConfig`,
            :class:`~.bijective.BijectiveConfig`; strict types, unknown keys refused).
        camera: ``tikhonov`` (and ``cyclegan`` with ``front_end``) only: a ``camera.npz`` from
            ``calibrate`` or a camera preset/TOML (default: the camera in the set's manifest,
            else a calibration fitted here).
        samples: validation images in the sample grids (spread over the hold-out).
        max_val: validation images scored after each epoch (evenly spread over the hold-out;
            ``tikhonov`` chooses lambda on up to 500).
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
    if not spec.network:  # a fit without a network: the camera's Tikhonov inverse
        with torch_threads(threads):
            return _train_tikhonov(captures, run, resume, seed, size, limit, val_fraction, camera, samples,
                                   on_epoch)
    with torch_threads(threads):
        return _train_deep(captures, spec, run, epochs, rt, resume, seed, size, limit, val_fraction,
                           batch_size, opts, samples, max_val, on_epoch, camera)


def _train_deep(captures: Path, spec: MethodSpec, run: RunDir, epochs: int | None, rt: Runtime, resume: bool,
                seed: int, size: int | None, limit: int | None, val_fraction: float, batch_size: int | None,
                opts: dict[str, Any], samples: int, max_val: int,
                on_epoch: Callable[[dict], None] | None, camera: str | Path | None = None) -> Path:
    method = spec.name
    cls = method_class(method)
    cfg = parse_options(cls.config_cls, opts, method)
    dev, cl = rt.device, rt.channels_last
    bs = batch_size or cfg.batch_size
    if bs < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {bs}")
    total = epochs or cfg.epochs
    try:
        decay_start(total, cfg.decay_start)
    except ValueError as e:
        raise ConfigError(f"option decay_start for method {method}: {e}") from None
    config = {"method": method, "captures": str(captures), "size": size, "limit": limit, "seed": seed,
              "val_fraction": val_fraction, "holdout": HOLDOUT, "options": opts, "batch_size": bs,
              "epochs": total, "method_config": cfg.model_dump(), "package_version": __version__}
    if camera is not None:
        config["camera"] = str(camera)
    _begin(run, config, resume)

    wseed = member_seed(seed, cfg.member)  # weights, batches, copies; the hold-out keeps `seed`
    seed_everything(wseed)
    train, val = _load_data(captures, size, val_fraction, seed, limit)
    n_captured = len(train)
    captured, scene_camera = train, None
    if cfg.scene_augment != "none":  # training pairs only: the hold-out and test are never augmented
        scene_camera = scene_capture(str(captures), train)
        train = augment_scenes(captured, scene_camera, cfg.scene_augment, cfg.scene_copies, wseed)
    side = int(train.lensless.shape[-1])
    cin, cout = int(train.lensless.shape[1]), int(train.original.shape[1])
    config.update({"image_size": side, "in_channels": cin, "out_channels": cout,
                   "n_train": len(train), "n_train_augmented": len(train) - n_captured,
                   "n_val": len(val)})
    config.update({"amp": "bf16" if rt.amp else "off", "channels_last": cl, "device": dev.type})
    tikhonov = None
    if spec.front_end and getattr(cfg, "front_end", False):
        # physics first: the networks see the camera's Tikhonov inverse of every capture
        tikhonov = _fit_tikhonov(captures, camera, train, val, side, cin, cout, seed)
        train = replace(train, lensless=tikhonov.reconstruct(train.lensless))
        val = replace(val, lensless=tikhonov.reconstruct(val.lensless))
        config["front_end_fit"] = {"operator": tikhonov.info.get("operator"), "lambda": tikhonov.lam,
                                   "lambda_relative": tikhonov.info["lambda_relative"],
                                   "prior": tikhonov.info["prior"], "val_psnr": tikhonov.info["val_psnr"]}
    net_in = int(train.lensless.shape[1])

    shuffle = torch.Generator().manual_seed(derive_seed(wseed, "shuffle"))
    try:
        m = cls(cfg, net_in, cout, side, dev, shuffle)
    except ValueError as e:
        raise ConfigError(f"method {method} at {side}x{side}: {e}") from None
    resuming = resume and run.resume_path.is_file()
    init = getattr(m, "init_from_data", None)
    if init is not None and not resuming:  # a resume restores the weights
        fit = init(train.lensless, train.original, val.lensless, val.original, seed)
        if fit is not None:
            config["front_end_fit"] = fit
    elif run.exists:  # resumed: keep the record of the first initialisation
        old_fit = run.read_config().get("front_end_fit")
        if old_fit is not None:
            config["front_end_fit"] = old_fit
    if cl:
        for net in m.networks().values():
            net.to(memory_format=torch.channels_last)

    out = run.path
    start = 0
    if resuming:
        start = _restore(run.resume_path, m, shuffle, dev)
    run.write_config(config)
    run.truncate_metrics(start)
    if start >= total:
        return out

    a_all = train.lensless.to(dev)
    b_all = train.original.to(dev)
    sample_src = val if len(val) else train
    pick = spread(len(sample_src), samples)
    # the network's input row: the capture, or its Tikhonov inverse where that is the front end
    sample_labels = ("capture" if tikhonov is None else "Tikhonov\ninverse", method, "original")
    val_eval = val.subset(spread(len(val), max_val)) if len(val) > max_val else val
    schedules = [constant_then_linear_decay(o, total, cfg.decay_start, start) for o in m.optimizers().values()]
    first_opt = next(iter(m.optimizers().values()))
    amp_ctx = rt.autocast
    from opticsfree.utils.progress import progress

    for epoch in range(start, total):
        if cfg.scene_refresh and epoch > 0:  # new copies; epoch 1 keeps those drawn above
            train = _refreshed(captured, scene_camera, cfg.scene_augment, cfg.scene_copies, wseed, epoch, tikhonov)
            a_all, b_all = train.lensless.to(dev), train.original.to(dev)
        lr = first_opt.param_groups[0]["lr"]
        if m.paired:
            perm = torch.randperm(len(train), generator=shuffle)
            batches = [(perm[i:i + bs], perm[i:i + bs]) for i in range(0, len(train), bs)]
        else:
            batches = list(unpaired_batches(len(train), len(train), bs, shuffle))
        sums: dict[str, torch.Tensor] = {}
        t0 = time.perf_counter()
        seen = 0
        with progress() as bar:
            task = bar.add_task(f"{method} epoch {epoch + 1}/{total}", total=len(batches))
            for ia, ib in batches:
                a = to_model(a_all[ia.to(dev)], None, cl)
                b = to_model(b_all[ib.to(dev)], None, cl)
                terms = m.train_step(a, b, amp_ctx)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0) + v.float() * len(ia)
                seen += len(ia)
                bar.advance(task)
        seconds = time.perf_counter() - t0
        net_arch, net = m.inference()
        rec_val = reconstruct_with(net, val_eval.lensless, dev, channels_last=cl)
        row = {"epoch": epoch + 1, "lr": lr, **{k: float(v) / max(seen, 1) for k, v in sums.items()},
               **_val_quality(rec_val, val_eval.original), "seconds": round(seconds, 3),
               "images_per_s": round(seen / max(seconds, 1e-9), 2)}
        rec_s = reconstruct_with(net, sample_src.lensless[pick], dev, channels_last=cl)
        save_sample_grid(out / "samples" / f"epoch_{epoch + 1:03d}.png",
                         [sample_src.lensless[pick], rec_s, sample_src.original[pick]], sample_labels)
        for s in schedules:
            s.step()
        _save_checkpoint(run.resume_path, m, shuffle, epoch + 1, config)
        save_state(out / "model.pt", _inference_state(method, net_arch, net, epoch + 1, side, cin, cout, config,
                                                      tikhonov))
        run.append_metrics(row)
        if on_epoch:
            on_epoch(row)
    return out


def _refreshed(captured: CaptureSplit, camera: Any, mode: str, copies: int, seed: int, epoch: int,
               tikhonov: Any) -> CaptureSplit:
    """The training pairs of 0-based ``epoch`` with ``scene_refresh``: the captured rows
    followed by new augmented copies, seeded by the run's seed and the epoch (a resumed run
    draws the same ones), through the Tikhonov front end where the method has one."""
    fresh = augment_scenes(captured, camera, mode, copies, refresh_seed(seed, epoch))
    return fresh if tikhonov is None else replace(fresh, lensless=tikhonov.reconstruct(fresh.lensless))


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


def _inference_state(method: str, arch: dict, net: torch.nn.Module, epoch: int | None, side: int,
                     cin: int, cout: int, config: dict, tikhonov=None) -> dict:
    """What ``apply`` loads: the network, its architecture and, with a Tikhonov front end, the
    inverse applied before it (``"tikhonov"``)."""
    state = {"format": CHECKPOINT_FORMAT, "method": method, "epoch": epoch, "arch": arch,
             "state_dict": net.state_dict(), "size": side, "in_channels": cin,
             "out_channels": cout, "captures": config["captures"], "config": config}
    if tikhonov is not None:
        state["tikhonov"] = tikhonov.state()
    return state


# --------------------------------------------------------------------------- tikhonov

def _tikhonov_operator(captures: Path, camera: str | Path | None, train: CaptureSplit, val: CaptureSplit,
                       side: int, cin: int, cout: int):
    """(operator, sensor, display gamma, info) for the Tikhonov inverse (see tikhonov.py, sensor_model.py, calibration.py)."""
    from opticsfree.optics import camera_from_dict, load_camera_config
    from opticsfree.reconstruction.calibration import calibrate_pairs, load_calibration
    from opticsfree.reconstruction.sensor_model import camera_operator

    manifest = open_capture_set(captures).manifest
    if camera is not None and str(camera).endswith(".npz"):
        cal = load_calibration(camera)
        if tuple(cal.operator.in_shape) != (cout, side, side) or tuple(cal.operator.out_shape) != (cin, side, side):
            raise DataError(f"{camera}: calibration maps images {tuple(cal.operator.in_shape)} to captures "
                            f"{tuple(cal.operator.out_shape)}, but the data are {(cout, side, side)} -> "
                            f"{(cin, side, side)} (C, H, W); pass the --size the calibration used")
        return cal.operator, cal.sensor, cal.display_gamma, {
            "operator": "calibration", "calibration": str(Path(camera).resolve()),
            "scale_from_calibration": True, "calibration_report": {
                k: v for k, v in cal.report.items() if k != "table"}}
    if camera is not None:
        cfg = load_camera_config(camera)
        name = f"camera {cfg.name} ({camera})"
    elif isinstance(manifest.get("camera"), dict) and manifest["camera"].get("type") in ("bare", "lens", "psf"):
        cfg = camera_from_dict(manifest["camera"], f"{captures}/manifest.json: camera")
        name = f"camera {cfg.name} (from the capture set's manifest)"
    else:
        cal = calibrate_pairs(train.lensless, train.original, val.lensless, val.original,
                              source=f"{captures} (fitted during training)")
        return cal.operator, cal.sensor, cal.display_gamma, {
            "operator": "fitted", "scale_from_calibration": True,
            "calibration_report": {k: v for k, v in cal.report.items() if k != "table"}}
    if cin != cout:
        raise DataError(f"{captures}: captures have {cin} channels and originals {cout}; a known camera "
                        "maps images to captures with the same channels")
    op, sensor, gamma = camera_operator(cfg, side, cout)
    return op, sensor, gamma, {"operator": "camera", "camera": name}


def _fit_tikhonov(captures: Path, camera: str | Path | None, train: CaptureSplit, val: CaptureSplit,
                  side: int, cin: int, cout: int, seed: int):
    """The Tikhonov inverse of ``captures``' camera (``camera``, the manifest's or fitted), its
    lambda and prior chosen on ``val`` (:func:`~.tikhonov.fit_tikhonov`)."""
    from opticsfree.reconstruction.tikhonov import fit_tikhonov

    op, sensor, gamma, info = _tikhonov_operator(captures, camera, train, val, side, cin, cout)
    return fit_tikhonov(op, sensor, gamma, train.lensless, train.original, val.lensless, val.original,
                        info=info, seed=seed)


def _train_tikhonov(captures: Path, run: RunDir, resume: bool, seed: int, size: int | None, limit: int | None,
                    val_fraction: float, camera: str | Path | None, samples: int,
                    on_epoch: Callable[[dict], None] | None) -> Path:
    out = run.path
    config = {"method": "tikhonov", "captures": str(captures), "size": size, "limit": limit, "seed": seed,
              "val_fraction": val_fraction, "holdout": HOLDOUT, "options": {}, "batch_size": None,
              "epochs": None, "camera": None if camera is None else str(camera), "package_version": __version__}
    _begin(run, config, resume)
    seed_everything(seed)
    train, val = _load_data(captures, size, val_fraction, seed, limit)
    side = int(train.lensless.shape[-1])
    cin, cout = int(train.lensless.shape[1]), int(train.original.shape[1])
    config.update({"image_size": side, "in_channels": cin, "out_channels": cout,
                   "n_train": len(train), "n_val": len(val)})
    t0 = time.perf_counter()
    model = _fit_tikhonov(captures, camera, train, val, side, cin, cout, seed)
    seconds = time.perf_counter() - t0
    run.write_config(config)
    write_json(out / "tikhonov.json", {k: v for k, v in model.info.items()} | {"lambda": model.lam})
    save_state(out / "model.pt", {"format": CHECKPOINT_FORMAT, "method": "tikhonov", "epoch": None,
                                  "tikhonov": model.state(), "size": side, "in_channels": cin,
                                  "out_channels": cout, "captures": str(captures), "config": config})
    rec_val = model.reconstruct(val.lensless)
    row = {"epoch": 1, "lambda": model.lam, "lambda_relative": model.info["lambda_relative"],
           "prior": model.info["prior"], **_val_quality(rec_val, val.original), "seconds": round(seconds, 3)}
    pick = spread(len(val), samples)
    save_sample_grid(out / "samples" / "epoch_001.png", [val.lensless[pick], rec_val[pick], val.original[pick]],
                     ("capture", "tikhonov", "original"))
    run.truncate_metrics(0)
    run.append_metrics(row)
    if on_epoch:
        on_epoch(row)
    return out


def list_metrics(model_dir: str | Path) -> list[dict]:
    """The rows of ``MODEL/metrics.jsonl``."""
    return reconstruction_run(model_dir).read_metrics()


__all__ = ["train_reconstruction", "reconstruct_with", "list_metrics", "DEEP_METHODS"]
