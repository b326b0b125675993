"""What the analysis ensemble leaves unexplained at the observations (Desroziers-type checks)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from xlevda.core.window import ObsWindow

__all__ = ["Excess", "observed_excess", "unexplained_variance"]


class Excess(NamedTuple):
    """Per channel, the terms ``(y - ybar)^2 + spread^2 - sigma^2`` at the step times.

    Attributes
    ----------
    mean : Tensor, shape (C,)
        Their level at the latent step times (see :func:`observed_excess`); NaN for
        a channel without observed values.
    count : Tensor, shape (C,), int64
        Observed values.
    noise : Tensor, shape (C,)
        Mean observation error variance ``sigma^2`` over them; NaN without values.
    leverage : Tensor, shape (C,)
        The variance of ``mean`` per unit variance of one term: ``1 / n`` for a plain
        mean, more where a slope is fitted; NaN without values.
    """

    mean: Tensor
    count: Tensor
    noise: Tensor
    leverage: Tensor


def observed_excess(decoded: Tensor, window: ObsWindow) -> Excess:
    """Per channel, the terms ``(y - ybar)^2 + spread^2 - sigma^2`` (:class:`Excess`).

    Over the observed values (``weight > 0``) of each channel, with ``ybar`` and
    ``spread^2`` the mean and variance (``K - 1`` in the denominator) of the analysis
    members' decoded values and ``sigma^2 = 1 / weight``.  Observations between
    latent steps are compared with states interpolated linearly in time (eq. 17),
    whose error grows like ``theta (1 - theta)`` with ``theta`` the fraction of the
    step; so the level returned is the intercept ``a`` of the least-squares fit
    ``a + b [theta (1 - theta)]^2`` of the terms (the plain mean where all
    observations share one fraction, or there are fewer than three): the excess at
    the step times, where the output fields are.  Unclipped, so that several
    windows pool; :func:`unexplained_variance` is its positive part.  Members that
    are not finite at every observation are left out; with fewer than two left the
    counts are 0.

    Parameters
    ----------
    decoded : Tensor, shape (K, T_o, P, C)
        Members at the observations (:func:`~xlevda.core.dynamics.observe`), ``K >= 2``.
    window : ObsWindow
        In the dtype of ``decoded``.

    Returns
    -------
    Excess

    Examples
    --------
    >>> import torch
    >>> w = ObsWindow(torch.tensor([0]), torch.zeros(1, dtype=torch.float64),
    ...               torch.zeros(1, 2, 1, dtype=torch.float64),
    ...               torch.tensor([[[5.0], [1.0]]], dtype=torch.float64),
    ...               torch.full((1, 2, 1), 4.0, dtype=torch.float64))  # sigma^2 = 0.25
    >>> members = torch.tensor([[[[0.0], [0.0]]], [[[2.0], [2.0]]]], dtype=torch.float64)
    >>> ex = observed_excess(members, w)  # terms 4^2 + 2 - 0.25 and 0^2 + 2 - 0.25
    >>> ex.mean.tolist(), ex.count.tolist(), ex.noise.tolist(), ex.leverage.tolist()
    ([9.75], [2], [0.25], [0.5])
    """
    observed = window.weight > 0
    finite = torch.where(observed, decoded, 0.0).isfinite().flatten(1).all(1)
    decoded = decoded[finite]
    n_ch = decoded.shape[-1]
    if decoded.shape[0] < 2:
        nan = torch.full((n_ch,), torch.nan, dtype=decoded.dtype, device=decoded.device)
        zero = torch.zeros((n_ch,), dtype=torch.int64, device=decoded.device)
        return Excess(nan, zero, nan.clone(), nan.clone())
    mean = decoded.mean(0)
    var = (decoded - mean).square().sum(0) / (decoded.shape[0] - 1)
    sigma2 = 1 / window.weight.clamp_min(1e-300)
    on = observed.to(decoded.dtype)
    terms = torch.where(observed, (window.values - mean).square() + var - sigma2, 0.0)
    g = (window.frac * (1 - window.frac)).square()[:, None, None].expand_as(terms)
    n = observed.sum((0, 1))
    nf = n.clamp_min(1).to(terms.dtype)
    e_bar, g_bar = terms.sum((0, 1)) / nf, (on * g).sum((0, 1)) / nf
    s_gg = (on * (g - g_bar).square()).sum((0, 1))
    s_ge = (on * (g - g_bar) * (terms - e_bar)).sum((0, 1))
    sloped = (s_gg > 1e-12 * nf) & (n > 2)
    s_gg = torch.where(sloped, s_gg, 1.0)
    slope = torch.where(sloped, s_ge / s_gg, 0.0)
    leverage = 1 / nf + torch.where(sloped, g_bar.square() / s_gg, 0.0)
    noise = (on * sigma2).sum((0, 1)) / nf
    seen = n > 0
    return Excess(
        torch.where(seen, e_bar - slope * g_bar, torch.nan),
        n,
        torch.where(seen, noise, torch.nan),
        torch.where(seen, leverage, torch.nan),
    )


def unexplained_variance(decoded: Tensor, window: ObsWindow) -> Tensor:
    """Per channel, the analysis error that the ensemble spread leaves out, from the data.

    ``max(0, mean (y - ybar)^2 + mean spread^2 - mean sigma^2)`` over the observed
    values of each channel, the mean taken at the step times
    (:func:`observed_excess`).  An analysis fitted to the observations is closer to
    them than the truth is: for an ensemble whose spread is its error, and
    observation errors ``sigma``, ``E (y - ybar)^2 = sigma^2 - spread^2`` (Desroziers
    et al., 2005); an error ``Q`` that no member can represent adds to it.  So the
    estimate is ``Q``, the variance to add to the spread for ``spread^2 + Q`` to
    match the mean square error of the ensemble mean.

    Parameters
    ----------
    decoded : Tensor, shape (K, T_o, P, C)
        Members at the observations (:func:`~xlevda.core.dynamics.observe`), ``K >= 2``.
    window : ObsWindow
        In the dtype of ``decoded``.

    Returns
    -------
    Tensor, shape (C,)
        NaN for a channel without observed values (or fewer than two finite members).

    Examples
    --------
    >>> import torch
    >>> f64 = {"dtype": torch.float64}
    >>> w = ObsWindow(torch.tensor([0]), torch.zeros(1, **f64), torch.zeros(1, 1, 1, **f64),
    ...               torch.full((1, 1, 1), 3.0, **f64), torch.ones(1, 1, 1, **f64))
    >>> members = torch.tensor([[[[0.0]]], [[[2.0]]]], **f64)  # ybar 1, spread^2 2, sigma^2 1
    >>> unexplained_variance(members, w).tolist()  # (3 - 1)^2 + 2 - 1
    [5.0]
    """
    return observed_excess(decoded, window).mean.clamp_min(0)
