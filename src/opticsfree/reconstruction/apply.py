"""Apply a trained reconstruction to a capture set: ``opticsfree reconstruct apply``.

The result is a new capture set in the same format whose ``lensless`` images are the
reconstructions (PNG, lossless), with the originals hard-linked (or copied when linking is not
possible) and the same ``index.csv`` rows. Its manifest records where it came from::

    "camera": {"type": "reconstruction", "method": ..., "notes": ...}
    "derived_from": {"path": <source set>, "camera": <source manifest camera>, "created": ...}
    "reconstruction": {"method", "model", "model_sha256", "epoch", "size"}

so metric learning on the derived set reproduces the seed's "reconstructive images" tables
with no change. ``reconstruction.json`` (written first) makes a rerun after an interruption
resume: rows whose reconstruction exists are not recomputed.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from opticsfree.captures.format import (
    IndexRow,
    lensless_relpath,
    make_manifest,
    open_capture_set,
    write_index,
    write_manifest,
)
from opticsfree.captures.loader import load_captures
from opticsfree.captures.writer import ImageJob, write_images
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.reconstruction.ensemble import EnsembleNet
from opticsfree.reconstruction.generators import ResnetGenerator
from opticsfree.reconstruction.names import FRONT_END, method_class, method_spec
from opticsfree.reconstruction.train import MODEL_FILES, reconstruct_with
from opticsfree.reconstruction.unet import UNet
from opticsfree.utils.io import atomic_path, ensure_dir, file_sha256, load_torch, read_json, write_json
from opticsfree.utils.runtime import resolve_device, torch_threads

if TYPE_CHECKING:
    from opticsfree.reconstruction.method import FittedModel

ARCHITECTURES = {"ResnetGenerator": ResnetGenerator, "UNet": UNet}
PLAN_FILE = "reconstruction.json"


@dataclass
class Reconstructor:
    """A loaded reconstruction model: its fitted stage, then its network (either may be absent).

    Attributes:
        method: the registered method (``cyclegan``, ``unet``, ``bijective``, ``tikhonov``, ...).
        epoch: epochs trained (None for a fitted method and an ensemble).
        size: image side the model works at (captures are loaded at this size).
        in_channels, out_channels: capture and reconstruction channels.
        path: the ``model.pt`` file.
        net: a network method's lensless -> original network (None for a fitted method).
        fitted: the fitted model applied first (a
            :class:`~opticsfree.reconstruction.method.FittedModel`): a fitted method's whole
            model, or the frozen physics front end of a network method with one (``cyclegan``
            with ``front_end``); None for a plain network.
        device: where ``net`` runs.
    """

    method: str
    epoch: int | None
    size: int
    in_channels: int
    out_channels: int
    path: Path
    net: torch.nn.Module | None = None
    fitted: FittedModel | None = None
    device: torch.device = torch.device("cpu")

    def reconstruct(self, lensless: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """uint8 captures (N, C, size, size) -> uint8 reconstructions (N, C', size, size)."""
        if lensless.ndim != 4 or lensless.shape[1] != self.in_channels or \
                tuple(lensless.shape[-2:]) != (self.size, self.size):
            raise DataError(f"{self.path}: the model takes captures of shape ({self.in_channels}, "
                            f"{self.size}, {self.size}), got {tuple(lensless.shape[1:])}")
        if self.fitted is not None:  # a fitted method, or a network's physics front end
            lensless = self.fitted.reconstruct(lensless)
        if self.net is None:
            return lensless
        return reconstruct_with(self.net, lensless, self.device, batch_size)


def model_file(model_dir: str | Path, checkpoint: str | int = "last") -> Path:
    """The model file of a MODEL directory that ``checkpoint`` names.

    ``reconstruct train`` writes ``model.pt`` after every epoch (the last one) and ``best.pt``
    after every epoch whose validation PSNR beats every earlier epoch's (the earlier one among
    ties; a fit writes both once).

    Args:
        model_dir: a MODEL directory, or one of its model files (then ``checkpoint`` must be
            ``last``, the file itself).
        checkpoint: ``"last"`` (``model.pt``), ``"best"`` (``best.pt``) or an epoch number that
            one of the two holds.

    Returns:
        The file to load.

    Raises:
        DataError: no such file, or no file holding that epoch (the epochs kept are named).
        ConfigError: a ``checkpoint`` that is none of these.
    """
    p = Path(model_dir)
    spec = str(checkpoint).strip().lower()
    if p.is_file():
        if spec != "last":
            raise ConfigError(f"--checkpoint {checkpoint}: {p} is a model file; pass its MODEL directory "
                              "to choose a checkpoint")
        return p
    if spec in MODEL_FILES:
        f = p / MODEL_FILES[spec]
        if f.is_file():
            return f
        if spec == "best" and (p / MODEL_FILES["last"]).is_file():
            raise DataError(f"{p}: no best.pt (an ensemble, or a model trained without a validation "
                            "hold-out or before best.pt was kept); use --checkpoint last")
        raise DataError(f"{p}: no model.pt; is it a MODEL directory written by `opticsfree reconstruct train`?")
    if not spec.isdigit():
        raise ConfigError(f"--checkpoint {checkpoint}: expected best, last or an epoch number")
    kept = {}
    for name in MODEL_FILES.values():
        if (p / name).is_file():
            kept.setdefault(load_torch(p / name).get("epoch"), p / name)
    if int(spec) in kept:
        return kept[int(spec)]
    have = ", ".join(str(e) for e in sorted(e for e in kept if e is not None)) or "none"
    raise DataError(f"{p}: no model of epoch {int(spec)} (model.pt and best.pt hold epochs {have})")


def build_network(arch: dict) -> torch.nn.Module:
    """The untrained network of an architecture spec (``model.pt``'s ``"arch"``): a class of
    :data:`ARCHITECTURES` with its keyword arguments, or ``{"class": "Ensemble", "members": [spec,
    ...], "mirror": bool}`` (:class:`~opticsfree.reconstruction.ensemble.EnsembleNet` of
    ``reconstruct ensemble``; ``mirror`` absent in older files: False).

    Raises:
        KeyError / TypeError / ValueError: a malformed spec (the caller names the file).
    """
    if arch["class"] == "Ensemble":
        return EnsembleNet([build_network(a) for a in arch["members"]], mirror=bool(arch.get("mirror", False)))
    cls = ARCHITECTURES[arch["class"]]
    kwargs = {k: v for k, v in arch["kwargs"].items() if isinstance(v, (int, float, str, bool))}
    return cls(**kwargs)


def load_reconstructor(model_dir: str | Path, device: str = "cpu",
                       checkpoint: str | int = "last") -> Reconstructor:
    """Load ``MODEL/model.pt`` (or the file ``checkpoint`` names, :func:`model_file`) safely
    (weights only) and rebuild its model through the registry: a fitted method's model by its
    registered class (``from_state`` of the entry under the method's name), a network method's
    network from its architecture (:func:`build_network`),
    after the physics front end (the registered class of
    :data:`~opticsfree.reconstruction.names.FRONT_END`) when ``model.pt`` holds one.

    Args:
        model_dir: a MODEL directory or its ``model.pt``.
        device: where the network runs (``cpu`` or ``cuda``).
        checkpoint: ``last``, ``best`` or an epoch number (:func:`model_file`).

    Returns:
        The loaded model.

    Raises:
        DataError / OpticsfreeError: missing or malformed model file (named).
        ConfigError: a ``checkpoint`` that is not best, last or an epoch number.
    """
    f = model_file(model_dir, checkpoint)
    state = load_torch(f)
    dev = resolve_device(device)
    try:
        method = str(state["method"])
        common = dict(method=method, epoch=None if state["epoch"] is None else int(state["epoch"]),
                      size=int(state["size"]), in_channels=int(state["in_channels"]),
                      out_channels=int(state["out_channels"]), path=f, device=dev)
        spec = method_spec(method)
        if spec.network:  # its network, after the physics front end where model.pt holds one
            net = build_network(state["arch"])
            net.load_state_dict(state["state_dict"])
            net.to(dev).eval()
            fitted = method_class(FRONT_END).from_state(state[FRONT_END]) if FRONT_END in state else None
        else:  # a fitted method: its registered class's model, saved under the method's name
            net, fitted = None, spec.load_class().from_state(state[method])
        return Reconstructor(**common, net=net, fitted=fitted)
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as e:
        raise DataError(f"{f}: not a valid reconstruction model ({type(e).__name__}: {e})".splitlines()[0]) from None


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a hard link to ``src`` (a copy where linking fails), atomically
    (:func:`~opticsfree.utils.io.atomic_path`; the link keeps ``src``'s mode untouched)."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst, set_mode=False) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def apply_reconstruction(model_dir: str | Path, captures: str | Path, out: str | Path,
                         device: str = "cpu", batch_size: int = 256, workers: int = 0,
                         threads: int | None = None, on_progress=None,
                         checkpoint: str | int = "last") -> Path:
    """Write a derived capture set whose lensless images are the model's reconstructions.

    Args:
        model_dir: a MODEL directory (or its ``model.pt``).
        captures: the source capture set (every split is reconstructed).
        out: the derived set to write (must not exist, be empty, or be an interrupted apply of
            the same model to the same source).
        device: ``cpu`` or ``cuda``.
        batch_size: images per forward pass.
        workers: PNG encoding processes (0 = one per CPU).
        threads: CPU threads for torch (None: torch's default).
        on_progress: callback ``f(split, done, total)``.
        checkpoint: the model file, ``last``, ``best`` or an epoch number (:func:`model_file`);
            the derived set's manifest records the file and its epoch.

    Returns:
        ``out``; the set passes ``opticsfree check`` and loads with ``load_captures``.
    """
    with torch_threads(threads):
        return _apply(model_dir, captures, Path(out), device, batch_size, workers, on_progress, checkpoint)


def _apply(model_dir: str | Path, captures: str | Path, out: Path, device: str, batch_size: int,
           workers: int, on_progress, checkpoint: str | int) -> Path:
    from opticsfree.utils.io import check_out_dir

    check_out_dir(out, "a directory (the derived capture set to write)")
    rec = load_reconstructor(model_dir, device, checkpoint)
    src = Path(captures).resolve()
    cs = open_capture_set(src)
    if out.resolve() == src:
        raise OpticsfreeError(f"--out {out} is the source capture set; choose a new directory")
    plan = {"source": str(src), "model": str(rec.path.resolve()), "model_sha256": file_sha256(rec.path)}
    plan_path = out / PLAN_FILE
    if plan_path.is_file():
        if read_json(plan_path) != plan:
            raise OpticsfreeError(f"{out} holds reconstructions of another model or source; use another --out")
    elif out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise OpticsfreeError(f"{out} exists and is not empty; choose a new directory for the derived set")
    ensure_dir(out)
    write_json(plan_path, plan)

    rows_out: list[IndexRow] = []
    multi = cs.frames > 1
    for split in cs.splits:
        rows = cs.rows_for(split)
        new_rel = [lensless_relpath(split, r.label_name, r.id, r.frame if multi else None, "png") for r in rows]
        todo = [i for i, rel in enumerate(new_rel) if not (out / rel).exists()]
        if todo:
            data = load_captures(src, split, size=rec.size)
            if data.lensless.shape[1] != rec.in_channels:
                raise DataError(f"{src}: {split} captures have {data.lensless.shape[1]} channels, the model "
                                f"{rec.path} takes {rec.in_channels}")
            chunk = 4096
            for k in range(0, len(todo), chunk):
                idx = torch.tensor(todo[k:k + chunk])
                images = rec.reconstruct(data.lensless[idx], batch_size).permute(0, 2, 3, 1).contiguous().numpy()
                jobs = [ImageJob(str(out / new_rel[i]), images[j]) for j, i in enumerate(todo[k:k + chunk])]
                write_images(jobs, workers=workers)
                if on_progress:
                    on_progress(split, min(k + chunk, len(todo)), len(todo))
        for r, rel in zip(rows, new_rel):
            try:
                _link_or_copy(cs.path(r.original), out / r.original)
            except OSError as e:
                raise OpticsfreeError(f"cannot write {out / r.original}: {e.strerror}") from None
            rows_out.append(IndexRow(r.split, r.id, r.label, r.label_name, r.original, rel, r.frame))

    m = cs.manifest
    scenes = Counter(s for s, _ in {(r.split, r.id) for r in rows_out})
    camera = {"type": "reconstruction", "method": rec.method,
              "notes": f"lensless images are {rec.method} reconstructions of the captures of {src}; "
                       "the capturing camera is derived_from.camera"}
    extra: dict[str, Any] = {
        "derived_from": {"path": str(src), "camera": m.get("camera"), "created": m.get("created")},
        "reconstruction": {"method": rec.method, "model": str(rec.path.resolve()),
                           "model_sha256": plan["model_sha256"], "epoch": rec.epoch, "size": rec.size},
    }
    for k in ("limit",):
        if k in m:
            extra[k] = m[k]
    write_index(out, rows_out, frames=multi)
    write_manifest(out, make_manifest(source=m["source"], classes=cs.classes,
                                      splits={s: int(scenes[s]) for s in cs.splits}, camera=camera,
                                      seed=m.get("seed"), frames=cs.frames, channels=rec.out_channels,
                                      **extra))
    return out
