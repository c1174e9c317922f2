"""The run layer (opticsfree.runs): run directories, resume checks, metrics, checkpoints with RNG
state; and that training and reconstruction write their runs only through it (the runtime they
run in: tests/test_runtime.py)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

from opticsfree import runs
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.runs import (
    ConfigDifference,
    Nested,
    ResumeCheck,
    RunDir,
    RunKind,
    capture_rng,
    load_state,
    restore_rng,
    save_state,
)

KIND = RunKind(noun="test run", placeholder="RUN", command="opticsfree test", resume_file="resume.pt")


# ---- starting and resuming ----------------------------------------------------------------------


def test_begin_refuses_a_run_without_resume_and_a_folder_of_other_files(tmp_path):
    run = RunDir(tmp_path / "run", KIND)
    assert run.begin(resume=False) is False and not run.path.exists()       # checks only
    run.write_config({"a": 1})
    with pytest.raises(ConfigError, match=r"run: already holds a test run; pass --resume"):
        run.begin(resume=False)
    assert run.begin(resume=True) is True
    other = tmp_path / "other"
    other.mkdir()
    (other / ".hidden").write_text("x")
    assert RunDir(other, KIND).begin(resume=True) is False                  # hidden files do not count
    (other / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"other: exists and is not a test run directory \(no config.json\)"):
        RunDir(other, KIND).begin(resume=True)
    with pytest.raises(ConfigError, match="is a file; expected a RUN directory"):
        RunDir(other / "notes.txt", KIND).begin(resume=False)


def test_resume_with_a_changed_config_is_refused_naming_the_field_and_recorded_value(tmp_path):
    check = ResumeCheck(ignore=frozenset({"threads"}), nested={"resolved": Nested("resolved.", ("size",))},
                        notes={"holdout": "the hold-out changed"})
    run = RunDir(tmp_path, KIND)
    recorded = {"lr": 0.1, "margins": (0.1, 0.2), "threads": 1, "resolved": {"size": 16, "seconds": 3}}
    run.write_config(recorded)
    # a tuple is recorded as a list; ignored fields and uncompared nested keys may differ
    same = {**recorded, "threads": 4, "resolved": {"size": 16, "seconds": 9}}
    assert run.check_resume(same, check) == json.loads(run.config_path.read_text())
    with pytest.raises(ConfigError) as e:
        run.check_resume({**same, "lr": 0.2, "resolved": {"size": 32}}, check)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path}: cannot resume")
    assert "differs in lr, resolved.size); recorded: lr=0.1, resolved.size=16" in msg
    assert msg.endswith("use the original options or another --out")
    with pytest.raises(ConfigError, match=r"differs in holdout\); recorded: holdout=None; the hold-out changed$"):
        run.check_resume({**same, "holdout": 2}, check)


def test_differences_in_field_order_with_nested_keys():
    check = ResumeCheck(fields=("method", "options", "seed"), nested={"options": Nested("option ")})
    a = {"method": "unet", "options": {"width": 4, "depth": 2}, "seed": 0, "epochs": 5}
    b = {"method": "unet", "options": {"width": 8}, "seed": 1, "epochs": 9}
    assert check.differences(a, b) == [ConfigDifference("option depth", 2, None),
                                       ConfigDifference("option width", 4, 8),
                                       ConfigDifference("seed", 0, 1)]
    assert check.differences(a, {**a, "epochs": 1}) == []                   # not a compared field


def test_fields_added_later_count_as_their_defaults():
    check = ResumeCheck(defaults={"front_end": False})
    old = {"lr": 0.1}                                                       # recorded before front_end
    assert check.differences(old, {"lr": 0.1, "front_end": False}) == []
    assert check.differences(old, old) == []
    assert check.differences(old, {"lr": 0.1, "front_end": True}) == [ConfigDifference("front_end", False, True)]
    assert ResumeCheck().differences(old, {"lr": 0.1, "front_end": False}) == [
        ConfigDifference("front_end", None, False)]
    nested = ResumeCheck(nested={"opts": Nested("option ", defaults={"depth": 2})})
    assert nested.differences({"opts": {"width": 4}}, {"opts": {"width": 4, "depth": 2}}) == []
    assert nested.differences({"opts": {"width": 4}}, {"opts": {"width": 4, "depth": 3}}) == [
        ConfigDifference("option depth", 2, 3)]


def test_require_and_read_config(tmp_path):
    with pytest.raises(DataError, match=r"not a test run \(no config.json\); make one with `opticsfree test`"):
        RunDir(tmp_path, KIND).read_config()
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(DataError, match="config.json: expected a JSON object"):
        RunDir(tmp_path, KIND).read_config()


# ---- metrics.jsonl --------------------------------------------------------------------------------


def test_metrics_append_read_truncate(tmp_path):
    run = RunDir(tmp_path, KIND)
    assert run.read_metrics() == []
    for e in (1, 2, 3):
        run.append_metrics({"epoch": e, "loss": 1.0 / e})
    assert run.metrics_path.read_text() == "".join(json.dumps({"epoch": e, "loss": 1.0 / e}) + "\n"
                                                   for e in (1, 2, 3))
    assert [r["epoch"] for r in run.read_metrics(upto=2)] == [1, 2]
    assert [r["epoch"] for r in run.truncate_metrics(1)] == [1]
    assert [r["epoch"] for r in run.read_metrics()] == [1]
    # a line cut short by a stopped writer is ignored, and dropped by the next append
    with open(run.metrics_path, "a") as f:
        f.write('{"epoch": 2, "lo')
    assert [r["epoch"] for r in run.read_metrics()] == [1]
    run.append_metrics({"epoch": 2})
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    assert run.truncate_metrics(0) == [] and run.metrics_path.read_text() == ""


def test_a_bad_metrics_line_is_a_one_line_error_naming_file_and_line(tmp_path):
    run = RunDir(tmp_path, KIND)
    run.metrics_path.write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(DataError, match=r"metrics.jsonl: line 2 is not valid JSON"):
        run.read_metrics()
    assert runs.read_metrics_file(run.metrics_path.with_name("missing.jsonl")) == []
    run.metrics_path.write_text('{"epoch": 1}\n[2]\n')
    with pytest.raises(DataError, match=r"metrics.jsonl: line 2 is not a JSON object"):
        run.append_metrics({"epoch": 3})


# ---- checkpoints and RNG state --------------------------------------------------------------------


def test_checkpoints_are_listed_from_their_names(tmp_path):
    run = RunDir(tmp_path, KIND)
    with pytest.raises(DataError, match="not a test run"):
        run.list_checkpoints()
    run.write_config({})
    assert run.list_checkpoints() == []
    for e in (12, 3):
        save_state(run.checkpoint_path(e), {"epoch": e})
    (run.path / "checkpoints" / "epoch_7.pt").write_text("")              # not NNN: not a checkpoint
    assert run.checkpoint_path(3).name == "epoch_003.pt" and run.list_checkpoints() == [3, 12]
    assert run.resume_path == tmp_path / "resume.pt"


def test_save_state_is_atomic_cpu_contiguous_and_weights_only(tmp_path, monkeypatch):
    p = tmp_path / "s.pt"
    w = torch.arange(24.0).reshape(1, 2, 3, 4).contiguous(memory_format=torch.channels_last)
    save_state(p, {"w": w.requires_grad_(), "nested": [{"t": torch.ones(2)}], "n": 3})
    s = load_state(p, ("w", "n"))
    assert s["w"].is_contiguous() and not s["w"].requires_grad and torch.equal(s["w"], w.detach())
    assert s["nested"][0]["t"].tolist() == [1.0, 1.0] and s["n"] == 3
    with pytest.raises(DataError, match=r"s.pt: not an opticsfree checkpoint \(keys \['n', 'nested', 'w'\], "
                                        r"expected w, rng\)"):
        load_state(p, ("w", "rng"))
    # a failed write leaves the previous file, and no temporary file behind
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_state(p, {"w": torch.zeros(1)})
    assert load_state(p)["n"] == 3 and [f.name for f in tmp_path.iterdir()] == ["s.pt"]
    p.write_bytes(b"garbage")
    with pytest.raises(OpticsfreeError, match="s.pt: not a readable opticsfree checkpoint"):
        load_state(p)


def test_rng_round_trip_through_a_checkpoint_continues_the_same_draws(tmp_path):
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    save_state(tmp_path / "r.pt", {"rng": capture_rng(torch.device("cpu"), {"shuffle": g})})
    want = (torch.rand(4), torch.randperm(6, generator=g))
    torch.rand(10), torch.randperm(6, generator=g)                         # move both on
    g2 = torch.Generator()
    rng = load_state(tmp_path / "r.pt")["rng"]
    assert set(rng) == {"torch", "shuffle"}                                 # no "cuda" on the CPU
    restore_rng(rng, torch.device("cpu"), {"shuffle": g2})
    got = (torch.rand(4), torch.randperm(6, generator=g2))
    assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
    with pytest.raises(DataError, match=r"r.pt: no random-number state for pool"):
        restore_rng(rng, None, {"pool": torch.Generator()}, source=str(tmp_path / "r.pt"))
    with pytest.raises(ValueError, match="reserved"):
        capture_rng(None, {"cuda": g})


# ---- training and reconstruction write their runs through this layer -----------------------------


@pytest.fixture()
def writers(monkeypatch):
    """Every atomic write as (path, the opticsfree module that asked for it)."""
    from opticsfree.utils import io

    seen: list[tuple[Path, str]] = []
    real = io.atomic_path

    def spy(path):
        caller = next(f for f in inspect.stack(0)[2:] if f.frame.f_globals.get("__name__") != io.__name__)
        seen.append((Path(path), caller.frame.f_globals.get("__name__", "?")))
        return real(path)

    monkeypatch.setattr(io, "atomic_path", spy)
    return seen


def _run_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and (p.name in ("config.json", "metrics.jsonl")
                                                            or p.suffix == ".pt")}


def _assert_written_by_runs(root: Path, seen: list[tuple[Path, str]]) -> None:
    files = _run_files(root)
    assert files
    by = {}
    for path, module in seen:
        by.setdefault(path, set()).add(module)
    assert {p: by.get(p) for p in files} == {p: {"opticsfree.runs"} for p in files}


def test_training_writes_its_run_through_the_run_layer(tmp_path, writers):
    from opticsfree.captures.testing import make_capture_set
    from opticsfree.training import train

    cs = make_capture_set(tmp_path / "set", n_classes=3, per_class=8, size=8)
    writers.clear()
    train({"captures": str(cs), "loss": "triplet", "backbone": "cnn4", "width": 4, "embedding_dim": 8,
           "batch_size": 12, "epochs": 2, "checkpoints": [1], "threads": 1, "val_prototypes": 20},
          tmp_path / "run", show_progress=False)
    assert {p.name for p in _run_files(tmp_path / "run")} == {"config.json", "metrics.jsonl", "resume.pt",
                                                              "epoch_001.pt", "epoch_002.pt"}
    _assert_written_by_runs(tmp_path / "run", writers)


@pytest.mark.parametrize("method", ["unet", "tikhonov"])
def test_reconstruction_writes_its_model_through_the_run_layer(tmp_path, writers, method):
    from opticsfree.captures.testing import make_capture_set
    from opticsfree.reconstruction import train_reconstruction

    cs = make_capture_set(tmp_path / "set", size=8, channels=1)
    writers.clear()
    opts = {"width": 4, "global_features": 2} if method == "unet" else None
    model = train_reconstruction(cs, method, tmp_path / "m", epochs=1, options=opts, amp=False, threads=1)
    want = {"config.json", "metrics.jsonl", "model.pt", "best.pt"} | ({"last.pt"} if method == "unet" else set())
    assert {p.name for p in _run_files(model)} == want
    _assert_written_by_runs(model, writers)
