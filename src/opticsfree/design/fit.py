"""``camera fit``: a camera whose ``camera info`` numbers match measured ones.

Given a base camera, targets :math:`t_m` for some metrics :math:`m` of :data:`METRICS` (e.g.
measured with ``camera info --captures`` on a rig's real captures, or published numbers) and
free parameters :math:`p` with bounds, the fit minimises the mean squared relative error

.. math::

    E(p) = \\frac{1}{|M|} \\sum_{m \\in M} \\Bigl(\\frac{v_m(p) - t_m}{|t_m|}\\Bigr)^2

where :math:`v_m(p)` is the metric of the camera with parameters :math:`p` on a seeded dataset
subset (:func:`~opticsfree.design.info.camera_info`: the same scenes and the same capture
noise at every evaluation, so :math:`E` is a deterministic function of :math:`p`). One free
parameter is searched with SciPy's bounded Brent method (``minimize_scalar``), several with
SciPy's bounded Nelder-Mead on the parameters rescaled to [0, 1]. A target is *reached* when its
relative error is within ``tolerance``; the best camera found is returned either way, with the
values it reaches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from opticsfree import seed_study
from opticsfree.data.base import ImageDataset
from opticsfree.design.info import METRICS, camera_info, relative_errors
from opticsfree.design.params import Bound, get_value, parse_number, set_values
from opticsfree.errors import ConfigError
from opticsfree.optics import CameraConfig


@dataclass
class FitResult:
    """The outcome of :func:`fit_camera`.

    Attributes:
        camera: the best camera found (base with the fitted values).
        values: fitted value of each free parameter.
        targets: the targets; reached: the metric values of ``camera``; errors: relative errors.
        tolerance: relative error within which a target counts as reached.
        evaluations: cameras evaluated; objective: :math:`E` of the best one.
        history: one row per evaluation (parameter values, metrics, objective).
    """

    camera: CameraConfig
    values: dict[str, float]
    targets: dict[str, float]
    reached: dict[str, float]
    errors: dict[str, float]
    tolerance: float
    evaluations: int
    objective: float
    history: list[dict] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """Every target reached within the tolerance."""
        return all(e <= self.tolerance for e in self.errors.values())

    def unreached(self) -> list[str]:
        return [k for k, e in self.errors.items() if e > self.tolerance]

    def to_json(self) -> dict:
        return {"values": self.values, "targets": self.targets, "reached": self.reached,
                "relative_errors": self.errors, "tolerance": self.tolerance, "ok": self.ok,
                "evaluations": self.evaluations, "objective": self.objective}


def parse_targets(specs: Sequence[str]) -> dict[str, float]:
    """``KEY=VALUE`` targets with KEY in :data:`METRICS` (one-line ConfigError otherwise)."""
    out: dict[str, float] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise ConfigError(f"--target {spec!r}: expected KEY=VALUE, e.g. "
                              f"raw_psnr={seed_study.DEGRADATION.psnr}")
        if key not in METRICS:
            raise ConfigError(f"--target {spec!r}: unknown key {key!r}; expected one of: {', '.join(METRICS)}")
        v = parse_number(value, spec, "--target")
        if key in out:
            raise ConfigError(f"--target {key} given twice")
        out[key] = v
    if not out:
        raise ConfigError("give at least one --target KEY=VALUE")
    return out


def fit_camera(base: CameraConfig, dataset: ImageDataset, targets: Mapping[str, float],
               free: Sequence[Bound], limit: int | None = 2000, seed: int = 0, size: int = 32,
               max_evals: int = 60, tolerance: float = 0.05,
               on_eval: Callable[[int, dict], None] | None = None) -> FitResult:
    """Search the free parameters of ``base`` so that its ``camera info`` numbers meet ``targets``.

    Args:
        base: the starting camera (its values are the search's starting point, clipped to the
            bounds).
        dataset: the dataset (train and test splits).
        targets: metric key -> target value.
        free: the parameters and their bounds (at least one, distinct paths).
        limit, seed, size: the dataset subset and comparison size of every evaluation.
        max_evals: evaluation budget of the optimiser.
        tolerance: relative error within which a target counts as reached.
        on_eval: called after each evaluation with its number and row.

    Returns:
        :class:`FitResult` (the best camera found, whether or not every target was reached).
    """
    if not free:
        raise ConfigError("give at least one --free PATH=LO:HI")
    paths = [b.path for b in free]
    if len(set(paths)) != len(paths):
        raise ConfigError(f"a parameter is given twice in --free: {', '.join(paths)}")
    for k in targets:
        if k not in METRICS:
            raise ConfigError(f"unknown target {k!r}; expected one of: {', '.join(METRICS)}")
    if max_evals < 2:
        raise ConfigError(f"--max-evals must be >= 2, got {max_evals}")
    if not tolerance > 0:
        raise ConfigError(f"--tolerance must be positive, got {tolerance}")
    lo = np.array([b.lo for b in free])
    span = np.array([b.hi - b.lo for b in free])
    # every bound must give a valid camera before the search starts
    for b in free:
        set_values(base, {b.path: b.lo})
        set_values(base, {b.path: b.hi})
    metrics = list(targets)
    history: list[dict] = []
    seen: dict[tuple, float] = {}

    def evaluate(z: np.ndarray) -> float:
        z = np.clip(np.asarray(z, dtype=float).reshape(-1), 0.0, 1.0)
        key = tuple(np.round(z, 9))
        if key in seen:
            return seen[key]
        values = {p: float(v) for p, v in zip(paths, lo + z * span)}
        cam = set_values(base, values)
        info = camera_info(cam, dataset, limit=limit, seed=seed, size=size, metrics=metrics, cache=False)
        reached = info.metrics()
        err = relative_errors(reached, targets)
        obj = float(np.mean([e * e for e in err.values()]))
        row = {"values": values, "reached": reached, "objective": obj}
        history.append(row)
        seen[key] = obj
        if on_eval:
            on_eval(len(history), row)
        return obj

    start = np.clip((np.array([get_value(base, p) for p in paths]) - lo) / span, 0.0, 1.0)
    from scipy import optimize

    if len(free) == 1:
        optimize.minimize_scalar(lambda t: evaluate(np.array([t])), bounds=(0.0, 1.0), method="bounded",
                                 options={"xatol": 1e-3, "maxiter": max_evals})
    else:
        n = len(free)
        simplex = [start]
        for i in range(n):
            v = start.copy()
            v[i] = v[i] + 0.25 if v[i] + 0.25 <= 1 else v[i] - 0.25
            simplex.append(v)
        optimize.minimize(evaluate, start, method="Nelder-Mead", bounds=[(0.0, 1.0)] * n,
                          options={"maxfev": max_evals, "initial_simplex": np.array(simplex),
                                   "xatol": 1e-3, "fatol": 1e-6})
    best = min(history, key=lambda r: r["objective"])
    cam = set_values(base, best["values"])
    return FitResult(camera=cam, values=best["values"], targets=dict(targets), reached=best["reached"],
                     errors=relative_errors(best["reached"], targets), tolerance=tolerance,
                     evaluations=len(history), objective=best["objective"], history=history)


def camera_toml(camera: CameraConfig, header: Sequence[str] = ()) -> str:
    """A complete camera file for ``camera`` (loads back to an equal config), with ``header``
    lines as TOML comments. A ``psf`` camera's PSF path is written absolute."""
    import tomli_w

    d = camera.to_dict()
    if d.get("psf") and camera.source_dir and not Path(d["psf"]["path"]).is_absolute():
        d["psf"]["path"] = str(Path(camera.source_dir) / d["psf"]["path"])

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if v is not None}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    # tomli-w writes every array over several lines; keep arrays of numbers on one line, as a
    # person writes them (``offset_mm = [0.0, 0.0]``)
    body = re.sub(r"\[\s*([-+0-9.eE]+(?:\s*,\s*[-+0-9.eE]+)*)\s*,?\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                  tomli_w.dumps(clean(d)))
    lines = [f"# {h}" if h else "#" for h in header]
    return "\n".join(lines) + ("\n" if lines else "") + body


def fit_header(result: FitResult, base_name: str, command: str, dataset: str, limit: int | None,
               seed: int) -> list[str]:
    """Header comment lines of a fitted camera file: targets, values reached and the command."""
    lines = [f"Fitted by `opticsfree camera fit` from the camera '{base_name}' on {dataset} "
             f"(limit {limit}, seed {seed}), {result.evaluations} evaluations.",
             f"command: {command}", "targets -> reached (relative error):"]
    for k, t in result.targets.items():
        v = result.reached.get(k)
        lines.append(f"  {k} = {t:g} -> {v:.4g} ({result.errors[k]:.1%})" if v is not None else f"  {k} = {t:g} -> n/a")
    lines.append("fitted parameters:")
    lines.extend(f"  {p} = {v:.6g}" for p, v in result.values.items())
    if not result.ok:
        lines.append(f"NOT REACHED within {result.tolerance:.0%}: {', '.join(result.unreached())}")
    return lines
