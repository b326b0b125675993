"""Ensemble transform Kalman filters (ETKF, LETKF): one analysis of a full-state ensemble.

The analysis is the symmetric square-root transform in ensemble space of Hunt, Kostelich and
Szunyogh (2007).  With forecast perturbations ``X`` (K, N) and observed perturbations ``Y``
(K, M) (both inflated), innovation ``d = y - ybar`` and observation weights ``w = rho / sigma^2``
(``rho`` the localization taper, 1 without localization), each grid point ``n`` solves

    A_n = (K - 1) I + Y diag(w_n) Y^T,    wbar_n = A_n^{-1} Y diag(w_n) d,
    W_n = [(K - 1) A_n^{-1}]^{1/2}         (symmetric square root),

and member ``j`` of the analysis is ``xa_j[n] = xbar[n] + sum_k X[k, n] (wbar_n[k] + W_n[k, j])``.

- Without localization (``radius=None``) every grid point shares one ``K x K``
  problem: the global ETKF, i.e. the square-root EnKF.  For a linear observation operator its
  analysis mean and sample covariance are exactly those of the Kalman filter whose prior is the
  forecast's sample mean and covariance.
- With localization, observations are weighted per grid point by the Gaspari-Cohn taper of their
  distance (R-localization: ``R^-1`` is multiplied by the taper), and all ``N`` local problems
  are one batched eigendecomposition of ``N`` symmetric ``K x K`` matrices.  Memory and work
  are ``O(N K M)`` and ``O(N K^2 M + N K^3)``: every observation enters every local problem,
  with weight zero beyond the radius.

Multiplicative inflation multiplies the forecast perturbations (``X`` and ``Y``) by
``inflation`` before the analysis, i.e. the prior covariance by ``inflation^2``.
The user-facing options are :class:`xlevda.methods.LETKF`'s; this module takes their numbers.

Torch only.  Every function accepts leading batch dimensions for independent cases.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xlevda.core.taper import gaspari_cohn
from xlevda.errors import ConfigError, ObservationError, ShapeError
from xlevda.validate import check_real

__all__ = ["letkf_analysis"]


def _as(x, like: Tensor, name: str) -> Tensor:
    try:
        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ShapeError(f"{name} must be a tensor or array of numbers, got {x!r}") from err


def _check_inputs(forecast, obs, obs_forecast, obs_std, inflation, radius, distances):
    if not isinstance(forecast, Tensor) or not forecast.is_floating_point():
        raise ShapeError(f"forecast must be a floating torch.Tensor (..., K, N), got {forecast!r}")
    if forecast.dim() < 2 or forecast.shape[-2] < 2:
        raise ShapeError(
            f"forecast must have shape (..., K, N) with K >= 2 members, got {tuple(forecast.shape)}"
        )
    k = forecast.shape[-2]
    obs_forecast = _as(obs_forecast, forecast, "obs_forecast")
    if obs_forecast.dim() < 2 or obs_forecast.shape[-2] != k:
        raise ShapeError(
            f"obs_forecast must have shape (..., K, M) with K = {k} members like forecast, "
            f"got {tuple(obs_forecast.shape)}"
        )
    m = obs_forecast.shape[-1]
    obs = _as(obs, forecast, "obs")
    if obs.shape[-1:] != (m,):
        raise ShapeError(
            f"obs must have shape (..., M) with M = {m} as in obs_forecast, got {tuple(obs.shape)}"
        )
    if not torch.isfinite(obs).all():
        raise ObservationError("obs holds NaN or infinite values: drop unobserved entries first")
    obs_std = torch.atleast_1d(_as(obs_std, forecast, "obs_std"))
    if obs_std.shape[-1:] not in ((m,), (1,)):
        raise ShapeError(f"obs_std must have shape (M,) = ({m},) or (..., M), got {obs_std.shape}")
    if not (torch.isfinite(obs_std).all() and (obs_std > 0).all()):
        raise ObservationError(f"obs_std must be finite and > 0, got {obs_std}")
    check_real("inflation", inflation, 1.0)
    if radius is None:
        if distances is not None:
            raise ConfigError(
                "distances were given but radius is None (global ETKF): "
                "set a radius to localize, or pass distances=None"
            )
        return obs, obs_forecast, obs_std, None
    check_real("radius", radius, 0.0, low_open=True)
    if distances is None:
        raise ConfigError(
            f"radius = {radius} needs distances (N, M) "
            "between grid points and observations, got None"
        )
    distances = _as(distances, forecast, "distances")
    if distances.dim() < 2 or distances.shape[-2:] != (forecast.shape[-1], m):
        raise ShapeError(
            f"distances must have shape (..., N, M) = (..., {forecast.shape[-1]}, {m}), "
            f"got {tuple(distances.shape)}"
        )
    if not (torch.isfinite(distances).all() and (distances >= 0).all()):
        raise ObservationError("distances must be finite and >= 0")
    return obs, obs_forecast, obs_std, distances


def letkf_analysis(
    forecast: Tensor,
    obs: Tensor,
    obs_forecast: Tensor,
    obs_std: Tensor,
    *,
    inflation: float = 1.0,
    radius: float | None = None,
    distances: Tensor | None = None,
) -> Tensor:
    """ETKF / LETKF analysis ensemble (Hunt et al. 2007), all grid points in one batch.

    Parameters
    ----------
    forecast : Tensor, shape (..., K, N)
        Forecast ensemble, ``K >= 2`` members of ``N`` grid values.
    obs : Tensor, shape (..., M)
        Observations.
    obs_forecast : Tensor, shape (..., K, M)
        The observation operator applied to each forecast member, ``H(forecast_k)``.
    obs_std : Tensor, shape (M,) or (..., M), or a scalar
        Observation error standard deviations (independent errors), > 0.
    inflation : float
        Multiplicative factor on the forecast perturbations, finite and ``>= 1`` (the prior
        covariance is multiplied by its square); default none.
    radius : float, optional
        Localization radius (finite, > 0; :attr:`xlevda.core.localization.Localization.radius`):
        the Gaspari-Cohn taper of the observation weights falls from 1 at distance 0 to 0 at
        this radius.  ``None`` (default): no localization, the global ETKF.
    distances : Tensor, shape (N, M) or (..., N, M), optional
        Distance of every observation from every grid point, in the units of ``radius``;
        required with a radius and refused without one.

    Returns
    -------
    Tensor, shape (..., K, N)
        Analysis ensemble in the dtype and on the device of ``forecast``.

    Raises
    ------
    ShapeError
        For inconsistent shapes or fewer than two members.
    ObservationError
        For non-finite observations, non-positive errors or negative distances.
    ConfigError
        For an inflation or radius out of range, distances without a radius, or a radius
        without distances.

    Examples
    --------
    Two members at -1 and 1 (prior mean 0, variance 2) and one observation 1 with error 1: the
    posterior has mean 2/3 and variance 2/3, as in the Kalman filter.

    >>> import torch
    >>> xf = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    >>> xa = letkf_analysis(xf, torch.tensor([1.0]), xf, torch.tensor([1.0]))
    >>> round(float(xa.mean()), 12), round(float(xa.var()), 12)
    (0.666666666667, 0.666666666667)
    """
    obs, obs_forecast, obs_std, distances = _check_inputs(
        forecast, obs, obs_forecast, obs_std, inflation, radius, distances
    )
    k = forecast.shape[-2]
    xbar = forecast.mean(-2, keepdim=True)
    pert = inflation * (forecast - xbar)  # (..., K, N)
    ybar = obs_forecast.mean(-2, keepdim=True)
    y_pert = inflation * (obs_forecast - ybar) / obs_std.unsqueeze(-2)  # R^-1/2 Y
    innov = (obs - ybar.squeeze(-2)) / obs_std  # (..., M)
    eye = torch.eye(k, dtype=forecast.dtype, device=forecast.device)
    if distances is None:
        gram = (k - 1) * eye + y_pert @ y_pert.mT  # (..., K, K)
        rhs = (y_pert @ innov.unsqueeze(-1)).squeeze(-1)  # (..., K)
        transform = _transform(gram, rhs, k)  # (..., K, K)
        return xbar + transform.mT @ pert
    taper = gaspari_cohn(distances, radius)  # (..., N, M)
    weighted = y_pert.unsqueeze(-3) * taper.unsqueeze(-2)  # (..., N, K, M)
    gram = (k - 1) * eye + weighted @ y_pert.mT.unsqueeze(-3)  # (..., N, K, K)
    rhs = (weighted @ innov[..., None, :, None]).squeeze(-1)  # (..., N, K)
    transform = _transform(gram, rhs, k)  # (..., N, K, K)
    return xbar + torch.einsum("...nkj,...kn->...jn", transform, pert)


def _transform(gram: Tensor, rhs: Tensor, k: int) -> Tensor:
    """``wbar + W`` with ``wbar = A^-1 b`` and ``W = [(K-1) A^-1]^{1/2}``: column ``j`` holds
    member ``j``'s weights.  ``gram`` (..., K, K) symmetric with eigenvalues >= K - 1."""
    lam, vec = torch.linalg.eigh(gram)
    mean_w = vec @ ((vec.mT @ rhs.unsqueeze(-1)) / lam.unsqueeze(-1))  # (..., K, 1)
    sqrt_w = (vec * torch.sqrt((k - 1) / lam).unsqueeze(-2)) @ vec.mT
    return mean_w + sqrt_w
