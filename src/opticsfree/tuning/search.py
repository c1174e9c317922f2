"""The search: a space of settings, Optuna's TPE sampler and median pruning.

A search trains either an embedding or classifier (its space draws
:class:`~opticsfree.training.config.TrainConfig` fields; trials are scored by validation
accuracy) or, with ``method``, a reconstruction method (its space draws the method's options,
``reconstruct train --set``; trials are scored by validation PSNR or SSIM, :data:`RECON_METRICS`).

A **search space** is a TOML file with one table per field to search::

    [weight_decay]            # a float, drawn on a log scale
    type = "float"
    low = 1e-4
    high = 0.1
    log = true

    [width]                   # an integer, in steps
    type = "int"
    low = 8
    high = 32
    step = 8

    [scene_augment]           # one of a list
    type = "categorical"
    choices = ["none", "flip", "crop-flip"]

Every trial is an ordinary training run, ``DIR/trials/NNNN`` (a run directory, or a MODEL
directory of ``reconstruct train``): the recipe's settings for the loss (or the method), the
fixed ``--set`` fields, and the drawn values. Its score is the best **validation** score over
its epochs (the hold-out taken from the train split); the test split is never read. After each
epoch the trial reports its validation score; the median pruner stops a trial whose score at
that epoch is below the median of the earlier trials' at the same epoch
(after :data:`N_STARTUP_TRIALS` finished trials, and only after a third of the epochs: the
first epochs say little; a 6-trial search pruning from epoch 1 stopped trials at 33%). Optuna's storage
(``DIR/study.db``, SQLite) holds every trial, so a rerun of the same command continues: trials
left running by a killed search are marked failed and new ones start until ``trials`` have
finished (complete or pruned). The best settings are written as a recipe file,
``DIR/best.toml``, with the search's history (``DIR/trials.csv``) and, after two complete
trials or more, the parameters' importance (``DIR/importance.png``, Optuna's fANOVA). The
recipe is a training recipe (``train --recipe FILE``) or, for a method, a reconstruction recipe
(``reconstruct train --recipe FILE``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from opticsfree.errors import ConfigError
from opticsfree.utils.io import atomic_path, check_plan_dir, read_toml, write_json, write_text
from opticsfree.utils.parallel import check_executor

#: TrainConfig fields a search may not draw: the data, the loss, the teacher and the runtime.
NOT_SEARCHABLE = ("captures", "loss", "teacher", "device", "workers", "threads", "checkpoints")
#: Reconstruction options a search may not draw (an ensemble member is not a setting).
RECON_NOT_SEARCHABLE = ("member",)
#: What a reconstruction search scores (the validation rows of ``metrics.jsonl``: ``val_psnr``
#: in dB, ``val_ssim``); the first is the default.
RECON_METRICS = ("psnr", "ssim")
#: The file that holds a search's settings (a rerun with other settings is refused).
PLAN_FILE = "tune.json"
#: Finished trials before the pruner may stop one.
N_STARTUP_TRIALS = 2
INSTALL_HINT = "opticsfree tune needs Optuna: pip install 'opticsfree[scale]' (or pip install optuna)"


class Param(BaseModel):
    """One searched field: a float or int range (``log``, ``step``) or a list of choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Param":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes 'choices', not 'low'/'high'")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"needs low < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("'log' and 'step' cannot be combined")
        if self.choices is not None:
            raise ValueError(f"a {self.type} parameter takes 'low'/'high', not 'choices'")
        return self

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw this parameter for an Optuna ``trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """The fields to search, in file order.

    Attributes:
        params: ``{TrainConfig field: Param}``.
        source: the file it came from.
    """

    params: dict[str, Param]
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: p.model_dump(exclude_none=True) for k, p in self.params.items()}


@dataclass(frozen=True)
class Target:
    """What a search trains and how a trial is scored.

    Attributes:
        method: a reconstruction method (``reconstruct train --method``), or None: ``train``.
        metric: ``accuracy`` for ``train``; one of :data:`RECON_METRICS` for a method.
    """

    method: str | None = None
    metric: str = "accuracy"

    def __post_init__(self) -> None:
        if self.method is None and self.metric != "accuracy":
            raise ConfigError(f"--metric {self.metric}: a training search is scored by validation accuracy "
                              "(--metric psnr|ssim needs --reconstruct METHOD)")
        if self.method is not None:
            from opticsfree.reconstruction.names import method_spec

            spec = method_spec(self.method)  # ConfigError naming the registered methods
            if not spec.options:
                raise ConfigError(f"--reconstruct {self.method}: the method takes no options, nothing to search")
            if self.metric not in RECON_METRICS:
                raise ConfigError(f"--metric: expected one of {', '.join(RECON_METRICS)} for a reconstruction "
                                  f"search, got {self.metric!r}")

    @property
    def score(self) -> str:
        """The ``metrics.jsonl`` key a trial is scored by (``val_accuracy``, ``val_psnr``, ``val_ssim``)."""
        return f"val_{self.metric}"

    @property
    def what(self) -> str:
        return "a training setting" if self.method is None else f"an option of method {self.method}"

    def option_model(self) -> type[BaseModel]:
        """The settings model a space's fields come from."""
        if self.method is None:
            from opticsfree.training.config import TrainConfig

            return TrainConfig
        from opticsfree.reconstruction.names import method_class

        return method_class(self.method).config_cls

    def fixed(self) -> tuple[str, ...]:
        return NOT_SEARCHABLE if self.method is None else RECON_NOT_SEARCHABLE


def load_space(path: str | Path, target: Target = Target()) -> SearchSpace:
    """Read a search-space file (module doc) for ``target`` (default: training settings).

    Raises:
        ConfigError: an unreadable file, a field the target's settings do not have or that
            cannot be searched, or a bad parameter (one line naming the file and the field).
    """
    model = target.option_model()
    data = read_toml(path, "search-space file")
    if not data:
        raise ConfigError(f"{path}: no parameters (one table per field to search, e.g. [weight_decay])")
    params: dict[str, Param] = {}
    for name, spec in data.items():
        if name not in model.model_fields:
            where = ("docs/metric-learning.md lists them" if target.method is None
                     else "docs/reconstruction.md lists them")
            raise ConfigError(f"{path}: [{name}]: not {target.what} ({where})")
        if name in target.fixed():
            raise ConfigError(f"{path}: [{name}]: cannot be searched ({', '.join(target.fixed())} are fixed "
                              "by the command)")
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: [{name}]: expected a table with type = float|int|categorical")
        try:
            params[name] = Param(**spec)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{path}: [{name}]{'.' + loc if loc else ''}: {msg}") from None
    return SearchSpace(params, str(path))


@dataclass
class TuneResult:
    """The outcome of a search.

    Attributes:
        best_value: the best trial's validation score (:attr:`score`: accuracy as a fraction,
            PSNR in dB, SSIM).
        best_params: its drawn values.
        best_trial: its number (``DIR/trials/NNNN``).
        n_complete / n_pruned / n_failed: trials by state.
        recipe: the best settings as a recipe file.
        history: the CSV of every trial.
        importance: ``{field: importance}`` (empty with fewer than two complete trials, one
            field, or equal scores), drawn in ``importance.png``.
        score: the ``metrics.jsonl`` key trials were scored by (:attr:`Target.score`).
    """

    best_value: float
    best_params: dict[str, Any]
    best_trial: int
    n_complete: int
    n_pruned: int
    n_failed: int
    recipe: Path
    history: Path
    importance: dict[str, float] = field(default_factory=dict)
    score: str = "val_accuracy"

    def to_json(self) -> dict[str, Any]:
        return {f"best_{self.score}": self.best_value, "score": self.score, "best_params": self.best_params,
                "best_trial": self.best_trial, "n_complete": self.n_complete, "n_pruned": self.n_pruned,
                "n_failed": self.n_failed, "recipe": str(self.recipe), "history": str(self.history),
                "importance": self.importance}


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"cannot write {v} to a recipe file")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} to a recipe file")


def recipe_text(name: str, description: str, target: str, fields: dict[str, Any], measured: str,
                method: bool = False) -> str:
    """A recipe file with one table for ``target``: a training recipe (``train --recipe FILE``;
    ``[loss.<target>]``, which is also its default loss) or, with ``method``, a reconstruction
    recipe (``reconstruct train --recipe FILE``; ``[method.<target>]``). Fields whose value is
    None (their default) are left out."""
    lines = [f"name = {_toml_value(name)}", f"description = {_toml_value(description)}"]
    if not method:
        lines.append(f"default_loss = {_toml_value(target)}")
    lines += ["", f'[{"method" if method else "loss"}."{target}"]', f"measured = {_toml_value(measured)}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n"


def _best_score(run: Path, key: str) -> float:
    from opticsfree.runs import read_metrics_file

    vals = [r.get(key) for r in read_metrics_file(run / "metrics.jsonl")]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else float("nan")


@dataclass(frozen=True)
class _Search:
    """What a trial needs (picklable: a Ray task gets it): the data, the space, the fixed
    settings, the search directory and its storage."""

    captures: str
    space: SearchSpace
    base: dict[str, Any]
    loss: str
    out: str
    seed: int
    warmup: int
    target: Target = Target()

    def study(self, sampler_seed: int) -> Any:
        optuna = _optuna()
        return optuna.create_study(
            study_name="opticsfree-tune", storage=f"sqlite:///{Path(self.out) / 'study.db'}", load_if_exists=True,
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=sampler_seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=N_STARTUP_TRIALS, n_warmup_steps=self.warmup))

    def objective(self, trial: Any) -> float:
        """One trial: a training run with the drawn values, scored on validation (values a
        finished trial already had are not trained again: :func:`_repeat`)."""
        optuna = _optuna()
        drawn = {name: p.suggest(trial, name) for name, p in self.space.params.items()}
        earlier = _repeat(trial, drawn)
        if earlier is not None:
            return earlier
        run = Path(self.out) / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run", str(run))
        key = self.target.score

        def report(row: dict[str, Any]) -> None:
            if row.get(key) is not None:
                trial.report(float(row[key]), int(row["epoch"]))
                if trial.should_prune():
                    raise optuna.TrialPruned()

        if self.target.method is None:
            from opticsfree.training import train

            train({**self.base, **drawn, "captures": self.captures, "loss": self.loss}, run, show_progress=False,
                  on_epoch=report)
        else:
            from opticsfree.reconstruction.train import train_reconstruction

            train_reconstruction(self.captures, self.target.method, run, options={**self.base, **drawn},
                                 on_epoch=report)
        return _best_score(run, key)


def _repeat(trial: Any, drawn: dict[str, Any]) -> float | None:
    """The score of a finished trial that drew the same values, or None.

    A sampler may draw values a finished trial already had (over categorical fields it often
    does); the runs are seeded, so training them again would only repeat that trial. The trial
    then takes the earlier one's per-epoch scores, its run (``run``) and its outcome, and records
    which it repeats (``same_as``): its score when that one completed, pruned when that one was.
    """
    optuna = _optuna()
    state = optuna.trial.TrialState
    for t in trial.study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED)):
        if t.params == drawn:
            trial.set_user_attr("same_as", t.number)
            trial.set_user_attr("run", t.user_attrs.get("run", ""))
            for step, value in sorted(t.intermediate_values.items()):
                trial.report(value, step)
            if t.state == state.PRUNED:
                raise optuna.TrialPruned()
            return float(t.value)
    return None


def _one_trial(search: _Search, k: int) -> tuple[int, str, float | None]:
    """A Ray task: one trial of the search against its storage (sampler seed ``seed + k``)."""
    study = search.study(search.seed + k)
    trial_box: list[Any] = []
    study.optimize(search.objective, n_trials=1, catch=(ConfigError,),
                   callbacks=[lambda st, t: trial_box.append(t)])
    t = trial_box[0]
    return t.number, t.state.name.lower(), t.value


def tune(captures: str | Path, space: SearchSpace, out: str | Path, trials: int, *,
         recipe: str | None = None, loss: str | None = None, fields: dict[str, Any] | None = None,
         seed: int = 0, on_trial: Callable[[int, str, float | None], None] | None = None,
         executor: str = "local", address: str | None = None, target: Target = Target()) -> TuneResult:
    """Search ``space`` with ``trials`` training runs on ``captures`` (module doc).

    Args:
        captures: the capture set (its train split; the validation hold-out scores trials).
        space: the fields to search (:func:`load_space` with the same ``target``).
        out: the search directory (created; an equal earlier search there continues).
        trials: finished trials wanted in all (complete or pruned, earlier runs included).
        recipe: the recipe whose settings for ``loss`` (for a method: the method) every trial
            starts from (None: ``train``'s or ``reconstruct train``'s default recipe).
        loss: the loss (None: the recipe's default; refused for a method).
        fields: fixed settings (``--set``), applied over the recipe.
        seed: the sampler's seed (the runs keep the recipe's or ``fields``' seed).
        on_trial: called after each trial with its number, state and value.
        executor: ``local`` (one trial after another here) or ``ray`` (every trial a Ray task
            against the shared Optuna storage: trials run at once; the sampler sees the trials
            finished so far, so a parallel search may draw differently from a serial one).
        address: a Ray cluster to join (``ray`` only; every node must see ``out``).
        target: what trials train and how they are scored (default: ``train``, validation
            accuracy; a reconstruction method: its options, validation PSNR or SSIM; the
            trials' runs keep seed 0, ``reconstruct train``'s default).

    Returns:
        :class:`TuneResult`.

    Raises:
        ConfigError: Optuna missing (how to install), a field both fixed and searched, ``out``
            holding another search, or no trial completing.
    """
    optuna = _optuna()
    from opticsfree.training.recipes import has_simulated_camera

    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    check_executor(executor, address)
    fields = dict(fields or {})
    both = sorted(set(fields) & set(space.params))
    if both:
        raise ConfigError(f"--set {both[0]}: also searched by {space.source}; fix it or search it, not both")
    simulated = has_simulated_camera(captures)
    if target.method is None:
        from opticsfree.training.config import TrainConfig
        from opticsfree.training.recipes import DEFAULT_RECIPE, load_recipe

        rec = load_recipe(recipe or DEFAULT_RECIPE)
        loss, base, _ = rec.fields(loss, simulated=simulated)
        base = {k: v for k, v in {**base, **fields}.items() if k != "measured"}
        epochs = TrainConfig.from_dict({**base, "captures": str(captures), "loss": loss}, "recipe and --set").epochs
    else:
        from opticsfree.reconstruction.base import parse_options
        from opticsfree.reconstruction.recipes import DEFAULT_RECIPE as RECON_RECIPE
        from opticsfree.reconstruction.recipes import load_recipe as load_recon_recipe

        if loss is not None:
            raise ConfigError(f"--loss {loss}: a reconstruction search (--reconstruct) trains no loss")
        rec = load_recon_recipe(recipe or RECON_RECIPE)
        base, _ = rec.for_method(target.method, simulated=simulated)
        base = {**base, **fields}
        epochs = parse_options(target.option_model(), base, target.method).epochs
        loss = target.method
    out = Path(out)
    plan = {"captures": str(Path(captures).resolve()), "space": space.to_json(), "recipe": rec.name,
            "recipe_source": rec.source, "loss": loss, "fields": fields, "seed": seed}
    if target.method is not None:  # (a training search's plan keeps its earlier keys)
        plan.update(method=target.method, score=target.score)
    check_plan_dir(out, PLAN_FILE, json.loads(json.dumps(plan)), "a search", "use another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / PLAN_FILE, plan)
    search = _Search(str(captures), space, base, loss, str(out.resolve()), seed, max(1, int(epochs) // 3), target)
    study = search.study(seed)
    state = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):  # left by a killed search
        study.tell(t.number, state=state.FAIL)

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED)))

    def tell(number: int, state_name: str, value: float | None) -> None:
        if on_trial is not None:
            on_trial(number, state_name, value)

    remaining = trials - finished()
    if remaining > 0 and executor == "ray":
        from opticsfree.utils.parallel import ray_map

        # each task runs one trial against the shared storage; its sampler's seed differs so that
        # the random start-up trials differ
        start = len(study.trials)
        for _, (number, state_name, value) in ray_map(_one_trial, [(start + k,) for k in range(remaining)],
                                                      address=address, shared=(search,)):
            tell(number, state_name, value)
    elif remaining > 0:
        study.optimize(search.objective, n_trials=remaining, catch=(ConfigError,),
                       callbacks=[lambda st, t: tell(t.number, t.state.name.lower(), t.value)])
    study = search.study(seed)
    complete = study.get_trials(deepcopy=False, states=(state.COMPLETE,))
    if not complete:
        raise ConfigError(f"{out}: no trial completed ({len(study.trials)} tried; see {out / 'trials.csv'})")
    best = study.best_trial
    importance: dict[str, float] = {}
    if len(complete) >= 2 and len(space.params) >= 2 and len({t.value for t in complete}) > 1:
        importance = {k: float(v) for k, v in optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)).items()}
        _draw_importance(importance, out / "importance.png", target.score)
    history = out / "trials.csv"
    _write_history(study, space, history, target.score)
    recipe_path = out / "best.toml"
    value = {"val_accuracy": f"{100 * best.value:.2f}%", "val_psnr": f"{best.value:.2f} dB PSNR",
             "val_ssim": f"{best.value:.4f} SSIM"}[target.score]
    measured = (f"{value} validation, trial {best.number} of a {len(study.trials)}-trial "
                f"search over {', '.join(space.params)} (opticsfree tune)")
    text = recipe_text("tuned", f"{rec.name} with {', '.join(space.params)} searched on validation",
                       loss, {**base, **best.params}, measured, method=target.method is not None)
    write_text(recipe_path, text)
    return TuneResult(float(best.value), dict(best.params), best.number, len(complete),
                      len(study.get_trials(deepcopy=False, states=(state.PRUNED,))),
                      len(study.get_trials(deepcopy=False, states=(state.FAIL,))), recipe_path, history,
                      importance, target.score)


def _write_history(study: Any, space: SearchSpace, path: Path, score: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", "state", score, "last_epoch", *space.params, "run", "same_as"])
    for t in study.trials:
        last = max(t.intermediate_values) if t.intermediate_values else ""
        w.writerow([t.number, t.state.name.lower(), "" if t.value is None else f"{t.value:.6f}", last,
                    *(t.params.get(k, "") for k in space.params), t.user_attrs.get("run", ""),
                    t.user_attrs.get("same_as", "")])
    write_text(path, buf.getvalue())


def _draw_importance(importance: dict[str, float], path: Path, score: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importance)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(names)))
    ax.barh(names, [importance[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance (fANOVA share of the variance of {score.replace('_', ' ')})")
    ax.set_title(f"what the search's {score.replace('_', ' ')} depends on")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
