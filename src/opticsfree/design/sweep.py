"""``camera sweep``: the ``camera info`` numbers over a grid of one or two camera parameters.

Writes ``DIR/sweep.csv`` (one row per grid point: the parameter values, then every metric of
:data:`~opticsfree.design.info.METRICS`), ``DIR/sweep.json`` (the settings) and heatmaps
``DIR/<metric>.png`` of ``linear_psnr``, ``raw_psnr`` and ``linear_probe_accuracy`` (line plots
for one parameter). The CSV is rewritten atomically after every point; rerunning the same
command into the same folder skips the points already measured.
"""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path
from typing import Callable, Sequence

from opticsfree.data.base import ImageDataset
from opticsfree.design.info import METRICS, camera_info
from opticsfree.design.params import Axis, set_values
from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.optics import CameraConfig
from opticsfree.utils.io import check_out_dir, ensure_dir, read_json, write_json, write_text
from opticsfree.utils.parallel import check_executor

#: Metrics drawn as heatmaps.
HEATMAPS = ("linear_psnr", "raw_psnr", "linear_probe_accuracy")
SWEEP_VERSION = 1


#: Grids larger than this need ``--yes`` (each point is a whole ``camera info``).
MAX_POINTS = 100
#: Seconds of one ``camera info`` point per 1,000 scenes per split on 2 CPU cores (30.7 s for
#: ``--limit 5000``, bench/bench_camera_info.py): the basis of the time estimate.
SECONDS_PER_1000_SCENES = 6.1


def estimate_seconds(points: int, limit: int | None) -> float:
    """A rough wall time of a sweep of ``points`` grid points at ``limit`` scenes per split,
    on 2 CPU cores (linear in the scenes; the first point also builds caches)."""
    return points * SECONDS_PER_1000_SCENES * (limit or 50000) / 1000.0


def sweep_settings(base: CameraConfig, axes: Sequence[Axis], dataset: ImageDataset, limit: int | None,
                   seed: int, size: int) -> dict:
    """What determines a sweep's content (compared when resuming)."""
    return {"version": SWEEP_VERSION, "camera": base.to_dict(), "dataset": dataset.name,
            "source": dataset.source, "limit": limit, "seed": seed, "size": size,
            "axes": [{"path": a.path, "lo": a.lo, "hi": a.hi, "n": a.n} for a in axes]}


def _read_rows(path: Path, columns: list[str]) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != columns:
            return []
        return [{k: float(v) if v != "" else None for k, v in r.items()} for r in reader]


def _write_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else f"{r[k]:.6g}") for k in columns})
    write_text(path, buf.getvalue())


def measure_point(camera: CameraConfig, dataset: ImageDataset, limit: int | None, seed: int,
                  size: int) -> dict:
    """The metrics of ``camera info`` at one grid point (a module-level function: a Ray task)."""
    return camera_info(camera, dataset, limit=limit, seed=seed, size=size, cache=False).metrics()


def _measure_task(dataset: ImageDataset, limit: int | None, seed: int, size: int, camera: CameraConfig) -> dict:
    return measure_point(camera, dataset, limit, seed, size)


def sweep_camera(base: CameraConfig, axes: Sequence[Axis], dataset: ImageDataset, out: str | Path,
                 limit: int | None = 2000, seed: int = 0, size: int = 32,
                 on_point: Callable[[int, int, dict], None] | None = None,
                 executor: str = "local", address: str | None = None) -> list[dict]:
    """Measure ``camera info`` at every grid point and write the CSV and the heatmaps.

    Args:
        base: the camera whose parameters are varied.
        axes: one or two distinct parameters with their grids.
        dataset: the dataset (train and test splits).
        out: output folder (created; resumed when it holds the same sweep).
        limit, seed, size: the dataset subset and comparison size of every point.
        on_point: called after each point with (done, total, row).
        executor: ``local`` (one point after another here) or ``ray`` (every point a Ray task,
            :func:`opticsfree.utils.parallel.ray_map`, with this process's torch threads: the
            same numbers); the CSV is rewritten after each finished point either way.
        address: a Ray cluster to join (``ray`` only).

    Returns:
        The rows, in grid order (first parameter slowest).
    """
    check_executor(executor, address)
    if not 1 <= len(axes) <= 2:
        raise ConfigError(f"give one or two --param PATH=LO:HI:N, got {len(axes)}")
    if len({a.path for a in axes}) != len(axes):
        raise ConfigError("the two --param options name the same parameter")
    out = Path(out)
    check_out_dir(out, "a folder (the sweep to write or resume)")
    settings = sweep_settings(base, axes, dataset, limit, seed, size)
    if (out / "sweep.json").is_file():
        if read_json(out / "sweep.json") != settings:
            raise OpticsfreeError(f"{out} holds a different sweep; use another --out or delete it")
    elif out.exists() and any(out.iterdir()):
        raise OpticsfreeError(f"{out} exists and is not a camera sweep; use another --out")
    # every grid corner must be a valid camera before any work starts
    for corner in itertools.product(*[(a.lo, a.hi) for a in axes]):
        set_values(base, dict(zip([a.path for a in axes], corner)))
    ensure_dir(out)
    write_json(out / "sweep.json", settings)
    columns = [a.path for a in axes] + list(METRICS)
    done = {tuple(r[a.path] for a in axes): r for r in _read_rows(out / "sweep.csv", columns)}
    grid = list(itertools.product(*[a.values() for a in axes]))
    keys = [tuple(float(f"{v:.6g}") for v in point) for point in grid]
    paths = [a.path for a in axes]
    todo = [i for i, key in enumerate(keys) if key not in done]
    count = len(grid) - len(todo)

    def record(i: int, metrics: dict) -> None:
        nonlocal count
        done[keys[i]] = {**dict(zip(paths, grid[i])), **metrics}
        _write_rows(out / "sweep.csv", columns, [done[k] for k in keys if k in done])
        count += 1
        if on_point:
            on_point(count, len(grid), done[keys[i]])

    if executor == "ray" and todo:
        from opticsfree.utils.parallel import ray_map

        calls = [(set_values(base, dict(zip(paths, grid[i]))),) for i in todo]
        for j, metrics in ray_map(_measure_task, calls, address=address, shared=(dataset, limit, seed, size)):
            record(todo[j], metrics)
    else:
        for i in todo:
            record(i, measure_point(set_values(base, dict(zip(paths, grid[i]))), dataset, limit, seed, size))
    rows = [done[k] for k in keys]
    _write_rows(out / "sweep.csv", columns, rows)
    from opticsfree.design.figures import draw_sweep

    for metric in HEATMAPS:
        draw_sweep(rows, axes, metric, out / f"{metric}.png")
    return rows
