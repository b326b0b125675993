"""Score functions of the ensemble score filter (:mod:`xlevda.core.ensf`).

The prior's Tweedie mean under the diffused ensemble mixture, the score of a
Gaussian likelihood by automatic differentiation, and that likelihood's score
diffused with the mixture's moments (:class:`~xlevda.core.ensf.TweedieLikelihood`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ObservationError, ShapeError, VariableError

__all__ = [
    "LikelihoodScore",
    "clipped_score",
    "gaussian_likelihood_score",
    "mixture_posterior_mean",
    "tweedie_score",
]

LikelihoodScore = Callable[[Tensor], Tensor]
"""``x (K, d) -> grad_x log p(y | x) (K, d)``."""


def mixture_posterior_mean(
    x: Tensor, centres: Tensor, alpha: float, beta2: float
) -> tuple[Tensor, Tensor]:
    """Tweedie mean ``E[x0 | x_t = x]`` under the diffused ensemble mixture.

    Parameters
    ----------
    x : Tensor, shape (M, d)
        Points at pseudo-time ``t``.
    centres : Tensor, shape (K, d)
        Forecast members ``x0_k``.
    alpha, beta2 : float
        ``alpha_t`` and ``beta_t^2`` (> 0).

    Returns
    -------
    xhat : Tensor, shape (M, d)
        ``sum_k w_k x0_k``.
    weights : Tensor, shape (M, K)
        ``w_k(x)``, rows summing to 1.

    Examples
    --------
    >>> import torch
    >>> xh, w = mixture_posterior_mean(torch.zeros(1, 1), torch.tensor([[-1.0], [1.0]]), 1.0, 1.0)
    >>> xh.item(), w.tolist()
    (0.0, [[0.5, 0.5]])
    """
    shift = centres.mean(0)
    xc, cc = x - alpha * shift, alpha * (centres - shift)
    d2 = (xc.square().sum(-1, keepdim=True) + cc.square().sum(-1) - 2 * xc @ cc.T).clamp_min(0)
    weights = torch.softmax(-d2 / (2 * beta2), -1)
    return weights @ centres, weights


def tweedie_score(
    likelihood_score: LikelihoodScore,
    xhat: Tensor,
    weights: Tensor,
    centres: Tensor,
    alpha: float,
    beta2: float,
    clip: float | None,
) -> Tensor:
    """``alpha / beta2 (I + C G)^-1 C S_lik(xhat)`` per particle: (M, d).

    ``xhat`` (M, d) and ``weights`` (M, K) from :func:`mixture_posterior_mean` of the
    ``centres`` (K, d); ``C`` their weighted covariance around ``xhat`` and ``G`` minus
    the Jacobian of the (clipped) likelihood score at ``xhat``.
    """
    dev = centres.unsqueeze(0) - xhat.unsqueeze(1)  # (M, K, d)
    cov = torch.einsum("mk,mka,mkb->mab", weights, dev, dev)
    with torch.enable_grad():
        xg = xhat.detach().requires_grad_(True)
        score = clipped_score(likelihood_score(xg), xg, clip)
        if not score.requires_grad:
            raise ConfigError(
                "damping=TweedieLikelihood() needs a likelihood score that autograd can "
                "differentiate (e.g. from gaussian_likelihood_score); the given one returns "
                "a tensor without a graph"
            )
        d = xhat.shape[1]
        rows = [
            torch.autograd.grad(score[:, j].sum(), xg, retain_graph=j < d - 1)[0] for j in range(d)
        ]
    neg_jac = -torch.stack(rows, 1)  # (M, d, d): G = -d S / dx
    eye = torch.eye(d, dtype=xhat.dtype, device=xhat.device)
    rhs = (cov @ score.detach().unsqueeze(-1)).squeeze(-1)
    return alpha / beta2 * torch.linalg.solve(eye + cov @ neg_jac, rhs)


def clipped_score(score: Tensor, x: Tensor, clip: float | None) -> Tensor:
    """A likelihood score at ``x`` (K, d), checked and clipped to ``[-clip, clip]``.

    Raises
    ------
    ShapeError
        ``score`` is not a tensor of the shape of ``x``.
    VariableError
        ``score`` is not finite.
    """
    if not isinstance(score, Tensor) or score.shape != x.shape:
        got = tuple(score.shape) if isinstance(score, Tensor) else type(score)
        raise ShapeError(
            f"likelihood_score returned {got} for points of shape {tuple(x.shape)}; "
            "expected the same shape (K, d)"
        )
    if not torch.isfinite(score).all():
        raise VariableError("likelihood_score returned non-finite values")
    return score if clip is None else score.clamp(-clip, clip)


def gaussian_likelihood_score(
    h: Callable[[Tensor], Tensor], y: Tensor, obs_std: Tensor | float
) -> LikelihoodScore:
    """Score of ``y ~ N(h(x), diag(obs_std^2))`` by automatic differentiation.

    Parameters
    ----------
    h : callable
        Batched differentiable observation operator ``x (K, d) -> (K, m)``.
    y : Tensor, shape (m,)
        Observations (finite).
    obs_std : Tensor of shape (m,) or float
        Observation error standard deviations (> 0, finite).

    Returns
    -------
    callable
        ``x (K, d) -> grad_x log p(y | x) = J_h(x)^T (y - h(x)) / obs_std^2`` (K, d).
        Where ``x`` requires grad, the result keeps its graph (so that
        :class:`~xlevda.core.ensf.TweedieLikelihood` can differentiate it).

    Raises
    ------
    ShapeError
        ``y`` not a floating 1-D tensor, ``obs_std`` of another shape, or ``h``
        returning other than (K, m).
    ObservationError
        Non-finite ``y`` or non-positive ``obs_std``.

    Examples
    --------
    >>> import torch
    >>> score = gaussian_likelihood_score(lambda x: 2 * x[:, :1], torch.tensor([2.0]), 0.5)
    >>> score(torch.tensor([[0.0, 5.0]])).tolist()   # 2 (2 - 0) / 0.25
    [[16.0, 0.0]]
    """
    if not isinstance(y, Tensor) or not y.is_floating_point() or y.ndim != 1:
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, Tensor) else type(y)
        raise ShapeError(f"y must be a floating tensor of shape (m,), got {got}")
    if not torch.isfinite(y).all():
        raise ObservationError("y must be finite everywhere")
    std = torch.as_tensor(obs_std, dtype=y.dtype, device=y.device)
    if std.ndim not in (0, 1) or (std.ndim == 1 and std.shape != y.shape):
        raise ShapeError(
            f"obs_std has shape {tuple(std.shape)}; expected a scalar or (m,) = {tuple(y.shape)}"
        )
    if not (torch.isfinite(std) & (std > 0)).all():
        raise ObservationError(f"obs_std must be finite and > 0, got min {std.min().item()}")
    inv_var = std.square().reciprocal()

    def score(x: Tensor) -> Tensor:
        keep_graph = x.requires_grad
        with torch.enable_grad():
            xg = x if keep_graph else x.detach().requires_grad_(True)
            hx = h(xg)
            if not isinstance(hx, Tensor) or hx.shape != (x.shape[0], y.shape[0]):
                got = tuple(hx.shape) if isinstance(hx, Tensor) else type(hx)
                raise ShapeError(
                    f"h returned {got} for x of shape {tuple(x.shape)}; expected "
                    f"(K, m) = ({x.shape[0]}, {y.shape[0]})"
                )
            log_lik = -0.5 * ((y - hx).square() * inv_var).sum()
            (grad,) = torch.autograd.grad(log_lik, xg, create_graph=keep_graph)
        return grad

    return score
