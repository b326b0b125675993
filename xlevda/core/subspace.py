"""The affine ensemble subspace in which LEVDA searches (paper section 3.2).

The background ensemble ``z_b`` (K, d_z) of augmented latent states ``z = (s, u)``
spans the affine subspace ``z(alpha) = zbar + P_z alpha`` (``alpha`` in ``R^K``).

Only ``r = rank(P_z) <= min(K, d_z)`` directions of ``alpha`` reach the
observations; the others enter the cost through the prior term alone, and their
minimizer is the centre ``a_j``.  The optimizers therefore work on the ``r``
coordinates ``beta = alpha V`` (``V`` (K, r) orthonormal, ``P_z^T = V basis``),
which leaves the minimizer and the analysis unchanged while an iteration costs
``r`` instead of ``K`` unknowns per member (for ``K = 100``, ``d_z = 14``: a 14 x 14
Gauss-Newton system instead of 100 x 100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.core.inflation import INFLATION_STREAM, Inflation
from xlevda.core.rng import generator, normal
from xlevda.core.validate import check_seed
from xlevda.errors import ConfigError, ShapeError

__all__ = ["EnsembleSubspace"]


@dataclass(frozen=True)
class EnsembleSubspace:
    """The affine ensemble subspace ``z(alpha) = mean + alpha @ perturbations``.

    ``perturbations`` holds ``P_z`` transposed: row ``k`` is the inflated
    perturbation of member ``k`` divided by ``sqrt(K-1)``.  Its thin SVD
    ``perturbations = coords @ basis`` (``coords`` orthonormal columns, dropped
    directions below round-off) gives the reduced coordinates ``beta = alpha @ coords``
    in which ``z = mean + beta @ basis``.

    Attributes
    ----------
    mean : Tensor, shape (d_z,)
        Background ensemble mean ``zbar``.
    perturbations : Tensor, shape (K, d_z)
        ``P_z^T``.
    coords : Tensor, shape (K, r)
        Orthonormal basis ``V`` of the row space of ``P_z`` (``r = rank``).
    basis : Tensor, shape (r, d_z)
        ``S U^T``: the directions in state space of the reduced coordinates.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]], dtype=torch.float64)
    >>> sub = EnsembleSubspace.from_ensemble(z)
    >>> sub.rank, sub.state(2**0.5 * torch.eye(3, dtype=torch.float64)[0]).tolist()
    (1, [0.0, 1.0])
    """

    mean: Tensor
    perturbations: Tensor
    coords: Tensor
    basis: Tensor

    @classmethod
    def from_ensemble(
        cls, z: Tensor, inflation: Inflation | None = None, seed: int | torch.Generator = 0
    ) -> EnsembleSubspace:
        """Subspace of a background ensemble ``z`` (K, d_z), after inflation.

        ``seed`` is the source of the additive inflation's noise (its stream
        :data:`~xlevda.core.inflation.INFLATION_STREAM`); an int gives the same draws on
        every call, a generator advances.

        Raises
        ------
        ConfigError
            Fewer than two members, or an ensemble without spread.
        """
        infl = inflation or Inflation()
        check_seed("seed", seed)
        if z.ndim != 2:
            raise ShapeError(f"background ensemble must have shape (K, d_z), got {tuple(z.shape)}")
        K = z.shape[0]
        if K < 2:
            raise ConfigError(f"members K={K}: LEVDA needs at least 2")
        mean = z.mean(0)
        dz = infl.multiplicative * (z - mean)
        if infl.additive > 0:
            noise = normal(tuple(z.shape), generator(seed, INFLATION_STREAM), z)
            dz = dz + infl.additive * noise
        pert = dz / math.sqrt(K - 1)
        u, sv, vh = torch.linalg.svd(pert, full_matrices=False)
        cut = sv[0] * max(pert.shape) * torch.finfo(z.dtype).eps
        rank = int((sv > cut).sum().item())
        if rank == 0:
            raise ConfigError(
                f"background ensemble has no spread: all K={K} members are equal; "
                "use Inflation(additive > 0) or a spread-out background"
            )
        return cls(mean, pert, u[:, :rank], sv[:rank, None] * vh[:rank])

    @property
    def size(self) -> int:
        """Number of members ``K``."""
        return self.perturbations.shape[0]

    @property
    def rank(self) -> int:
        """Number of reduced coordinates ``r``."""
        return self.basis.shape[0]

    def state(self, alpha: Tensor) -> Tensor:
        """``z(alpha)``: ``alpha`` (..., K) -> (..., d_z)."""
        return self.mean + alpha @ self.perturbations

    def state_reduced(self, beta: Tensor) -> Tensor:
        """``z`` from reduced coordinates: ``beta`` (..., r) -> (..., d_z)."""
        return self.mean + beta @ self.basis

    def lift(self, beta: Tensor, centre_scale: float) -> Tensor:
        """Full coefficients ``alpha`` (K, K) of reduced minimizers ``beta`` (K, r).

        Member ``j``'s prior centre is ``centre_scale * e_j``; its components outside
        the row space of ``P_z`` are kept, as they minimize the prior term.
        """
        centre = centre_scale * torch.eye(self.size, dtype=beta.dtype, device=beta.device)
        return centre + (beta - centre_scale * self.coords) @ self.coords.T
