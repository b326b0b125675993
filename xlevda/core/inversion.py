"""Latent states of given fields by optimization through the decoder (torch only).

A surrogate has no encoder: to start an assimilation from full fields (a
background ensemble of states rather than of parameters), each member's latent
state is the least-squares fit ``s* = argmin_s 1/2 sum w (D(s, xi) - x)^2`` over
the points where the field is given, solved for all members at once by the
batched Gauss-Newton / Levenberg-Marquardt solver of :mod:`xlevda.core.gauss_newton`.
The fit is non-convex; a good start is the surrogate's own rollout for the
member's parameters at the field's time (what :func:`rollout_state` gives).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xlevda.core.dynamics import trajectory
from xlevda.core.gauss_newton import gauss_newton, linearization
from xlevda.core.optim import GaussNewtonConfig, OptimResult
from xlevda.errors import ShapeError
from xlevda.surrogates.protocol import Surrogate

__all__ = ["fit_latent", "rollout_state"]


def rollout_state(surrogate: Surrogate, u: Tensor, step: int) -> Tensor:
    """Latent state at latent index ``step`` of the rollout from ``s_{-1} = 0``.

    Parameters
    ----------
    surrogate : Surrogate
    u : Tensor, shape (K, d_u)
        Normalized parameters.
    step : int
        Latent index (frame), ``>= -1``.

    Returns
    -------
    Tensor, shape (K, d_s)

    Examples
    --------
    >>> import torch
    >>> class Drift:  # s' = u
    ...     latent_dim, param_dim, dt = 1, 1, torch.tensor(0.5)
    ...     def vector_field(self, s, u): return u
    >>> rollout_state(Drift(), torch.tensor([[2.0]]), 3).tolist()  # 4 steps of 0.5 * 2
    [[4.0]]
    """
    z0 = torch.cat([u.new_zeros(u.shape[0], surrogate.latent_dim), u], -1)
    return trajectory(surrogate, z0, step + 1)[:, -1, : surrogate.latent_dim]


def fit_latent(
    surrogate: Surrogate,
    values: Tensor,
    points: Tensor,
    start: Tensor,
    *,
    weight: Tensor | None = None,
    config: GaussNewtonConfig | None = None,
) -> OptimResult:
    """Latent states whose decoded fields best fit ``values``, all members at once.

    Parameters
    ----------
    surrogate : Surrogate
    values : Tensor, shape (K, P, C)
        Normalized fields of the ``K`` members at ``points``.
    points : Tensor, shape (P, n_coords)
        Normalized query points.
    start : Tensor, shape (K, d_s)
        Initial latent states (e.g. :func:`rollout_state`).
    weight : Tensor, shape (K, P, C) or (P, C), optional
        Non-negative weights (0 where a value is missing); default 1.
    config : GaussNewtonConfig, optional

    Returns
    -------
    OptimResult
        ``x`` (K, d_s) the fitted states; ``cost`` ``1/2 sum w (D(s) - x)^2``;
        ``converged`` and ``failed`` per member.

    Examples
    --------
    >>> import torch
    >>> class Linear:  # D(s, xi) = s * xi
    ...     latent_dim = 1
    ...     def prepare_points(self, p): return p
    ...     def decode_prepared(self, s, p): return s[..., None, :] * p
    >>> pts = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    >>> res = fit_latent(Linear(), 3.0 * pts[None], pts, torch.zeros(1, 1, dtype=torch.float64))
    >>> round(res.x.item(), 9)
    3.0
    """
    k, d_s = start.shape[0], surrogate.latent_dim
    if values.ndim != 3 or values.shape[0] != k or points.ndim != 2:
        raise ShapeError(
            f"fit_latent needs values (K, P, C), points (P, n_coords) and start (K, d_s) with "
            f"one K; got values {tuple(values.shape)}, points {tuple(points.shape)}, start "
            f"{tuple(start.shape)}"
        )
    if start.shape[1] != d_s or values.shape[1] != points.shape[0]:
        raise ShapeError(
            f"start {tuple(start.shape)} must be (K, latent_dim={d_s}) and values "
            f"{tuple(values.shape)} must have one row per point ({points.shape[0]})"
        )
    root_w = torch.ones_like(values) if weight is None else weight.expand_as(values).sqrt()
    target = torch.where(root_w > 0, values, torch.zeros_like(values))  # missing: any finite
    prepared = surrogate.prepare_points(points)

    def residual(s: Tensor, members: Tensor) -> Tensor:
        decoded = surrogate.decode_prepared(s, prepared)  # (M, P, C)
        return (root_w[members] * (decoded - target[members])).flatten(1)

    return gauss_newton(linearization(residual), start, config)
