"""One registry per concept: a loss or a backbone is one new module plus one registration line
(docs/architecture.md, "Adding a loss or a backbone"), and no list of their names is written
anywhere but in the registry.

1. A loss and a backbone registered at run time reach everything that takes a name: the
   training config, ``opticsfree train --help``, the study config, the criterion, the trainer,
   the network builder, evaluation's default classifier and the likelihood of bayes/predict.
2. The source has no hand-written list of loss or backbone names outside the registries.
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

from opticsfree.errors import ConfigError
from opticsfree.losses import names as loss_registry
from opticsfree.losses.names import LossSpec, classified_by_head, loss_spec, register_loss
from opticsfree.models import names as backbone_registry
from opticsfree.models.names import BackboneSpec, backbone_spec, register_backbone

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "opticsfree"
REGISTRIES = {PKG / "losses" / "names.py", PKG / "models" / "names.py"}

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
            strings = _strings(node)
            if isinstance(node, ast.Dict) and node.keys and all(
                    isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
                strings = [k.value for k in node.keys]  # type: ignore[union-attr]
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
                inner = node.slice
                strings = _strings(inner) or ([inner.value] if isinstance(inner, ast.Constant) else None)
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
