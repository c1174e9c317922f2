"""``opticsfree run --executor ray``: the study's stages as Ray tasks on a local Ray instance
(2 CPUs), with the same results as the local executor; a worker killed in a stage is rerun
and the study completes; without Ray, one line says how to install it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from opticsfree.errors import ConfigError
from opticsfree.study import run_study
from test_study import quiet, write_config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the killing stage below
    yield
    ray.shutdown()


def _numbers(out: Path) -> dict:
    """results.json without what depends on when and where it ran."""
    res = json.loads((out / "results.json").read_text().replace(str(out), "OUT"))
    res.pop("provenance", None)
    res.pop("created", None)
    return res


def test_ray_gives_the_local_results_and_records_where_each_stage_ran(ray_instance, tmp_path):
    cfg = write_config(tmp_path / "tiny.toml", ce=False, upper=False)
    local = run_study(cfg, tmp_path / "local", log=quiet)
    lines: list[str] = []
    remote = run_study(cfg, tmp_path / "ray", log=lines.append, executor="ray")
    assert [s["name"] for s in remote["stages"]] == [s["name"] for s in local["stages"]]
    assert {s["status"] for s in remote["stages"]} == {"ran"}
    a, b = _numbers(tmp_path / "ray"), _numbers(tmp_path / "local")
    assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert any("submitted to ray" in line for line in lines)
    stages = json.loads((tmp_path / "ray" / "results.json").read_text())["provenance"]["stages"]
    assert all(s["node"] and s["started"] for s in stages)
    assert "Timeline" in (tmp_path / "ray" / "report.md").read_text()
    # a rerun with either executor skips everything (the markers are the truth)
    again = run_study(cfg, tmp_path / "ray", log=quiet, executor="local")
    assert {s["status"] for s in again["stages"]} == {"skipped"}


def _dies_once(stage, directory, ctx):
    """The tuples stage, but its first attempt kills its worker process outright."""
    from opticsfree.study.stages import run_tuples

    flag = Path(ctx.out) / "killed-once"
    if not flag.exists():
        flag.write_text("x")
        os._exit(1)
    return run_tuples(stage, directory, ctx)


def test_a_stage_whose_worker_dies_is_rerun_and_the_study_completes(ray_instance, tmp_path, monkeypatch):
    from dataclasses import replace

    from opticsfree.study import names as stage_registry

    cfg = write_config(tmp_path / "tiny.toml", ce=False, upper=False)
    monkeypatch.setitem(stage_registry.REGISTRY._entries, "tuples",
                        replace(stage_registry.stage_spec("tuples"), function=_dies_once))
    result = run_study(cfg, tmp_path / "out", log=quiet, executor="ray")
    assert (tmp_path / "out" / "killed-once").exists()                  # the first attempt died
    tup = next(s for s in result["stages"] if s["kind"] == "tuples")
    assert tup["status"] == "ran" and (Path(tup["dir"]) / "DONE.json").is_file()
    assert (tmp_path / "out" / "report.html").is_file()


def test_executor_errors_are_one_line(tmp_path, monkeypatch):
    cfg = write_config(tmp_path / "tiny.toml")
    with pytest.raises(ConfigError, match="--executor: expected one of local, ray"):
        run_study(cfg, tmp_path / "o", log=quiet, executor="dask")
    with pytest.raises(ConfigError, match="--address joins a Ray cluster: it needs --executor ray"):
        run_study(cfg, tmp_path / "o", log=quiet, address="ray://x:10001")
    monkeypatch.setitem(sys.modules, "ray", None)                       # Ray not installed
    with pytest.raises(ConfigError, match=r"needs Ray: pip install 'opticsfree\[scale\]'"):
        run_study(cfg, tmp_path / "o", log=quiet, executor="ray")


def test_a_camera_sweep_on_ray_writes_the_local_csv(ray_instance, tmp_path):
    from opticsfree.data import load_dataset
    from opticsfree.design.params import parse_axis
    from opticsfree.design.sweep import sweep_camera
    from test_design import small

    digits = load_dataset("digits")
    axes = [parse_axis("geometry.gap_mm=0.5:2:3", small())]
    seen: list[int] = []
    sweep_camera(small(), axes, digits, tmp_path / "local", limit=60)
    sweep_camera(small(), axes, digits, tmp_path / "ray", limit=60, executor="ray",
                 on_point=lambda done, n, row: seen.append(done))
    assert (tmp_path / "ray" / "sweep.csv").read_bytes() == (tmp_path / "local" / "sweep.csv").read_bytes()
    assert seen == [1, 2, 3]
    with pytest.raises(ConfigError, match="--address joins a Ray cluster"):
        sweep_camera(small(), axes, digits, tmp_path / "x", limit=60, address="ray://h:1")


def test_a_search_runs_its_trials_as_ray_tasks(ray_instance, tmp_path):
    from opticsfree.captures.testing import make_capture_set
    from opticsfree.training.recipes import load_recipe
    from opticsfree.tuning import load_space, tune

    pytest.importorskip("optuna")
    small = make_capture_set(tmp_path / "set", n_classes=3, per_class=20, size=16)
    (tmp_path / "s.toml").write_text('[weight_decay]\ntype = "float"\nlow = 1e-4\nhigh = 0.1\nlog = true\n')
    fixed = {"epochs": 2, "backbone": "cnn4", "width": 4, "embedding_dim": 16, "batch_size": 24,
             "warmup_epochs": 0.5, "val_prototypes": 100, "threads": 1}
    seen: list[int] = []
    res = tune(small, load_space(tmp_path / "s.toml"), tmp_path / "search", 3, recipe="seed", loss="ce",
               fields=fixed, executor="ray", on_trial=lambda n, state, value: seen.append(n))
    assert sorted(seen) == [0, 1, 2] and res.n_complete + res.n_pruned == 3
    assert sorted(p.name for p in (tmp_path / "search" / "trials").iterdir()) == ["0000", "0001", "0002"]
    assert load_recipe(tmp_path / "search" / "best.toml").fields()[0] == "ce"
    with pytest.raises(ConfigError, match="--address joins a Ray cluster"):
        tune(small, load_space(tmp_path / "s.toml"), tmp_path / "x", 1, recipe="seed", loss="ce",
             fields=fixed, address="ray://h:1")
