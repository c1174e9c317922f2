"""The study's results as typed values: what ``OUT/results.json`` holds and the report shows.

:func:`collect_results` reads the finished stages' outputs (:class:`StageContext`) once and
returns a :class:`StudyResults`; :meth:`StudyResults.to_json` is the content of results.json,
and :mod:`opticsfree.study.report` builds the report's sections from the same object. The
seed study's published numbers come from :mod:`opticsfree.seed_study`.

Two payloads stay plain JSON because their packages own their format: a checkpoint's metrics
(:data:`MetricRow`, :func:`opticsfree.evaluation.report.summarize`) and a Bayes summary
(:data:`BayesSummary`, :func:`opticsfree.bayes.report.bayes_run`).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any

from opticsfree import __version__, seed_study
from opticsfree.study.base import UPPER_BOUND, StageContext, StageRecord, jsonable
from opticsfree.reconstruction.names import REGISTRY as METHOD_REGISTRY
from opticsfree.study.config import LENSLESS

#: One checkpoint's numbers from opticsfree.evaluation (``summarize`` plus ``seed_row``).
MetricRow = dict[str, Any]
#: One run's Bayes summary from opticsfree.bayes (plus ``seed_kl``).
BayesSummary = dict[str, Any]

#: Display names of the reconstruction methods (registered when this module is imported;
#: opticsfree.reconstruction.names).
METHOD_NAMES = {name: spec.title for name, spec in METHOD_REGISTRY.items()}

#: The MSE on the 0-255 scale that the seed's published capture PSNR implies (to tens).
_SEED_PSNR_MSE_255 = round(255 ** 2 * 10 ** (-seed_study.DEGRADATION.psnr / 10), -1)
CONV_QUALITY = ("Images resized to {size}x{size}, values in [0, 1] (data_range 1), per-image "
                "PSNR = 10 log10(1/MSE) and SSIM (Gaussian window 11, sigma 1.5), mean +/- std "
                "over the test captures; MSE on [0, 1] and on the 0-255 scale (255^2 x MSE). The "
                "seed's MSE figures are as published: they do not match its PSNR under any single "
                f"convention ({seed_study.DEGRADATION.psnr} dB means an MSE near "
                f"{_SEED_PSNR_MSE_255:,.0f} on the 0-255 scale).")


def images_name(images: str) -> str:
    """How the report names an image kind: ``lensless``, ``upper bound``, ``reconstructed (U-Net)``."""
    if images == LENSLESS:
        return "lensless"
    if images == UPPER_BOUND:
        return "upper bound"
    return f"reconstructed ({METHOD_NAMES.get(images, images)})"


def seed_kind(images: str) -> str:
    """The seed's image kind of a study image kind: ``lensless`` or ``reconstructed``."""
    return "lensless" if images == LENSLESS else "reconstructed"


@dataclass(frozen=True)
class Quality:
    """Images against their originals (:func:`opticsfree.captures.quality.capture_quality`)."""

    n: int
    mse: float
    mse_255: float
    psnr: float
    psnr_std: float | None
    ssim: float
    ssim_std: float | None
    convention: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "Quality | None":
        """The quality in a stage's outputs (None when the stage measured none)."""
        if not d:
            return None
        return cls(n=int(d["n"]), mse=float(d["mse"]), mse_255=float(d["mse_255"]),
                   psnr=float(d["psnr"]), psnr_std=d.get("psnr_std"), ssim=float(d["ssim"]),
                   ssim_std=d.get("ssim_std"), convention=d.get("convention"))

    def to_json(self) -> dict[str, Any]:
        """The fields as in results.json."""
        return {"n": self.n, "mse": self.mse, "mse_255": self.mse_255, "psnr": self.psnr,
                "psnr_std": self.psnr_std, "ssim": self.ssim, "ssim_std": self.ssim_std,
                "convention": self.convention}


@dataclass(frozen=True)
class CaptureSetInfo:
    """A capture set the study made or used: where it is, its shape, check and quality."""

    captures: str
    classes: list[str]
    splits: dict[str, int]
    frames: int
    channels: int | None
    source: dict[str, Any] | None
    camera_name: str | None
    derived: bool
    reconstruction: dict[str, Any] | None
    method: str | None
    check: dict[str, Any] | None
    quality: Quality | None
    seed: int | None

    @classmethod
    def from_outputs(cls, o: dict[str, Any]) -> "CaptureSetInfo":
        """From the outputs of a ``simulate``, ``external`` or ``recon-apply`` stage."""
        return cls(captures=str(o["captures"]), classes=list(o["classes"]), splits=dict(o["splits"]),
                   frames=int(o["frames"]), channels=o.get("channels"), source=o.get("source"),
                   camera_name=o.get("camera_name"), derived=bool(o.get("derived")),
                   reconstruction=o.get("reconstruction"), method=o.get("method"),
                   check=o.get("check"), quality=Quality.from_json(o.get("quality")),
                   seed=o.get("seed"))

    def to_json(self) -> dict[str, Any]:
        """The fields as in results.json (``method`` only for a reconstructed set)."""
        d: dict[str, Any] = {"captures": self.captures, "classes": self.classes, "splits": self.splits,
                             "frames": self.frames, "channels": self.channels, "source": self.source,
                             "camera_name": self.camera_name, "derived": self.derived,
                             "reconstruction": self.reconstruction}
        if self.method is not None:
            d["method"] = self.method
        d.update({"check": self.check, "quality": self.quality and self.quality.to_json(),
                  "seed": self.seed})
        return d


@dataclass(frozen=True)
class CameraSummary:
    """The study's camera: its name, its parameters (the camera config as JSON) and whether the
    captures were simulated (``simulate``) or an existing set (``path``)."""

    name: str | None
    parameters: dict[str, Any]
    source: str

    def to_json(self) -> dict[str, Any]:
        """``{"name", "parameters", "source"}``."""
        return {"name": self.name, "parameters": self.parameters, "source": self.source}


@dataclass(frozen=True)
class RunResults:
    """One trained run's evaluation: every classifier's rows, one per checkpoint."""

    loss: str
    images: str
    role: str                    # "main" | "baseline" | "upper-bound" | "recipe"
    primary_classifier: str
    train_summary: dict[str, Any] | None
    results: dict[str, list[MetricRow]]

    @property
    def primary(self) -> list[MetricRow]:
        """The primary classifier's rows (the ones Tables 1-4 show)."""
        return self.results[self.primary_classifier]

    def final(self, classifier: str) -> MetricRow | None:
        """``classifier``'s row at the last checkpoint (None when it has none)."""
        rows = self.results.get(classifier) or []
        return rows[-1] if rows else None

    @property
    def name(self) -> str:
        """``triplet, reconstructed (U-Net)``: loss and image kind as the report names them."""
        return f"{self.loss}, {images_name(self.images)}"

    def to_json(self) -> dict[str, Any]:
        """The fields as in results.json."""
        return {"loss": self.loss, "images": self.images, "role": self.role,
                "primary_classifier": self.primary_classifier, "train_summary": self.train_summary,
                "results": self.results}


@dataclass(frozen=True)
class ReconstructionTraining:
    """How a reconstruction model trained (its last epoch's validation numbers)."""

    epochs: int | None
    seconds_per_epoch: float | None
    images_per_s: float | None
    val_psnr: float | None
    val_ssim: float | None
    model: str | None

    @classmethod
    def from_outputs(cls, o: dict[str, Any]) -> "ReconstructionTraining":
        """From a ``recon-train`` stage's outputs (its metrics rows)."""
        rows = [r for r in (o.get("metrics") or []) if isinstance(r, dict)]
        secs = [r["seconds"] for r in rows if isinstance(r.get("seconds"), (int, float))]
        last = rows[-1] if rows else {}
        return cls(epochs=last.get("epoch"), seconds_per_epoch=sum(secs) / len(secs) if secs else None,
                   images_per_s=last.get("images_per_s"), val_psnr=last.get("val_psnr"),
                   val_ssim=last.get("val_ssim"), model=o.get("model"))

    def to_json(self) -> dict[str, Any]:
        """The fields as in results.json."""
        return {"epochs": self.epochs, "seconds_per_epoch": self.seconds_per_epoch,
                "images_per_s": self.images_per_s, "val_psnr": self.val_psnr,
                "val_ssim": self.val_ssim, "model": self.model}


@dataclass(frozen=True)
class SeedTableResults:
    """One of the seed's Tables 1-4: our main runs of its loss and image kind, and its rows."""

    table: seed_study.SeedTable
    ours: dict[str, list[MetricRow]]        # run label -> primary classifier's rows
    seed: list[seed_study.SeedRow]

    def to_json(self) -> dict[str, Any]:
        """``{"loss", "images", "ours", "seed"}``."""
        return {"loss": self.table.loss, "images": self.table.images, "ours": self.ours,
                "seed": [r.as_dict() for r in self.seed]}


@dataclass(frozen=True)
class StageTime:
    """A finished stage's wall time (summed over interrupted attempts)."""

    stage: str
    kind: str
    key: str
    wall_s: float
    resumed: bool
    finished: str
    started: str = ""
    node: str = ""

    def to_json(self) -> dict[str, Any]:
        """The fields as in results.json."""
        return {"stage": self.stage, "kind": self.kind, "key": self.key, "wall_s": self.wall_s,
                "resumed": self.resumed, "started": self.started, "finished": self.finished,
                "node": self.node}


@dataclass(frozen=True)
class Machine:
    """Where the study ran."""

    hostname: str
    processor: str
    cpu_count: int | None
    device: str
    cuda: str | None

    def to_json(self) -> dict[str, Any]:
        """The fields as in results.json."""
        return {"hostname": self.hostname, "processor": self.processor, "cpu_count": self.cpu_count,
                "device": self.device, "cuda": self.cuda}


@dataclass(frozen=True)
class Provenance:
    """Versions, machine, seeds, the data copy read, the config and wall time per stage."""

    package_version: str
    python: str
    torch: str
    platform: str
    machine: Machine
    seeds: dict[str, int]
    data_copy: str | None
    dataset: str | None
    dataset_notes: list[str] | None
    captures: str
    config_file: str | None
    config_toml: str | None
    config: dict[str, Any]
    stages: list[StageTime]

    @property
    def wall_s_total(self) -> float:
        """Total wall time of the stages (seconds)."""
        return sum(s.wall_s for s in self.stages)

    def to_json(self) -> dict[str, Any]:
        """The fields as in results.json."""
        return {"package_version": self.package_version, "python": self.python, "torch": self.torch,
                "platform": self.platform, "machine": self.machine.to_json(), "seeds": self.seeds,
                "data_copy": self.data_copy, "dataset": self.dataset,
                "dataset_notes": self.dataset_notes, "captures": self.captures,
                "config_file": self.config_file, "config_toml": self.config_toml,
                "config": self.config, "stages": [s.to_json() for s in self.stages],
                "wall_s_total": self.wall_s_total}


@dataclass(frozen=True)
class StudyResults:
    """Everything the report shows.

    Attributes:
        title, created, study, dataset: the report title, creation time, study name, dataset.
        camera: the lensless camera.
        captures: every capture set by image kind (``lensless``, each method, ``upper-bound``).
        reconstruction_training: each method's training.
        runs: every evaluated run by label (``triplet/lensless``), in stage order.
        bayes: every Bayes summary by run label (with ``seed_kl``).
        tables: the seed's Tables 1-4 with our rows.
        quality_size: the side the image quality was measured at.
        provenance: versions, machine, seeds, config, stage wall times.
    """

    title: str
    created: str
    study: str
    dataset: str | None
    camera: CameraSummary
    captures: dict[str, CaptureSetInfo]
    reconstruction_training: dict[str, ReconstructionTraining]
    runs: dict[str, RunResults]
    bayes: dict[str, BayesSummary]
    tables: list[SeedTableResults]
    quality_size: int
    provenance: Provenance

    @property
    def lensless(self) -> CaptureSetInfo:
        """The lensless capture set."""
        return self.captures[LENSLESS]

    @property
    def upper_bound(self) -> CaptureSetInfo | None:
        """The clean-image upper-bound set (None when not made)."""
        return self.captures.get(UPPER_BOUND)

    @property
    def reconstruction_quality(self) -> dict[str, Quality | None]:
        """Quality of the lensless captures and of each reconstruction, by image kind."""
        return {k: s.quality for k, s in self.captures.items() if k != UPPER_BOUND}

    def conventions(self) -> dict[str, str]:
        """The units and averaging of each kind of number."""
        return {
            "metrics": "percent (0-100); precision/recall/F1 support-weighted over classes (weighted "
                       "recall = accuracy); macro_* unweighted",
            "quality": CONV_QUALITY.format(size=self.quality_size),
            "bayes": "natural logs (nats); KL(posterior||prior) averaged over test captures; "
                     "KL(label distribution||mean posterior); accuracy in %; temperature fitted on val",
        }

    def to_json(self) -> dict[str, Any]:
        """The content of results.json."""
        q = {k: v and v.to_json() for k, v in self.reconstruction_quality.items()}
        degradation: dict[str, Any] = {"ours": q[LENSLESS], "seed": seed_study.DEGRADATION.to_json()}
        if self.upper_bound is not None:
            degradation["upper_bound"] = self.upper_bound.quality and self.upper_bound.quality.to_json()
        return jsonable({
            "title": self.title, "created": self.created, "study": self.study,
            "dataset": self.dataset, "camera": self.camera.to_json(),
            "captures": {k: v.to_json() for k, v in self.captures.items()},
            "degradation": degradation,
            "reconstruction_quality": q,
            "seed": {"degradation": seed_study.DEGRADATION.to_json(),
                     "cyclegan": seed_study.CYCLEGAN.to_json(),
                     "kl": {f"{k[0]}/{k[1]}": v for k, v in seed_study.KL.items()},
                     "tables": [r.as_dict() for r in seed_study.ROWS]},
            "runs": {k: r.to_json() for k, r in self.runs.items()},
            "bayes": self.bayes,
            "reconstruction_training": {k: t.to_json() for k, t in self.reconstruction_training.items()},
            "tables": {str(t.table.number): t.to_json() for t in self.tables},
            "conventions": self.conventions(),
            "provenance": self.provenance.to_json(),
        })


# ----------------------------------------------------------------------------------------------
# collecting


def _seed_tables(runs: dict[str, RunResults]) -> list[SeedTableResults]:
    out = []
    for t in seed_study.TABLES:
        ours = {label: r.primary for label, r in runs.items()
                if r.loss == t.loss and r.role == "main" and seed_kind(r.images) == t.images}
        out.append(SeedTableResults(t, ours, seed_study.table_rows(t.number)))
    return out


def collect_results(ctx: StageContext) -> StudyResults:
    """The results of the finished stages of ``ctx`` (every stage but the report)."""
    cfg = ctx.cfg
    outs = ctx.outputs
    captures = {name.split("/", 1)[1]: CaptureSetInfo.from_outputs(o) for name, o in outs.items()
                if name.startswith("captures/")}
    captures = {LENSLESS: captures[LENSLESS], **captures}   # the lensless set first
    lens = captures[LENSLESS]
    data = outs.get("data")
    runs: dict[str, RunResults] = {}
    bayes: dict[str, BayesSummary] = {}
    for name, o in outs.items():
        label = name.split("/", 1)[-1]
        if name.startswith("evaluate/"):
            train = outs.get(f"train/{label}", {})
            runs[label] = RunResults(o["loss"], o["images"], o["role"], o["primary"],
                                     train.get("summary"), o["results"])
        elif name.startswith("bayes/"):
            bayes[label] = {k: v for k, v in o.items() if k not in ("figures", "file")}
            bayes[label]["seed_kl"] = seed_study.seed_kl(o["loss"], seed_kind(o["images"]))
    return StudyResults(
        title=cfg.title(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        study=cfg.study.name,
        dataset=(data or {}).get("dataset") or (lens.source or {}).get("dataset"),
        camera=CameraSummary(outs[f"captures/{LENSLESS}"].get("camera_name"),
                             outs[f"captures/{LENSLESS}"].get("camera") or {}, cfg.captures.source),
        captures=captures,
        reconstruction_training={o["method"]: ReconstructionTraining.from_outputs(o)
                                 for name, o in outs.items() if name.startswith("reconstruct/")},
        runs=runs,
        bayes=bayes,
        tables=_seed_tables(runs),
        quality_size=cfg.captures.quality_size,
        provenance=collect_provenance(ctx),
    )


def _stage_time(rec: StageRecord) -> StageTime:
    return StageTime(rec.stage, rec.kind, rec.key, rec.wall_s_total, rec.resumed, rec.finished, rec.started,
                     rec.node)


def collect_provenance(ctx: StageContext) -> Provenance:
    """Package and library versions, machine, seeds, data copy, wall time per stage."""
    import torch

    cfg = ctx.cfg
    data = ctx.outputs.get("data") or {}
    lens = ctx.outputs[f"captures/{LENSLESS}"]
    lens_source = lens.get("source") or {}
    toml = ctx.out / "study.toml"
    s = cfg.study.seed
    return Provenance(
        package_version=__version__,
        python=sys.version.split()[0],
        torch=str(torch.__version__),
        platform=platform.platform(),
        machine=Machine(platform.node(), platform.processor() or platform.machine(), os.cpu_count(),
                        ctx.device, torch.cuda.get_device_name(0) if ctx.device == "cuda" else None),
        seeds={"study": s, "simulation": s, "tuples": s, "training": s, "reconstruction": s,
               "bootstrap_and_tsne": s},
        data_copy=data.get("source") or lens_source.get("copy"),
        dataset=data.get("dataset") or lens_source.get("dataset"),
        dataset_notes=data.get("notes") or lens_source.get("notes"),
        captures=lens["captures"],
        config_file=cfg.source,
        config_toml=toml.read_text(encoding="utf-8") if toml.is_file() else None,
        config=cfg.to_dict(),
        stages=[_stage_time(rec) for rec in ctx.done.values()],
    )
