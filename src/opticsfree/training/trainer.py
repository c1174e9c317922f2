"""The training loop: online class-balanced batches or the seed's tuples, checkpoints, resume.

One step (online): take a global class-balanced batch of rows, embed each lensless capture
with the lensless tower and each row's original with the original tower (one pass per image),
mine inside the batch and apply the loss. One step (tuples): decode the rows' image files,
one forward pass per column (anchor, positive, [close positive,] negative). The optimizer is
AdamW (or SGD with Nesterov momentum) with a per-step warm-up + cosine (or one-cycle)
schedule. After each epoch: validation accuracy (nearest class prototype of train-original
embeddings, or the head's argmax for ``ce``), a line in ``metrics.jsonl``, the resume state
and, at the listed epochs, a checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from opticsfree import __version__
from opticsfree.captures.loader import CaptureSplit
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.losses.criterion import Criterion
from opticsfree.models.embedding import EmbeddingModel
from opticsfree.runs import (
    RunDir,
    capture_rng,
    jsonable,
    restore_rng,
    save_state,
)
from opticsfree.training import distributed as D
from opticsfree.training.augment import augment_originals, augment_scenes, refresh_seed, scene_camera
from opticsfree.models.names import backbone_spec
from opticsfree.training.checkpoint import SAME_RUN, build_model, list_checkpoints, load_state, training_run
from opticsfree.training.config import TrainConfig
from opticsfree.training.data import prototype_rows, train_val
from opticsfree.training.initialise import display_estimates, initialise_model
from opticsfree.training.sampling import (
    ClassBalancedBatchSampler,
    SceneTable,
    TupleBatchSampler,
    TupleDataset,
    tuple_batches,
    auto_batch,
    generator,
    load_tuple_rows,
)
from opticsfree.utils.io import file_sha256
from opticsfree.utils.progress import progress, progress_line
from opticsfree.utils.runtime import Runtime, resolve_device, torch_threads
from opticsfree.utils.seeding import seed_everything


class TrainingError(OpticsfreeError):
    """Training cannot go on (a non-finite loss); the message says where and what is kept."""


# ----------------------------------------------------------------------------------------------
# learning-rate schedule


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total: int,
                   warmup: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-step learning-rate schedule, stepped once after every optimizer step.

    ``optimizer``'s groups start at the peak rate :math:`\\eta_0`; step ``s`` (0-based) of
    ``total`` runs at

    * ``cosine``: :math:`\\eta_0 (s + 1) / W` during the linear warm-up of ``warmup`` = W
      steps (``LinearLR``), then :math:`\\tfrac{\\eta_0}{2}(1 + \\cos \\pi t)`,
      :math:`t = (s - W) / \\max(1, T - W)` going from 0 towards 1 (``CosineAnnealingLR``
      with ``T_max = max(1, T - W)``), joined by ``SequentialLR`` at step W.
    * ``constant``: the same warm-up, then :math:`\\eta_0` (``LinearLR`` stays at its end).
    * ``onecycle``: cosine from :math:`\\eta_0/25` up to :math:`\\eta_0` over the first
      ``up = max(1, int(0.3 T))`` steps, then down towards :math:`\\eta_0/10^4`, reached one
      step after the last (PyTorch's ``OneCycleLR`` without momentum cycling, told ``T + 1``
      steps with the peak at step ``up``).
    """
    sched = torch.optim.lr_scheduler
    if schedule == "onecycle":
        up = max(1, int(0.3 * total))
        peak = [g["lr"] for g in optimizer.param_groups]
        return sched.OneCycleLR(optimizer, max_lr=peak, total_steps=total + 1,
                                pct_start=(up + 1) / (total + 1), anneal_strategy="cos",
                                cycle_momentum=False, div_factor=25.0, final_div_factor=1e4 / 25)
    if schedule == "cosine" and warmup == 0:
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, total), eta_min=0.0)
    ramp = sched.LinearLR(optimizer, start_factor=1.0 / max(1, warmup), end_factor=1.0,
                          total_iters=max(1, warmup - 1))
    if schedule == "constant":
        return ramp
    cosine = sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=0.0)
    return sched.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


def restore_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler, saved: dict[str, Any],
                      schedule: str, total: int, warmup: int,
                      peak: float) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule of a resumed run: ``scheduler`` (made by :func:`make_scheduler` before
    ``optimizer.load_state_dict``, which restores the current rate) continues from ``saved``.

    ``saved`` is a checkpoint's ``scheduler`` entry: its ``state`` (the scheduler's
    ``state_dict``) when present; a checkpoint written before the schedules were PyTorch's has
    only ``step``, and a fresh schedule is stepped that many times.
    """
    if "state" in saved:
        scheduler.load_state_dict(saved["state"])
        return scheduler
    optimizer = scheduler.optimizer
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] = peak
    scheduler = make_scheduler(optimizer, schedule, total, warmup)
    with warnings.catch_warnings():  # stepping without optimizer steps is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(int(saved.get("step", 0))):
            scheduler.step()
    return scheduler


def param_groups(model: nn.Module, weight_decay: float,
                 front_end_lr: float | None = None) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only (not on biases or normalisation parameters).

    The physics-informed front end (parameters ``front_end.*``), when there is one, is a third
    group at its own peak rate ``front_end_lr`` without weight decay: it starts as the camera's
    regularised inverse, whose large, cancelling weights the backbone's rate would wreck.
    """
    decay, no_decay, front = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("front_end.") and front_end_lr is not None:
            front.append(p)
        else:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if front:
        groups.append({"params": front, "weight_decay": 0.0, "lr": front_end_lr})
    return groups


def weight_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    r"""An exponential moving average of ``model``'s weights and buffers (None when decay is 0).

    After every optimizer step :math:`\bar\theta \leftarrow \beta \bar\theta + (1 - \beta)
    \theta` with :math:`\beta` = ``decay``, starting from the initial weights; the batch-norm
    running statistics are averaged the same way (PyTorch's ``AveragedModel`` with
    ``get_ema_multi_avg_fn`` and ``use_buffers=True``). Validation, the checkpoints and so
    evaluation, ``predict`` and ``export`` use :math:`\bar\theta`.
    """
    if decay == 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) over :func:`param_groups`."""
    lr = cfg.resolved_lr()
    groups = param_groups(model, cfg.resolved_weight_decay(), lr * cfg.front_end_lr_scale)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


# ----------------------------------------------------------------------------------------------
# validation


@torch.no_grad()
def embed_all(model: EmbeddingModel, x: Tensor, domain: str, device: torch.device,
              autocast: Callable[[], Any], batch: int = 1024) -> Tensor:
    """Embeddings (N, D) of uint8 images, in eval mode, on the CPU."""
    out = []
    for i in range(0, len(x), batch):
        with autocast():
            out.append(model.encode(x[i:i + batch].to(device), domain).float().cpu())
    return torch.cat(out) if out else torch.empty(0, model.embedding_dim)


@torch.no_grad()
def validate(model: EmbeddingModel, train: CaptureSplit, val: CaptureSplit, proto_rows: np.ndarray,
             n_classes: int, criterion: Criterion, device: torch.device,
             autocast: Callable[[], Any]) -> dict[str, float | None]:
    """Validation accuracy of the current model.

    ``val_accuracy`` is the nearest-prototype accuracy: class prototypes
    :math:`\\mu_c = \\mathrm{normalize}(\\sum_{i: y_i = c} o_i)` of train-original embeddings,
    and a val capture :math:`a` goes to :math:`\\arg\\max_c a \\cdot \\mu_c` (the nearest
    prototype in Euclidean distance, all vectors being unit length). For ``ce`` it is the
    head's argmax accuracy; ``ce+triplet`` reports both (``val_accuracy_head``).
    """
    if len(val) == 0:
        return {"val_accuracy": None}
    was = model.training
    model.eval()
    try:
        y = val.labels
        res: dict[str, float | None] = {}
        head_acc = None
        if model.has_head:
            logits = []
            for i in range(0, len(val), 1024):
                with autocast():
                    logits.append(model.logits(val.lensless[i:i + 1024].to(device)).float().cpu())
            head_acc = float((torch.cat(logits).argmax(1) == y).float().mean())
        if criterion.spec.head_only:
            res["val_accuracy"] = head_acc
            return res
        o = embed_all(model, train.original[proto_rows], "original", device, autocast)
        yo = train.labels[proto_rows]
        protos = torch.zeros(n_classes, o.shape[1]).index_add_(0, yo, o)
        protos = F.normalize(protos, dim=1)
        a = embed_all(model, val.lensless, "lensless", device, autocast)
        res["val_accuracy"] = float(((a @ protos.T).argmax(1) == y).float().mean())
        if head_acc is not None:
            res["val_accuracy_head"] = head_acc
        return res
    finally:
        model.train(was)


# ----------------------------------------------------------------------------------------------
# the run


def train(config: TrainConfig | dict[str, Any], out: str | Path, resume: bool = False,
          show_progress: bool = True,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train an embedding model and write the run directory ``out``.

    Args:
        config: a :class:`TrainConfig` or a dict of its fields.
        out: the run directory (``config.json``, ``metrics.jsonl``, ``checkpoints/``).
        resume: continue the run in ``out`` from its last finished epoch (the config must
            match, except device, workers and threads); without it ``out`` must not hold a run.
        show_progress: draw a progress bar per epoch (on a terminal) and print one line per
            epoch on stderr (loss, validation accuracy, time).
        on_epoch: called on the main process with each epoch's metrics row (``epoch``,
            ``loss``, ``val_accuracy``, ...) once its state is saved; an exception it raises
            stops training there and propagates (a search prunes a trial this way).

    Returns:
        A summary: ``{"run", "epochs", "checkpoints", "val_accuracy", "best_epoch",
        "best_val_accuracy", "resumed_from"}`` (best over the checkpointed epochs, by val).

    Raises:
        ConfigError: invalid config, an existing run without ``resume``, a resume with another
            config, or cuda requested but unavailable.
        DataError: problems with the capture set.
        TrainingError: a non-finite loss (the last good state stays in ``out``).
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    resolve_device(cfg.device)  # cuda without a GPU: refused before joining a process group
    info = D.init_distributed(cfg.device)
    try:
        with torch_threads(cfg.threads):
            return _train(cfg, training_run(out), resume, show_progress, info, on_epoch)
    finally:
        D.shutdown(info)


def _train(cfg: TrainConfig, run: RunDir, resume: bool, show_progress: bool,
           info: D.DistInfo, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    if info.enabled and cfg.whiten_bias_epochs is not None:
        raise ConfigError("whiten_bias_epochs: freezing a parameter during training is not supported "
                          "with several processes (DistributedDataParallel); leave it unset")
    rt = Runtime.resolve(cfg.device, cfg.amp, cfg.channels_last, local_rank=info.local_rank)
    device = rt.device
    existing = run.begin(resume)
    captures = str(Path(cfg.captures).resolve())
    cfg = cfg.model_copy(update={"captures": captures})
    criterion = Criterion(cfg.loss, cfg.mining if cfg.sampling == "online" else None, cfg.margin,
                          cfg.quad_margins, cfg.chen_margins, cfg.ce_weight, cfg.label_smoothing)

    # ---- data -------------------------------------------------------------------------------
    tv = train_val(captures, cfg.size, cfg.val_fraction, cfg.seed, cfg.limit)
    tr, va = tv.train, tv.val
    captured, scene_cam = tr, None
    if cfg.scene_augment != "none":  # training rows only: val and test are never augmented
        scene_cam = scene_camera(captures, tr)
        tr = augment_scenes(captured, scene_cam, cfg.scene_augment, cfg.scene_copies, cfg.seed)
    classes = tr.classes
    size = int(tr.lensless.shape[-1])
    need = backbone_spec(cfg.backbone).min_size
    if size < need:
        raise ConfigError(f"backbone {cfg.backbone!r} needs inputs of at least {need} x {need} pixels and "
                          f"these are {size} x {size}: pass --size {max(need, 16)} (resample) or another "
                          "--backbone (cnn4 takes any size)")
    scenes = SceneTable.from_rows(tr.ids, tr.labels)
    counts = torch.bincount(scenes.labels, minlength=len(classes))
    if criterion.term is not None and int(counts.min()) < 2:
        c = int(counts.argmin())
        raise ConfigError(f"class {classes[c]!r} has {int(counts[c])} training scene(s); metric "
                          f"losses need at least 2 per class (lower --val-fraction or --limit less)")
    if len(classes) < criterion.spec.min_classes:
        raise ConfigError(f"loss {cfg.loss} needs at least {criterion.spec.min_classes} classes")

    resolved: dict[str, Any] = {
        "size": size, "classes": classes, "lensless_channels": int(tr.lensless.shape[1]),
        "original_channels": int(tr.original.shape[1]), "has_head": criterion.uses_head,
        "n_train_scenes": tv.n_train_scenes, "n_val_scenes": tv.n_val_scenes,
        "n_train_rows": len(tr), "n_val_rows": len(va), "val_ids_sha256": tv.val_ids_sha256,
        "mining": criterion.mining if cfg.sampling == "online" else "fixed tuples",
        "lr": cfg.resolved_lr(), "weight_decay": cfg.resolved_weight_decay(),
        "checkpoints": cfg.resolved_checkpoints(), "amp": rt.amp,
        "channels_last": rt.channels_last, "world_size": info.world_size,
    }
    if cfg.sampling == "online":
        m, k = auto_batch(len(classes), cfg.batch_size, cfg.m_per_class, int(counts.min()))
        if k < criterion.spec.min_classes:
            raise ConfigError(f"loss {cfg.loss} needs at least {criterion.spec.min_classes} classes per batch; "
                              f"batch_size={cfg.batch_size} with m_per_class={m} gives {k}")
        sampler = ClassBalancedBatchSampler(scenes, m, k, cfg.seed, info.rank, info.world_size)
        resolved.update(batch_size=sampler.batch_size, m_per_class=m, classes_per_batch=k)
        steps_per_epoch = len(sampler)
        tuple_set = None
    else:
        keep = set(scenes.ids)
        rows, tpath = load_tuple_rows(captures, keep, cfg.seed)
        sampler = TupleBatchSampler(len(rows), cfg.batch_size, cfg.seed, info.rank, info.world_size)
        tuple_set = TupleDataset(rows, size, criterion.originals_per_tuple)
        resolved.update(batch_size=sampler.b, tuples_file=str(tpath), tuples_sha256=file_sha256(tpath),
                        n_tuples=len(rows))
        steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    resolved.update(steps_per_epoch=steps_per_epoch, total_steps=total_steps, warmup_steps=warmup,
                    package_version=__version__, torch_version=str(torch.__version__))
    teacher = None
    if cfg.teacher is not None:
        from opticsfree.training.teacher import Teacher

        teacher = Teacher(cfg.teacher, list(classes), cfg.teacher_kd_weight, cfg.teacher_feature_weight,
                          criterion.uses_head, cfg.embedding_dim, cfg.device, scenes=captured, seed=cfg.seed)
        resolved["teacher"] = teacher.describe()
    # JSON round trip: plain types only (what config.json holds and weights_only loading allows)
    full = jsonable({**cfg.to_dict(), "resolved": resolved})

    # ---- model and optimizer ----------------------------------------------------------------
    seed_everything(cfg.seed)
    model = build_model(full)
    frozen = model.front_end is not None and cfg.front_end_lr_scale == 0
    # a frozen front end gives every capture the same estimate at every epoch: computed once
    init = initialise_model(model, tr, va, cfg.seed, keep_estimates=frozen and tuple_set is None)
    inputs = tr.lensless if init.estimates is None else init.estimates
    if frozen:
        model.front_end.requires_grad_(False)  # frozen at the regularised inverse
    model.to(device)
    if info.enabled and cfg.sync_bn:  # before the optimizer: on GPU the BN modules are replaced
        model = D.convert_sync_batchnorm(model, info, cfg.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.schedule, total_steps, warmup)
    averaged = weight_average(model, cfg.weight_averaging)
    start_epoch, step, resumed_from = 1, 0, None
    if existing:
        run.check_resume(full, SAME_RUN)
        found = resume_state(run, warn=progress_line if info.is_main else None)
        if found is not None:
            rp, state = found
            if SAME_RUN.differences(state["config"], full):
                raise ConfigError(f"{rp}: written by a different config than {run.config_path}")
            if averaged is not None:  # "model" holds the average, "trained_model" the weights
                model.load_state_dict(state["trained_model"])
                averaged.module.load_state_dict(state["model"])
                averaged.n_averaged.fill_(int(state["n_averaged"]))
            else:
                model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler = restore_scheduler(scheduler, state.get("scheduler", {}), cfg.schedule,
                                          total_steps, warmup, cfg.resolved_lr())
            restore_rng(state["rng"], device, source=str(rp))
            start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
            resumed_from = int(state["epoch"])
    if info.is_main:
        run.write_config(full)
        run.truncate_metrics(start_epoch - 1)
    D.barrier(info)

    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if cfg.device == "cuda" else None,
            find_unused_parameters=criterion.spec.head_only)
    autocast = rt.autocast
    proto = prototype_rows(tr, cfg.val_prototypes, cfg.seed)
    tb = _tensorboard(run.path) if info.is_main else None

    # ---- epochs -----------------------------------------------------------------------------
    last: dict[str, Any] = {}
    world = info.world_size
    distill, taught = None, None
    if teacher is not None:
        from opticsfree.losses.distill import Distillation

        distill = Distillation(cfg.teacher_kd_weight, cfg.teacher_temperature, cfg.teacher_feature_weight)
        taught = teacher.targets(tr.original)
    for epoch in range(start_epoch, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        if cfg.scene_refresh and epoch > 1:  # new augmented copies; epoch 1 keeps those drawn above
            tr = augment_scenes(captured, scene_cam, cfg.scene_augment, cfg.scene_copies,
                                refresh_seed(cfg.seed, epoch))
            inputs = tr.lensless if init.estimates is None else display_estimates(model, tr.lensless)
            if teacher is not None:
                taught = teacher.targets(tr.original, draw=epoch)
        if cfg.whiten_bias_epochs is not None:  # before the first step of each epoch (and on resume)
            model.train_whitening_bias(epoch <= cfg.whiten_bias_epochs)
        aug_g = generator("augment", cfg.seed, epoch)
        model.train()
        loss_sum, n_steps, n_anchors = 0.0, 0, 0
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        bar = progress() if (show_progress and info.is_main) else contextlib.nullcontext()
        with bar as pb:
            task = pb.add_task(f"epoch {epoch}/{cfg.epochs}", total=steps_per_epoch) if pb else None
            batches = tuple_batches(tuple_set, sampler, cfg.workers) if tuple_set is not None else iter(sampler)
            for i, batch in enumerate(batches, start=1):
                if tuple_set is None:
                    rows = batch
                    xl = inputs[rows].to(device, non_blocking=True)
                    y = tr.labels[rows].to(device, non_blocking=True)
                    originals = []
                    if criterion.uses_originals:
                        xo = tr.original[rows]
                        if cfg.augment != "none":
                            xo = augment_originals(xo, cfg.augment, aug_g, info.rank, world)
                        originals = [xo.to(device, non_blocking=True)]
                    with autocast():
                        out = net(lensless=xl, originals=originals, estimated=init.estimates is not None)
                    emb_o = D.gather_batch(out["originals"][0], info) if originals else None
                    loss = criterion.online(D.gather_batch(out["lensless"], info), emb_o,
                                            D.gather_batch(y, info), D.gather_batch(out["logits"], info))
                    if distill is not None:  # this process's rows against the teacher's targets
                        pick = (lambda t: None if t is None else t[rows].to(device, non_blocking=True))
                        # local rows: / world, so that the processes' mean gradient is the term's
                        loss = loss + distill(out["logits"], pick(taught.logits), out["lensless"],
                                              pick(taught.embeddings)) / world
                else:
                    xa, xo, y, yn = batch
                    y, yn = y.to(device), yn.to(device)
                    originals = [xo[:, j].to(device) for j in range(xo.shape[1])] if xo.ndim == 5 else []
                    if cfg.augment != "none":
                        originals = [augment_originals(o.cpu(), cfg.augment, aug_g, info.rank, world).to(device)
                                     for o in originals]
                    with autocast():
                        out = net(lensless=xa.to(device), originals=originals)
                    loss = criterion.tuples(D.gather_batch(out["lensless"], info),
                                            [D.gather_batch(o, info) for o in out["originals"]],
                                            D.gather_batch(y, info), D.gather_batch(yn, info),
                                            D.gather_batch(out["logits"], info))
                value = float(loss.detach())
                if not math.isfinite(value):
                    kept = (f"the last good state is {run.resume_path} (epoch {epoch - 1})"
                            if epoch > 1 else "no state was saved (first epoch)")
                    raise TrainingError(f"loss is {value} at epoch {epoch}, step {i}/{steps_per_epoch}; "
                                        f"training stopped and {kept}; try a lower --lr")
                optimizer.zero_grad(set_to_none=True)
                (loss * world if world > 1 else loss).backward()
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                step += 1
                loss_sum += value
                n_steps += 1
                n_anchors += len(y) * world
                if pb is not None:
                    pb.update(task, advance=1, description=f"epoch {epoch}/{cfg.epochs} loss {loss_sum / n_steps:.4f}")
        seconds = time.perf_counter() - t0
        last = {"epoch": epoch, "loss": loss_sum / max(n_steps, 1), "val_accuracy": None,
                "lr": lr, "images_per_s": n_anchors / max(seconds, 1e-9),
                "seconds": seconds, "steps": n_steps}
        if info.is_main:
            tv0 = time.perf_counter()
            scored = model if averaged is None else averaged.module
            last.update(validate(scored, tr, va, proto, len(classes), criterion, device, autocast))
            last["val_seconds"] = time.perf_counter() - tv0
            state = {"model": scored.state_dict(), "config": full, "epoch": epoch, "step": step,
                     "optimizer": optimizer.state_dict(),
                     "scheduler": {"name": cfg.schedule, "step": step, "total_steps": total_steps,
                                   "warmup_steps": warmup, "state": scheduler.state_dict()},
                     "rng": capture_rng(device), "metrics": last}
            if averaged is not None:
                state.update(trained_model=model.state_dict(), n_averaged=int(averaged.n_averaged))
            if epoch in resolved["checkpoints"]:
                save_state(run.checkpoint_path(epoch), state)
            save_state(run.resume_path, state)
            run.append_metrics(last)
            if show_progress:
                val = "-" if last.get("val_accuracy") is None else f"{100 * last['val_accuracy']:.2f}%"
                progress_line(f"epoch {epoch}/{cfg.epochs}: loss {last['loss']:.4f}, validation {val}, "
                              f"{seconds:.1f} s ({last['images_per_s']:,.0f} images/s)")
            if on_epoch is not None:
                on_epoch(dict(last))
            if tb is not None:
                for k in ("loss", "val_accuracy", "lr", "images_per_s"):
                    if last.get(k) is not None:
                        tb.add_scalar(k, last[k], epoch)
        D.barrier(info)
    if tb is not None:
        tb.close()
    return summarize(run.path, resumed_from)


def resume_state(run: RunDir, warn: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The state a resumed run continues from, and its file.

    ``RUN/resume.pt`` (the state after the last finished epoch) when it is readable; otherwise
    the newest readable checkpoint (each holds the same full state for its epoch), with a
    warning naming every file skipped and why. A checkpoint of the resumed epoch that is
    unreadable is rewritten from the state (the two are the same data); an older unreadable
    checkpoint cannot be rebuilt and is named in a warning (``evaluate`` will skip it).

    Args:
        run: the run directory.
        warn: called with each warning line (``"warning: ..."``); None: silent.

    Returns:
        ``(path, state)``, or None when the run has no saved state (it starts at epoch 1).

    Raises:
        DataError: every saved state is unreadable (each named with its reason).
    """
    candidates = [run.resume_path] + [run.checkpoint_path(e) for e in reversed(run.list_checkpoints())]
    candidates = [c for c in candidates if c.is_file()]
    skipped: list[str] = []
    found: tuple[Path, dict[str, Any]] | None = None
    for path in candidates:
        try:
            found = path, load_state(path)
            break
        except OpticsfreeError as e:
            skipped.append(str(e))
    if candidates and found is None:
        raise DataError("cannot resume: no saved state is readable (" + "; ".join(skipped) + "); "
                        f"remove {run.path} and train again")
    if found is None:
        return None
    path, state = found
    epoch = int(state["epoch"])
    if skipped and warn is not None:
        warn(f"warning: skipped {'; '.join(skipped)}; resuming from {path} (epoch {epoch})")
    for e in run.list_checkpoints():
        ck = run.checkpoint_path(e)
        if e > epoch or ck == path:
            continue  # a later checkpoint is written again when its epoch is retrained
        try:
            load_state(ck)
        except OpticsfreeError as err:
            if e == epoch:
                save_state(ck, state)
                if warn is not None:
                    warn(f"warning: {err}; rewritten from {path} (the same epoch {epoch} state)")
            elif warn is not None:
                warn(f"warning: {err}; it cannot be rebuilt (its state is gone) and evaluate "
                     "skips it")
    return found


def summarize(run: Path, resumed_from: int | None = None) -> dict[str, Any]:
    """The summary of a finished run (from metrics.jsonl and the checkpoint list)."""
    rows = training_run(run).read_metrics()
    ckpts = list_checkpoints(run)
    scored = [r for r in rows if r["epoch"] in ckpts and r.get("val_accuracy") is not None]
    best = max(scored, key=lambda r: (r["val_accuracy"], -r["epoch"]), default=None)
    return {"run": str(run), "epochs": rows[-1]["epoch"] if rows else 0, "checkpoints": ckpts,
            "val_accuracy": rows[-1].get("val_accuracy") if rows else None,
            "best_epoch": best["epoch"] if best else None,
            "best_val_accuracy": best["val_accuracy"] if best else None,
            "resumed_from": resumed_from}


def _tensorboard(run: Path):
    """A TensorBoard SummaryWriter under RUN/tensorboard when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional
        return None
    return SummaryWriter(str(run / "tensorboard"))
