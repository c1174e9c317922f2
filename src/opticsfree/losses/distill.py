"""Teacher-student terms: make a lens-less capture land where a teacher puts its original.

A teacher is a model trained without the lens-less constraint (on the scenes themselves, e.g.
captures of the ``lens`` camera). For every training scene the student sees the lens-less
capture and the teacher the scene; two terms pull the student toward the teacher, beside the
task loss :math:`\\mathcal{L}_{task}` (Hinton, Vinyals, Dean 2015 for soft targets; feature
alignment as in the computational-imaging distillation of Suarez-Rodriguez, Jacome and
Arguello):

.. math::

    \\mathcal{L} = \\mathcal{L}_{task}
        + \\alpha\\, T^2\\, \\frac{1}{N} \\sum_i \\mathrm{KL}\\big(\\sigma(t_i / T) \\,\\|\\, \\sigma(s_i / T)\\big)
        + \\beta\\, \\frac{1}{N} \\sum_i \\big(1 - \\cos(e_i, f_i)\\big),

with :math:`s_i, t_i` the student's and teacher's logits, :math:`\\sigma` the softmax,
:math:`T` the temperature (the :math:`T^2` keeps the gradient scale of the soft term
independent of :math:`T`), :math:`e_i, f_i` the student's and teacher's embeddings, and
:math:`\\alpha, \\beta` the weights (``teacher_kd_weight``, ``teacher_feature_weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_pair(a: Tensor, b: Tensor, what: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{what}: expected student and teacher tensors of the same shape (N, D), "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")


def distillation_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Soft-target distillation: :math:`T^2 \\frac{1}{N}\\sum_i \\mathrm{KL}(\\sigma(t_i/T)\\|\\sigma(s_i/T))`.

    Args:
        student_logits: :math:`s`, the student's class logits.
        teacher_logits: :math:`t`, the teacher's (no gradient flows into them).
        temperature: :math:`T > 0`.

    Returns:
        A scalar (float32).

    Shape:
        student_logits, teacher_logits: (N, C).
    """
    _check_pair(student_logits, teacher_logits, "distillation_kl")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature ** 2


def feature_alignment(student_emb: Tensor, teacher_emb: Tensor) -> Tensor:
    """Feature alignment: :math:`\\frac{1}{N}\\sum_i (1 - \\cos(e_i, f_i))`.

    Args:
        student_emb: :math:`e`, the student's embeddings of the lens-less captures.
        teacher_emb: :math:`f`, the teacher's embeddings of the scenes (no gradient).

    Returns:
        A scalar (float32) in [0, 2].

    Shape:
        student_emb, teacher_emb: (N, D).
    """
    _check_pair(student_emb, teacher_emb, "feature_alignment")
    return (1.0 - F.cosine_similarity(student_emb.float(), teacher_emb.detach().float(), dim=1)).mean()


class Distillation(nn.Module):
    """The teacher terms of the module doc, weighted: :math:`\\alpha\\,` :func:`distillation_kl`
    :math:`+ \\beta\\,` :func:`feature_alignment` (a term with weight 0 is not computed).

    Args:
        kd_weight: :math:`\\alpha \\ge 0`.
        temperature: :math:`T > 0`.
        feature_weight: :math:`\\beta \\ge 0`.

    Shape:
        - logits: (N, C) each, or None when ``kd_weight`` is 0.
        - embeddings: (N, D) each, or None when ``feature_weight`` is 0.
        - output: a scalar.
    """

    def __init__(self, kd_weight: float = 1.0, temperature: float = 4.0, feature_weight: float = 0.0):
        super().__init__()
        if kd_weight < 0 or feature_weight < 0 or not temperature > 0:
            raise ValueError(f"expected kd_weight >= 0, feature_weight >= 0, temperature > 0, got "
                             f"{kd_weight}, {feature_weight}, {temperature}")
        self.kd_weight, self.temperature, self.feature_weight = kd_weight, temperature, feature_weight

    def forward(self, student_logits: Tensor | None, teacher_logits: Tensor | None,
                student_emb: Tensor | None, teacher_emb: Tensor | None) -> Tensor:
        total = torch.zeros((), dtype=torch.float32, device=(student_logits if student_logits is not None
                                                             else student_emb).device)
        if self.kd_weight > 0:
            total = total + self.kd_weight * distillation_kl(student_logits, teacher_logits, self.temperature)
        if self.feature_weight > 0:
            total = total + self.feature_weight * feature_alignment(student_emb, teacher_emb)
        return total
