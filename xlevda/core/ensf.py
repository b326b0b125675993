"""Ensemble score filter (EnSF): one analysis by a reverse-time diffusion SDE.

The forecast ensemble ``x0_k`` (K, d) defines, at pseudo-time ``t`` in ``[0, 1]``,
the diffused prior ``p_t(x) = 1/K sum_k N(x; alpha_t x0_k, beta_t^2 I)`` with

    alpha_t = 1 - (1 - eps_alpha) t,      beta_t^2 = eps_beta + (1 - eps_beta) t.

Its score is that of a Gaussian mixture (the Monte-Carlo score),

    S_prior(x, t) = (alpha_t xhat_0(x) - x) / beta_t^2,
    xhat_0(x) = sum_k w_k(x) x0_k,   w_k(x) = softmax_k(-|x - alpha_t x0_k|^2 / (2 beta_t^2)),

computed for all particles against all K centres at once (a log-sum-exp
softmax, so no weight underflows): ``O(K^2 d)`` work and ``K^2`` memory per
step.  The analysis starts from ``N(0, I)`` at ``t = 1`` and runs the reverse
SDE by Euler-Maruyama to ``t = 0``:

    x <- x - dt [f x - g^2 (S_prior + S_obs)] + sqrt(dt) g xi,
    f = d log alpha_t / dt,   g^2 = d beta_t^2 / dt - 2 f beta_t^2.

How the observations enter, ``S_obs``, is a typed choice (:data:`Damping`):

- :class:`LinearDamping` (default, the EnSF and LD-EnSF papers):
  ``S_obs = (1 - t) S_lik(x)``, the likelihood score ``grad_x log p(y | x)``
  evaluated at the particle itself and damped.
- :class:`NoDamping`: ``S_obs = S_lik(x)``.
- :class:`TweedieLikelihood`: the score of the *diffused* likelihood
  ``p_t(y | x) = int p(y | x0) p(x0 | x_t = x) dx0`` with ``p(x0 | x_t)`` replaced
  by a Gaussian of the mixture's moments (Tweedie):
  ``S_obs = alpha_t / beta_t^2 (I + C G)^-1 C S_lik(xhat_0)``, ``C`` the
  mixture-weighted covariance of the members around ``xhat_0`` and
  ``G = -d S_lik / dx`` at ``xhat_0``.  For a Gaussian prior and linear Gaussian
  observations this is the exact posterior score, so the reverse SDE samples the
  Kalman posterior (up to Monte-Carlo and time-step error).  It costs ``d``
  backward passes through the likelihood score, ``O(K^2 d^2)`` for ``C`` and a
  ``d x d`` solve per particle and step, so it suits low-dimensional (latent)
  states.

Accuracy, measured (``tests/core/test_ensf.py``): the damped likelihood is a
heuristic, not the score of the diffused posterior, and the default EnSF is not
a consistent sampler of the posterior even for a Gaussian prior and linear
observations.  For a scalar prior ``N(0, 1)``, ``y = 1``, ``R = 0.5`` (Kalman
posterior mean 2/3, variance 1/3) and K = 2000, 100 steps, the default gives
mean 0.74 and variance 0.25 (the bias does not shrink with 1000 steps: 0.75 and
0.24), :class:`NoDamping` 0.83 and 0.23.  With ``y = 2``, ``R = 0.25`` and
K = 500 the default mean is 8.5 to 10.6 Monte-Carlo standard errors too high
(about +0.2 against a posterior standard deviation of 0.45) over three seeds; in
a 3-D case with K = 1000 the errors reached 5 standard errors in the mean and
8 in the variance.  :class:`TweedieLikelihood` stayed within about 3 standard
errors in every case tried (1-D and 3-D, K = 500 and 1000, 100 and 400 steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from xlevda.core.rng import normal
from xlevda.core.scores import (
    LikelihoodScore,
    clipped_score,
    gaussian_likelihood_score,
    mixture_posterior_mean,
    tweedie_score,
)
from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.validate import check_int, check_real

__all__ = [
    "Damping",
    "EnSFConfig",
    "LinearDamping",
    "NoDamping",
    "TweedieLikelihood",
    "ensf_analysis",
    "scaled_ensf_analysis",
]


@dataclass(frozen=True)
class LinearDamping:
    """``S_obs = (1 - t) S_lik(x)``: the EnSF papers' damped likelihood score.

    Examples
    --------
    >>> LinearDamping()
    LinearDamping()
    """


@dataclass(frozen=True)
class NoDamping:
    """``S_obs = S_lik(x)`` at every pseudo-time.

    Examples
    --------
    >>> NoDamping()
    NoDamping()
    """


@dataclass(frozen=True)
class TweedieLikelihood:
    """Score of the diffused likelihood with Tweedie moments of the prior mixture.

    Exact for a Gaussian prior with linear Gaussian observations; needs a
    likelihood score that autograd can differentiate (as
    :func:`~xlevda.core.scores.gaussian_likelihood_score` builds).

    Examples
    --------
    >>> TweedieLikelihood()
    TweedieLikelihood()
    """


Damping = LinearDamping | NoDamping | TweedieLikelihood
"""How the likelihood enters the reverse SDE at pseudo-time ``t``."""


@dataclass(frozen=True)
class EnSFConfig:
    """Options of :func:`ensf_analysis`.

    Attributes
    ----------
    steps : int
        Euler-Maruyama steps from ``t = 1`` to ``t = 0`` (>= 1).
    eps_alpha : float
        ``alpha_t = 1 - (1 - eps_alpha) t``; in ``(0, 1]``.
    eps_beta : float
        ``beta_t^2 = eps_beta + (1 - eps_beta) t``; in ``[0, 1)``.
    damping : LinearDamping, NoDamping or TweedieLikelihood
        How the likelihood score enters; default ``LinearDamping()`` (``h = 1 - t``).
    score_clip : float or None
        Clip each component of the likelihood score to ``[-score_clip,
        score_clip]`` (> 0) before it is damped; ``None`` (default) does not clip.

    Examples
    --------
    >>> EnSFConfig(steps=50).eps_alpha
    0.05
    """

    steps: int = 100
    eps_alpha: float = 0.05
    eps_beta: float = 0.0
    damping: Damping = LinearDamping()
    score_clip: float | None = None

    def __post_init__(self) -> None:
        check_int("EnSFConfig.steps", self.steps, 1)
        check_real("EnSFConfig.eps_alpha", self.eps_alpha, 0.0, 1.0, low_open=True)
        check_real("EnSFConfig.eps_beta", self.eps_beta, 0.0, 1.0, high_open=True)
        if not isinstance(self.damping, LinearDamping | NoDamping | TweedieLikelihood):
            raise ConfigError(
                f"EnSFConfig.damping={self.damping!r} is invalid: use LinearDamping(), "
                "NoDamping() or TweedieLikelihood()"
            )
        if self.score_clip is not None:
            check_real("EnSFConfig.score_clip", self.score_clip, 0.0, low_open=True)


def ensf_analysis(
    prior: Tensor,
    likelihood_score: LikelihoodScore,
    config: EnSFConfig,
    generator: torch.Generator,
) -> Tensor:
    """EnSF analysis ensemble from a forecast ensemble and a likelihood score.

    Parameters
    ----------
    prior : Tensor, shape (K, d)
        Forecast ensemble, ``K >= 2``, finite; sets dtype and device.
    likelihood_score : callable
        ``x (K, d) -> grad_x log p(y | x) (K, d)``, e.g. from
        :func:`~xlevda.core.scores.gaussian_likelihood_score`.  Called under ``torch.no_grad()``
        (except with :class:`TweedieLikelihood`); a score that uses autograd
        enables it itself, as :func:`~xlevda.core.scores.gaussian_likelihood_score` does.
    config : EnSFConfig
    generator : torch.Generator
        Source of the initial draw and of the SDE noise (on any device; draws
        are moved to the prior's device).  Same generator state, same result.

    Returns
    -------
    Tensor, shape (K, d)
        Analysis ensemble.

    Raises
    ------
    ShapeError
        ``prior`` not a floating (K, d) tensor, or a score of the wrong shape.
    ConfigError
        ``K < 2``, a config or generator of the wrong type.
    VariableError
        Non-finite prior members or likelihood scores.

    Examples
    --------
    >>> import torch
    >>> prior = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    >>> xa = ensf_analysis(prior, lambda x: (1.0 - x) / 0.1, EnSFConfig(steps=20),
    ...                    torch.Generator().manual_seed(1))
    >>> xa.shape, bool((xa.mean(0) > 0.5).all())
    (torch.Size([200, 2]), True)
    """
    if not isinstance(prior, Tensor) or not prior.is_floating_point() or prior.ndim != 2:
        got = f"{tuple(prior.shape)} {prior.dtype}" if isinstance(prior, Tensor) else type(prior)
        raise ShapeError(f"prior must be a floating tensor of shape (K, d), got {got}")
    if prior.shape[0] < 2:
        raise ConfigError(f"prior has K={prior.shape[0]} members: EnSF needs at least 2")
    if not torch.isfinite(prior).all():
        bad = (~torch.isfinite(prior)).any(1).nonzero()[0].item()
        raise VariableError(f"prior is not finite for member {bad}")
    if not isinstance(config, EnSFConfig):
        raise ConfigError(f"config={config!r} is invalid: use EnSFConfig(...)")
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator={generator!r} is invalid: use a torch.Generator")
    x0 = prior.detach()

    ea, eb, n = config.eps_alpha, config.eps_beta, config.steps
    dt = 1.0 / n
    x = normal(x0.shape, generator, x0)
    for i in range(n):
        t = 1.0 - i * dt
        alpha, beta2 = 1.0 - (1.0 - ea) * t, eb + (1.0 - eb) * t
        f = -(1.0 - ea) / alpha
        g2 = (1.0 - eb) - 2.0 * f * beta2
        xhat, weights = mixture_posterior_mean(x, x0, alpha, beta2)
        s_prior = (alpha * xhat - x) / beta2
        if isinstance(config.damping, TweedieLikelihood):
            s_obs = tweedie_score(
                likelihood_score, xhat, weights, x0, alpha, beta2, config.score_clip
            )
        else:
            h = 1.0 - t if isinstance(config.damping, LinearDamping) else 1.0
            with torch.no_grad():
                s_obs = h * clipped_score(likelihood_score(x), x, config.score_clip)
        x = (
            x
            - dt * (f * x - g2 * (s_prior + s_obs))
            + math.sqrt(dt * g2) * normal(x0.shape, generator, x0)
        )
    return x


def scaled_ensf_analysis(
    forecast: Tensor,
    groups: Tensor,
    group_error: Tensor,
    h: Callable[[Tensor], Tensor],
    y: Tensor,
    obs_std: Tensor,
    generator: torch.Generator,
    *,
    ensf: EnSFConfig | None = None,
    obs_scale: float = 0.3,
    inflation: float = 1.0,
) -> Tensor:
    """EnSF analysis of a state whose components come in groups of one unit (variables).

    The forecast perturbations are first multiplied by ``inflation``.  The user-facing
    options are :class:`xlevda.methods.EnSF`'s; this function takes their values.  The
    analysis runs in ``x = obs_scale (z - m) / c_g``, ``m`` the forecast mean and,
    for component ``i`` of group ``g``, ``c_g = min(sigma_g, spread_g)``: ``sigma_g`` the
    group's observation error (``inf`` for a group observed only indirectly, e.g. a
    parameter) and ``spread_g`` the forecast spread pooled over the group (root mean
    variance).  A group with zero spread is returned unchanged.  In plain standardized
    coordinates the explicit Euler steps of the likelihood term are unstable wherever
    ``(spread / sigma)^2 >> steps``; in these
    coordinates the observation error or the spread is ``obs_scale``, so the
    likelihood term is resolved by the SDE's steps (as LD-EnSF does in its latent
    space).

    Parameters
    ----------
    forecast : Tensor, shape (K, d)
    groups : LongTensor, shape (d,)
        Group of every component, ``0 .. G-1``.
    group_error : Tensor, shape (G,)
        ``sigma_g`` (> 0, ``inf`` allowed).
    h : callable
        Observation operator on the state ``z`` (K, d) -> (K, m), differentiable.
    y, obs_std : Tensor, shape (m,)
        Observations and their error standard deviations.
    generator : torch.Generator
    ensf : EnSFConfig, optional
        The reverse-SDE settings (default ``EnSFConfig()``).
    obs_scale : float
        Ensemble spread (or observation error, where smaller) in the scaled
        coordinates, > 0; the default 0.3 is LD-EnSF's
        (:class:`xlevda.core.ldensf.LDEnSFConfig`).
    inflation : float
        Multiplicative factor on the forecast perturbations before the analysis,
        finite and ``>= 1``.  The Monte-Carlo prior score of a small ensemble pulls
        particles onto the members, so cycled EnSF ensembles collapse without it.

    Returns
    -------
    Tensor, shape (K, d)

    Examples
    --------
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> zf = 10.0 + torch.randn(400, 1, generator=gen, dtype=torch.float64)   # N(10, 1)
    >>> za = scaled_ensf_analysis(zf, torch.zeros(1, dtype=torch.long),
    ...     torch.tensor([1.0], dtype=torch.float64), lambda z: z,
    ...     torch.tensor([12.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64),
    ...     gen)
    >>> 10.5 < za.mean().item() < 11.5     # the Kalman mean is 11
    True
    """
    ensf = EnSFConfig() if ensf is None else ensf
    if not isinstance(ensf, EnSFConfig):
        raise ConfigError(f"ensf={ensf!r} is invalid: use EnSFConfig(...)")
    check_real("obs_scale", obs_scale, 0.0, low_open=True)
    check_real("inflation", inflation, 1.0)
    if not isinstance(forecast, Tensor) or forecast.ndim != 2 or not forecast.is_floating_point():
        raise ShapeError(f"forecast must be a floating tensor (K, d), got {forecast!r}")
    d = forecast.shape[1]
    if groups.shape != (d,) or groups.dtype != torch.long:
        raise ShapeError(f"groups must be an int64 tensor of shape (d,) = ({d},), got {groups!r}")
    n_groups = group_error.shape[0]
    if d and (groups.min() < 0 or groups.max() >= n_groups):
        raise ShapeError(f"groups must lie in 0..{n_groups - 1} (one per entry of group_error)")
    mean = forecast.mean(0)
    forecast = mean + inflation * (forecast - mean)
    sizes = torch.bincount(groups, minlength=n_groups).to(forecast.dtype)
    pooled = forecast.new_zeros(n_groups).index_add_(0, groups, forecast.var(0))
    spread = (pooled / sizes.clamp_min(1)).sqrt()
    error = group_error.to(forecast)
    scale = (torch.minimum(error, spread).clamp_min(1e-12) / obs_scale)[groups]

    def h_scaled(x: Tensor) -> Tensor:
        return h(mean + x * scale)

    score = gaussian_likelihood_score(h_scaled, y, obs_std)
    analysis = mean + ensf_analysis((forecast - mean) / scale, score, ensf, generator) * scale
    # A group without spread (e.g. a known parameter) has nothing to update: keep it.
    return torch.where((spread > 0)[groups], analysis, forecast)
