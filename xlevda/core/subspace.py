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

With a hybrid covariance (:mod:`xlevda.core.hybrid`) the control grows to
``(alpha, v)`` (``K + r_c``) and the subspace to
``z = zbar + beta_e P_z alpha + beta_c L v``; the reduced coordinates are those of
the stacked rows ``[beta_e P_z^T; beta_c L^T]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.core.hybrid import HybridCovariance, check_static_sqrt
from xlevda.core.inflation import INFLATION_STREAM, Inflation
from xlevda.core.rng import check_seed, generator, normal
from xlevda.errors import ConfigError, ShapeError

__all__ = ["EnsembleSubspace"]


@dataclass(frozen=True)
class EnsembleSubspace:
    """The affine ensemble subspace ``z(alpha) = mean + alpha @ perturbations``.

    ``perturbations`` holds ``P_z`` transposed: row ``k`` is the inflated
    perturbation of member ``k`` divided by ``sqrt(K-1)`` (times ``beta_e`` with a
    hybrid covariance).  Its thin SVD ``perturbations = coords @ basis`` (``coords``
    orthonormal columns, dropped directions below round-off) gives the reduced
    coordinates ``beta = alpha @ coords`` in which ``z = mean + beta @ basis``.

    With a hybrid covariance the control is ``(alpha, v)`` (``K + r_c``), ``static``
    holds ``beta_c L^T`` and the SVD is that of the stacked rows
    ``[perturbations; static] = coords @ basis``.

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
    static : Tensor, shape (r_c, d_z), or None
        ``beta_c L^T``; ``None`` without a hybrid covariance (``r_c = 0``).

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
    static: Tensor | None = None

    @classmethod
    def from_ensemble(
        cls,
        z: Tensor,
        inflation: Inflation | None = None,
        seed: int | torch.Generator = 0,
        hybrid: HybridCovariance | None = None,
        static_sqrt: Tensor | None = None,
    ) -> EnsembleSubspace:
        """Subspace of a background ensemble ``z`` (K, d_z), after inflation.

        ``seed`` is the source of the additive inflation's noise (its stream
        :data:`~xlevda.core.inflation.INFLATION_STREAM`); an int gives the same draws on
        every call, a generator advances.  ``hybrid`` and ``static_sqrt`` (``L``,
        (d_z, r_c)) come together: the subspace of ``beta_e P_z alpha + beta_c L v``.

        Raises
        ------
        ConfigError
            Fewer than two members, an ensemble without spread (and no static part),
            or only one of ``hybrid`` and ``static_sqrt``.
        ShapeError, VariableError
            A ``static_sqrt`` of the wrong shape or not finite.
        """
        infl = inflation or Inflation()
        check_seed("seed", seed)
        if (hybrid is None) != (static_sqrt is None):
            raise ConfigError(
                f"hybrid={hybrid!r} and static_sqrt go together: give both or neither"
            )
        if hybrid is not None and not isinstance(hybrid, HybridCovariance):
            raise ConfigError(f"hybrid={hybrid!r} is invalid: use HybridCovariance(...) or None")
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
        rows, static = pert, None
        if hybrid is not None and static_sqrt is not None:
            check_static_sqrt(static_sqrt, z.shape[1])
            pert = hybrid.ensemble_weight * pert
            static = hybrid.static_weight * static_sqrt.to(dtype=z.dtype, device=z.device).T
            rows = torch.cat([pert, static])
        u, sv, vh = torch.linalg.svd(rows, full_matrices=False)
        cut = sv[0] * max(rows.shape) * torch.finfo(z.dtype).eps
        rank = int((sv > cut).sum().item())
        if rank == 0:
            raise ConfigError(
                f"background ensemble has no spread: all K={K} members are equal; "
                "use Inflation(additive > 0) or a spread-out background"
            )
        return cls(mean, pert, u[:, :rank], sv[:rank, None] * vh[:rank], static)

    @property
    def size(self) -> int:
        """Number of members ``K``."""
        return self.perturbations.shape[0]

    @property
    def n_control(self) -> int:
        """Length of the control ``(alpha, v)``: ``K + r_c`` (``K`` without a static part)."""
        return self.coords.shape[0]

    @property
    def rank(self) -> int:
        """Number of reduced coordinates ``r``."""
        return self.basis.shape[0]

    def state(self, alpha: Tensor) -> Tensor:
        """``z`` of the control ``alpha`` (..., K), or ``(alpha, v)`` (..., K + r_c): (..., d_z)."""
        if self.static is None:
            return self.mean + alpha @ self.perturbations
        K = self.size
        return self.mean + alpha[..., :K] @ self.perturbations + alpha[..., K:] @ self.static

    def state_reduced(self, beta: Tensor) -> Tensor:
        """``z`` from reduced coordinates: ``beta`` (..., r) -> (..., d_z)."""
        return self.mean + beta @ self.basis

    def lift(self, beta: Tensor, centre: Tensor) -> Tensor:
        """Full controls (M, K + r_c) of reduced minimizers ``beta`` (M, r).

        ``centre`` (M or 1, K + r_c) holds the members' prior centres; their components
        outside the row space of the stacked rows are kept, as they minimize the
        prior term.
        """
        return centre + (beta - centre @ self.coords) @ self.coords.T
