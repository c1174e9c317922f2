"""Linear-operator algebra of the affine camera model :math:`y = A u + c`.

:class:`AffineOperator` holds :math:`A` either in Kronecker form :math:`A = M \\otimes S`
(colour matrix :math:`M` (C, Cin) times a spatial transfer matrix :math:`S` (P, Q)) or as a
dense (C P, Cin Q) matrix, and applies :math:`A`, :math:`A^\\top` and :math:`A u + c` to batches
of flattened images. :class:`Spectrum` is the eigendecomposition of :math:`A^\\top A` (for the
Kronecker form that of :math:`M^\\top M` and :math:`S^\\top S` separately, eigenvalues
:math:`e_{ij} = m_i s_j`), which makes a whole sweep of Tikhonov weights cost one decomposition
(:mod:`.tikhonov`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Spectrum:
    """Eigendecomposition of :math:`A^\\top A` in the operator's input coordinates.

    Kronecker form: :math:`A^\\top A = (M^\\top M) \\otimes (S^\\top S)`, eigenvalues
    :math:`e_{ij} = m_i\\,s_j`, vectors :math:`v_i \\otimes w_j`.
    """

    values: torch.Tensor                       # (D,) float64
    colour_vecs: torch.Tensor | None = None    # (Cin, Cin)
    spatial_vecs: torch.Tensor | None = None   # (Q, Q)
    dense_vecs: torch.Tensor | None = None     # (D, D)

    def project(self, u: torch.Tensor) -> torch.Tensor:
        """(N, Cin, Q) -> (N, D) eigen-coordinates."""
        n = u.shape[0]
        if self.dense_vecs is not None:
            return u.reshape(n, -1) @ self.dense_vecs
        t = torch.einsum("di,ndq->niq", self.colour_vecs, u)
        return (t @ self.spatial_vecs).reshape(n, -1)

    def back(self, z: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
        """(N, D) eigen-coordinates -> (N, Cin, Q)."""
        n = z.shape[0]
        cin, q = in_shape[0], in_shape[1] * in_shape[2]
        if self.dense_vecs is not None:
            return (z @ self.dense_vecs.T).reshape(n, cin, q)
        t = z.reshape(n, cin, q) @ self.spatial_vecs.T
        return torch.einsum("di,niq->ndq", self.colour_vecs, t)


@dataclass
class AffineOperator:
    """The affine camera model :math:`y = A u + c` on flattened images.

    ``u`` has shape (N, Cin, Q) with :math:`Q = h w`, ``y`` (N, C, P) with :math:`P = h_o w_o`.
    Either the Kronecker form :math:`A = M \\otimes S` (``colour`` (C, Cin), ``spatial``
    (P, Q)) or a ``dense`` (C P, Cin Q) matrix.
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    bias: torch.Tensor
    colour: torch.Tensor | None = None
    spatial: torch.Tensor | None = None
    dense: torch.Tensor | None = None

    def __post_init__(self) -> None:
        cin, h, w = self.in_shape
        c, ho, wo = self.out_shape
        if self.dense is not None:
            if tuple(self.dense.shape) != (c * ho * wo, cin * h * w):
                raise ValueError(f"dense A has shape {tuple(self.dense.shape)}, expected "
                                 f"{(c * ho * wo, cin * h * w)}")
        elif self.colour is None or self.spatial is None:
            raise ValueError("give colour and spatial (Kronecker form) or dense")
        elif tuple(self.colour.shape) != (c, cin) or tuple(self.spatial.shape) != (ho * wo, h * w):
            raise ValueError("colour must be (C, Cin) and spatial (P, Q)")
        if tuple(self.bias.shape) != (c, ho * wo):
            raise ValueError(f"bias must be (C, P) = {(c, ho * wo)}, got {tuple(self.bias.shape)}")

    @property
    def kind(self) -> str:
        """``dense`` or ``kron`` (Kronecker form)."""
        return "dense" if self.dense is not None else "kron"

    def linear(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`A u`: (N, Cin, Q) -> (N, C, P)."""
        n = u.shape[0]
        if self.dense is not None:
            return (u.reshape(n, -1) @ self.dense.T).reshape(n, self.out_shape[0], -1)
        return torch.einsum("cd,ndp->ncp", self.colour, u @ self.spatial.T)

    def apply(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`A u + c`."""
        return self.linear(u) + self.bias

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """:math:`A^\\top r`: (N, C, P) -> (N, Cin, Q)."""
        n = r.shape[0]
        if self.dense is not None:
            return (r.reshape(n, -1) @ self.dense).reshape(n, self.in_shape[0], -1)
        return torch.einsum("cd,ncp->ndp", self.colour, r) @ self.spatial

    def spectrum(self) -> Spectrum:
        """Eigendecomposition of :math:`A^\\top A` (float64)."""
        if self.dense is not None:
            a = self.dense.double()
            e, v = torch.linalg.eigh(a.T @ a)
            return Spectrum(e.clamp(min=0), dense_vecs=v)
        m, s = self.colour.double(), self.spatial.double()
        em, vm = torch.linalg.eigh(m.T @ m)
        es, vs = torch.linalg.eigh(s.T @ s)
        return Spectrum(torch.outer(em.clamp(min=0), es.clamp(min=0)).reshape(-1),
                        colour_vecs=vm, spatial_vecs=vs)

    def state(self) -> dict[str, Any]:
        """The operator as plain values and float32 tensors (for ``torch.save``)."""
        return {"in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "bias": self.bias.float(), "colour": None if self.colour is None else self.colour.float(),
                "spatial": None if self.spatial is None else self.spatial.float(),
                "dense": None if self.dense is None else self.dense.float()}
