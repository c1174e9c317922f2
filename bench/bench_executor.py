"""Benchmark: a finished study's wall time under the local executor, and projected on N workers.

Reads a study directory (``study.json``: the stages and their dependencies; each stage's
``DONE.json``: its measured wall time, all attempts) and projects the wall time of the same
study with ``--executor ray`` on N identical workers: list scheduling in plan order, every stage
starting as soon as its upstream stages are finished and a worker is free, each stage taking
its measured time (no speed-up inside a stage, no Ray overhead: a lower bound for N workers of
the measuring machine's speed). Also reported: the critical path (the longest chain of
dependent stages, the bound no number of workers beats) and, with ``--measured-ray DIR``, the
wall time a real ``--executor ray`` run of the same config took (its ``report`` timeline).

A study not run (too long for these cores) is projected from its plan and stage times given
in a file: ``--plan CONFIG.toml --times TIMES.json`` (``{"times": {"<stage-name pattern>":
seconds}}``, fnmatch patterns, first match wins; ``bench/projections/seed-full-data.json`` holds
the full-data ``configs/seed.toml`` from the stage times measured on all 45,000 scenes).

Usage:
    .venv/bin/python bench/bench_executor.py STUDY_DIR [--workers 1 2 4 8] [--measured-ray DIR]
        [--name FILE.md]
    .venv/bin/python bench/bench_executor.py --plan configs/seed.toml --times TIMES.json [--workers ...]

Results go to stdout as Markdown and to ``bench/results/<name>`` (default ``executor.md``).
"""

from __future__ import annotations

import argparse
import fnmatch
import heapq
import json
from datetime import datetime
from pathlib import Path


def load(study: Path) -> tuple[list[dict], dict[str, float]]:
    """The stages (plan order) and their measured wall times (seconds)."""
    plan = json.loads((study / "study.json").read_text())["stages"]
    times = {}
    for s in plan:
        done = json.loads((study / s["dir"] / "DONE.json").read_text())
        times[s["name"]] = float(done["wall_s_total"])
    return plan, times


def load_projected(config: Path, times_file: Path) -> tuple[list[dict], dict[str, float]]:
    """A config's planned stages and their times from a times file (module doc)."""
    from opticsfree.study import load_study_config, plan_study

    patterns = json.loads(times_file.read_text())["times"]
    plan = [{"name": s.name, "deps": s.deps} for s in plan_study(load_study_config(config))]
    times = {}
    for s in plan:
        match = next((p for p in patterns if fnmatch.fnmatchcase(s["name"], p)), None)
        if match is None:
            raise SystemExit(f"{times_file}: no pattern matches stage {s['name']}")
        times[s["name"]] = float(patterns[match])
    return plan, times


def project(plan: list[dict], times: dict[str, float], workers: int) -> float:
    """Makespan of list scheduling on ``workers`` workers (stages in plan order)."""
    finish: dict[str, float] = {}
    free = [0.0] * workers
    heapq.heapify(free)
    pending = list(plan)
    while pending:
        # the first stage in plan order whose dependencies are scheduled
        s = next(s for s in pending if all(d in finish for d in s["deps"]))
        pending.remove(s)
        ready = max([finish[d] for d in s["deps"]], default=0.0)
        start = max(heapq.heappop(free), ready)
        finish[s["name"]] = start + times[s["name"]]
        heapq.heappush(free, finish[s["name"]])
    return max(finish.values(), default=0.0)


def critical_path(plan: list[dict], times: dict[str, float]) -> tuple[float, list[str]]:
    """The longest chain of dependent stages: (seconds, stage names)."""
    best: dict[str, tuple[float, list[str]]] = {}
    for s in plan:  # plan order is a topological order
        up = max((best[d] for d in s["deps"]), default=(0.0, []), key=lambda x: x[0])
        best[s["name"]] = (up[0] + times[s["name"]], up[1] + [s["name"]])
    return max(best.values(), key=lambda x: x[0])


def measured_span(study: Path) -> float:
    """First start to last finish of a study's stages (the ray run's wall time)."""
    plan = json.loads((study / "study.json").read_text())["stages"]
    starts, ends = [], []
    for s in plan:
        d = json.loads((study / s["dir"] / "DONE.json").read_text())
        fmt = "%Y-%m-%dT%H:%M:%S%z"
        starts.append(datetime.strptime(d["started"], fmt))
        ends.append(datetime.strptime(d["finished"], fmt))
    return (max(ends) - min(starts)).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path, nargs="?")
    ap.add_argument("--plan", type=Path, default=None, help="a study config to project (with --times)")
    ap.add_argument("--times", type=Path, default=None, help="stage times of --plan (JSON)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--measured-ray", type=Path, default=None)
    ap.add_argument("--name", default="executor.md")
    args = ap.parse_args()
    if args.plan is not None:
        plan, times = load_projected(args.plan, args.times)
        what = f"{args.plan}, stage times from {args.times}"
        how = "given per stage"
    else:
        plan, times = load(args.study)
        what, how = str(args.study), "measured one after another (the local executor)"
    cp, chain = critical_path(plan, times)
    lines = [f"# Study wall time by executor ({what})", "",
             f"{len(plan)} stages, {sum(times.values()):.0f} s of stage time {how}.", "",
             "| workers | projected wall time (s) | speed-up |", "| --- | --- | --- |"]
    one = project(plan, times, 1)
    for w in args.workers:
        t = project(plan, times, w)
        lines.append(f"| {w} | {t:.0f} | {one / t:.2f}x |")
    lines += ["", f"- critical path: {cp:.0f} s ({' -> '.join(chain)})"]
    if args.measured_ray is not None:
        lines.append(f"- measured with `--executor ray` ({args.measured_ray}): {measured_span(args.measured_ray):.0f} s "
                     "from the first stage's start to the last one's end")
    text = "\n".join(lines) + "\n"
    print(text)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results", args.name).write_text(text)


if __name__ == "__main__":
    main()
