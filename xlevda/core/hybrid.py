"""A hybrid latent background covariance: the ensemble's plus a static one.

LEVDA's prior covariance in the augmented latent space ``z = (s, u)`` becomes

    B = beta_e^2 P_e + beta_c^2 B_c,    B_c = L L^T,

with ``P_e = P_z P_z^T`` the (inflated) ensemble's and ``B_c`` a static
(climatological) covariance of the surrogate's latent states and parameters, given
by a low-rank square root ``L`` (d_z, r_c).  The control variable grows from
``alpha`` (K) to ``(alpha, v)`` (K + r_c):

    z = zbar + beta_e P_z alpha + beta_c L v,

and the cost keeps eq. 19's form with the prior term ``1/2 |alpha - a_j|^2 + 1/2 |v - v_j|^2``
(:class:`~xlevda.core.objective.WindowObjective`).  The analysis can then move in
directions no member spans, and the latent state at the window start receives its
own increment, not only through the parameters.  :func:`static_square_root`
computes ``L`` from latent samples (e.g. trajectories over runs and frames),
:func:`rollout_square_root` from the surrogate's own rollouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.core.dynamics import trajectory
from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.surrogates.protocol import Surrogate
from xlevda.validate import check_int, check_real

__all__ = [
    "STATIC_STREAM",
    "HybridCovariance",
    "check_static_sqrt",
    "rollout_square_root",
    "static_square_root",
]

STATIC_STREAM = 2
"""Stream of an integer seed (:func:`xlevda.core.rng.generator`) for the static prior
centres ``v_j`` of randomized-maximum-likelihood members."""


@dataclass(frozen=True)
class HybridCovariance:
    """Weights and rank of the hybrid covariance ``beta_e^2 P_e + beta_c^2 L L^T``.

    Attributes
    ----------
    ensemble_weight : float
        ``beta_e``, finite and ``>= 0``: the factor on the (inflated) ensemble's
        perturbations (its square weighs ``P_e``).
    static_weight : float
        ``beta_c``, finite and ``>= 0``: the factor on ``L`` (its square weighs ``B_c``).
        0 reproduces the ensemble-only analysis.
    rank : int
        ``r_c >= 1``: the leading principal directions of the latent samples kept in
        ``L`` (:func:`static_square_root`).
    samples : int
        Surrogate rollouts over the parameter prior (``schema.param_range``) from
        which ``L`` is estimated (``>= 2``).
    parameters : bool
        Whether ``B_c`` covers the parameters too.  ``False`` (default): ``L`` spans
        the latent states alone (zero rows for the parameters), whose increments the
        ensemble cannot give (members at a window start often differ in their
        parameters alone), while the parameters keep the ensemble's covariance; on
        the off-manifold tsunami twin the parameter error then stays at the
        ensemble-only analysis's (``benchmarks/accuracy/hybrid_covariance.py``).

    Examples
    --------
    >>> HybridCovariance(static_weight=0.5).ensemble_weight
    1.0
    """

    ensemble_weight: float = 1.0
    static_weight: float = 1.0
    rank: int = 8
    samples: int = 128
    parameters: bool = False

    def __post_init__(self) -> None:
        for name in ("ensemble_weight", "static_weight"):
            check_real(f"HybridCovariance.{name}", getattr(self, name), 0.0)
        if self.ensemble_weight == 0 and self.static_weight == 0:
            raise ConfigError(
                "HybridCovariance(ensemble_weight=0, static_weight=0) leaves no prior "
                "covariance: make at least one weight > 0"
            )
        check_int("HybridCovariance.rank", self.rank, 1)
        check_int("HybridCovariance.samples", self.samples, 2)
        if not isinstance(self.parameters, bool):
            raise ConfigError(
                f"HybridCovariance.parameters={self.parameters!r} is invalid: use True or False"
            )


def static_square_root(samples: Tensor, rank: int) -> Tensor:
    """``L`` (d_z, r) with ``L L^T`` the rank-``r`` truncation of the samples' covariance.

    The leading ``r = min(rank, N, d_z)`` principal directions of the deviations of
    ``samples`` from their mean, scaled by their standard deviations, so that
    ``L L^T`` is the sample covariance (divisor ``N - 1``) where ``rank`` is at
    least its rank.

    Parameters
    ----------
    samples : Tensor, shape (..., d_z)
        Latent states; every leading index is one sample (e.g. runs x frames).
    rank : int
        Columns kept (>= 1).

    Returns
    -------
    Tensor, shape (d_z, r)
        Columns in decreasing order of variance.

    Raises
    ------
    ConfigError
        ``rank < 1``.
    ShapeError
        Fewer than two samples.
    VariableError
        Samples that are not finite.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]], dtype=torch.float64)
    >>> static_square_root(z, 1).squeeze(-1).abs().tolist()
    [2.0, 0.0]
    """
    check_int("rank", rank, 1)
    flat = samples.reshape(-1, samples.shape[-1])
    if flat.shape[0] < 2:
        raise ShapeError(f"static_square_root needs at least 2 samples, got {flat.shape[0]}")
    if not torch.isfinite(flat).all():
        raise VariableError("static_square_root: the latent samples are not finite")
    dev = (flat - flat.mean(0)) / math.sqrt(flat.shape[0] - 1)
    _, sv, vh = torch.linalg.svd(dev, full_matrices=False)
    keep = min(rank, sv.shape[0])
    return vh[:keep].T * sv[:keep]


def rollout_square_root(
    surrogate: Surrogate, z0: Tensor, anchor: int, rank: int, parameters: bool = True
) -> Tensor:
    """``L`` (d_z, r) of the spread of the surrogate's trajectories over its training frames.

    The states ``z = (s, u)`` of the rollouts from ``z0`` (e.g. parameters drawn from
    the prior, ``s`` at the surrogate's start) at every frame ``0 .. n_frames - 1``
    (``surrogate.schema.n_frames``), as deviations from their mean over the runs at
    the same frame, pooled over runs and frames (:func:`static_square_root`): the
    covariance of what the surrogate's state may be at a time when its parameters are
    unknown, without the mean evolution in time.  On the off-manifold tsunami twin
    this per-frame centring gave lower errors than deviations from the mean over all
    frames (``benchmarks/accuracy/hybrid_covariance.py``).

    Parameters
    ----------
    surrogate : Surrogate
    z0 : Tensor, shape (N, d_z)
        Initial states at frame ``anchor``.
    anchor : int
        Frame of ``z0``, ``<= 0`` (``-1``: the shifted start ``s_{-1}``).
    rank : int
    parameters : bool
        Include the parameters; ``False`` gives ``L`` of the latent states alone, with
        zero rows for the parameters.

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> class Drift:  # s' = u
    ...     latent_dim, param_dim, dt = 1, 1, torch.tensor(1.0)
    ...     schema = SimpleNamespace(n_frames=3)
    ...     def vector_field(self, s, u): return u
    >>> z0 = torch.tensor([[0.0, -1.0], [0.0, 1.0]], dtype=torch.float64)
    >>> L = rollout_square_root(Drift(), z0, -1, 2, parameters=False)  # s = u t, t = 1, 2, 3
    >>> L.abs().tolist()  # deviations +-1, +-2, +-3: variance 28 / 5
    [[2.366431913239847], [0.0]]
    >>> rollout_square_root(Drift(), z0, -1, 2, parameters=True).shape
    torch.Size([2, 2])
    """
    if anchor > 0:
        raise ConfigError(f"anchor={anchor} is out of range: the rollouts start at a frame <= 0")
    with torch.no_grad():
        traj = trajectory(surrogate, z0, surrogate.schema.n_frames - 1 - anchor)[:, -anchor:]
    deviations = traj - traj.mean(0)
    if parameters:
        return static_square_root(deviations, rank)
    latent = static_square_root(deviations[..., : surrogate.latent_dim], rank)
    return torch.cat([latent, latent.new_zeros(surrogate.param_dim, latent.shape[1])])


def check_static_sqrt(static_sqrt: Tensor, d_z: int) -> None:
    """Raise unless ``static_sqrt`` is a finite floating tensor (d_z, r_c), ``r_c >= 1``.

    Examples
    --------
    >>> import torch
    >>> check_static_sqrt(torch.ones(3, 2), 3)
    >>> check_static_sqrt(torch.ones(2, 2), 3)
    Traceback (most recent call last):
    ...
    xlevda.errors.ShapeError: static_sqrt has shape (2, 2); expected (d_z, r_c) = (3, r_c >= 1)
    """
    if not isinstance(static_sqrt, Tensor) or not static_sqrt.is_floating_point():
        raise ShapeError(f"static_sqrt must be a floating tensor, got {type(static_sqrt)}")
    if static_sqrt.ndim != 2 or static_sqrt.shape[0] != d_z or static_sqrt.shape[1] < 1:
        raise ShapeError(
            f"static_sqrt has shape {tuple(static_sqrt.shape)}; expected (d_z, r_c) = "
            f"({d_z}, r_c >= 1)"
        )
    if not torch.isfinite(static_sqrt).all():
        raise VariableError("static_sqrt is not finite")
