"""Combine trained reconstruction models into an ensemble: ``opticsfree reconstruct ensemble``.

The members (``--set member=K`` runs of one command) are checked to share the capture set, the
size and the validation hold-out; the result is a MODEL directory whose network is
:class:`~opticsfree.reconstruction.ensemble.EnsembleNet` (the mean of the members' outputs), with
every member's and the ensemble's quality measured on the shared hold-out. With ``mirror`` the
network also averages the members' reconstructions of the left-right mirrored captures
(test-time mirroring; one member is then enough), and the report adds the plain mean so that the
gain, a property of the camera's symmetry, can be read on validation. See
docs/reconstruction.md, "Ensembles".
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from opticsfree import __version__
from opticsfree.errors import ConfigError, DataError
from opticsfree.reconstruction.apply import ARCHITECTURES, Reconstructor, load_reconstructor, model_file
from opticsfree.reconstruction.ensemble import EnsembleNet
from opticsfree.reconstruction.names import FRONT_END, REGISTRY
from opticsfree.reconstruction.train import (CHECKPOINT_FORMAT, _load_data, _val_quality,
                                             reconstruction_run)
from opticsfree.runs import load_state, save_state
from opticsfree.utils.io import file_sha256
from opticsfree.utils.runtime import torch_threads

#: config.json keys the members must share: the same capture set, size and validation hold-out.
SHARED_KEYS = ("captures", "size", "limit", "seed", "val_fraction", "holdout")


@dataclass(frozen=True)
class MemberQuality:
    """Validation quality of one model on the hold-out (per-image mean, images in [0, 1])."""

    model: str
    epoch: int | None
    val_psnr: float
    val_ssim: float
    val_mse: float


@dataclass(frozen=True)
class EnsembleReport:
    """What ``reconstruct ensemble`` wrote and measured.

    Attributes:
        path: the ensemble's MODEL directory.
        members: each member's validation quality, in the order given.
        ensemble: the ensemble's validation quality (``model`` is ``path``).
        n_val: validation scenes (rows) measured.
        unmirrored: with ``mirror``, the quality of the plain mean of the members (without the
            mirrored reconstructions; with one member, that member); None without ``mirror``.
    """

    path: Path
    members: tuple[MemberQuality, ...]
    ensemble: MemberQuality
    n_val: int
    unmirrored: MemberQuality | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready report (the ``--json`` output)."""
        def row(q: MemberQuality) -> dict[str, Any]:
            return {"model": q.model, "epoch": q.epoch, "val_psnr": q.val_psnr, "val_ssim": q.val_ssim,
                    "val_mse": q.val_mse}
        out = {"path": str(self.path), "n_val": self.n_val, "members": [row(q) for q in self.members],
               "ensemble": row(self.ensemble), "mirror": self.unmirrored is not None}
        if self.unmirrored is not None:
            out["unmirrored"] = row(self.unmirrored)
        return out


def _member_state(model_dir: str | Path, checkpoint: str | int) -> tuple[Path, dict[str, Any]]:
    f = model_file(model_dir, checkpoint)
    state = load_state(f, ("method",), what="opticsfree reconstruction model")
    spec = REGISTRY.find(state["method"])
    if spec is not None and not spec.network:  # a fit: nothing to average (the capability says why)
        raise ConfigError(f"{f}: a {spec.name} model has no network to average ({spec.no_ensemble})")
    missing = [k for k in ("arch", "state_dict", "size", "in_channels", "out_channels", "config") if k not in state]
    if missing:
        raise DataError(f"{f}: not an opticsfree reconstruction model (no {', '.join(missing)})")
    if not isinstance(state["config"], dict):
        raise DataError(f"{f}: its config is not a JSON object")
    return f, state


def same_value(a: Any, b: Any) -> bool:
    """Equality of nested dicts, lists and tensors (tensors equal in shape, dtype and every value)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and torch.equal(a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same_value(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(same_value(x, y) for x, y in zip(a, b)))
    return a == b


def ensemble_reconstruction(models: Sequence[str | Path], out: str | Path, device: str = "cpu",
                            threads: int | None = None, batch_size: int = 256,
                            mirror: bool = False, checkpoint: str | int = "last") -> EnsembleReport:
    """Combine trained reconstruction models into one MODEL directory that averages them.

    Args:
        models: two or more MODEL directories (or ``model.pt`` files) of network methods trained
            on the same capture set with the same validation hold-out (``--seed``, ``--limit``,
            ``--val-fraction``, ``--size``): the members of ``--set member=K`` runs.
        out: the MODEL directory to write (must not hold a model).
        device: where the validation runs (``cpu`` or ``cuda``).
        threads: CPU threads for torch (None: torch's default).
        batch_size: images per forward pass in the validation.
        mirror: test-time mirroring: also average every member's reconstruction of the
            left-right mirrored capture, mirrored back (:class:`~.ensemble.EnsembleNet`); one
            model is then enough. It helps only as far as the camera is left-right symmetric:
            the report's ``unmirrored`` row is the mean without it.
        checkpoint: which model of every member: ``last``, ``best`` (its best validation epoch)
            or an epoch number (:func:`~opticsfree.reconstruction.apply.model_file`).

    Returns:
        The report: every member's and the ensemble's quality on the shared hold-out.

    Raises:
        ConfigError: fewer than two models (one with ``mirror``), the same model twice, a
            fitted model (``tikhonov``: the ``no_ensemble`` capability), members that differ
            in a shared key (named, with both values), or ``out`` holds a model.
        DataError: a model file that is missing or not a reconstruction model (named).
    """
    with torch_threads(threads):
        return _ensemble(models, Path(out), device, batch_size, mirror, checkpoint)


def _ensemble(models: Sequence[str | Path], out: Path, device: str, batch_size: int,
              mirror: bool, checkpoint: str | int) -> EnsembleReport:
    if len(models) < (1 if mirror else 2):
        raise ConfigError(f"an ensemble needs at least 2 models (or one with --mirror), got {len(models)}")
    run = reconstruction_run(out)
    run.begin(resume=False)
    loaded = [_member_state(m, checkpoint) for m in models]
    files = [f for f, _ in loaded]
    digests = [file_sha256(f) for f in files]
    for i, d in enumerate(digests):
        if d in digests[:i]:
            raise ConfigError(f"{files[i]}: the same model as {files[digests.index(d)]}; give distinct "
                              "members (train them with --set member=1, 2, ...)")
    f0, s0 = loaded[0]
    for f, s in loaded[1:]:
        for k in ("method", "size", "in_channels", "out_channels"):
            if s[k] != s0[k]:
                raise ConfigError(f"{f}: {k} {s[k]!r} differs from {f0}'s {s0[k]!r}; members must be "
                                  "the same method at the same size")
        for k in SHARED_KEYS:
            if s["config"].get(k) != s0["config"].get(k):
                raise ConfigError(f"{f}: {k} {s['config'].get(k)!r} differs from {f0}'s "
                                  f"{s0['config'].get(k)!r}; members must share the capture set and the "
                                  "validation hold-out (train them with the same --seed, --limit, "
                                  "--val-fraction and --size, and --set member=K)")
        if not same_value(s.get(FRONT_END), s0.get(FRONT_END)):
            raise ConfigError(f"{f}: its physics front end differs from {f0}'s; members must share it")

    for f, s in loaded:
        if not isinstance(s["arch"], dict) or s["arch"].get("class") not in ARCHITECTURES:
            raise ConfigError(f"{f}: not a trained network (architecture "
                              f"{s['arch'].get('class') if isinstance(s['arch'], dict) else s['arch']!r}); "
                              "an ensemble is made of trained models, not of ensembles")
    recs = [load_reconstructor(f, device) for f in files]
    net = EnsembleNet([r.net for r in recs], mirror=mirror).eval()
    ens = Reconstructor(method=recs[0].method, epoch=None, size=recs[0].size, in_channels=recs[0].in_channels,
                        out_channels=recs[0].out_channels, path=out / "model.pt", net=net,
                        fitted=recs[0].fitted, device=recs[0].device)

    # validation on the members' shared hold-out (the test split is not read), through the
    # path `reconstruct apply` takes (the physics front end first, then the network)
    cfg0 = s0["config"]
    captures = Path(cfg0["captures"])
    _, val = _load_data(captures, cfg0.get("size"), float(cfg0["val_fraction"]), int(cfg0["seed"]),
                        cfg0.get("limit"))
    if len(val) == 0:
        raise ConfigError(f"{f0}: its run held out no validation scenes (--val-fraction 0); the "
                          "ensemble could not be measured")
    quality = []
    for (f, s), r in zip(loaded, recs):
        q = _val_quality(r.reconstruct(val.lensless, batch_size), val.original)
        quality.append(MemberQuality(str(f), s.get("epoch"), q["val_psnr"], q["val_ssim"], q["val_mse"]))
    q = _val_quality(ens.reconstruct(val.lensless, batch_size), val.original)
    whole = MemberQuality(str(out), None, q["val_psnr"], q["val_ssim"], q["val_mse"])
    unmirrored = None
    if mirror:  # the plain mean, for the gain of mirroring (one member: the member itself)
        if len(recs) == 1:
            unmirrored = replace(quality[0], model=f"{out} (without mirroring)")
        else:
            plain = replace(ens, net=EnsembleNet([r.net for r in recs]).eval())
            q = _val_quality(plain.reconstruct(val.lensless, batch_size), val.original)
            unmirrored = MemberQuality(f"{out} (without mirroring)", None, q["val_psnr"], q["val_ssim"],
                                       q["val_mse"])

    config = {"method": s0["method"], "ensemble": True,
              **{k: cfg0.get(k) for k in SHARED_KEYS},
              "members": [{"model": str(f.resolve()), "model_sha256": d, "epoch": s.get("epoch"),
                           "method_config": s["config"].get("method_config")}
                          for (f, s), d in zip(loaded, digests)],
              "mirror": mirror, "n_val": len(val),
              "validation": [vars(m) for m in quality] + ([vars(unmirrored)] if unmirrored else []) + [vars(whole)],
              "image_size": s0["size"], "in_channels": s0["in_channels"], "out_channels": s0["out_channels"]}
    config["package_version"] = __version__
    arch = {"class": "Ensemble", "members": [s["arch"] for _, s in loaded], "mirror": mirror}
    state = {"format": CHECKPOINT_FORMAT, "method": s0["method"], "epoch": None, "arch": arch,
             "state_dict": net.state_dict(), "size": s0["size"], "in_channels": s0["in_channels"],
             "out_channels": s0["out_channels"], "captures": cfg0["captures"], "config": config}
    if s0.get(FRONT_END) is not None:
        state[FRONT_END] = s0[FRONT_END]
    # written beside ``out`` and renamed into place: an interrupted run leaves no half model
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        reconstruction_run(tmp).write_config(config)
        save_state(tmp / "model.pt", state)
        if out.is_dir():
            out.rmdir()  # empty (checked by begin); the rename needs it gone or empty
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return EnsembleReport(out, tuple(quality), whole, len(val), unmirrored)

