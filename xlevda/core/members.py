"""How LEVDA's members differ (paper section 3.2).

Member ``j`` of the analysis minimizes

    J_j(alpha) = 1/2 |alpha - a_j|^2 + 1/2 sum_i |y_i + eta_ij - H_i(D(s(t_i; alpha)))|^2_{R_i^-1}

(:class:`~xlevda.core.objective.WindowObjective`).  Two member modes:

- :class:`SharedCost` (the paper's warm starts): ``a_j = 0``, ``eta_ij = 0``; member ``j`` starts
  at ``alpha = sqrt(K-1) e_j`` (background member ``j``).  Every member minimizes
  the *same* cost, so where that cost is convex (linear-Gaussian problems) all
  members converge to the one MAP estimate and the analysis ensemble has no
  spread.  With no observations (or weights -> 0) every member goes to the
  ensemble mean, not to its background member.
- :class:`RandomizedMaximumLikelihood`: ``a_j = sqrt(K-1) e_j``
  (the coefficients of background member ``j``) and ``eta_ij ~ N(0, R_i)``
  drawn per member.  On a linear-Gaussian problem the members are samples of
  the ensemble-space posterior: their mean is the MAP estimate plus the average
  of the ``eta`` mapped through the gain, and their sample covariance has
  expectation ``P_z (I + G^T R^-1 G)^-1 P_z^T``, the Kalman smoother covariance
  for ``B = P_z P_z^T``.  With no observations (or weights -> 0) member ``j``
  stays at ``zbar + P_z a_j``: its background member, inflated.

Inflation (:class:`~xlevda.core.inflation.Inflation`) acts on the perturbations
before ``P_z`` is formed, so it widens the prior ``B = P_z P_z^T``; the posterior follows from the
observations as usual and is never scaled directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from xlevda.errors import ConfigError

__all__ = ["NOISE_STREAM", "MemberMode", "RandomizedMaximumLikelihood", "SharedCost"]

NOISE_STREAM = 1
"""Stream of an integer seed (:func:`xlevda.core.rng.generator`) for the observation
perturbations of :class:`RandomizedMaximumLikelihood`."""


@dataclass(frozen=True)
class SharedCost:
    """The paper's member mode: one shared cost, members differ only in their start.

    Member ``j`` minimizes ``1/2 |alpha|^2 + 1/2 |y - H(alpha)|^2_{R^-1}`` from
    ``alpha = sqrt(K-1) e_j``.  Spread survives only where the cost has several
    minima; on a convex cost every member reaches the same MAP estimate, and with
    no observations every member becomes the ensemble mean.

    Examples
    --------
    >>> SharedCost()
    SharedCost()
    """


@dataclass(frozen=True)
class RandomizedMaximumLikelihood:
    """Randomized-maximum-likelihood members: perturbed prior centre and data.

    Member ``j`` minimizes ``1/2 |alpha - a_j|^2 + 1/2 |y + eta_j - H(alpha)|^2_{R^-1}``
    with ``a_j = sqrt(K-1) e_j`` (background member ``j``) and ``eta_j ~ N(0, R)``
    (``R`` diagonal, ``1 / weight`` where ``weight > 0``; no noise where
    ``weight == 0``).  Linear-Gaussian members are samples of the ensemble-space
    posterior; with no observations member ``j`` keeps its (inflated) background.

    The draws of ``eta`` come from the seed the caller gives
    (:func:`xlevda.core.levda.solve_window`'s ``noise_seed``; :class:`xlevda.methods.LEVDA`
    derives it from the run's seed per window).

    Attributes
    ----------
    start : {"enkf", "background"}
        Where member ``j``'s optimization starts.  ``"enkf"`` (default): at its
        perturbed-observation ensemble Kalman analysis in the subspace, the
        minimizer of its cost with the decoded observations replaced by their
        least-squares linear fit over the K background members and the subspace
        mean (the secant linearization of 4DEnVar and the EnKF, not a tangent at
        one point), kept only where its cost is lower than at ``a_j``.  It moves
        members across a non-convex cost (a wave front far from where a member
        puts it) where a local optimizer from ``a_j`` stalls, and costs two
        evaluations of the ensemble (the fit and the check) and an ``r x r``
        solve.  ``"background"``: at ``a_j``, its background member, as the
        paper's warm start; members far from the data then stay in other local
        minima, which spreads the ensemble without representing the posterior.
        The cost, and its minimizers in the linear-Gaussian case, are the same
        either way.

    Examples
    --------
    >>> RandomizedMaximumLikelihood(start="background").start
    'background'
    """

    start: Literal["enkf", "background"] = "enkf"

    def __post_init__(self) -> None:
        if self.start not in ("background", "enkf"):
            raise ConfigError(
                f"RandomizedMaximumLikelihood.start={self.start!r} is invalid: use 'enkf' or "
                "'background'"
            )


MemberMode = SharedCost | RandomizedMaximumLikelihood
"""How members differ: :class:`SharedCost` (the paper) or :class:`RandomizedMaximumLikelihood`."""
