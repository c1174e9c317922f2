"""``rig capture``: show every scene on the rig's display, record it, write a capture set.

For each scene, in the order ``simulate`` would write it (the same ``--split``, ``--limit`` and
``--seed`` choose the same scenes): draw the original, wait ``display.settle_s``, drop
``camera.discard`` frames, grab ``--frames`` captures, write the original (PNG) and the
captures (JPEG or PNG) atomically, then append the scene's rows to ``index.csv`` with one
write, flushed to disk. A kill loses at most the scene in flight; ``--resume`` drops a torn last
line and continues at the first scene without rows. On the virtual rig the captures do not
depend on what ran before them, so a resumed set's images and ``index.csv`` are byte-identical
to an uninterrupted run's (``manifest.json`` and ``drift.csv`` differ only in their times).

Drift (``[monitor] every = N``): before the first scene and after every N scenes, the reference
scene (the first scene of the run) and a black frame are captured and a row is appended to
``drift.csv``: ``time, scene_index, reference_psnr_db`` (the reference capture against its first
capture, conventions of ``quality``), ``dark_level`` (mean of the black frame's capture, fraction
of full scale) and ``clipped_fraction`` (pixels of the reference capture at 255). The first
crossing of a threshold of ``[monitor]`` gives one warning (and is recorded in the manifest).

A camera that raises or gives no frame within ``camera.timeout_s`` ends the run with one line
naming the scene; everything captured before it stays and ``--resume`` continues.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from opticsfree.captures.format import (INDEX_COLUMNS, IndexRow, class_folders, lensless_relpath,
                                        make_manifest, now_iso, original_relpath, write_manifest)
from opticsfree.captures.writer import encode_image
from opticsfree.data.base import ImageDataset, stratified_limit
from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.rig.camera import CameraBackend, CameraError, FrameTag, open_camera
from opticsfree.rig.config import RigConfig
from opticsfree.rig.display import Display, open_display
from opticsfree.utils.io import (check_out_dir, check_plan_dir, ensure_dir, read_json, write_bytes, write_json,
                                 write_text)
from opticsfree.utils.parallel import CallTimedOut, call_with_timeout

log = logging.getLogger(__name__)

#: Version of the rig capture layout (part of the plan compared on resume).
RIG_CAPTURE_VERSION = 1
#: The plan of a rig capture (compared with ``--resume``).
PLAN_FILE = "rig.json"
#: Drift rows.
DRIFT_FILE = "drift.csv"
DRIFT_COLUMNS = ["time", "scene_index", "reference_psnr_db", "dark_level", "clipped_fraction"]
#: The first capture of the reference scene (lossless), what later ones are compared with.
REFERENCE_FILE = "monitor/reference.png"


@dataclass(frozen=True)
class Scene:
    """One scene to show: its split, position in the run, id, label and pixels."""

    split: str
    position: int
    id: str
    label: int
    image: np.ndarray


@dataclass
class CaptureReport:
    """What a ``rig capture`` did.

    Attributes:
        out: the capture set.
        n_scenes: scenes in the plan.
        n_captured: scenes captured by this call.
        n_resumed: scenes found complete at the start (``--resume``).
        seconds: wall time of this call.
        scenes_per_s: capture rate of this call.
        warnings: drift warnings given.
        settings: the camera settings record (locked, not locked).
    """

    out: Path
    n_scenes: int
    n_captured: int = 0
    n_resumed: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def scenes_per_s(self) -> float | None:
        return self.n_captured / self.seconds if self.seconds > 0 and self.n_captured else None

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "n_scenes": self.n_scenes, "n_captured": self.n_captured,
                "n_resumed": self.n_resumed, "seconds": round(self.seconds, 3),
                "scenes_per_s": None if self.scenes_per_s is None else round(self.scenes_per_s, 2),
                "warnings": list(self.warnings), "camera_settings": self.settings}


def plan_scenes(dataset: ImageDataset, splits: Sequence[str], limit: int | None, seed: int) -> list[Scene]:
    """The scenes of a run, in capture order: ``simulate``'s selection (class-stratified
    ``limit`` per split, seeded), split after split."""
    scenes: list[Scene] = []
    for split in splits:
        if split not in dataset.splits:
            raise ConfigError(f"dataset {dataset.name} has no split '{split}' (it has {', '.join(dataset.splits)})")
        sp = dataset.splits[split]
        for i in stratified_limit(sp.labels, limit, seed):
            scenes.append(Scene(split, len(scenes), str(sp.ids[i]), int(sp.labels[i]), sp.images[i]))
    return scenes


def grab(camera: CameraBackend, fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Run ``fn`` (a camera call) with a timeout; CameraError naming ``what`` when it fails.

    The call runs in a daemon thread (:func:`opticsfree.utils.parallel.call_with_timeout`), so a
    device that never answers cannot hang the process.
    """
    try:
        return call_with_timeout(fn, timeout_s)
    except CallTimedOut:
        raise CameraError(f"the camera stopped answering at {what}: no frame within camera.timeout_s = "
                          f"{timeout_s} s") from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - any failure of the device call, named in one line
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CameraError(f"the camera stopped answering at {what}: {reason}") from None


class IndexAppender:
    """``index.csv`` written row by row: the header once, then each scene's rows with one write,
    flushed and synced. :meth:`recover` drops a torn last line and the rows of a scene with
    missing frames or files."""

    def __init__(self, root: Path, frames: int):
        self.path = root / "index.csv"
        self.root = root
        self.frames = frames
        self.columns = INDEX_COLUMNS + (["frame"] if frames > 1 else [])

    def _line(self, r: IndexRow) -> list[Any]:
        return [r.split, r.id, r.label, r.label_name, r.original, r.lensless] + ([r.frame] if self.frames > 1 else [])

    def recover(self) -> set[tuple[str, str]]:
        """The (split, id) of complete scenes; rewrites the index atomically without a torn line or
        incomplete scenes (only when it has to)."""
        if not self.path.is_file():
            write_text(self.path, ",".join(self.columns) + "\n")
            return set()
        text = self.path.read_text(encoding="utf-8")
        keep = text if text.endswith("\n") else text[:text.rfind("\n") + 1]
        lines = keep.splitlines()
        if not lines or lines[0].split(",") != self.columns:
            raise OpticsfreeError(f"{self.path}: header is not {','.join(self.columns)}; not a rig capture "
                                  "with these --frames")
        rows = list(csv.reader(io.StringIO("\n".join(lines[1:]) + "\n"))) if len(lines) > 1 else []
        by_scene: dict[tuple[str, str], list[list[str]]] = {}
        for r in rows:
            by_scene.setdefault((r[0], r[1]), []).append(r)
        done = {k for k, rs in by_scene.items()
                if len(rs) == self.frames and all((self.root / r[4]).is_file() and (self.root / r[5]).is_file()
                                                  for r in rs)}
        good = [r for r in rows if (r[0], r[1]) in done]
        if keep != text or len(good) != len(rows):
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(self.columns)
            w.writerows(good)
            write_text(self.path, buf.getvalue())
        return done

    def append(self, rows: Sequence[IndexRow]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(self._line(r) for r in rows)
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())


def append_line(path: Path, header: Sequence[str], values: Sequence[Any]) -> None:
    """Append one CSV line (the header first when the file is new), flushed and synced."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if not path.is_file() or path.stat().st_size == 0:
        w.writerow(header)
    w.writerow(values)
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


class DriftMonitor:
    """Re-captures the reference scene and a black frame every ``monitor.every`` scenes."""

    def __init__(self, rig: RigConfig, root: Path, reference: Scene, seed: int,
                 on_warning: Callable[[str], None]):
        self.cfg = rig.monitor
        self.root = root
        self.reference = reference
        self.seed = seed
        self.on_warning = on_warning
        self.path = root / DRIFT_FILE
        self.warned: list[str] = []
        self.done: set[int] = set()
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                self.done = {int(r["scene_index"]) for r in csv.DictReader(f) if r.get("scene_index", "").isdigit()}

    def due(self, position: int) -> bool:
        return self.cfg.every > 0 and position % self.cfg.every == 0 and position not in self.done

    def check(self, display: Display, camera: CameraBackend, position: int, timeout_s: float) -> dict[str, float]:
        """Capture the reference and a black frame at ``position``; append the drift row."""
        import torch

        from opticsfree.captures.quality import per_image_psnr
        from opticsfree.utils.images import decode_image

        ref_img = self.reference.image
        display.show(ref_img)
        time.sleep(display.cfg.settle_s)
        tag = FrameTag(self.seed, "monitor-reference", position)
        grab(camera, lambda: camera.discard(camera.cfg.discard, tag), timeout_s, f"the drift check at scene {position}")
        ref = grab(camera, lambda: camera.capture(tag), timeout_s, f"the drift check at scene {position}")
        display.show(np.zeros_like(ref_img))
        time.sleep(display.cfg.settle_s)
        tag = FrameTag(self.seed, "monitor-dark", position)
        grab(camera, lambda: camera.discard(camera.cfg.discard, tag), timeout_s, f"the drift check at scene {position}")
        dark = grab(camera, lambda: camera.capture(tag), timeout_s, f"the drift check at scene {position}")
        first_path = self.root / REFERENCE_FILE
        if not first_path.is_file():
            ensure_dir(first_path.parent)
            write_bytes(first_path, encode_image(ref, None))
        first = decode_image(first_path)
        if first.shape != ref.shape:
            raise OpticsfreeError(f"{first_path}: the reference capture is {first.shape[1]}x{first.shape[0]}, "
                                  f"the camera now gives {ref.shape[1]}x{ref.shape[0]}; the rig changed")
        to = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].double() / 255.0  # noqa: E731
        row = {"reference_psnr_db": float(per_image_psnr(to(ref), to(first))[0]),
               "dark_level": float(dark.mean() / 255.0),
               "clipped_fraction": float((ref >= 255).mean())}
        append_line(self.path, DRIFT_COLUMNS, [now_iso(), position, f"{row['reference_psnr_db']:.4f}",
                                               f"{row['dark_level']:.6f}", f"{row['clipped_fraction']:.6f}"])
        self.done.add(position)
        self._warn(position, row)
        return row

    def _warn(self, position: int, row: dict[str, float]) -> None:
        c = self.cfg
        crossed = []
        if row["reference_psnr_db"] < c.min_psnr_db:
            crossed.append(f"the reference scene's capture fell to {row['reference_psnr_db']:.2f} dB against its "
                           f"first capture (monitor.min_psnr_db = {c.min_psnr_db})")
        if row["dark_level"] > c.max_dark:
            crossed.append(f"a black frame reads {row['dark_level']:.4f} of full scale (monitor.max_dark = {c.max_dark})")
        if row["clipped_fraction"] > c.max_clipped:
            crossed.append(f"{100 * row['clipped_fraction']:.2f}% of the reference capture is clipped "
                           f"(monitor.max_clipped = {c.max_clipped})")
        if crossed and not self.warned:
            msg = (f"drift at scene {position}: " + "; ".join(crossed)
                   + f" (see {self.path}; `opticsfree rig report` plots it)")
            self.warned.append(msg)
            self.on_warning(msg)


def _plan(dataset: ImageDataset, rig: RigConfig, splits: Sequence[str], limit: int | None,
          frames: int, seed: int) -> dict[str, Any]:
    return {"version": RIG_CAPTURE_VERSION, "dataset": dataset.name, "source": dataset.source,
            "splits": list(splits), "limit": limit, "frames": frames, "seed": seed,
            "rig": rig.to_dict()}


def _check_out(out: Path, plan: dict[str, Any], resume: bool) -> None:
    check_out_dir(out, "a new directory or an earlier rig capture")
    check_plan_dir(out, PLAN_FILE, plan, "a rig capture", "use another --out or the same options and rig file",
                   resume=resume)


def manifest_camera(rig: RigConfig, camera: CameraBackend) -> dict[str, Any]:
    """The manifest's ``camera``: the virtual camera's model (a known camera, as ``simulate``
    records it), or ``{"type": "real", ...}`` for hardware."""
    if camera.name == "virtual":
        return camera.model.to_dict()  # type: ignore[attr-defined]
    return {"type": "real", "notes": rig.description or rig.name, "rig": rig.name}


def rig_capture(dataset: ImageDataset, rig: RigConfig, out: str | Path, splits: Sequence[str] | None = None,
                limit: int | None = None, frames: int = 1, seed: int = 0, resume: bool = False,
                rig_file: str | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                on_warning: Callable[[str], None] | None = None) -> CaptureReport:
    """Capture ``dataset`` on ``rig`` into the capture set ``out`` (see the module doc).

    Args:
        dataset: the scenes (splits loaded).
        rig: the rig (:func:`~opticsfree.rig.config.load_rig_config`).
        out: the capture set to write (or to continue with ``resume``).
        splits: splits to capture (default: all of the dataset's).
        limit: at most ``limit`` scenes per split, class-stratified (``simulate``'s selection).
        frames: captures per scene.
        seed: subset selection and the virtual camera's noise.
        resume: continue an interrupted capture at its first missing scene.
        rig_file: the rig file's path (recorded in the manifest).
        on_progress: ``f(done, total)`` after each scene (``done`` counts resumed scenes).
        on_warning: drift warnings (default: logged).

    Returns:
        A :class:`CaptureReport`.

    Raises:
        ConfigError, OpticsfreeError: bad options, an output that is not this capture (checked
            before the display opens); CameraError naming the scene when the camera fails.
    """
    if frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    splits = list(splits or dataset.splits)
    out = Path(out)
    plan = _plan(dataset, rig, splits, limit, frames, seed)
    _check_out(out, plan, resume)
    scenes = plan_scenes(dataset, splits, limit, seed)
    if not scenes:
        raise ConfigError(f"dataset {dataset.name}: no scenes to capture in {', '.join(splits)}")
    channels = int(scenes[0].image.shape[2])
    folders = class_folders(dataset.classes)
    warn = on_warning or log.warning
    report = CaptureReport(out=out, n_scenes=len(scenes))
    timeout = rig.camera.timeout_s
    ext = "jpeg" if rig.camera.format == "jpeg" else "png"

    display = open_display(rig.display)
    with display:
        camera = open_camera(rig, display)
        with camera:
            report.settings = camera.settings
            for name, why in camera.settings.get("not_locked", {}).items():
                warn(f"camera: {name} could not be locked ({why}); it stays automatic")
            camera.prepare(scenes[0].image.shape[:2], channels)
            ensure_dir(out)
            write_json(out / PLAN_FILE, plan)
            index = IndexAppender(out, frames)
            done = index.recover()
            sizes = {s: sum(1 for sc in scenes if sc.split == s) for s in splits}
            base_manifest = dict(
                source={"dataset": dataset.name, "copy": dataset.source, "notes": list(dataset.notes)},
                classes=dataset.classes, splits=sizes, camera=manifest_camera(rig, camera), seed=seed,
                frames=frames, channels=channels, limit=limit)
            rig_record = {"name": rig.name, "file": rig_file, "config": rig.to_dict(),
                          "display": display.describe(), "camera": camera.settings}
            if not (out / "manifest.json").is_file():
                write_manifest(out, make_manifest(**base_manifest, rig={**rig_record, "complete": False}))
            monitor = DriftMonitor(rig, out, scenes[0], seed, warn)
            report.n_resumed = sum(1 for s in scenes if (s.split, s.id) in done)
            t0 = time.perf_counter()
            grab_s = 0.0
            n_done = report.n_resumed
            if on_progress:
                on_progress(n_done, len(scenes))
            for sc in scenes:
                if monitor.due(sc.position):
                    monitor.check(display, camera, sc.position, timeout)
                if (sc.split, sc.id) in done:
                    continue
                what = f"scene {sc.position} ({sc.split}/{sc.id})"
                display.show(sc.image)
                time.sleep(rig.display.settle_s)
                g0 = time.perf_counter()
                grab(camera, lambda: camera.discard(rig.camera.discard, FrameTag(seed, sc.split, sc.position, -1)),
                     timeout, what)
                caps = [grab(camera, lambda f=f: camera.capture(FrameTag(seed, sc.split, sc.position, f)), timeout, what)
                        for f in range(frames)]
                grab_s += time.perf_counter() - g0
                folder = folders[sc.label]
                orig = original_relpath(sc.split, folder, sc.id)
                rows = []
                try:
                    ensure_dir((out / orig).parent)
                    if not (out / orig).is_file():
                        write_bytes(out / orig, encode_image(sc.image, None))
                    for f, cap in enumerate(caps):
                        rel = lensless_relpath(sc.split, folder, sc.id, f if frames > 1 else None, ext)
                        ensure_dir((out / rel).parent)
                        write_bytes(out / rel, encode_image(cap, rig.camera.jpeg))
                        rows.append(IndexRow(sc.split, sc.id, sc.label, dataset.classes[sc.label], orig, rel, f))
                    index.append(rows)
                except OSError as e:
                    raise OpticsfreeError(f"cannot write {getattr(e, 'filename', None) or out}: {e.strerror}") from None
                report.n_captured += 1
                n_done += 1
                if on_progress:
                    on_progress(n_done, len(scenes))
            last = len(scenes)
            if monitor.due(last):
                monitor.check(display, camera, last, timeout)
            report.seconds = time.perf_counter() - t0
            report.warnings = monitor.warned
            old = read_json(out / "manifest.json")
            timings = list(old.get("rig", {}).get("timings", []))
            if report.n_captured:
                timings.append({"finished": now_iso(), "scenes": report.n_captured,
                                "seconds": round(report.seconds, 3),
                                "scenes_per_s": round(report.n_captured / report.seconds, 3) if report.seconds else None,
                                "camera_seconds_per_scene": round(grab_s / report.n_captured, 5)})
            warnings = list(dict.fromkeys(list(old.get("rig", {}).get("warnings", [])) + monitor.warned))
            write_manifest(out, make_manifest(**base_manifest, rig={**rig_record, "complete": True,
                                                                     "timings": timings, "warnings": warnings}))
    return report


def drift_rows(root: str | Path) -> list[dict[str, float]]:
    """The rows of a capture set's ``drift.csv`` as numbers (``time`` kept as text)."""
    path = Path(root) / DRIFT_FILE
    if not path.is_file():
        raise OpticsfreeError(f"{path}: missing; was {root} captured by `rig capture` with [monitor] every > 0?")
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, r in enumerate(csv.DictReader(f), start=2):
            try:
                out.append({"time": r["time"], "scene_index": int(r["scene_index"]),
                            **{k: float(r[k]) for k in DRIFT_COLUMNS[2:]}})
            except (KeyError, TypeError, ValueError):
                raise OpticsfreeError(f"{path}: line {lineno}: expected columns {','.join(DRIFT_COLUMNS)}") from None
    return out


def drift_figure_path(root: str | Path) -> Path:
    """The default figure of :func:`plot_drift`: ``<SET>-drift.png`` beside the set (figures are
    never written inside a capture set)."""
    root = Path(root)
    return root.parent / f"{root.name}-drift.png"


def plot_drift(root: str | Path, out: str | Path | None = None) -> Path:
    """Plot ``drift.csv`` (reference PSNR, dark level, clipped fraction against the scene
    index) to ``out`` (default :func:`drift_figure_path`), atomically.

    Raises:
        ConfigError: ``out`` inside a capture set, or an existing file opticsfree did not write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from opticsfree.captures.show import check_png_out, save_figure

    out = check_png_out(out if out is not None else drift_figure_path(root))
    rows = drift_rows(root)
    root = Path(root)
    m = read_json(root / "manifest.json").get("rig", {}).get("config", {}).get("monitor", {}) \
        if (root / "manifest.json").is_file() else {}
    x = [r["scene_index"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    series = [("reference_psnr_db", "reference PSNR (dB)\nvs its first capture", "min_psnr_db"),
              ("dark_level", "black frame\n(fraction of full scale)", "max_dark"),
              ("clipped_fraction", "clipped fraction\nof the reference", "max_clipped")]
    for ax, (key, label, limit_key) in zip(axes, series):
        # the first check is the reference itself (PSNR capped): its PSNR is not plotted
        skip = 1 if key == "reference_psnr_db" else 0
        ax.plot(x[skip:], [r[key] for r in rows[skip:]], marker="o", ms=3)
        if limit_key in m:
            ax.axhline(m[limit_key], color="tab:red", ls="--", lw=1, label=f"monitor.{limit_key}")
            ax.legend(loc="best", fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("scene index (capture order)")
    fig.suptitle(f"drift of {root.name} ({len(rows)} checks)")
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    plt.close(fig)
    return out


def summarise_drift(root: str | Path) -> dict[str, Any]:
    """Summary of ``drift.csv``: checks, first/last/min reference PSNR, max dark and clipped."""
    rows = drift_rows(root)
    later = [r["reference_psnr_db"] for r in rows[1:]] or [float("nan")]
    return {"checks": len(rows), "scene_indices": [r["scene_index"] for r in rows],
            "min_reference_psnr_db": float(np.min(later)), "last_reference_psnr_db": float(later[-1]),
            "max_dark_level": max(r["dark_level"] for r in rows),
            "max_clipped_fraction": max(r["clipped_fraction"] for r in rows)}
