"""``run_study``: plan the stages of a study config and run the unfinished ones in order.

The study directory ``OUT`` holds::

    OUT/study.toml        the config file as given
    OUT/study.json        the validated config (paths resolved) and the plan (stage keys)
    OUT/stages/<name>-<key>/   one directory per stage (DONE.json when finished)
    OUT/report.html, OUT/report.md, OUT/results.json

A rerun of the same config skips every finished stage; an interrupted stage resumes; a failing
stage stops the study with :class:`~opticsfree.study.engine.StageError` naming it, and the
stages finished before it stay on disk. The plan comes from :mod:`opticsfree.study.plan`, the
running from :mod:`opticsfree.study.engine`, what each stage does from
:mod:`opticsfree.study.stages` (each kind's function and version: the stage registry,
:mod:`opticsfree.study.names`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from opticsfree import __version__
from opticsfree.errors import ConfigError
from opticsfree.study.config import StudyConfig, load_study_config
from opticsfree.study.base import StageContext
from opticsfree.study.executors import EXECUTORS
from opticsfree.study.names import stage_functions
from opticsfree.study.plan import plan_study
from opticsfree.study.report import publish
from opticsfree.utils.io import check_out_dir, ensure_dir, write_json, write_text
from opticsfree.utils.parallel import check_executor


def _stderr(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def default_out(cfg: StudyConfig) -> Path:
    """``runs/<study name>`` under the working directory."""
    return Path("runs") / cfg.study.name


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM (``kill``, a batch scheduler's pre-emption) stops the study as
    Ctrl-C does: the running stage records its attempt's wall time (``ATTEMPTS.json``), finished
    stages stay, and a rerun resumes. Only in the main thread (elsewhere signals cannot be
    handled); the previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_study(config_path: str | os.PathLike, out: str | os.PathLike | None = None,
              device: str | None = None, log: Callable[[str], None] | None = None,
              config: StudyConfig | None = None, executor: str = "local",
              address: str | None = None) -> dict[str, Any]:
    """Run (or resume) the study described by a TOML config.

    Args:
        config_path: the study TOML file.
        out: the study directory (default ``runs/<[study] name>``).
        device: ``cpu`` or ``cuda``; overrides ``[study] device``. Not part of any stage's key:
            a study started on one device can be finished on another.
        log: receives one line per stage event (default: stderr with a time stamp).
        config: an already validated config (``config_path`` is then only recorded).
        executor: ``local`` (one stage after another in this process) or ``ray`` (every stage
            whose inputs are ready as a Ray task; :mod:`opticsfree.study.executors`). Not part of
            any stage's key: a study started with one can be finished with the other.
        address: a Ray cluster to join (``ray`` only).

    Returns:
        ``{"out", "report": {"html", "md", "json"}, "stages": [{"name", "kind", "key", "dir",
        "status" ("ran" | "skipped"), "wall_s"}], "wall_s"}``.

    Raises:
        ConfigError: an invalid config, device or ``out`` (nothing is written).
        DataError: the dataset cannot be found (nothing is written).
        StageError: a stage failed (named in the message; finished stages are kept).
    """
    log = log or _stderr
    check_executor(executor, address)
    cfg = config if config is not None else load_study_config(config_path)
    dev = device or cfg.study.device
    if dev not in ("cpu", "cuda"):
        raise ConfigError(f"--device: expected cpu or cuda, got {dev!r}")
    if dev == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: torch sees no CUDA device (use --device cpu)")
    out_dir = Path(out) if out is not None else default_out(cfg)
    check_out_dir(out_dir, "a study directory")
    # plan first (it finds the dataset and checks the cameras): a config that cannot run leaves
    # no (empty) study directory behind
    stages = plan_study(cfg)
    out_dir = ensure_dir(out_dir).resolve()
    t0 = time.perf_counter()

    src = Path(config_path)
    if src.is_file():
        write_text(out_dir / "study.toml", src.read_text(encoding="utf-8"))
    write_json(out_dir / "study.json", {
        "config_file": str(src.resolve()) if src.exists() else str(src),
        "package_version": __version__, "device": dev, "config": cfg.to_dict(),
        "stages": [{"name": s.name, "kind": s.kind, "key": s.key, "deps": s.deps,
                    "dir": str(s.directory(out_dir).relative_to(out_dir))} for s in stages],
    })

    ctx = StageContext(cfg=cfg, out=out_dir, device=dev, outputs={},
                       stages={s.name: s for s in stages}, log=log)
    log(f"study {cfg.study.name}: {len(stages)} stages in {out_dir}")
    with sigterm_as_interrupt():
        runs = EXECUTORS[executor](stages, ctx, stage_functions(), address=address)
    summary = [{"name": r.stage.name, "kind": r.stage.kind, "key": r.stage.key,
                "dir": str(r.stage.directory(out_dir)), "status": r.status, "wall_s": r.wall_s,
                "node": r.record.node} for r in runs]
    report = publish(ctx.outputs["report"], out_dir)
    total = time.perf_counter() - t0
    log(f"study {cfg.study.name} finished in {total:.1f} s: {report['html']}")
    return {"out": str(out_dir), "report": report, "stages": summary, "wall_s": total}
