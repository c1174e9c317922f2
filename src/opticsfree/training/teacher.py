"""The teacher of teacher-student training (``train --teacher RUN``).

A teacher is a finished training run that classifies the *scenes* well: typically a run on a
capture set of the ``lens`` camera (the lens bound). For every training row the student sees
the lens-less capture and the teacher the row's scene (the original, after the same scene
augmentation) as the teacher's own camera records it: when the teacher's capture set was
simulated, the scene is captured by that set's camera (seeded sensor noise, its output size),
so the teacher sees what it was trained on; for a teacher trained on real captures the scene
itself is its input. Its outputs on all training rows are computed once per set of rows (again
when ``scene_refresh`` draws new ones) and the student is pulled toward them by
:class:`opticsfree.losses.distill.Distillation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from opticsfree.errors import ConfigError
from opticsfree.losses.names import REGISTRY as LOSS_REGISTRY
from opticsfree.training.checkpoint import TrainedModel, load_trained
from opticsfree.utils.io import file_sha256


@dataclass
class TeacherTargets:
    """The teacher's outputs on every training row.

    Attributes:
        logits: (N, C) float32 class logits, or None (no soft-target term).
        embeddings: (N, D) float32 unit embeddings, or None (no feature term).
    """

    logits: Tensor | None
    embeddings: Tensor | None


class Teacher:
    """A finished run, checked against the student's set-up.

    Args:
        run: the teacher's run directory (its last checkpoint is used).
        classes: the student's class names, in label order (the teacher's must be the same).
        kd_weight: the soft-target weight (> 0 needs a classifier head on both).
        feature_weight: the feature weight (> 0 needs equal embedding sizes).
        student_has_head: whether the student has a classifier head.
        student_dim: the student's embedding size.
        device: where the teacher runs.
        scenes: the student's training split (its originals' size sets up the teacher's camera).
        seed: the sensor-noise seed of the teacher camera's captures.

    Raises:
        ConfigError: the run cannot teach this student (one line naming ``teacher`` and why).
    """

    def __init__(self, run: str, classes: list[str], kd_weight: float, feature_weight: float,
                 student_has_head: bool, student_dim: int, device: str = "cpu",
                 scenes: Any = None, seed: int = 0):
        try:
            self.model: TrainedModel = load_trained(run, device=device)
        except Exception as e:  # noqa: BLE001 - named for the user as the teacher's problem
            raise ConfigError(f"teacher {run}: {e}") from None
        t = self.model
        if list(t.classes) != list(classes):
            raise ConfigError(f"teacher {run}: its classes {t.classes} differ from the capture set's "
                              f"{list(classes)} (same names, same order needed)")
        if kd_weight > 0 and not (t.has_head and student_has_head):
            who = "the teacher" if not t.has_head else "the student"
            heads = " or ".join(n for n, spec in LOSS_REGISTRY.items() if spec.uses_head)
            raise ConfigError(f"teacher {run}: teacher_kd_weight > 0 needs a classifier head on both, "
                              f"and {who} has none (loss {heads}); set teacher_kd_weight=0 "
                              "and use teacher_feature_weight")
        if feature_weight > 0 and t.model.embedding_dim != student_dim:
            raise ConfigError(f"teacher {run}: feature alignment needs equal embedding sizes, the "
                              f"teacher has {t.model.embedding_dim} and the student {student_dim}")
        self.run, self.kd_weight, self.feature_weight, self.seed = run, kd_weight, feature_weight, seed
        self.camera = None
        if scenes is not None:
            from opticsfree.training.augment import scene_camera
            from opticsfree.training.recipes import has_simulated_camera

            if has_simulated_camera(t.captures):
                self.camera = scene_camera(str(t.captures), scenes)

    def describe(self) -> dict[str, Any]:
        """What the run records of its teacher (``resolved.teacher``)."""
        ck = self.model.run / "checkpoints" / f"epoch_{self.model.epoch:03d}.pt"
        return {"run": str(self.run), "epoch": self.model.epoch, "checkpoint_sha256": file_sha256(ck),
                "loss": self.model.loss, "size": self.model.size,
                "input": "scenes through its set's camera" if self.camera is not None else "scenes"}

    @torch.no_grad()
    def targets(self, originals: Tensor, batch_size: int = 512, draw: int = 0) -> TeacherTargets:
        """The teacher's outputs on the scenes.

        Args:
            originals: uint8 scenes (N, C, H, W) as the student's rows hold them; captured by the
                teacher's camera (see the module doc), then resized to the teacher's size when
                it differs.
            batch_size: images per forward pass.
            draw: which draw of the camera's noise (a new one for each new set of rows).

        Shape:
            originals: (N, C, H, W), C the teacher's input channels.
        """
        from opticsfree.captures.loader import resize_uint8

        t = self.model
        if self.camera is not None:
            originals = self.camera(originals, self.seed + draw, "teacher")
        c = t.model.norms["lensless"].channels
        if originals.shape[1] != c:
            raise ConfigError(f"teacher {self.run}: it takes {c}-channel images and the scenes have "
                              f"{originals.shape[1]}")
        x = originals if originals.shape[-1] == t.size else resize_uint8(originals, t.size)
        logits = t.logits(x, batch_size).float() if self.kd_weight > 0 else None
        emb = t.embed(x, "lensless", batch_size).float() if self.feature_weight > 0 else None
        return TeacherTargets(logits, emb)
