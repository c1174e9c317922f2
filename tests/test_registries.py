"""One registry per concept: a loss or a backbone is one new module plus one registration line
(docs/architecture.md, "Adding a loss or a backbone"), a study stage its function plus one
registration line (and the plan's lines that say when it runs), and no list of the names of a
loss, a backbone, a stage kind, a classifier or a likelihood is written anywhere but in its
registry.

1. A loss and a backbone registered at run time reach everything that takes a name: the
   training config, ``opticsfree train --help``, the study config, the criterion, the trainer,
   the network builder, evaluation's default classifier and the likelihood of bayes/predict.
   A stage kind, a classifier and a likelihood registered at run time reach the engine (keys,
   functions, Ray resources), ``opticsfree evaluate --help`` and the study config, and
   ``opticsfree bayes --help``.
2. The source has no hand-written list of those names outside the registries.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from opticsfree.bayes import names as likelihood_registry
from opticsfree.errors import ConfigError
from opticsfree.evaluation import names as classifier_registry
from opticsfree.losses import names as loss_registry
from opticsfree.losses.names import LossSpec, classified_by_head, loss_spec, register_loss
from opticsfree.models import names as backbone_registry
from opticsfree.models.names import BackboneSpec, backbone_spec, register_backbone
from opticsfree.study import names as stage_registry
from opticsfree.study.names import StageSpec, stage_functions, stage_spec, stage_versions

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "opticsfree"
REGISTRIES = {PKG / "losses" / "names.py", PKG / "models" / "names.py", PKG / "study" / "names.py",
              PKG / "evaluation" / "names.py", PKG / "bayes" / "names.py"}

#: The new loss's module: a contrastive term (pytorch-metric-learning's ContrastiveLoss).
LOSS_MODULE = '''
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import ContrastiveLoss

from opticsfree.losses.term import MetricTerm


class ContrastiveTerm(MetricTerm):
    def __init__(self, mining, settings):
        super().__init__(mining, settings)
        self.metric = ContrastiveLoss(pos_margin=0.0, neg_margin=settings.margin, distance=LpDistance())
'''
#: The new backbone's module.
BACKBONE_MODULE = '''
from torch import nn


class TinyNet(nn.Sequential):
    def __init__(self, in_channels, width):
        super().__init__(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.out_channels = width
'''
#: The one registration line of each.
LOSS_LINE = 'LossSpec("contrastive", ("all",), "contrastive_loss:ContrastiveTerm")'
BACKBONE_LINE = 'BackboneSpec("tinynet", "tiny_net:TinyNet", 8, min_size=4)'


def _modules(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "contrastive_loss.py").write_text(LOSS_MODULE, encoding="utf-8")
    (where / "tiny_net.py").write_text(BACKBONE_MODULE, encoding="utf-8")
    return where


# ----------------------------------------------------------------------------------------------
# 1. a registered loss and backbone reach every place that takes a name


def test_registered_loss_and_backbone_reach_configs_help_and_training(tmp_path):
    """In a fresh process: register (one line each), then import the configs and the command
    line as any program would, and train one epoch with both."""
    mods = _modules(tmp_path / "mods")
    script = textwrap.dedent(f'''
        import json, sys
        from opticsfree.losses.names import LossSpec, register_loss
        from opticsfree.models.names import BackboneSpec, register_backbone
        register_loss({LOSS_LINE})
        register_backbone({BACKBONE_LINE})

        from typer.testing import CliRunner
        from opticsfree.cli.main import app
        from opticsfree.errors import ConfigError
        from opticsfree.study.config import study_config_from_dict
        from opticsfree.training.config import TrainConfig
        out = {{}}
        cfg = TrainConfig(captures=".", loss="contrastive", backbone="tinynet")
        out["config"] = [cfg.loss, cfg.backbone, cfg.resolved_mining()]
        try:
            TrainConfig.from_dict({{"captures": ".", "loss": "hinge"}})
        except ConfigError as e:
            out["config_error"] = str(e)
        study = study_config_from_dict({{"train": {{"losses": ["contrastive", "triplet"],
                                                   "options": {{"backbone": "tinynet"}}}}}})
        out["study"] = [study.train.losses, study.train.options["backbone"]]
        try:
            study_config_from_dict({{"train": {{"losses": ["hinge"]}}}}, "s.toml")
        except ConfigError as e:
            out["study_error"] = str(e)
        r = CliRunner().invoke(app, ["train", "--help"], terminal_width=400)
        out["help"] = " ".join(r.output.translate({{ord(c): " " for c in "│╭╮╰╯─"}}).split())

        from opticsfree.captures.testing import make_capture_set
        from opticsfree.evaluation.results import default_classifier
        from opticsfree.training import load_trained, train
        cs = make_capture_set({str(tmp_path / "set")!r}, n_classes=3, per_class=10, size=8)
        run = {str(tmp_path / "run")!r}
        s = train({{"captures": str(cs), "loss": "contrastive", "backbone": "tinynet", "epochs": 1,
                   "embedding_dim": 8, "batch_size": 12, "val_prototypes": 20, "threads": 1}},
                  run, show_progress=False)
        m = load_trained(run)
        out["trained"] = [s["epochs"], m.loss, type(m.model.towers["lensless"].backbone).__name__,
                          default_classifier(m.loss)]
        print("RESULT " + json.dumps(out))
    ''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(mods)]), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.split("RESULT ", 1)[1])
    assert out["config"] == ["contrastive", "tinynet", "all"]
    assert "'contrastive'" in out["config_error"] and "field 'loss'" in out["config_error"]
    assert out["study"] == [["contrastive", "triplet"], "tinynet"]
    assert "[train] losses[0]" in out["study_error"] and "contrastive" in out["study_error"]
    assert "\n" not in out["config_error"] + out["study_error"]
    help_text = out["help"]
    loss_choices = help_text[help_text.index("--loss"):][:300]
    backbone_choices = help_text[help_text.index("--backbone"):][:300]
    assert "contrastive" in loss_choices and "triplet" in loss_choices, loss_choices
    assert "tinynet" in backbone_choices and "cnn4" in backbone_choices, backbone_choices
    assert "8 tinynet" in help_text  # --width's default per backbone
    assert out["trained"] == [1, "contrastive", "TinyNet", "prototype"]


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """The new loss and backbone in this process (undone after the test), plus a head-only
    loss without a module."""
    monkeypatch.syspath_prepend(str(_modules(tmp_path)))
    for name, spec in (("contrastive", eval(LOSS_LINE)),
                       ("ce-only", LossSpec("ce-only", ("none",), None, uses_head=True, head_only=True,
                                            tuple_originals=0))):
        monkeypatch.setitem(loss_registry.REGISTRY._entries, name, spec)
    monkeypatch.setitem(backbone_registry.REGISTRY._entries, "tinynet", eval(BACKBONE_LINE))


def test_the_criterion_and_the_network_builder_read_the_registry(registered):
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import ContrastiveLoss

    from opticsfree.bayes.likelihood import choose_likelihood
    from opticsfree.evaluation.results import default_classifier
    from opticsfree.losses.criterion import Criterion
    from opticsfree.models.registry import build_backbone, default_width

    g = torch.Generator().manual_seed(0)
    a, o = F.normalize(torch.randn(12, 5, generator=g), dim=1), F.normalize(torch.randn(12, 5, generator=g), dim=1)
    y = torch.arange(3).repeat_interleave(4)
    crit = Criterion("contrastive", margin=0.3)
    want = ContrastiveLoss(pos_margin=0.0, neg_margin=0.3, distance=LpDistance())(a, y, None, o, y.clone())
    torch.testing.assert_close(crit.online(a, o, y), want)
    assert crit.mining == "all" and not crit.uses_head and crit.originals_per_tuple == 2
    assert torch.isfinite(crit.tuples(a[:4], [o[:4], o[4:8]], y[:4], y[4:8]))
    with pytest.raises(ConfigError, match="mining 'hard' is not available for loss 'contrastive'"):
        Criterion("contrastive", "hard")
    logits = torch.randn(12, 3, generator=g)
    torch.testing.assert_close(Criterion("ce-only").online(None, None, y, logits), F.cross_entropy(logits, y))

    # the names read from the registry now include them
    from opticsfree.losses import LOSSES, MINING
    from opticsfree.models.names import DEFAULT_WIDTHS, MIN_SIZES
    from opticsfree.models.registry import BACKBONES
    assert {"contrastive", "ce-only"} <= set(LOSSES) and MINING["contrastive"] == ("all",)
    assert "tinynet" in BACKBONES and DEFAULT_WIDTHS["tinynet"] == 8 and MIN_SIZES["tinynet"] == 4

    # what a loss is, asked everywhere the same way
    assert (default_classifier("contrastive"), default_classifier("ce-only")) == ("prototype", "head")
    assert choose_likelihood("contrastive", True) == "metric" and choose_likelihood("ce-only", True) == "ce"
    assert choose_likelihood("ce-only", False) == "metric"

    net = build_backbone("tinynet", 3)
    assert type(net).__name__ == "TinyNet" and net.out_channels == default_width("tinynet") == 8
    assert build_backbone("tinynet", 1, width=2)(torch.zeros(1, 1, 8, 8)).shape == (1, 2, 4, 4)


def test_the_registries_hold_what_was_written_by_hand_before():
    """The derived values equal the lists they replaced."""
    from opticsfree.losses import LOSSES, MINING, default_mining
    from opticsfree.models.names import BACKBONES, DEFAULT_WIDTHS, MIN_SIZES

    assert [n for n in LOSSES if loss_spec(n).head_only] == ["ce"]
    assert [n for n in LOSSES if loss_spec(n).uses_head] == ["ce", "ce+triplet"]
    assert [n for n in LOSSES if loss_spec(n).online_only] == ["quadruplet-chen"]
    assert {n: loss_spec(n).tuple_originals for n in LOSSES} == {
        "triplet": 2, "quadruplet": 3, "quadruplet-chen": 0, "ce": 0, "ce+triplet": 2}
    assert MINING["quadruplet-chen"] == ("hard", "all") and default_mining("ce") == "none"
    assert classified_by_head("ce") and not classified_by_head("ce+triplet")
    assert not classified_by_head(None) and not classified_by_head("unknown")
    assert BACKBONES == tuple(DEFAULT_WIDTHS) and MIN_SIZES == {"wvgg": 10}
    assert [n for n in BACKBONES if backbone_spec(n).whitening] == ["wvgg"]


def test_registration_errors_are_one_line():
    with pytest.raises(ValueError, match="already registered"):
        register_loss(LossSpec("triplet", ("all",), "x:Y"))
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(BackboneSpec("cnn4", "x:Y", 8))
    with pytest.raises(ValueError, match="head_only needs uses_head"):
        LossSpec("x", ("none",), None, head_only=True)
    with pytest.raises(ValueError, match="without a metric term"):
        LossSpec("x", ("none",), None)
    with pytest.raises(ValueError, match="module:callable"):
        BackboneSpec("x", "no_colon", 8)
    for call, words in ((lambda: loss_spec("hinge"), "loss 'hinge': unknown (expected one of triplet"),
                        (lambda: backbone_spec("resnet99"), "backbone 'resnet99': unknown (expected one of cnn4")):
        with pytest.raises(ConfigError) as e:
            call()
        assert words in str(e.value) and "\n" not in str(e.value)


#: A new kind of study stage: its function, in a module of its own here (a bundled kind's is in
#: opticsfree/study/stages.py), and its one registration line.
STAGE_MODULE = '''
from opticsfree.utils.io import write_json


def run_count(stage, directory, ctx):
    n = stage.params["n"] + sum(ctx.outputs[d]["n"] for d in stage.deps)
    write_json(directory / "count.json", {"n": n})
    return {"file": str(directory / "count.json"), "n": n}
'''
STAGE_LINE = 'StageSpec("count", 1, "count_stage:run_count", heavy=True)'
#: A new classifier and a new likelihood: one registration line each.
CLASSIFIER_LINE = ('ClassifierSpec("cosine", "opticsfree.evaluation.prototype_classifier:PrototypeClassifier", '
                   '"nearest prototype by cosine similarity")')
LIKELIHOOD_LINE = 'LikelihoodSpec("energy", "an energy model", needs_head=True)'


def test_a_registered_stage_kind_reaches_the_keys_the_engine_and_the_executor(tmp_path, monkeypatch):
    """One registration line (no other file touched): the versions mapping keys its stages, the
    engine finds and runs its function, resumes past it, and Ray gives it a heavy task."""
    import os

    from opticsfree.study.base import Stage, StageContext
    from opticsfree.study.engine import assign_keys, run_stages
    from opticsfree.study.executors import HEAVY_CPUS, stage_resources

    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "count_stage.py").write_text(STAGE_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.setitem(stage_registry.REGISTRY._entries, "count", eval(STAGE_LINE))

    versions = stage_versions()
    assert versions["count"] == 1 and versions["report"] == 2
    stages = assign_keys([Stage("first", "count", {"n": 2}), Stage("second", "count", {"n": 3}, ["first"])],
                         versions)
    assert all(len(s.key) == 12 for s in stages) and stages[0].key != stages[1].key
    functions = stage_functions()
    assert functions["count"].__module__ == "count_stage" and functions["tuples"].__name__ == "run_tuples"
    ctx = StageContext(cfg=None, out=tmp_path / "out", device="cpu", outputs={},  # type: ignore[arg-type]
                       stages={s.name: s for s in stages}, log=lambda msg: None)
    runs = run_stages(stages, ctx, functions)
    assert [(r.status, r.record.outputs["n"]) for r in runs] == [("ran", 2), ("ran", 5)]
    again = StageContext(cfg=None, out=tmp_path / "out", device="cpu", outputs={},  # type: ignore[arg-type]
                         stages=ctx.stages, log=lambda msg: None)
    assert {r.status for r in run_stages(stages, again, stage_functions())} == {"skipped"}

    assert stage_resources(stages[0], "cpu") == {"num_cpus": min(HEAVY_CPUS, os.cpu_count() or 1), "num_gpus": 0}
    assert stage_resources(stages[0], "cuda") == {"num_cpus": 1, "num_gpus": 1}
    assert stage_resources(Stage("t", "tuples", {}), "cuda") == {"num_cpus": 1, "num_gpus": 0}
    with pytest.raises(ValueError, match="kind 'nope' has no version"):
        assign_keys([Stage("x", "nope", {})], stage_versions())
    with pytest.raises(ConfigError) as e:
        stage_spec("nope")
    assert "stage kind 'nope': unknown (expected one of data, simulate" in str(e.value)


def test_registered_classifier_and_likelihood_reach_the_command_line_and_the_study_config():
    """In a fresh process: register (one line each), then import the study config and the
    command line as any program would."""
    script = textwrap.dedent(f'''
        import json
        from opticsfree.bayes.names import LikelihoodSpec, register_likelihood
        from opticsfree.evaluation.names import ClassifierSpec, register_classifier
        register_classifier({CLASSIFIER_LINE})
        register_likelihood({LIKELIHOOD_LINE})

        from typer.testing import CliRunner
        from opticsfree.bayes.likelihood import choose_likelihood
        from opticsfree.cli.main import app
        from opticsfree.errors import ConfigError
        from opticsfree.evaluation.names import ALL_CLASSIFIERS, CLASSIFIERS, classifier_spec
        from opticsfree.evaluation.results import conventions
        from opticsfree.study.config import study_config_from_dict
        out = {{"names": [CLASSIFIERS, ALL_CLASSIFIERS]}}
        out["study"] = study_config_from_dict({{"evaluate": {{"classifiers": ["cosine", "knn"]}}}}).evaluate.classifiers
        out["default"] = study_config_from_dict({{}}).evaluate.classifiers
        try:
            study_config_from_dict({{"evaluate": {{"classifiers": ["head"]}}}}, "s.toml")
        except ConfigError as e:
            out["study_error"] = str(e)
        out["class"] = classifier_spec("cosine").load_class().__name__
        out["convention"] = conventions("cosine", fused=False)
        out["likelihood"] = [choose_likelihood("triplet", True, "energy")]
        try:
            choose_likelihood("triplet", False, "energy")
        except ConfigError as e:
            out["likelihood"].append(str(e))
        flat = lambda args: " ".join(CliRunner().invoke(app, args, terminal_width=400).output.translate(
            {{ord(c): " " for c in "│╭╮╰╯─"}}).split())
        out["evaluate"], out["bayes"] = flat(["evaluate", "--help"]), flat(["bayes", "--help"])
        print("RESULT " + json.dumps(out))
    ''')
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.split("RESULT ", 1)[1])
    assert out["names"] == [["prototype", "knn", "threshold", "cosine"],
                            ["prototype", "knn", "threshold", "head", "cosine"]]
    assert out["study"] == ["cosine", "knn"] and out["default"] == ["prototype", "knn", "threshold", "cosine"]
    assert "[evaluate] classifiers[0]" in out["study_error"] and "cosine" in out["study_error"]
    assert "\n" not in out["study_error"]
    assert out["class"] == "PrototypeClassifier"
    assert out["convention"]["cosine"] == "nearest prototype by cosine similarity" and "fused" not in out["convention"]
    assert out["likelihood"] == ["energy", "--likelihood energy: the run's model has no classifier head"]
    assert "--classifier <prototype|knn|threshold|head|cosine>" in out["evaluate"], out["evaluate"]
    assert "energy (an energy model)" in out["bayes"] and "auto|metric|ce|energy" in out["bayes"], out["bayes"]


def test_the_stage_classifier_and_likelihood_registries_hold_what_was_written_by_hand_before():
    """The derived values equal the tables and lists they replaced: the stage versions are part
    of every study directory's stage keys, so they must not move."""
    from opticsfree.bayes.names import LIKELIHOODS, likelihood_spec
    from opticsfree.evaluation.names import ALL_CLASSIFIERS, CLASSIFIERS, classifier_spec
    from opticsfree.study import stages

    assert stage_versions() == {"data": 1, "simulate": 1, "external": 1, "tuples": 1, "recon-train": 1,
                                "recon-apply": 1, "train": 1, "evaluate": 1, "bayes": 1, "report": 2}
    assert {n for n in stage_versions() if stage_spec(n).heavy} == {"simulate", "recon-train", "recon-apply",
                                                                    "train"}
    assert {k: f.__name__ for k, f in stage_functions().items()} == {
        k: "run_" + k.replace("-", "_") for k in stage_versions()}
    assert all(getattr(stages, f.__name__) is f for f in stage_functions().values())
    assert CLASSIFIERS == ("prototype", "knn", "threshold") and ALL_CLASSIFIERS == CLASSIFIERS + ("head",)
    assert [n for n in ALL_CLASSIFIERS if classifier_spec(n).tunes_on_val] == ["knn", "threshold"]
    assert [classifier_spec(n).load_class().__name__ for n in CLASSIFIERS] == [
        "PrototypeClassifier", "KNNClassifier", "ThresholdClassifier"]
    assert LIKELIHOODS == ("metric", "ce") and [n for n in LIKELIHOODS if likelihood_spec(n).needs_head] == ["ce"]


def test_stage_classifier_and_likelihood_registration_errors_are_one_line():
    from opticsfree.bayes.names import LikelihoodSpec, likelihood_spec, register_likelihood
    from opticsfree.evaluation.names import ClassifierSpec, classifier_spec, register_classifier

    with pytest.raises(ValueError, match="already registered"):
        stage_registry.register_stage(StageSpec("train", 1, "x:y"))
    with pytest.raises(ValueError, match="already registered"):
        register_classifier(ClassifierSpec("knn", "x:Y", "z"))
    with pytest.raises(ValueError, match="already registered"):
        register_likelihood(LikelihoodSpec("ce", "z"))
    with pytest.raises(ValueError, match="version >= 1"):
        StageSpec("x", 0, "x:y")
    with pytest.raises(ValueError, match="'module:function' or a callable"):
        StageSpec("x", 1, "no_colon")
    with pytest.raises(ValueError, match="only the head has none"):
        ClassifierSpec("x", None, "z")
    for call, words in ((lambda: classifier_spec("svm"), "classifier 'svm': unknown (expected one of prototype"),
                        (lambda: likelihood_spec("gauss"), "likelihood 'gauss': unknown (expected one of metric, ce)")):
        with pytest.raises(ConfigError) as e:
            call()
        assert words in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------------
# 2. no hand-written list of names outside the registries


def _sources() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py")) if p not in REGISTRIES]


def _strings(node: ast.AST) -> list[str] | None:
    """The elements of a literal tuple/list/set of string constants (None for anything else)."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]  # type: ignore[attr-defined]
    return None


def _is_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal"


def _named_strings(node: ast.AST) -> list[str] | None:
    """The strings a node lists: a literal tuple/list/set (:func:`_strings`), the keys of a dict
    keyed by strings, or the values of a ``Literal[...]`` (None for anything else)."""
    if isinstance(node, ast.Dict) and node.keys and all(
            isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
        return [k.value for k in node.keys]  # type: ignore[union-attr]
    if _is_literal(node):
        inner = node.slice  # type: ignore[attr-defined]
        return _strings(inner) or ([inner.value] if isinstance(inner, ast.Constant) else None)
    return _strings(node)


def test_no_list_of_loss_or_backbone_names_outside_the_registries():
    losses, backbones = set(loss_registry.loss_names()), set(backbone_registry.backbone_names())
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(SRC)
        for snippet in ('"quadruplet-chen", "ce"', "'ce',)", '"ce",)', "HEAD_LOSSES = ", "HEAD_ONLY_LOSSES = (",
                        "CE_LOSS_NAMES", '"resnet14": 16'):
            if snippet in text:
                found.append(f"{rel}: {snippet}")
        tree = ast.parse(text, str(path))
        for node in ast.walk(tree):
            strings = _named_strings(node)
            if _is_literal(node):
                if strings and (set(strings) & (losses | backbones)):
                    found.append(f"{rel}:{node.lineno}: Literal of {strings}")
                continue
            if strings is None:
                continue
            for kind, known in (("loss", losses), ("backbone", backbones)):
                hits = [s for s in strings if s in known]
                # two names of one concept, or a whole literal of one name (HEAD_LOSSES = ("ce",))
                if len(hits) >= 2 or (hits and len(strings) == 1 and isinstance(node, ast.Tuple)):
                    found.append(f"{rel}:{node.lineno}: {kind} names {hits}")
    assert found == [], found


def test_one_choose_likelihood_and_no_comparison_with_a_loss_or_backbone_name():
    defs = [f"{p.relative_to(SRC)}:{n.lineno}" for p in sorted(PKG.rglob("*.py"))
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(n, ast.FunctionDef) and n.name == "choose_likelihood"]
    assert len(defs) == 1 and defs[0].startswith("opticsfree/bayes/likelihood.py:"), defs
    # what a loss or a backbone is comes from its entry, not from its name: no `loss == "ce"`
    # or `backbone != "wvgg"` left
    concepts = (("loss", set(loss_registry.loss_names())), ("backbone", set(backbone_registry.backbone_names())))
    compared = []
    for path in _sources():
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in n.ops):
                sides = [n.left, *n.comparators]
                for word, names in concepts:
                    if any(isinstance(s, ast.Constant) and s.value in names for s in sides) and any(
                            word in ast.unparse(s) for s in sides):
                        compared.append(f"{path.relative_to(SRC)}:{n.lineno}: {ast.unparse(n)}")
    assert compared == [], compared


#: The names of the concepts registered after losses and backbones, and the snippets of the
#: lists and tables they replaced.
LATER_SNIPPETS = ('"prototype", "knn", "threshold"', '"knn", "threshold"', '("metric", "ce")',
                  '"auto", "metric", "ce"', "STAGE_VERSIONS", "STAGE_FUNCTIONS", "HEAVY_KINDS",
                  '"recon-train": ', "class ClassifierName")


def _later_concepts() -> list[tuple[str, set[str]]]:
    return [("stage kind", set(stage_registry.stage_names())),
            ("classifier", set(classifier_registry.classifier_names())),
            ("likelihood", set(likelihood_registry.likelihood_names()))]


def _listed(kind: str, hits: list[str]) -> bool:
    """Whether ``hits`` (the names of one concept in one literal) make a list of that concept: two
    or more; for stage kinds at least one that is not also a study config table (``data``,
    ``train``, ``evaluate``, ``bayes``, ``report`` name both: ``{"study", "data", ...}`` lists
    tables)."""
    if kind == "stage kind":
        from opticsfree.study.config import StudyConfig

        return len(hits) >= 2 and any(h not in StudyConfig.model_fields for h in hits)
    return len(hits) >= 2


def test_no_list_of_stage_classifier_or_likelihood_names_outside_the_registries():
    """No tuple, list or set of two names of a stage kind, a classifier or a likelihood, no dict
    keyed by two of them (``{"data": 1, "simulate": 1}``, a stage-name dict), and no ``Literal``
    of them anywhere but in their registries."""
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(SRC)
        found += [f"{rel}: {snippet}" for snippet in LATER_SNIPPETS if snippet in text]
        for node in ast.walk(ast.parse(text, str(path))):
            strings = _named_strings(node)
            if not strings:
                continue
            for kind, known in _later_concepts():
                hits = [s for s in strings if s in known]
                if _listed(kind, hits):
                    found.append(f"{rel}:{node.lineno}: {kind} names {hits}")
    assert found == [], found


def test_the_scan_finds_what_it_replaced():
    """The scan above would have found each list it replaced (so it checks something)."""
    tree = ast.parse('''
STAGE_VERSIONS = {"data": 1, "simulate": 1, "report": 2}
TABLES = {"study", "data", "train", "evaluate"}
CLASSIFIERS = ("prototype", "knn", "threshold")
LIKELIHOODS = ("metric", "ce")
Classifier = Literal["prototype", "knn"]
''')
    hits: dict[int, set[str]] = {}
    for node in ast.walk(tree):
        strings = _strings(node)
        if isinstance(node, ast.Dict):
            strings = [k.value for k in node.keys]  # type: ignore[union-attr]
        for kind, known in _later_concepts():
            if strings and _listed(kind, [s for s in strings if s in known]):
                hits.setdefault(node.lineno, set()).add(kind)
    assert hits == {2: {"stage kind"}, 4: {"classifier"}, 5: {"likelihood"}, 6: {"classifier"}}
