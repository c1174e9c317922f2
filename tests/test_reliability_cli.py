"""Reliability of the package and its command line: import layering (no library module imports
the CLI, no import cycle, the documented layer order), strict study-config types, the Ctrl-C
resume hints, ``--out`` paths of the wrong kind, and the declared dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opticsfree.captures.testing import make_capture_set
from opticsfree.cli.main import app
from opticsfree.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "opticsfree"

runner = CliRunner()


def invoke(args: list[str]):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> str:
    """Exit status 2 and exactly one line ``error: ...`` on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """3 classes x 20 scenes per split, 16 px RGB."""
    return make_capture_set(tmp_path_factory.mktemp("cs") / "set", n_classes=3, per_class=20, size=16)


# ----------------------------------------------------------------------------------------------
# 1. imports: no library module imports the CLI, no cycle, the documented layer order


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The opticsfree modules an import statement loads (``from a import b``: ``a.b`` when it
    is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        if name.split(".")[0] != "opticsfree":
            continue
        while name not in MODULES:  # opticsfree.x.y.Name -> opticsfree.x.y
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(module_level_only: bool = False) -> dict[str, set[str]]:
    """module -> the opticsfree modules it imports, with imports inside functions (unless
    ``module_level_only``); importing ``a.b.c`` also runs the packages ``a.b`` and ``a``, so
    those are edges too (except the importer's own packages, which are already loading)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        if module_level_only:
            nodes, stack = [], list(tree.body)
            while stack:
                n = stack.pop()
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    nodes.append(n)
                elif isinstance(n, (ast.If, ast.Try, ast.ExceptHandler, ast.With)):
                    stack.extend(ast.iter_child_nodes(n))
        else:
            nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        own = set(_ancestors(module))
        for node in nodes:
            for target in _targets(module, path, node):
                for t in [target, *_ancestors(target)]:
                    if t != module and t not in own:
                        graph[module].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""  # "" = the root opticsfree (__version__)


def test_graph_builder_sees_function_level_and_relative_imports():
    g = import_graph()
    assert "opticsfree.study.report" in g["opticsfree.study.stages"]        # inside run_report
    assert "opticsfree.study.report" not in import_graph(True)["opticsfree.study.stages"]
    assert "opticsfree.training" in g["opticsfree.study.stages"]            # package of the import
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_library_module_imports_the_cli():
    offenders = sorted(f"{m} imports {t}" for m, ts in import_graph().items()
                       if not m.startswith("opticsfree.cli")
                       for t in ts if t == "opticsfree.cli" or t.startswith("opticsfree.cli."))
    assert offenders == []


def test_the_import_graph_has_no_cycle_even_through_function_level_imports():
    # the study package on its own (the report <-> stages cycle), then the whole package
    graph = import_graph()
    study = {m: {t for t in ts if t.startswith("opticsfree.study")}
             for m, ts in graph.items() if m.startswith("opticsfree.study")}
    assert find_cycle(study) is None
    assert "opticsfree.study.stages" not in graph["opticsfree.study.report"]
    assert find_cycle(import_graph(module_level_only=True)) is None
    assert find_cycle(graph) is None


def _documented_layers() -> tuple[list[str], dict[str, set[str]]]:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    order_line = next(line for line in doc.splitlines()
                      if line.startswith("errors -> ") and line.rstrip().endswith("-> cli"))
    order = [p.strip() for p in order_line.split("->")]
    allowed: dict[str, set[str]] = {}
    for line in doc.splitlines():
        m = re.match(r"\| `opticsfree\.(\w+)` \|.*\| ([^|]*) \|\s*$", line)
        if m:
            cell = m.group(2).strip()
            allowed[m.group(1)] = set() if cell.startswith("nothing") else \
                {x.strip() for x in cell.split(",")} if not cell.startswith("any") else set(order)
    return order, allowed


def test_packages_import_only_what_docs_architecture_allows():
    order, allowed = _documented_layers()
    packages = {_package(m) for m in MODULES} - {""}
    assert set(order) == packages, "docs/architecture.md's layer order names every package"
    assert set(allowed) == packages, "docs/architecture.md's table has a row per package"
    rank = {p: i for i, p in enumerate(order)}
    wrong = []
    for module, targets in import_graph().items():
        a = _package(module)
        for t in targets:
            b = _package(t)
            if b in ("", a) or a == "":
                continue
            if rank[b] >= rank[a] or (a != "cli" and b not in allowed[a]):
                wrong.append(f"{module} -> {t}")
    assert wrong == [], ("imports against the layer order of docs/architecture.md: move the shared "
                         "code down (e.g. to opticsfree.utils), or change the order and the table "
                         f"there: {wrong}")
    for p, deps in allowed.items():
        assert all(rank[d] < rank[p] for d in deps if d in rank and p != "cli"), p


def test_the_run_layer_sits_below_both_trainers_and_alone_names_the_run_files():
    order, allowed = _documented_layers()
    rank = {p: i for i, p in enumerate(order)}
    assert rank["runs"] < min(rank["training"], rank["reconstruction"])
    assert allowed["runs"] == {"errors", "utils"}
    graph = import_graph()
    assert "opticsfree.runs" in graph["opticsfree.training.trainer"]
    assert "opticsfree.runs" in graph["opticsfree.reconstruction.train"]
    # config.json and metrics.jsonl are named (as a path part) only by the run layer
    named = sorted(f"{m}: {n.value}" for m, path in MODULES.items() if m != "opticsfree.runs"
                   and _package(m) in ("training", "reconstruction")
                   for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(n, ast.Constant) and n.value in ("config.json", "metrics.jsonl"))
    assert named == []


def test_inference_sits_after_bayes_and_before_study():
    # predict/export use a trained model (training), its prototypes (evaluation), the Bayes
    # likelihood and fusion (bayes), and nothing above; the study does not depend on it
    order, allowed = _documented_layers()
    assert order.index("bayes") + 1 == order.index("inference") == order.index("study") - 1
    assert {"training", "evaluation", "bayes"} <= allowed["inference"]
    assert "inference" not in allowed["study"]
    graph = import_graph()
    used = {_package(t) for m, ts in graph.items() if _package(m) == "inference" for t in ts}
    assert {"training", "evaluation", "bayes"} <= used and "study" not in used
    # the trained model is reached through one adapter module only
    reach = sorted(m for m, ts in graph.items() if _package(m) == "inference"
                   and any(_package(t) == "training" for t in ts))
    assert reach == ["opticsfree.inference.adapter"], reach


def test_the_former_ddp_entry_point_names_the_command_to_use():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "opticsfree.training.distributed", "x", "--loss", "triplet"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    # (python may first warn that the module was already imported by its package)
    lines = [ln for ln in res.stderr.strip().splitlines() if "RuntimeWarning" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "-m opticsfree.cli.main train" in lines[0]
    assert res.stdout == "" and "Traceback" not in res.stderr


@pytest.mark.slow
def test_ddp_through_the_cli_module(captures, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "opticsfree.cli.main", "train",
           str(captures), "--recipe", "seed", "--loss", "triplet", "--backbone", "cnn4", "--width", "4", "--epochs", "1",
           "--batch-size", "24", "--threads", "1", "--no-amp", "--set", "embedding_dim=16",
           "--set", "warmup_epochs=0.5", "--out", str(tmp_path / "ddp")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["epochs"] == 1                     # only rank 0 prints
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2


# ----------------------------------------------------------------------------------------------
# 2. the study config: strict types, missing paths, no empty output folder


@pytest.mark.parametrize("tables, key", [
    ({"train": {"epochs": True}}, "[train] epochs"),
    ({"train": {"epochs": 1.0}}, "[train] epochs"),
    ({"train": {"epochs": 4, "checkpoints": [2.0]}}, "[train] checkpoints[0]"),
    ({"study": {"seed": 0.0}}, "[study] seed"),
    ({"study": {"name": 3}}, "[study] name"),
    ({"data": {"limit": True}}, "[data] limit"),
    ({"captures": {"frames": 2.0}}, "[captures] frames"),
    ({"reconstruct": {"epochs": 2.5}}, "[reconstruct] epochs"),
    ({"reconstruct": {"val_fraction": True}}, "[reconstruct] val_fraction"),
    ({"baselines": {"ce": 1}}, "[baselines] ce"),
    ({"baselines": {"upper_bound": "false"}}, "[baselines] upper_bound"),
    ({"bayes": {"enabled": 0}}, "[bayes] enabled"),
    ({"evaluate": {"bootstrap": 100.0}}, "[evaluate] bootstrap"),
    ({"report": {"samples": True}}, "[report] samples"),
    ({"train": {"options": {"batch_size": 20.0}}}, "[train.options] batch_size"),
    ({"train": {"options": {"width": True}}}, "[train.options] width"),
    ({"train": {"options": {"shared": 1}}}, "[train.options] shared"),
])
def test_config_wrong_types_are_errors_naming_the_key(tables, key):
    from opticsfree.study.config import study_config_from_dict

    with pytest.raises(ConfigError) as e:
        study_config_from_dict(tables, "bad.toml")
    msg = str(e.value)
    assert msg.startswith(f"bad.toml: {key}: ") and "\n" not in msg, msg


def test_config_float_keys_take_integers():
    from opticsfree.study.config import study_config_from_dict

    cfg = study_config_from_dict({"data": {"dataset": "digits"}, "reconstruct": {"val_fraction": 0},
                                  "train": {"options": {"lr": 1, "warmup_epochs": 0,
                                                        "quad_margins": [0.1, 0.3]}}}, "ok.toml")
    assert cfg.reconstruct.val_fraction == 0.0 and isinstance(cfg.reconstruct.val_fraction, float)
    assert cfg.train.options["lr"] == 1


def test_config_missing_paths_name_the_key(tmp_path):
    from opticsfree.study.config import study_config_from_dict

    with pytest.raises(ConfigError, match=r"^c.toml: \[data\] data: .*nope not found"):
        study_config_from_dict({"data": {"dataset": "cifar10", "data": "nope"}}, "c.toml", tmp_path)
    with pytest.raises(ConfigError, match=r"^c.toml: \[captures\] path: .*gone is not a directory"):
        study_config_from_dict({"captures": {"source": "path", "path": "gone"}}, "c.toml", tmp_path)


def _study_toml(path: Path, data_table: str) -> Path:
    path.write_text(f'[study]\nname = "t"\n[data]\n{data_table}\n[train]\nlosses = ["triplet"]\n'
                    'epochs = 1\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("data_table, needle", [
    ('dataset = "digits"\nlimit = 60\n[train.options]\nwidth = 4\n[baselines]\nce = 1', "[baselines] ce"),
    ('dataset = "cifar10"\ndata = "missing-copy"', "[data] data"),
])
def test_run_with_a_bad_config_is_one_line_and_leaves_no_folder(tmp_path, data_table, needle):
    cfg = _study_toml(tmp_path / "s.toml", data_table)
    out = tmp_path / "out"
    assert_one_line_error(invoke(["run", cfg, "--out", out]), str(cfg), needle)
    assert not out.exists()


def test_run_with_an_unreadable_dataset_leaves_no_folder(tmp_path):
    # the copy exists but holds no images: found when the stages are planned (DataError)
    (tmp_path / "empty").mkdir()
    cfg = _study_toml(tmp_path / "s.toml", 'dataset = "folder"\ndata = "empty"')
    out = tmp_path / "out"
    assert_one_line_error(invoke(["run", cfg, "--out", out]), "no images")
    assert not out.exists()


def test_run_out_that_is_a_file(tmp_path):
    cfg = _study_toml(tmp_path / "s.toml", 'dataset = "digits"\nlimit = 60')
    out = tmp_path / "out"
    out.write_text("keep")
    assert_one_line_error(invoke(["run", cfg, "--out", out]), "--out", "is a file")
    assert out.read_text() == "keep"


# ----------------------------------------------------------------------------------------------
# 3. Ctrl-C: the message gives the command that works


TRAIN_ARGS = ["--recipe", "seed", "--loss", "triplet", "--backbone", "cnn4", "--width", "4", "--epochs", "2",
              "--batch-size", "24", "--threads", "1", "--set", "embedding_dim=16",
              "--set", "warmup_epochs=0.5", "--set", "val_prototypes=100"]


def test_interrupted_train_says_to_rerun_with_resume_and_that_works(captures, tmp_path, monkeypatch):
    from opticsfree.training import trainer as trainer_mod

    run = tmp_path / "run"
    args = ["train", captures, *TRAIN_ARGS, "--out", run]
    real, calls = trainer_mod.validate, []

    def interrupt(*a, **k):  # Ctrl-C during epoch 2's validation
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer_mod, "validate", interrupt)
    r = invoke(args)
    monkeypatch.setattr(trainer_mod, "validate", real)
    assert r.exit_code == 130, r.output
    lines = [ln for ln in r.stderr.strip().splitlines()  # epoch 1's line; a recipe's note
             if not ln.startswith(("epoch 1/2: ", "warning: "))]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted; ")
    assert "--resume" in lines[0]
    # the advice is right: the same command alone is refused, with --resume it finishes
    assert_one_line_error(invoke(args), "--resume")
    r = invoke([*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["resumed_from"] == 1


def _interrupted(monkeypatch, module: str, name: str, args: list) -> str:
    import importlib

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), name, stop)
    r = invoke(args)
    assert r.exit_code == 130, r.output
    lines = [ln for ln in r.stderr.strip().splitlines()  # epoch 1's line; a recipe's note
             if not ln.startswith(("epoch 1/2: ", "warning: "))]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted; "), r.stderr
    return lines[0]


def test_each_command_states_how_it_resumes(captures, tmp_path, monkeypatch):
    line = _interrupted(monkeypatch, "opticsfree.reconstruction.train", "train_reconstruction",
                        ["reconstruct", "train", captures, "--method", "unet", "--out", tmp_path / "m"])
    assert "--resume" in line
    line = _interrupted(monkeypatch, "opticsfree.captures.simulate", "simulate_capture_set",
                        ["simulate", "--dataset", "digits", "--camera", "seed", "--limit", "2",
                         "--out", tmp_path / "sim"])
    assert line == "error: interrupted; rerun the same command to resume"
    line = _interrupted(monkeypatch, "opticsfree.study.runner", "run_study",
                        ["run", tmp_path / "any.toml"])
    assert line == "error: interrupted; rerun the same command to resume"
    line = _interrupted(monkeypatch, "opticsfree.cli.evaluate", "run_epochs",
                        ["evaluate", tmp_path / "run"])
    assert "--resume" not in line and "starts over" in line


def test_resume_hint_is_a_command_argument():
    import typer

    from opticsfree.cli.common import command

    sub = typer.Typer()

    @command("a", parent=sub, resume_hint="rerun it with --again")
    def a() -> None:
        raise KeyboardInterrupt

    @command("b", parent=sub)
    def b() -> None:
        raise KeyboardInterrupt

    r = CliRunner().invoke(sub, ["a"])
    assert r.exit_code == 130 and r.stderr.strip() == "error: interrupted; rerun it with --again"
    r = CliRunner().invoke(sub, ["b"])
    assert r.stderr.strip() == "error: interrupted; rerun the same command to resume"


# ----------------------------------------------------------------------------------------------
# 4. --out of the wrong kind: one line, before any work, nothing written


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_capture_set(tmp_path_factory.mktemp("small") / "set", size=16, channels=3)


@pytest.fixture(scope="module")
def unet_model(small, tmp_path_factory):
    from opticsfree.reconstruction import train_reconstruction

    model = tmp_path_factory.mktemp("model") / "unet"
    train_reconstruction(small, "unet", model, epochs=1, options={"width": 4, "global_features": 2},
                         amp=False, threads=1)
    return model


def _a_file(tmp_path: Path, name: str = "taken") -> Path:
    f = tmp_path / name
    f.write_text("keep")
    return f


def _listing(tmp_path: Path) -> set[str]:
    return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}


def _unchanged(tmp_path: Path, before: set[str]) -> None:
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("under", [False, True])
def test_reconstruct_train_out_that_is_a_file(small, tmp_path, under):
    f = _a_file(tmp_path)
    out = f / "model" if under else f
    before = _listing(tmp_path)
    r = invoke(["reconstruct", "train", small, "--method", "unet", "--epochs", "1", "--out", out,
                "--threads", "1", "--set", "width=4", "--set", "global_features=2"])
    assert_one_line_error(r, f"--out {out}", "is a file", "MODEL directory")
    _unchanged(tmp_path, before)
    assert f.read_text() == "keep"
    from opticsfree.reconstruction import train_reconstruction

    with pytest.raises(ConfigError, match="is a file; expected a MODEL directory"):
        train_reconstruction(small, "unet", out, epochs=1)


def test_reconstruct_apply_out_that_is_a_file(small, unet_model, tmp_path):
    f = _a_file(tmp_path)
    before = _listing(tmp_path)
    r = invoke(["reconstruct", "apply", unet_model, small, "--out", f, "--workers", "1", "--threads", "1"])
    assert_one_line_error(r, f"--out {f}", "is a file", "directory")
    _unchanged(tmp_path, before)
    from opticsfree.reconstruction import apply_reconstruction

    with pytest.raises(ConfigError, match="is a file; expected a directory"):
        apply_reconstruction(unet_model, small, f / "derived", workers=1, threads=1)
    assert f.read_text() == "keep"


def test_show_out_that_is_a_folder(small, tmp_path):
    d = tmp_path / "figure.png"
    d.mkdir()
    before = _listing(tmp_path)
    assert_one_line_error(invoke(["show", small, "--out", d]), f"--out {d}", "is a directory", "PNG file")
    assert_one_line_error(invoke(["show", small, "--out", d, "--with", f"same={small}"]),
                          f"--out {d}", "is a directory")
    f = _a_file(tmp_path)
    assert_one_line_error(invoke(["show", small, "--out", f / "x.png"]), "--out", "is a file")
    _unchanged(tmp_path, before | {"taken"})
    assert not any(d.iterdir())


def test_calibrate_out_that_is_a_folder(small, tmp_path):
    d = tmp_path / "camera.npz"
    d.mkdir()
    f = _a_file(tmp_path)
    before = _listing(tmp_path)
    assert_one_line_error(invoke(["calibrate", small, "--out", d]), f"--out {d}", "is a directory",
                          ".npz file")
    assert_one_line_error(invoke(["calibrate", small, "--out", f / "camera.npz"]), "--out",
                          f"{f} is a file")
    _unchanged(tmp_path, before)


def test_cli_out_checks_accept_new_and_existing_paths(tmp_path):
    from opticsfree.utils.io import check_out_dir, check_out_file

    (tmp_path / "dir").mkdir()
    assert check_out_dir(tmp_path / "dir") == tmp_path / "dir"
    assert check_out_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_out_file(tmp_path / "dir" / "a.png") == tmp_path / "dir" / "a.png"
    _a_file(tmp_path, "old.png")
    assert check_out_file(tmp_path / "old.png") == tmp_path / "old.png"  # overwritten atomically
    assert not (tmp_path / "new").exists()                               # a check creates nothing


# ----------------------------------------------------------------------------------------------
# 5. dependencies: ranges in pyproject.toml, the pin where the environment is made


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _canon(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0])


def test_pyproject_states_ranges_and_the_pin_lives_in_constraints():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = project["dependencies"]
    torch = [d for d in deps if _requirement_name(d) == "torch"]
    assert len(torch) == 1 and ">=" in torch[0] and "==" not in torch[0], torch
    assert not [d for d in deps if "==" in d], "the library states ranges, not pins"
    constraints = (ROOT / "constraints.txt").read_text(encoding="utf-8").split()
    assert "torch==2.13.0" in constraints
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line for line in make.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert any("-e" in line for line in installs) and any(line.rstrip().endswith("torch") for line in installs)


def _third_party_imports(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    local = {p.stem for p in folder.glob("*.py")}  # sibling modules (a test reusing another's helpers)
    return {m for m in found if m not in sys.stdlib_module_names and m != "opticsfree" and m not in local}


def test_every_imported_package_is_declared():
    # the package may import its optional extras (e.g. onnx for `export`: imported where used,
    # with an error saying how to install them); the tests may import every extra (`make test`
    # installs test and export)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    optional = {_requirement_name(d) for k, v in extras.items() if k != "test" for d in v}
    declared = {_requirement_name(d) for d in project["dependencies"]} | optional
    test_declared = declared | {_requirement_name(d) for d in extras["test"]}
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert '-e ".[test,export,scale]"' in make, "make test installs the export and scale extras"
    dists = importlib.metadata.packages_distributions()
    for folder, allowed in ((PKG, declared), (ROOT / "tests", test_declared)):
        missing = {}
        for mod in _third_party_imports(folder):
            names = {_canon(d) for d in dists.get(mod, [])}
            if not names and _canon(mod) in optional:
                continue  # an optional extra that is not installed here (picamera2: a Pi's)
            if not names & allowed:
                missing[mod] = sorted(names)
        assert missing == {}, f"{folder.name}: imported but not declared: {missing}"


def test_the_docs_speak_to_users_without_internal_issue_numbers():
    found = [f"{p.name}:{i}" for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"(?i)\bissues? (#)?\d", line)]
    assert found == [], found
