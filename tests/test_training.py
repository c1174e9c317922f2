"""Training: sampling, splits, config, the loop, checkpoints, resume, NaN guard, CLI, DDP."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from opticsfree.captures.testing import make_capture_set
from opticsfree.captures.tuples import read_tuples
from opticsfree.errors import ConfigError, DataError
from opticsfree.losses.criterion import Criterion
from opticsfree.training import TrainConfig, TrainingError, list_checkpoints, load_trained, train
from opticsfree.training import trainer as trainer_mod
from opticsfree.data.split import split_scenes
from opticsfree.training.sampling import ClassBalancedBatchSampler, SceneTable, auto_batch

TINY = {"backbone": "cnn4", "width": 4, "embedding_dim": 16, "batch_size": 24, "warmup_epochs": 0.5,
        "val_prototypes": 100, "threads": 1}


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    return make_capture_set(tmp_path_factory.mktemp("cs") / "set", n_classes=3, per_class=20, size=16)


@pytest.fixture(scope="module")
def base_run(captures, tmp_path_factory):
    """A 6-epoch triplet run shared by several tests."""
    run = tmp_path_factory.mktemp("runs") / "triplet"
    summary = train({"captures": str(captures), "loss": "triplet", "epochs": 6, "checkpoints": [3], **TINY},
                    run, show_progress=False)
    return run, summary


def metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


# ---- sampling and splits ------------------------------------------------------------------------


def test_class_balanced_batches_hold_distinct_scenes_and_are_reproducible():
    ids = [f"s{i}" for i in range(30) for _ in range(2)]          # 30 scenes x 2 frames
    labels = torch.tensor([i % 3 for i in range(30) for _ in range(2)])
    scenes = SceneTable.from_rows(ids, labels)
    s = ClassBalancedBatchSampler(scenes, m_per_class=4, classes_per_batch=3, seed=1)
    assert len(s) == 30 // 12
    for epoch in (1, 2):
        s.set_epoch(epoch)
        for rows in s:
            assert len(rows) == 12
            sc = [ids[r] for r in rows.tolist()]
            assert len(set(sc)) == 12                               # no scene twice in a batch
            assert torch.bincount(labels[rows], minlength=3).tolist() == [4, 4, 4]
    s.set_epoch(1)
    first = [b.clone() for b in s]
    assert all(torch.equal(a, b) for a, b in zip(first, s))         # same (seed, epoch): same batches
    s.set_epoch(2)
    assert not all(torch.equal(a, b) for a, b in zip(first, s))
    # Two processes' slices make up the single-process global batch.
    parts = [list(ClassBalancedBatchSampler(scenes, 4, 3, 1, rank=r, world_size=2)) for r in (0, 1)]
    s.set_epoch(0)
    for g, p0, p1 in zip(s, *parts):
        assert torch.equal(g, torch.cat([p0, p1]))


def test_sampler_rejects_classes_smaller_than_m():
    scenes = SceneTable.from_rows([f"s{i}" for i in range(7)], torch.tensor([0, 0, 0, 0, 1, 1, 1]))
    with pytest.raises(ConfigError, match="class 1 has only 3"):
        ClassBalancedBatchSampler(scenes, 4, 2, 0)
    assert auto_batch(10, 256, None, 1000) == (25, 10)
    assert auto_batch(3, 24, None, 5) == (5, 3)
    with pytest.raises(ConfigError, match="single class"):
        auto_batch(10, 8, 8, 100)


def test_validation_split_is_stratified_disjoint_and_keeps_frames_together():
    ids = [f"s{i:02d}" for i in range(40) for _ in range(3)]
    labels = torch.tensor([i % 4 for i in range(40) for _ in range(3)]).numpy()

    def scenes(seed, f=0.2, limit=None):
        tr, va = split_scenes(ids, labels, f, seed=seed, limit=limit)
        return sorted({ids[i] for i in tr}), sorted({ids[i] for i in va})

    tr, va = scenes(0)
    assert len(va) == 8 and len(tr) == 32 and not set(tr) & set(va)
    assert sorted(int(s[1:]) % 4 for s in va) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert scenes(0) == (tr, va)
    assert scenes(1)[1] != va
    tr_l, va_l = scenes(0, 0.25, limit=20)
    assert len(tr_l) + len(va_l) == 20 and len(va_l) == 4


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="field 'lr'"):
        TrainConfig.from_dict({"captures": "x", "loss": "triplet", "lr": 0})
    with pytest.raises(ConfigError, match="field 'bogus': unknown field"):
        TrainConfig.from_dict({"captures": "x", "loss": "triplet", "bogus": 1})
    with pytest.raises(ConfigError, match="checkpoints"):
        TrainConfig.from_dict({"captures": "x", "loss": "triplet", "epochs": 10, "checkpoints": "5,20"})
    with pytest.raises(ConfigError, match="online"):
        TrainConfig.from_dict({"captures": "x", "loss": "quadruplet-chen", "sampling": "tuples"})
    with pytest.raises(ConfigError, match="field 'backbone'"):
        TrainConfig.from_dict({"captures": "x", "loss": "ce", "backbone": "vgg"})
    c = TrainConfig.from_dict({"captures": "x", "loss": "triplet", "epochs": 40})
    assert c.resolved_checkpoints() == [15, 30, 40]


# ---- the training loop ----------------------------------------------------------------------------


def old_lr_at(step, total, base, schedule, warmup):
    """The hand-written per-step schedule that torch.optim.lr_scheduler replaced."""
    import math

    if schedule == "onecycle":
        up = max(1, int(0.3 * total))
        lo, hi, end = base / 25, base, base / 1e4
        if step < up:
            return lo + (hi - lo) * (1 - math.cos(math.pi * step / up)) / 2
        t = min(1.0, (step - up) / max(1, total - up))
        return end + (hi - end) * (1 + math.cos(math.pi * t)) / 2
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1 + math.cos(math.pi * t))


def _lrs(schedule, total, warmup, base=2e-3, resume_at=None, old_checkpoint=False):
    """The rate of every optimizer step (two parameter groups), optionally with a resume:
    at ``resume_at`` the optimizer and schedule are rebuilt from their saved states."""
    params = [torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))]
    make_opt = lambda: torch.optim.AdamW([{"params": [params[0]]}, {"params": [params[1]]}], lr=base)
    opt = make_opt()
    sched = trainer_mod.make_scheduler(opt, schedule, total, warmup)
    out = []
    for step in range(total):
        if step == resume_at:
            saved_opt = opt.state_dict()
            saved = {"name": schedule, "step": step, "total_steps": total, "warmup_steps": warmup}
            if old_checkpoint:   # before: no scheduler state, the groups hold the last step's rate
                for g in saved_opt["param_groups"]:
                    g["lr"] = old_lr_at(step - 1, total, base, schedule, warmup)
                    for k in ("initial_lr", "max_lr", "min_lr"):
                        g.pop(k, None)
            else:
                saved["state"] = sched.state_dict()
            opt = make_opt()
            sched = trainer_mod.make_scheduler(opt, schedule, total, warmup)   # as the trainer
            opt.load_state_dict(saved_opt)
            sched = trainer_mod.restore_scheduler(sched, saved, schedule, total, warmup, base)
        assert len({g["lr"] for g in opt.param_groups}) == 1
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("schedule", ["cosine", "constant", "onecycle"])
@pytest.mark.parametrize("total,warmup", [(3000, 120), (50, 5), (10, 0), (10, 1), (7, 7), (5, 9), (1, 1)])
def test_torch_schedulers_give_the_old_per_step_rates(schedule, total, warmup):
    want = [old_lr_at(s, total, 2e-3, schedule, warmup) for s in range(total)]
    got = _lrs(schedule, total, warmup)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
    if total > 2:
        mid = total // 2 + 1
        assert _lrs(schedule, total, warmup, resume_at=mid) == got     # state_dict: exact
        old = _lrs(schedule, total, warmup, resume_at=mid, old_checkpoint=True)
        assert old == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_metrics_lr_is_the_rate_of_each_epochs_last_step(base_run):
    run, _ = base_run
    cfg = json.loads((run / "config.json").read_text())
    r = cfg["resolved"]
    assert r["warmup_steps"] > 0
    for row in metrics(run):
        step = row["epoch"] * r["steps_per_epoch"] - 1
        assert row["lr"] == pytest.approx(old_lr_at(step, r["total_steps"], r["lr"], cfg["schedule"],
                                                     r["warmup_steps"]), rel=1e-9)
    sched = torch.load(run / "resume.pt", weights_only=True)["scheduler"]
    assert sched["step"] == r["total_steps"] and sched["state"]["last_epoch"] == r["total_steps"]


def test_training_lowers_the_loss_and_beats_chance(base_run):
    run, summary = base_run
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    for r in rows:
        assert {"epoch", "loss", "val_accuracy", "lr", "images_per_s", "seconds"} <= set(r)
        assert r["images_per_s"] > 0
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    assert rows[-1]["val_accuracy"] >= 2 / 3                        # chance is 1/3
    assert summary["checkpoints"] == [3, 6] == list_checkpoints(run)
    assert summary["best_epoch"] in (3, 6)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["loss"] == "triplet" and cfg["resolved"]["size"] == 16
    assert cfg["resolved"]["batch_size"] == 24 and cfg["resolved"]["m_per_class"] == 8


def test_checkpoints_load_with_weights_only_and_embed(base_run):
    run, _ = base_run
    state = torch.load(run / "checkpoints" / "epoch_003.pt", weights_only=True)
    assert state["epoch"] == 3 and {"model", "config", "optimizer", "rng", "scheduler"} <= set(state)
    t = load_trained(run)
    assert t.epoch == 6 and t.classes == ["class0", "class1", "class2"] and t.size == 16
    assert not t.has_head and t.logits(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)) is None
    val = t.load_split("val")
    train_part = t.load_split("train")
    assert len(val) == 6 and len(train_part) == 54 and not set(val.ids) & set(train_part.ids)
    e = t.embed(val.lensless, "lensless")
    assert e.shape == (6, 16)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(6))
    assert t.embed(val.original, "original").shape == (6, 16)
    assert load_trained(run, 3).epoch == 3
    with pytest.raises(DataError, match="no checkpoint for epoch 4"):
        load_trained(run, 4)
    with pytest.raises(ValueError, match="expected lensless images"):
        t.embed(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "lensless")


def test_same_config_same_numbers_and_resume_is_exact(captures, tmp_path, interrupt_in_second_validation):
    cfg = {"captures": str(captures), "loss": "quadruplet", "epochs": 2, "augment": "crop-flip", **TINY}
    train(cfg, tmp_path / "full", show_progress=False)
    # The same run interrupted during epoch 2's validation, then resumed.
    interrupt_in_second_validation(cfg, tmp_path / "cut")
    assert list_checkpoints(tmp_path / "cut") == []
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, tmp_path / "cut", show_progress=False)
    with pytest.raises(ConfigError, match="differs in margin"):
        train({**cfg, "margin": 0.3}, tmp_path / "cut", resume=True, show_progress=False)
    summary = train(cfg, tmp_path / "cut", resume=True, show_progress=False)
    assert summary["resumed_from"] == 1
    a = torch.load(tmp_path / "full/checkpoints/epoch_002.pt", weights_only=True)
    b = torch.load(tmp_path / "cut/checkpoints/epoch_002.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    la, lb = metrics(tmp_path / "full"), metrics(tmp_path / "cut")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert [r["val_accuracy"] for r in la] == [r["val_accuracy"] for r in lb]


def test_weight_averaging_checkpoints_the_average_and_resumes_exactly(captures, tmp_path,
                                                                   interrupt_in_second_validation):
    cfg = {"captures": str(captures), "loss": "ce", "epochs": 2, "checkpoints": [1, 2],
           "weight_averaging": 0.5, **TINY}
    train(cfg, tmp_path / "full", show_progress=False)
    one = torch.load(tmp_path / "full/checkpoints/epoch_001.pt", weights_only=True)
    two = torch.load(tmp_path / "full/checkpoints/epoch_002.pt", weights_only=True)
    steps = one["step"]
    assert two["n_averaged"] == two["step"] == 2 * steps
    # the checkpoint's model is the average, not the trained weights ...
    k = next(k for k in two["model"] if k.endswith("weight") and two["model"][k].ndim > 1)
    assert not torch.equal(two["model"][k], two["trained_model"][k])
    # ... an exponential one: with decay 1/2 the average is much nearer the last weights than
    # the first epoch's average
    d_last = (two["model"][k] - two["trained_model"][k]).norm()
    d_first = (two["model"][k] - one["model"][k]).norm()
    assert d_last < d_first
    # evaluation loads the average
    t = load_trained(tmp_path / "full", 2)
    assert torch.equal(t.model.state_dict()[k], two["model"][k])
    # interrupted in epoch 2's validation and resumed: the same average
    interrupt_in_second_validation(cfg, tmp_path / "cut")
    train(cfg, tmp_path / "cut", resume=True, show_progress=False)
    b = torch.load(tmp_path / "cut/checkpoints/epoch_002.pt", weights_only=True)
    for name in two["model"]:
        assert torch.equal(two["model"][name], b["model"][name]), name
    assert metrics(tmp_path / "full") == [{**r, "seconds": m["seconds"], "val_seconds": m["val_seconds"],
                                           "images_per_s": m["images_per_s"]}
                                          for r, m in zip(metrics(tmp_path / "cut"), metrics(tmp_path / "full"))]


def test_a_run_recorded_before_a_field_existed_resumes_and_loads(base_run, captures, tmp_path):
    """Fields added later (front_end, scene_augment, ...) are missing from older runs' configs:
    they count as their defaults, which keep the old behaviour."""
    run = tmp_path / "old"
    shutil.copytree(base_run[0], run)
    new = ("front_end", "scene_augment", "scene_copies", "scene_refresh", "global_features")
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k not in new}))
    for p in [run / "resume.pt", *(run / "checkpoints").iterdir()]:
        state = torch.load(p, weights_only=True)
        state["config"] = {k: v for k, v in state["config"].items() if k not in new}
        torch.save(state, p)
    assert load_trained(run, 3).epoch == 3
    again = {"captures": str(captures), "loss": "triplet", "epochs": 6, "checkpoints": [3], **TINY}
    assert train(again, run, resume=True, show_progress=False)["resumed_from"] == 6
    with pytest.raises(ConfigError, match=r"differs in global_features\); recorded: global_features=0"):
        train({**again, "global_features": 2}, run, resume=True, show_progress=False)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_state(captures, tmp_path, monkeypatch):
    real = Criterion.online
    calls = []

    def poisoned(self, *a, **k):
        calls.append(1)
        out = real(self, *a, **k)
        return out * float("nan") if len(calls) == 3 else out    # epoch 2, step 1 (2 steps/epoch)

    monkeypatch.setattr(Criterion, "online", poisoned)
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 2, step 1/2.*resume.pt \(epoch 1\)"):
        train({"captures": str(captures), "loss": "triplet", "epochs": 3, "checkpoints": [1], **TINY}, run,
              show_progress=False)
    assert list_checkpoints(run) == [1]
    assert torch.load(run / "resume.pt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in metrics(run)] == [1]


@pytest.mark.parametrize("loss", ["ce", "ce+triplet", "quadruplet-chen"])
def test_other_losses_train(captures, tmp_path, loss):
    run = tmp_path / "run"
    train({"captures": str(captures), "loss": loss, "epochs": 2, **TINY}, run, show_progress=False)
    t = load_trained(run)
    assert t.has_head == (loss != "quadruplet-chen")
    x = t.load_split("val").lensless
    if t.has_head:
        assert t.logits(x).shape == (len(x), 3)
    rows = metrics(run)
    assert all(0 <= r["val_accuracy"] <= 1 for r in rows)
    assert ("val_accuracy_head" in rows[-1]) == (loss == "ce+triplet")


def test_seed_tuples_sampling_reads_files_and_skips_validation_scenes(captures, tmp_path):
    run = tmp_path / "tuples"
    train({"captures": str(captures), "loss": "quadruplet", "sampling": "tuples", "epochs": 1, **TINY}, run,
          show_progress=False)
    assert (captures / "tuples_train.csv").is_file()
    r = json.loads((run / "config.json").read_text())["resolved"]
    assert r["mining"] == "fixed tuples" and 0 < r["n_tuples"] < 60
    val_ids = set(load_trained(run).load_split("val").ids)
    recs = read_tuples(captures / "tuples_train.csv")
    # one row per training capture: rows anchored on validation scenes are dropped
    anchored = [d for d in recs if not any(f"/{v}." in d["anchor_img"] for v in val_ids)]
    assert len(anchored) == r["n_tuples"] < len(recs)


def test_seed_tuples_decoded_in_worker_processes_train_the_same_model(captures, tmp_path):
    """--loader-workers 2 decodes each batch in a worker process (the package's map_chunks);
    the batches, so the weights, are those of decoding in the training process."""
    import torch

    from opticsfree.training.sampling import TupleBatchSampler, TupleDataset, load_tuple_rows, tuple_batches

    rows, _ = load_tuple_rows(captures, {r for r in {p.stem for p in captures.rglob("lensless/**/*.*")}}, 0)
    ds = TupleDataset(rows, 16, 3)
    sampler = TupleBatchSampler(len(rows), 8, 0)
    here, there = list(tuple_batches(ds, sampler, 0)), list(tuple_batches(ds, sampler, 2))
    assert len(here) == len(sampler) and len(here) == len(there)
    for a, b in zip(here, there):
        assert a[0].shape == (8, *ds[0][0].shape) and a[1].shape == (8, 3, *ds[0][1].shape[1:])
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    first = [ds[i] for i in next(iter(sampler))]
    assert torch.equal(here[0][0], torch.stack([f[0] for f in first]))
    assert here[0][2].tolist() == [f[2] for f in first] and here[0][3].tolist() == [f[3] for f in first]

    runs = {}
    for w in (0, 2):
        runs[w] = tmp_path / f"w{w}"
        train({"captures": str(captures), "loss": "triplet", "sampling": "tuples", "epochs": 1, "workers": w,
               **TINY}, runs[w], show_progress=False)
    a = torch.load(runs[0] / "checkpoints" / "epoch_001.pt", weights_only=True)["model"]
    b = torch.load(runs[2] / "checkpoints" / "epoch_001.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seed_tuples_redraw_references_inside_the_kept_scenes(captures):
    from opticsfree.captures.format import open_capture_set
    from opticsfree.training.sampling import load_tuple_rows

    cs = open_capture_set(captures)
    train_rows = [x for x in cs.rows if x.split == "train"]
    keep = {x.id for x in train_rows[::3]}                  # a third of the scenes, as --limit does
    rows, path = load_tuple_rows(captures, keep, seed=0)
    assert len(rows) == sum(x.id in keep for x in train_rows)  # every kept scene keeps its row
    by_path = {str(cs.path(x.original)): x for x in train_rows}
    by_path.update({str(cs.path(x.lensless)): x for x in train_rows})
    recs = {d["anchor_img"]: d for d in read_tuples(path)}
    redrawn = 0
    for t in rows:
        a, p, c, n = (by_path[x] for x in (t.anchor, t.positive, t.close_positive, t.negative))
        assert {a.id, p.id, c.id, n.id} <= keep and p.id == a.id != c.id
        assert a.label == p.label == c.label == t.label != n.label == t.negative_label
        d = recs[a.lensless]
        redrawn += (d["close_positive_img"], d["negative_img"]) != (c.original, n.original)
    assert redrawn > 0                                       # most references fell outside keep
    again, _ = load_tuple_rows(captures, keep, seed=0)
    assert again == rows                                     # deterministic
    lone = {train_rows[0].id}                                # one scene: no close positive to draw
    with pytest.raises(DataError, match="no kept train scene to draw a close positive"):
        load_tuple_rows(captures, lone, seed=0)


def test_multi_frame_sets_and_shared_encoder(tmp_path):
    cs = make_capture_set(tmp_path / "frames", n_classes=3, per_class=10, size=8, channels=1, frames=2)
    run = tmp_path / "run"
    train({"captures": str(cs), "loss": "quadruplet", "epochs": 1, "shared": True, **{**TINY, "batch_size": 12}},
          run, show_progress=False)
    t = load_trained(run)
    assert t.model.shared
    val = t.load_split("val")
    assert len(val) == 2 * len(set(val.ids))                       # both frames of each held-out scene


# ---- bad input ------------------------------------------------------------------------------------


def test_set_without_train_split(tmp_path):
    cs = make_capture_set(tmp_path / "s", splits=("test",))
    with pytest.raises(DataError, match="no 'train' split"):
        train({"captures": str(cs), "loss": "triplet", **TINY}, tmp_path / "run", show_progress=False)


def test_class_without_training_scenes(tmp_path):
    cs = make_capture_set(tmp_path / "s")
    m = json.loads((cs / "manifest.json").read_text())
    m["classes"].append("ghost")
    (cs / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="'ghost'"):
        train({"captures": str(cs), "loss": "triplet", **TINY}, tmp_path / "run", show_progress=False)


def test_checkpoint_from_another_config_is_refused(base_run, tmp_path, captures):
    run, _ = base_run
    other = tmp_path / "other"
    train({"captures": str(captures), "loss": "triplet", "epochs": 1, **{**TINY, "embedding_dim": 8}}, other,
          show_progress=False)
    shutil.copy(run / "checkpoints" / "epoch_003.pt", other / "checkpoints" / "epoch_001.pt")
    with pytest.raises(DataError, match="different training config.*embedding_dim"):
        load_trained(other, 1)
    with pytest.raises(DataError, match="not a training run"):
        list_checkpoints(tmp_path)


# ---- command line ---------------------------------------------------------------------------------


def _invoke(args):

    import opticsfree.cli.train  # noqa: F401 - registers the command
    from opticsfree.cli.common import app

    # With a single registered command typer runs it directly (no command name).
    single = len(app.registered_commands) == 1 and not app.registered_groups
    return CliRunner().invoke(app, args[1:] if single else args)


def test_cli_train(captures, tmp_path):
    out = tmp_path / "cli"
    res = _invoke(["train", str(captures), "--recipe", "seed", "--loss", "triplet", "--backbone", "cnn4", "--width", "4",
                   "--epochs", "2", "--checkpoints", "1", "--batch-size", "24", "--seed", "3", "--threads", "1",
                   "--set", "embedding_dim=16", "--set", "val_prototypes=100", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # stdout is the JSON alone; progress goes to stderr
    assert summary["checkpoints"] == [1, 2] and summary["epochs"] == 2
    epochs = [ln for ln in res.stderr.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1/2", "epoch 2/2"] and "validation" in epochs[0]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["embedding_dim"] == 16
    bad = _invoke(["train", str(captures), "--loss", "triplet", "--set", "margn=0.1", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "field 'margn'" in bad.output
    bad = _invoke(["train", str(captures), "--loss", "triplet", "--out", str(out)])
    assert bad.exit_code == 2 and "--resume" in bad.output
    quiet = _invoke(["train", str(captures), "--recipe", "seed", "--loss", "triplet", "--backbone", "cnn4",
                     "--width", "4", "--epochs", "1", "--batch-size", "24", "--threads", "1", "--quiet",
                     "--set", "embedding_dim=16", "--set", "val_prototypes=100", "--out", str(tmp_path / "q")])
    assert quiet.exit_code == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["epochs"] == 1


# ---- distributed ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_cpu_processes_match_one_process_on_the_same_global_batch(captures, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    common = ["--recipe", "seed", "--loss", "quadruplet", "--backbone", "resnet8", "--width", "4", "--epochs", "2",
              "--batch-size", "24", "--threads", "1", "--no-amp", "--set", "warmup_epochs=0.5",
              "--set", "augment=\"flip\"", "--set", "embedding_dim=16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "opticsfree.cli.main", "train",
           str(captures), *common, "--out", str(tmp_path / "ddp")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["epochs"] == 2                    # only rank 0 prints
    single = _invoke(["train", str(captures), *common, "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    a = torch.load(tmp_path / "ddp/checkpoints/epoch_002.pt", weights_only=True)
    b = torch.load(tmp_path / "one/checkpoints/epoch_002.pt", weights_only=True)
    assert a["config"]["resolved"]["world_size"] == 2
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k].float(), b["model"][k].float(), atol=2e-5, rtol=1e-4, msg=k)
    la, lb = metrics(tmp_path / "ddp"), metrics(tmp_path / "one")
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], abs=1e-5)


def test_resume_names_every_unreadable_state_it_skips(base_run, tmp_path):
    """A truncated resume.pt or checkpoint is never skipped silently: the newest readable state
    is used and each skipped file is named with its reason; a checkpoint of the resumed epoch
    is rewritten from the state; an older one is named as lost."""
    from opticsfree.training.checkpoint import training_run
    from opticsfree.training.trainer import resume_state

    run = tmp_path / "run"
    shutil.copytree(base_run[0], run)
    assert list_checkpoints(run) == [3, 6]
    ck3, ck6, rp = run / "checkpoints/epoch_003.pt", run / "checkpoints/epoch_006.pt", run / "resume.pt"
    good3, good6 = ck3.read_bytes(), ck6.read_bytes()
    lines: list[str] = []

    def resume():
        lines.clear()
        return resume_state(training_run(run), warn=lines.append)

    ck6.write_bytes(good6[:100])                     # the last checkpoint truncated
    path, state = resume()
    assert (path, state["epoch"]) == (rp, 6)
    assert len(lines) == 1 and "epoch_006.pt: not a readable" in lines[0] and "rewritten from" in lines[0]
    assert ck6.read_bytes() != good6[:100] and load_trained(run, 6).epoch == 6

    rp.write_bytes(b"junk")                          # resume.pt and the last checkpoint lost
    ck6.write_bytes(good6[:100])
    path, state = resume()
    assert (path, state["epoch"]) == (ck3, 3) and len(lines) == 1
    assert lines[0].startswith(f"warning: skipped {rp}: not a readable") and "epoch_006.pt" in lines[0]
    assert lines[0].endswith(f"resuming from {ck3} (epoch 3)")

    rp.write_bytes(good6)                            # an older checkpoint lost: named, not rebuilt
    ck6.write_bytes(good6)
    ck3.write_bytes(b"junk")
    path, state = resume()
    assert (path, state["epoch"]) == (rp, 6) and len(lines) == 1
    assert "epoch_003.pt: not a readable" in lines[0] and "cannot be rebuilt" in lines[0]

    for f in (rp, ck3, ck6):
        f.write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot resume: no saved state is readable .*resume.pt"):
        resume_state(training_run(run))
    assert good3  # the fixture's files were copied, not touched


def test_a_student_taught_by_a_teacher_reproduces_its_predictions(captures, tmp_path):
    """Soft targets only need the teacher: trained with a heavy soft-target weight, the student
    agrees with the teacher's predictions on the scenes far more than the same student without
    a teacher (here the teacher is even wrong on a third of them, and the student follows)."""
    base = {"captures": str(captures), "loss": "ce", "epochs": 6, **TINY}
    train(base, tmp_path / "teacher", show_progress=False)
    teacher = load_trained(tmp_path / "teacher")
    test = teacher.load_split("test")
    said = teacher.logits(test.original).argmax(1)
    agree = {}
    for name, extra in [("plain", {}), ("taught", {"teacher": str(tmp_path / "teacher"),
                                                   "teacher_kd_weight": 5.0, "teacher_temperature": 2.0})]:
        train({**base, **extra}, tmp_path / name, show_progress=False)
        student = load_trained(tmp_path / name)
        agree[name] = float((student.logits(test.lensless).argmax(1) == said).float().mean())
    assert agree["taught"] >= 0.85 and agree["taught"] > agree["plain"] + 0.1, agree
    cfg = json.loads((tmp_path / "taught" / "config.json").read_text())
    assert cfg["resolved"]["teacher"]["run"] == str(tmp_path / "teacher") and cfg["resolved"]["teacher"]["epoch"] == 6
    assert len(cfg["resolved"]["teacher"]["checkpoint_sha256"]) == 64


def test_teacher_settings_that_cannot_work_are_one_line_errors(base_run, captures, tmp_path):
    base = {"captures": str(captures), "epochs": 1, **TINY}
    cases = [({"loss": "ce", "teacher": str(base_run[0])}, "needs a classifier head on both, and the teacher has none"),
             ({"loss": "triplet", "teacher": str(base_run[0]), "teacher_kd_weight": 0.0,
               "teacher_feature_weight": 1.0, "embedding_dim": 8}, "needs equal embedding sizes"),
             ({"loss": "ce", "teacher": str(tmp_path / "nothing")}, "teacher"),
             ({"loss": "triplet", "teacher": "x", "sampling": "tuples"}, "needs sampling 'online'"),
             ({"loss": "ce", "teacher": "x", "teacher_kd_weight": 0.0}, "would do nothing")]
    for extra, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            train({**base, **extra}, tmp_path / "never", show_progress=False)
    assert not (tmp_path / "never" / "checkpoints").exists()
    # feature alignment alone works for a metric student
    train({**base, "loss": "triplet", "teacher": str(base_run[0]), "teacher_kd_weight": 0.0,
           "teacher_feature_weight": 1.0}, tmp_path / "feat", show_progress=False)
    assert list_checkpoints(tmp_path / "feat") == [1]
